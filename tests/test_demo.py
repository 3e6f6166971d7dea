"""`kcr demo` on repositories other than the shipped example (tests/test_cli.py runs it on the example):
without environments it keeps its one sandbox; an environment reading its URL from another variable
is pointed at its sandbox through that variable; one whose Kibana kcr.yaml fixes is refused, since
the demo must never reach a real Kibana."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers.cli import run_main, write_repo

LOG = "connectors:\n  - id: log\n    name: Log ${var:env}\n    type: .server-log\n"


@pytest.fixture(autouse=True)
def _no_kibana(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo reads the process's environment: a developer's own Kibana settings must not leak in."""
    for name in ("KIBANA_URL", "KIBANA_API_KEY", "KCR_RECORD", "KCR_ENV", "PROD_URL", "PROD_KEY"):
        monkeypatch.delenv(name, raising=False)


def test_demo_without_environments_runs_one_sandbox(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_repo(tmp_path, {"connectors/default/a.yaml": "connectors:\n  - id: log\n    name: Log\n"
                                                       "    type: .server-log\n"})
    code, out, err = run_main(capsys, ["demo", "--dir", str(tmp_path)], env={})
    assert code == 0, out + err
    assert re.search(r"an offline Kibana sandbox is listening on http://127\.0\.0\.1:\d+", out)
    assert "--env" not in out and out.count("No changes. Kibana matches the repository.") == 1
    assert out.rstrip().endswith("Done: the example connectors were planned and applied against the sandbox.")


def test_demo_points_kibana_url_env_at_the_sandbox(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROD_KEY", "CANARY-a-real-production-key")
    write_repo(tmp_path, {
        "kcr.yaml": "environments:\n  staging:\n  production:\n    kibana_url_env: PROD_URL\n"
                    "    credentials: {api_key: PROD_KEY}\n",
        "connectors/_all/log.yaml": LOG,
        "connectors/default/_space.yaml": "prune: true\n",
        "connectors/ops/_space.yaml": "prune: false\n",
    })
    code, out, err = run_main(capsys, ["demo", "--dir", str(tmp_path)], env={})
    assert code == 0, out + err
    assert re.search(r"^\$ PROD_URL=http://127\.0\.0\.1:\d+ kcr apply --env production ", out, re.MULTILINE)
    assert re.search(r"^\$ KIBANA_URL=http://127\.0\.0\.1:\d+ kcr apply --env staging ", out, re.MULTILINE)
    assert '"Log production"' in out and '"Log staging"' in out  # one fan-out connector, two spaces each
    assert out.count("2 unchanged.") == 2
    assert "CANARY" not in out + err
    assert "(staging 2 and production 2 connectors): 2 differ in name or config." in out


@pytest.mark.parametrize("key", ["kibana_url: https://kibana.example.com", "record: {path: record.json}"])
def test_demo_refuses_an_environment_it_cannot_redirect(key: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    write_repo(tmp_path, {"kcr.yaml": f"environments:\n  staging:\n  production:\n    {key}\n",
                          "connectors/default/a.yaml": LOG})
    code, out, err = run_main(capsys, ["demo", "--dir", str(tmp_path)], env={})
    assert code == 1
    assert "environment 'production' fixes" in err and key.split(":")[0] in err
    assert "kcr plan" not in out and not (tmp_path / "record.json").exists()
