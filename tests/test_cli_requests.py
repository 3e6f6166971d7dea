"""Request economy, counted by the sandbox: a plan costs one list per space plus the spaces check and
connector_types (S + 2, within the promised S + 3) whatever the number of connectors; a guard that
blocks a delete adds one rules lookup per blocked connector, nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.cli import main
from reconciler.model import derive_connector_id
from reconciler.sandbox import Sandbox


def _world(tmp_path: Path, spaces: int, per_space: int) -> tuple[Path, dict[str, Any]]:
    names = ["default"] + [f"team-{i}" for i in range(1, spaces)]
    connectors = []
    for space in names:
        d = tmp_path / "connectors" / space
        d.mkdir(parents=True)
        items = [{"id": f"idx-{i}", "name": f"Index {i}", "type": ".index", "config": {"index": f"i-{i}"}}
                 for i in range(per_space)]
        (d / "index.yaml").write_text(yaml.safe_dump({"connectors": items}))
        connectors += [{"id": derive_connector_id(space, f"idx-{i}"), "space": space, "name": f"Index {i}",
                        "connector_type_id": ".index", "config": {"index": f"i-{i}"}, "secrets": {}}
                       for i in range(per_space)]
    return tmp_path, {"spaces": names, "connectors": connectors}


@pytest.mark.parametrize(("spaces", "per_space"), [(1, 1), (1, 300), (7, 40)])
def test_a_no_change_plan_costs_s_plus_2_requests(tmp_path: Path, spaces: int, per_space: int) -> None:
    repo, seed = _world(tmp_path, spaces, per_space)
    sb = Sandbox.from_seed(seed)
    env = {"KIBANA_URL": "http://kibana.test", "KCR_RECORD": str(tmp_path / "record.json")}
    code = main(["plan", "--detailed-exitcode", "--dir", str(repo)], env=env, transport=sb.transport())
    assert code == 0
    counters = dict(sb.counters)
    assert counters["total"] == spaces + 2, counters
    assert counters.get("GET connectors") == spaces


def test_a_blocked_delete_adds_one_rules_lookup(tmp_path: Path) -> None:
    repo, seed = _world(tmp_path, 2, 3)
    (repo / "connectors" / "default" / "_space.yaml").write_text("prune: true\n")
    stray = "7c1b2f6e-9a7d-4b1e-8c3f-2d4e5f6a7b8c"
    seed["connectors"].append({"id": stray, "space": "default", "name": "Stray", "connector_type_id": ".server-log",
                               "config": {}, "secrets": {}})
    seed["rules"] = [{"id": "4f1e6c1a-2b3c-4d5e-8f90-a1b2c3d4e5f6", "space": "default", "name": "Disk full",
                      "actions": [{"id": stray, "group": "default", "params": {"message": "x"}}]}]
    sb = Sandbox.from_seed(seed)
    env = {"KIBANA_URL": "http://kibana.test", "KCR_RECORD": str(tmp_path / "record.json")}
    code = main(["plan", "--detailed-exitcode", "--dir", str(repo)], env=env, transport=sb.transport())
    assert code == 2
    assert dict(sb.counters)["total"] == 2 + 2 + 1
