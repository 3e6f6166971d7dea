"""The house's layering, checked: data flows files -> secrets -> Kibana -> plan -> render -> apply, and no
module imports one of a later stage (STYLE.md). Each product module has a rank; an import may only reach
a module of the same rank or a lower one. A new module must be given its rank here, which is the point:
placing it is a decision, not an accident. The sandbox is the emulator, outside this order (and
tests/test_product_imports.py keeps the product from importing it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "reconciler"

RANKS: dict[str, int] = {
    # foundations: records, errors, safe readers, limits, per-type data
    **dict.fromkeys(["reconciler", "model", "errors", "files", "jsondepth", "jsurl", "deadline", "wire", "retry",
                     "masking", "catalog", "yamlload", "fastschema", "schema_validator"], 0),
    # reference syntax and the backends' offline checks (validation needs them before any secret is read)
    **dict.fromkeys(["references", "type_rules", "variables", "environments", "secret_backends", "secret_backends.base",
                     "secret_backends.env", "secret_backends.file", "secret_backends.guard",
                     "secret_backends.vault"], 1),
    # files -> desired state
    **dict.fromkeys(["file_problems", "repo_layout", "user_types", "connector_checks", "settings_files",
                     "desired"], 2),
    # references -> values
    "secrets": 3,
    # reading Kibana
    **dict.fromkeys(["connection", "answers", "kibana"], 4),
    # the record of applied secrets
    **dict.fromkeys(["state", "state.backend", "state.config", "state.file", "state.http", "state.journal",
                     "state.record"], 5),
    # one canonical form for both sides
    "normalize": 6,
    # the plan (pure) and its file
    **dict.fromkeys(["selection", "plan", "plansecrets", "planner", "plancheck", "planfile"], 7),
    # rendering, from values only
    **dict.fromkeys(["render", "apply_report"], 8),
    # applying
    **dict.fromkeys(["apply_checks", "record_keeper", "applier", "outputs"], 9),
    # the other commands' stages
    **dict.fromkeys(["export", "adopt", "connector_test", "gitlab", "gitlab_api", "validate", "ci_generate",
                     "init", "render_kibana"], 10),
    **dict.fromkeys(["pipeline", "envs_plan"], 11),
    **dict.fromkeys(["cli", "cli_options", "cli_team", "demo", "__main__"], 12),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    name = ".".join(p for p in parts if p != "__init__")
    return name or "reconciler"


def _imports(source: str) -> set[str]:
    """Every reconciler module the source imports, lazily or not, with `reconciler.` stripped."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError("relative import: write `from reconciler.x import ...`, which this check reads")
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "reconciler":
                found.update(alias.name for alias in node.names)
            elif node.module.startswith("reconciler."):
                found.add(node.module.removeprefix("reconciler."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("reconciler.") for a in node.names if a.name.startswith("reconciler."))
    return found


def _rank(name: str) -> int | None:
    """A module's rank, or its package's (sandbox.* is outside the order)."""
    while name:
        if name in RANKS:
            return RANKS[name]
        name = name.rpartition(".")[0]
    return None


PRODUCT = sorted(p for p in PACKAGE.rglob("*.py") if "sandbox" not in p.relative_to(PACKAGE).parts)


def test_every_product_module_has_a_rank() -> None:
    assert [n for n in map(_module_name, PRODUCT) if n not in RANKS] == []


def _later(name: str, source: str) -> list[str]:
    own = RANKS[name]
    return sorted(dep for dep in _imports(source) if dep != "__version__" and not dep.startswith("sandbox")
                  and (_rank(dep) or 0) > own)


@pytest.mark.parametrize("path", PRODUCT, ids=[_module_name(p) for p in PRODUCT])
def test_no_module_imports_a_later_stage(path: Path) -> None:
    name = _module_name(path)
    later = _later(name, path.read_text(encoding="utf-8"))
    assert later == [], f"{name} (rank {RANKS[name]}) imports later stages: {later}"


def test_a_later_stage_import_would_be_caught() -> None:
    lazy = "def f():\n    from reconciler.planner import make_plan\n    from reconciler import render\n"
    assert _later("kibana", lazy) == ["planner", "render"]
    assert _later("planner", lazy) == ["render"]
    assert _later("cli", lazy) == []
