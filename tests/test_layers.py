"""The package's imports go one way: no module imports from a layer above its own.

Layers, bottom to top (README, Layout): the base (errors, atomic writes, a run folder's file names
and readers, cache folders) -> config -> prompting (row -> messages) -> data -> metrics -> models ->
features, retrieval -> methods -> runs -> training, evaluation, inference -> compare, pipeline ->
cli, serve. Every import counts: at module
level, inside a function, or under ``TYPE_CHECKING``. A new module in a package the table does not
know fails too, so the table is kept up to date.

Where a lower layer needs something of a higher one, the higher one hands it down: the config
schema gets the method catalog in pydantic's validation context (``methods.config_loading``), a
run folder's trained model loads in ``methods.loading``, not in ``models``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tunelab

PACKAGE = Path(tunelab.__file__).parent
LAYERS = [
    {"errors", "atomic", "run_files", "cache_dirs", "allocator", "matmul_rates"},
    {"config"},
    {"prompting"},
    {"data", "tokenization"},
    {"metrics"},
    {"models"},
    {"features", "retrieval"},
    {"methods"},
    {"runs"},
    {"training", "evaluation", "inference"},
    {"compare", "pipeline"},
    {"cli", "serve", "doctor", "__main__", "__init__"},
]
LAYER_OF = {name: index for index, names in enumerate(LAYERS) for name in names}


def top_name(module: str) -> str:
    """``tunelab.data.loading`` -> ``data``; ``tunelab`` itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every tunelab import in a file, wherever it stands."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("tunelab"):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.append((node.lineno, "relative import"))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("tunelab")]
    return found


def test_every_package_has_a_layer():
    tops = {top_name(module_name(path)) for path in PACKAGE.rglob("*.py")}
    assert tops - set(LAYER_OF) == set()


def upward_imports() -> dict[tuple[str, str], list[str]]:
    """(importing module, imported module) -> where, for every import that goes up a layer."""
    upward: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        for line, target in imported_modules(path):
            assert target != "relative import", f"{path}:{line}: use absolute tunelab imports"
            if LAYER_OF[top_name(target)] > LAYER_OF[top_name(source)]:
                upward.setdefault((source, target), []).append(f"{path.relative_to(PACKAGE.parent)}:{line}")
    return upward


def test_no_import_goes_up_a_layer():
    assert upward_imports() == {}


def test_the_check_finds_an_upward_import(tmp_path):
    """Negative control: the parser sees an import inside a function under TYPE_CHECKING-like nesting."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    if True:\n        from tunelab.cli.main import main\n")
    assert imported_modules(sample) == [(3, "tunelab.cli.main")]
    assert LAYER_OF[top_name("tunelab.cli.main")] > LAYER_OF[top_name("tunelab.data.loading")]
