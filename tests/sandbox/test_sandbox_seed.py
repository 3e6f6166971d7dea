"""The seed is read like every other file kcr reads: the safe loader, a JSON Schema, `file:line:col`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from reconciler.errors import ConfigError
from reconciler.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "schemas" / "sandbox-seed.schema.json"


def _refused(tmp_path: Path, text: str, name: str = "seed.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Sandbox.from_seed_file(path)
    return str(info.value).replace(str(path), name)


def test_the_schema_is_valid_and_describes_every_key() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    undescribed = [key for key, sub in schema["properties"].items() if not sub.get("description")]
    assert not undescribed


def test_the_readme_seed_example_is_a_valid_seed(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"Seed format \(all keys optional\):\s*```yaml\n(.*?)```", readme, re.S)
    assert block, "README's seed example moved; point this test at it"
    (tmp_path / "seed.yaml").write_text(block.group(1), encoding="utf-8")
    sb = Sandbox.from_seed_file(tmp_path / "seed.yaml")
    assert sb.settings.license == "platinum" and sb.settings.space_ids() == ("default", "space1")


def test_a_json_seed_is_read_with_positions(tmp_path: Path) -> None:
    good = tmp_path / "seed.json"
    good.write_text(json.dumps({"license": "gold", "spaces": ["team"]}, indent=2), encoding="utf-8")
    assert Sandbox.from_seed_file(good).settings.space_ids() == ("default", "team")
    message = _refused(tmp_path, '{\n  "license": "gold",\n  "spaces": "team"\n}\n', "bad.json")
    assert message == 'bad.json:3:13: spaces: must be a list, not "team" (spaces)'


def test_every_problem_is_reported_at_once_with_its_position(tmp_path: Path) -> None:
    message = _refused(tmp_path, "license: diamond\nfaults:\n  error_rate: 2\n  latncy_ms: 1\n")
    lines = message.splitlines()
    assert len(lines) == 3, message
    assert lines[0].startswith("seed.yaml:4:3: faults: unknown key 'latncy_ms' (did you mean 'latency_ms'?)")
    assert lines[1] == "seed.yaml:3:15: faults.error_rate: must be at most 1, not 2 (faults.error_rate)"
    assert lines[2].startswith('seed.yaml:1:10: license: must be one of "basic", ')


def test_cross_checks_are_placed_too(tmp_path: Path) -> None:
    text = ("preconfigured: {pre: {actionTypeId: .server-log}}\n"
            "connectors:\n"
            "  - {id: pre, connector_type_id: .index}\n"
            "  - {id: a, connector_type_id: .index, space: team}\n")
    assert _refused(tmp_path, text).splitlines() == [
        "seed.yaml:3:10: connectors[0].id: 'pre' is already a preconfigured connector id (connectors[0].id)",
        "seed.yaml:4:47: connectors[1].space: space 'team' is not declared in 'spaces' (default); add it there "
        "(connectors[1].space)",
    ]


@pytest.mark.parametrize(("text", "expected"), [
    ("license: gold\nlicense: trial\n", "seed.yaml:2:1: duplicate key 'license' (first defined at line 1, again at "
                                        "line 2) (license)"),
    ("a: &a [*a]\n", "seed.yaml:1:4: an alias refers to a value that contains it (recursive anchor) (a[0])"),
    ("license: !!python/object:os.system x\n", "seed.yaml:1:10: unsupported tag 'tag:yaml.org,2002:python/object:"
                                               "os.system': only plain YAML values are read (license)"),
    ("- a list\n", "seed.yaml:1:1: the sandbox seed must be a mapping of keys (license, spaces, ...)"),
])
def test_the_safe_loader_refuses_what_it_refuses_everywhere(tmp_path: Path, text: str, expected: str) -> None:
    assert _refused(tmp_path, text) == expected


def test_an_alias_bomb_stops_at_the_node_budget(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    message = _refused(tmp_path, "\n".join(lines) + "\n")
    assert message.startswith("seed.yaml:") and "alias bomb" in message


def test_an_oversized_seed_is_refused_unread(tmp_path: Path) -> None:
    assert "over the 1048576-byte limit" in _refused(tmp_path, "# " + "x" * (1024 * 1024) + "\n")


@pytest.mark.parametrize("seed", [
    {"connectors": None, "rules": None, "spaces": None, "auth": None, "faults": None, "preconfigured": None},
    {"faults": {"seed": None, "latency_ms": None}, "human_readable_ids": None},
])
def test_null_means_the_default(seed: dict[str, Any]) -> None:
    sb = Sandbox.from_seed(seed)
    default = Sandbox.from_seed(None)
    assert sb.settings == default.settings


def test_an_in_memory_seed_is_checked_the_same_way() -> None:
    with pytest.raises(ConfigError) as info:
        Sandbox.from_seed({"rules": [{"id": "r", "schedule": "1m"}]})
    assert str(info.value) == ('sandbox seed: rules[0].schedule: must be a mapping, not "1m" '
                               "(rules[0].schedule)")
