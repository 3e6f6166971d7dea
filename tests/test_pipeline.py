"""The plan and apply pipelines called as functions, without click (`reconciler.pipeline`), and the one
runner that maps errors to exit codes for `main` and the demo (`reconciler.cli.run`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler import pipeline
from reconciler.apply_report import Status
from reconciler.cli import Globals, run
from reconciler.errors import ConfigError, ExitCode
from reconciler.planfile import dumps
from reconciler.sandbox import Sandbox

KIBANA = "http://kibana.test"
REPO = """\
connectors:
  - id: hook
    name: Hook
    type: .webhook
    config:
      url: https://hooks.example.com/in
      hasAuth: false
"""


@pytest.fixture()
def session(tmp_path: Path) -> pipeline.Session:
    (tmp_path / "connectors/default").mkdir(parents=True)
    (tmp_path / "connectors/default/hook.yaml").write_text(REPO)
    sb = Sandbox.from_seed({"license": "platinum", "spaces": ["default"]})
    return pipeline.Session(root=tmp_path, env={"KIBANA_URL": KIBANA, "KCR_FINGERPRINT_KEY": "k"},
                            transport=sb.transport())


def test_plan_apply_and_plan_again_as_values(session: pipeline.Session) -> None:
    planned = pipeline.make_plan(session)
    assert planned.plan.summary()["create"] == 1 and planned.plan.created_at
    report = pipeline.apply(session, pipeline.one_run(planned), parallelism=1, allow_referenced=())
    assert [r.status for r in report.results] == [Status.OK]
    assert not pipeline.make_plan(session).plan.has_changes


def test_a_saved_plan_needs_its_target_confirmed(session: pipeline.Session, tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(dumps(pipeline.make_plan(session).plan, b"k"))
    unnamed = pipeline.Session(root=session.root, env={"KCR_FINGERPRINT_KEY": "k"}, transport=session.transport)
    with pytest.raises(ConfigError, match="set KIBANA_URL or pass --kibana-url"):
        pipeline.saved_plan(unnamed, plan_file)
    elsewhere = pipeline.Session(root=session.root, env=session.env, kibana_url="http://other.test",
                                 transport=session.transport)
    with pytest.raises(ConfigError, match="the plan was made against"):
        pipeline.saved_plan(elsewhere, plan_file)
    job = pipeline.saved_plan(session, plan_file)
    assert job.saved and job.secret_refs is None
    report = pipeline.apply(session, job, parallelism=1, allow_referenced=())
    assert [r.status for r in report.results] == [Status.OK]


def test_one_runner_maps_errors_to_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["plan", "--dir", str(tmp_path / "absent")], Globals(env={})) == ExitCode.ERROR
    assert "Error:" in capsys.readouterr().err
    assert run(["no-such-command"], Globals(env={})) == ExitCode.ERROR  # click's usage error
    assert run(["--version"], Globals(env={})) == ExitCode.OK
