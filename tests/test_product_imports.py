"""The product never imports the emulator: only the CLI's `kcr sandbox` and `kcr demo` (the outermost
layer) start it. Read from the source with ast, so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import reconciler

PACKAGE = Path(reconciler.__file__).resolve().parent
MAY_START_THE_SANDBOX = {"cli_team.py", "demo.py"}


def _imported(tree: ast.Module, module: str) -> set[str]:
    """Absolute names of every module an import statement anywhere in `tree` brings in."""
    package = module.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def _imports_sandbox(source: str, module: str) -> bool:
    return any(n == "reconciler.sandbox" or n.startswith("reconciler.sandbox.")
               for n in _imported(ast.parse(source), module))


def _product_modules() -> list[Path]:
    sandbox = PACKAGE / "sandbox"
    return sorted(p for p in PACKAGE.rglob("*.py") if not p.is_relative_to(sandbox))


def test_no_product_module_imports_the_sandbox() -> None:
    offenders = []
    for path in _product_modules():
        rel = path.relative_to(PACKAGE)
        if rel.as_posix() in MAY_START_THE_SANDBOX:
            continue
        module = ".".join(("reconciler", *rel.with_suffix("").parts))
        if _imports_sandbox(path.read_text(encoding="utf-8"), module):
            offenders.append(rel.as_posix())
    assert offenders == []


def test_the_check_sees_every_spelling() -> None:
    spellings = ["import reconciler.sandbox", "from reconciler import sandbox", "from reconciler.sandbox.http import X",
                 "def f():\n    from .sandbox import validation", "from . import sandbox"]
    for source in spellings:
        assert _imports_sandbox(source, "reconciler.desired"), source
    assert not _imports_sandbox("from reconciler import sandboxed, catalog", "reconciler.desired")
    assert _imports_sandbox("from .. import sandbox", "reconciler.state.file")
    assert PACKAGE / "desired.py" in _product_modules()
