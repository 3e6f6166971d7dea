"""Bad repositories through the CLI (SPEC §3, §11): each broken repository, built from a table, makes
`kcr validate` and `kcr plan` exit 1 with a message naming the file (and line:column where one
applies), without a traceback, and without a single request reaching Kibana (the sandbox's request
counter stays at 0: everything is checked before the first request)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers.cli import kcr_process, process_env

from reconciler.cli import main
from reconciler.sandbox import Sandbox

GOOD = """\
connectors:
  - id: slack-main
    name: Slack main
    type: .slack
    secrets:
      webhookUrl: ${env:SLACK_URL}
"""

FILE = "connectors/default/bad.yaml"
FILE_RE = re.escape(FILE)


def connector(body: str) -> str:
    """One connector with `body` as its indented fields (after `- `)."""
    lines = body.strip("\n").splitlines()
    return "connectors:\n  - " + "\n    ".join(lines) + "\n"


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]\n" for i in range(6)
) + "connectors: []\n"


@dataclass(frozen=True)
class Case:
    name: str
    files: dict[str, str]
    where: str  # a regex the output must contain: the file, and line:col where one applies
    says: str  # a fragment of the message (case-insensitive)
    env: dict[str, str] = field(default_factory=dict)
    resolve: bool = False  # only `validate --resolve-secrets` sees it (offline validation cannot)
    args: tuple[str, ...] = ()


def bad(name: str, text: str, where: str, says: str, **kw: object) -> Case:
    return Case(name, {FILE: text}, where, says, **kw)  # type: ignore[arg-type]


CASES = [
    bad("malformed-yaml", "connectors:\n  - id: a\n    name: [unclosed\n", rf"{FILE_RE}:\d+:\d+", ""),
    bad("tab-indent", "connectors:\n\t- id: a\n", rf"{FILE_RE}:2:\d+", ""),
    bad("duplicate-keys", connector("id: a\nid: b\nname: A\ntype: .index\nconfig: {index: i}"),
        rf"{FILE_RE}:3:\d+", "duplicate"),
    bad("id-path-traversal", connector("id: ../../api/security\nname: A\ntype: .index\nconfig: {index: i}"),
        rf"{FILE_RE}:2:\d+", "neither a key"),
    bad("id-uppercase", connector("id: Slack_Main\nname: A\ntype: .index\nconfig: {index: i}"),
        rf"{FILE_RE}:2:\d+", "neither a key"),
    bad("id-slash", connector("id: a/b\nname: A\ntype: .index\nconfig: {index: i}"), rf"{FILE_RE}:2:\d+",
        "neither a key"),
    bad("id-query", connector("id: 'a?x=1'\nname: A\ntype: .index\nconfig: {index: i}"), rf"{FILE_RE}:2:\d+",
        "neither a key"),
    bad("id-not-a-string", connector("id: 12\nname: A\ntype: .index\nconfig: {index: i}"), rf"{FILE_RE}:2:\d+",
        "id"),
    bad("near-miss-type", connector("id: a\nname: A\ntype: slack\nsecrets: {webhookUrl: '${env:X}'}"),
        rf"{FILE_RE}:4:\d+", "did you mean '.slack'"),
    bad("near-miss-type-case", connector("id: a\nname: A\ntype: .Slack\nsecrets: {webhookUrl: '${env:X}'}"),
        rf"{FILE_RE}:4:\d+", ".slack"),
    bad("unknown-type", connector("id: a\nname: A\ntype: .opsgneie"), rf"{FILE_RE}:4:\d+",
        "unknown connector type"),
    bad("system-action", connector("id: a\nname: A\ntype: .cases"), rf"{FILE_RE}:4:\d+", "system action"),
    bad("config-schema", connector("id: a\nname: A\ntype: .index\nconfig: {index: 12}"), rf"{FILE_RE}:5:\d+",
        "config.index"),
    bad("config-missing-required", connector("id: a\nname: A\ntype: .index"), rf"{FILE_RE}:\d+:\d+", "index"),
    bad("config-unknown-key", connector("id: a\nname: A\ntype: .slack\nconfig: {channel: x}\n"
                                        "secrets: {webhookUrl: '${env:X}'}"), rf"{FILE_RE}:5:\d+", "channel"),
    bad("missing-name", connector("id: a\ntype: .index\nconfig: {index: i}"), rf"{FILE_RE}:2:\d+", "name"),
    bad("blank-name", connector("id: a\nname: '  '\ntype: .index\nconfig: {index: i}"), rf"{FILE_RE}:3:\d+",
        "blank"),
    bad("blank-config-string", connector("id: a\nname: A\ntype: .index\nconfig: {index: ''}"),
        rf"{FILE_RE}:5:\d+", "blank"),
    bad("unknown-connector-key", connector("id: a\nname: A\ntype: .index\nconfig: {index: i}\nsecret: {}"),
        rf"{FILE_RE}:\d+:\d+", "secret"),
    bad("protect-not-boolean", connector("id: a\nname: A\ntype: .index\nconfig: {index: i}\nprotect: 'yes'"),
        rf"{FILE_RE}:6:\d+", "must be true or false"),
    bad("secrets-missing", connector("id: a\nname: A\ntype: .slack"), rf"{FILE_RE}:2:\d+", "needs secrets"),
    bad("plaintext-secret", connector("id: a\nname: A\ntype: .slack\nsecrets: {webhookUrl: 'https://x.test/T0'}"),
        rf"{FILE_RE}:5:\d+", "plaintext secret"),
    bad("plaintext-secret-number", connector("id: a\nname: A\ntype: .pagerduty\nsecrets: {routingKey: 12345}"),
        rf"{FILE_RE}:5:\d+", "plaintext secret"),
    bad("secrets-not-a-mapping", connector("id: a\nname: A\ntype: .slack\nsecrets: 'hunter2-plaintext'"),
        rf"{FILE_RE}:5:\d+", "must be a mapping, not a string"),
    bad("blank-secret", connector("id: a\nname: A\ntype: .slack\nsecrets: {webhookUrl: ''}"), rf"{FILE_RE}:5:\d+",
        "blank"),
    bad("reference-unclosed", connector("id: a\nname: A\ntype: .slack\nsecrets: {webhookUrl: '${env:X'}"),
        rf"{FILE_RE}:5:\d+", "never closed"),
    bad("reference-empty-env", connector("id: a\nname: A\ntype: .slack\nsecrets: {webhookUrl: '${env:}'}"),
        rf"{FILE_RE}:5:\d+", "variable name"),
    bad("reference-unknown-scheme", connector("id: a\nname: A\ntype: .slack\nsecrets: {webhookUrl: '${aws:x}'}"),
        rf"{FILE_RE}:5:\d+", "does not start a reference"),
    bad("reference-vault-no-key", connector("id: a\nname: A\ntype: .slack\n"
                                            "secrets: {webhookUrl: '${vault:secret/slack}'}"),
        rf"{FILE_RE}:5:\d+", "after '#'"),
    bad("reference-vault-gitlab-form", connector("id: a\nname: A\ntype: .slack\n"
                                                 "secrets: {webhookUrl: '${vault:slack/url@secret}'}"),
        rf"{FILE_RE}:5:\d+", "version number"),
    bad("reference-vault-dotdot", connector("id: a\nname: A\ntype: .slack\n"
                                            "secrets: {webhookUrl: '${vault:secret/../sys#k}'}"),
        rf"{FILE_RE}:5:\d+", "'..'"),
    bad("reference-nested", connector("id: a\nname: A\ntype: .slack\n"
                                      "secrets: {webhookUrl: '${env:${env:X}}'}"), rf"{FILE_RE}:5:\d+", "nested"),
    bad("run-credential-ci-job-token", connector("id: a\nname: A\ntype: .slack\n"
                                                 "secrets: {webhookUrl: 'https://x.test/${env:CI_JOB_TOKEN}'}"),
        rf"{FILE_RE}:5:\d+", "refused", env={"CI_JOB_TOKEN": "job-token"}),
    bad("run-credential-kibana-api-key", connector("id: a\nname: A\ntype: .slack\n"
                                                   "secrets: {webhookUrl: '${env:KIBANA_API_KEY}'}"),
        rf"{FILE_RE}:5:\d+", "refused"),
    bad("run-credential-vault-token", connector("id: a\nname: A\ntype: .pagerduty\n"
                                                "secrets: {routingKey: '${env:VAULT_TOKEN}'}"),
        rf"{FILE_RE}:5:\d+", "refused", env={"VAULT_TOKEN": "t"}),
    bad("alias-bomb", ALIAS_BOMB, rf"{FILE_RE}:\d+:\d+", "alias"),
    bad("recursive-anchor", "connectors: &c\n  - *c\n", rf"{FILE_RE}:\d+:\d+", ""),
    bad("oversized-file", GOOD + "# " + "x" * (1024 * 1024) + "\n", FILE_RE, "byte limit"),
    bad("deeply-nested", connector("id: a\nname: A\ntype: .index\nconfig: {index: i, x: " + "[" * 80 + "]" * 80
                                   + "}"), rf"{FILE_RE}:\d+:\d+", "deep"),
    bad("empty-file", "", FILE_RE, "empty"),
    bad("only-a-comment", "# nothing yet\n", FILE_RE, "empty"),
    bad("top-level-list", "- id: a\n  name: A\n  type: .index\n", rf"{FILE_RE}:1:\d+", "must be a mapping"),
    bad("connectors-not-a-list", "connectors: {id: a}\n", rf"{FILE_RE}:1:\d+", "must be a list"),
    bad("unknown-top-level-key", "connector:\n  - id: a\n", rf"{FILE_RE}:1:\d+", ""),
    bad("not-utf8", "connectors:\n  - id: a\n    name: \udcff\n", FILE_RE, ""),
    Case("duplicate-id-across-files", {FILE: connector("id: a\nname: A\ntype: .index\nconfig: {index: i}"),
                                       "connectors/default/other.yaml":
                                           connector("id: a\nname: B\ntype: .index\nconfig: {index: j}")},
         r"connectors/default/other\.yaml:2:\d+", "duplicate id"),
    Case("same-uuid-in-two-spaces",
         {FILE: connector("id: 0d3c5a3e-1f4b-4c55-9e0f-5b1d2c3a4e5f\nname: A\ntype: .index\nconfig: {index: i}"),
          "connectors/ops/x.yaml": connector("id: 0d3c5a3e-1f4b-4c55-9e0f-5b1d2c3a4e5f\nname: B\ntype: .index\n"
                                             "config: {index: j}")},
         r"connectors/(default/bad|ops/x)\.yaml:2:\d+", "global"),
    Case("space-dir-uppercase", {"connectors/Security/x.yaml": GOOD}, r"connectors/Security", "space"),
    Case("space-dir-blank", {"connectors/sec team/x.yaml": GOOD}, r"connectors/sec team", "space"),
    Case("space-dir-dotdot-like", {"connectors/a..b%2f/x.yaml": GOOD}, r"connectors/a\.\.b%2f", "space"),
    Case("file-outside-space-dir", {"connectors/x.yaml": GOOD}, r"connectors/x\.yaml", "space directory"),
    Case("upper-case-extension", {"connectors/default/x.YAML": GOOD}, r"connectors/default/x\.YAML", "reads only"),
    Case("file-in-space-subdirectory", {"connectors/default/sub/x.yaml": GOOD}, r"connectors/default/sub",
         "subdirectories"),
    Case("stray-file-beside-spaces", {"connectors/notes.md": "hi\n", FILE: GOOD}, r"connectors/notes\.md",
         "reads only space directories"),
    Case("no-connectors-dir", {"README.md": "hi\n"}, r"connectors", "connectors/"),
    Case("space-settings-wrong-type", {"connectors/default/_space.yaml": "prune: 'yes'\n", FILE: GOOD},
         r"connectors/default/_space\.yaml:1:\d+", "must be true or false"),
    Case("space-settings-unknown-key", {"connectors/default/_space.yaml": "prun: true\n", FILE: GOOD},
         r"connectors/default/_space\.yaml:1:\d+", "prun"),
    Case("space-settings-ignore-not-a-list", {"connectors/default/_space.yaml": "ignore: '*'\n", FILE: GOOD},
         r"connectors/default/_space\.yaml:1:\d+", "must be a list"),
    Case("settings-bad-id-mode", {"kcr.yaml": "id_mode: human\n", FILE: GOOD}, r"kcr\.yaml:1:\d+", "id_mode"),
    Case("settings-malformed", {"kcr.yaml": "vault: [\n", FILE: GOOD}, r"kcr\.yaml:\d+:\d+", ""),
    Case("settings-unknown-key", {"kcr.yaml": "id-mode: verbatim\n", FILE: GOOD}, r"kcr\.yaml:1:\d+", "id-mode"),
    Case("verbatim-mode-bad-id", {"kcr.yaml": "id_mode: verbatim\n",
                                  FILE: connector("id: Not A Key\nname: A\ntype: .index\nconfig: {index: i}")},
         rf"{FILE_RE}:2:\d+", "neither a key"),
    Case("unknown-space-flag", {FILE: GOOD}, r"connectors/nope", "no directory", args=("--space", "nope")),
    # Only resolution sees these: offline validation passes, `--resolve-secrets` and plan do not.
    Case("variable-unset", {FILE: GOOD}, r"default/slack-main \(connectors/default/bad\.yaml", "SLACK_URL",
         env={"SLACK_URL": ""}, resolve=True),
    Case("file-missing", {FILE: connector("id: a\nname: A\ntype: .pagerduty\n"
                                          "secrets: {routingKey: '${file:secrets/nope.txt}'}")},
         rf"{FILE_RE}", "does not exist", resolve=True),
    Case("file-outside-repo", {FILE: connector("id: a\nname: A\ntype: .pagerduty\n"
                                               "secrets: {routingKey: '${file:/etc/hostname}'}")},
         rf"{FILE_RE}", "outside the repository", resolve=True),
    Case("vault-without-address", {FILE: connector("id: a\nname: A\ntype: .pagerduty\n"
                                                   "secrets: {routingKey: '${vault:secret/pd#key}'}")},
         rf"{FILE_RE}", "VAULT_ADDR", resolve=True),
    Case("secret-resolves-blank", {FILE: GOOD}, rf"{FILE_RE}", "blank", env={"SLACK_URL": "   "}, resolve=True),
]


def build(root: Path, case: Case) -> None:
    for rel, text in case.files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if "\udcff" in text:
            path.write_bytes(text.encode("utf-8", errors="surrogateescape"))
        else:
            path.write_text(text, encoding="utf-8")


def environment(case: Case) -> dict[str, str]:
    env = {"KIBANA_URL": "http://kibana.test", "KIBANA_API_KEY": "k", "SLACK_URL": "https://hooks.example.com/x",
           "X": "https://hooks.example.com/y", "NO_COLOR": "1"}
    env.update(case.env)
    return {k: v for k, v in env.items() if v != "" or k not in case.env}

# A reference outside `secrets` would reach Kibana as literal text.
CASES += [
    bad("env-reference-in-config", connector("id: a\nname: A\ntype: .index\nconfig: {index: '${env:INDEX}'}"),
        rf"{FILE_RE}:\d+:\d+", "read only inside `secrets`"),
    bad("vault-reference-inside-config-string",
        connector("id: a\nname: A\ntype: .webhook\nconfig: {url: 'https://h.example/${vault:kv/x#y}', hasAuth: false}"),
        rf"{FILE_RE}:\d+:\d+", "literal text"),
    bad("file-reference-in-name", connector("id: a\nname: '${file:name.txt}'\ntype: .index\nconfig: {index: i}"),
        rf"{FILE_RE}:\d+:\d+", "read only inside `secrets`"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_validate_and_plan_refuse(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build(tmp_path, case)
    env = environment(case)
    sb = Sandbox.from_seed({"license": "platinum", "spaces": ["default", "ops"]})
    validate = ["validate", *(["--resolve-secrets"] if case.resolve else [])]
    for args in (validate, ["plan"], ["plan", "--format", "json", "--detailed-exitcode"], ["drift"]):
        code = main([*args, "--dir", str(tmp_path), *case.args], env=env, transport=sb.transport())
        out, err = capsys.readouterr()
        text = out + err
        assert code == 1, (args, text)
        assert re.search(case.where, text), (args, case.where, text)
        assert case.says.lower() in text.lower(), (args, case.says, text)
        assert "Traceback" not in text and "internal error" not in text, text
        assert "hunter2" not in text, text  # a plaintext secret is never echoed back
    if case.resolve:  # offline, these repositories are fine: only resolution can see the problem
        assert main(["validate", "--dir", str(tmp_path)], env=env) == 0
        capsys.readouterr()
    assert sb.counters["total"] == 0, dict(sb.counters)


def test_validate_json_lists_every_problem_with_positions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every problem of every file at once, not only the first."""
    for case in CASES[:12]:
        if set(case.files) == {FILE}:
            (tmp_path / "connectors/default").mkdir(parents=True, exist_ok=True)
            (tmp_path / "connectors/default" / f"{case.name}.yaml").write_text(case.files[FILE])
    assert main(["validate", "--format", "json", "--dir", str(tmp_path)], env={}) == 1
    import json

    report = json.loads(capsys.readouterr().out)
    files = {p["file"] for p in report["problems"] if p["severity"] == "error"}
    assert len(files) >= 10, files
    assert all(p["line"] for p in report["problems"] if p["file"].endswith(".yaml")), report["problems"]


def test_subprocess_bad_repo_no_traceback(tmp_path: Path) -> None:
    """A real process: the message on stderr, no traceback, exit 1."""
    build(tmp_path, CASES[3])  # the path traversal id
    proc = kcr_process(tmp_path, process_env(KIBANA_URL="http://127.0.0.1:9", NO_COLOR="1"), "plan")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(rf"{FILE_RE}:2:\d+: .*neither a key", proc.stderr), proc.stderr
