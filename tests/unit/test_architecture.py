"""The layering, kept by machine: domain packages stay pure, and each package of `sandbox/`
imports only from the packages below it (docs/architecture.md draws the same picture)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
FORBIDDEN = {"fastapi", "starlette", "sqlalchemy", "ray", "sandbox"}

# Lowest first. A module may import from its own layer's packages and from those below,
# never from above; every import counts, those inside functions too.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("sandbox.errors", "sandbox.settings"),
    ("sandbox.common",),
    ("sandbox.language",),
    ("sandbox.catalog",),
    ("sandbox.engine",),
    ("sandbox.disclosure",),
    ("sandbox.jail",),
    ("sandbox.store",),
    ("sandbox.ledger",),
    ("sandbox.context",),
    ("sandbox.records",),
    ("sandbox.pipeline",),
    ("sandbox.console",),
    ("sandbox.api",),
    ("sandbox.cli",),
)
# The root of `sandbox/` holds only the wiring.
ROOT_MODULES = {"__init__.py", "errors.py", "settings.py", "context.py"}


def _imports(path: Path) -> set[str]:
    return {name.split(".")[0] for name in _modules_imported(path)}


def _modules_imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def layer_of(module: str) -> int | None:
    for i, layer in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in layer):
            return i
    return None


def _sandbox_modules() -> list[Path]:
    # The package's own __init__ is empty: it belongs to no layer.
    return [
        p for p in sorted((ROOT / "sandbox").rglob("*.py")) if p != ROOT / "sandbox" / "__init__.py"
    ]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("package", ["operators", "contracts", "pricing"])
def test_domain_package_imports_nothing_forbidden(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    for path in files:
        bad = _imports(path) & FORBIDDEN
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_every_sandbox_module_has_a_layer() -> None:
    for path in _sandbox_modules():
        assert layer_of(_module_name(path)) is not None, f"{path.relative_to(ROOT)}: no layer"


def test_the_sandbox_root_holds_only_the_wiring() -> None:
    assert {p.name for p in (ROOT / "sandbox").glob("*.py")} == ROOT_MODULES


def test_no_package_imports_from_a_layer_above_it() -> None:
    upward = []
    for path in _sandbox_modules():
        own = layer_of(_module_name(path))
        assert own is not None
        for target in sorted(_modules_imported(path)):
            theirs = layer_of(target)
            if theirs is not None and theirs > own:
                upward.append(
                    f"{path.relative_to(ROOT)} imports {target} "
                    f"({LAYERS[theirs][0]} is above {LAYERS[own][0]})"
                )
    assert not upward, "\n".join(upward)


def test_the_layer_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The check itself can fail: an import from above, even inside a function, is seen."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from sandbox.records import releases\n", encoding="utf-8")
    assert "sandbox.records.releases" in _modules_imported(module)
    assert layer_of("sandbox.records.releases") > layer_of("sandbox.context")  # type: ignore[operator]


def test_jail_side_language_does_not_import_data_libraries() -> None:
    """What runs next to operator code must not even have pyarrow or numpy loaded."""
    for name in ("api.py", "plan.py", "policy.py", "signs.py"):
        bad = _imports(ROOT / "sandbox" / "language" / name) & {"pyarrow", "numpy", "ray"}
        assert not bad, f"sandbox/language/{name} imports {sorted(bad)}"


def test_the_export_writer_knows_no_web_framework_or_database() -> None:
    path = ROOT / "sandbox" / "common" / "exports.py"
    bad = _imports(path) & {"fastapi", "starlette", "sqlalchemy", "ray"}
    assert not bad, f"sandbox/common/exports.py imports {sorted(bad)}"


# The connector reads a department's own database (PostgreSQL, MariaDB…) through SQLAlchemy
# Core, its one portable driver layer; that is not the service's store, which stays above.
READS_DEPARTMENT_DATABASES = {ROOT / "sandbox" / "catalog" / "sources.py"}


@pytest.mark.parametrize(
    "package", ["common", "language", "catalog", "engine", "disclosure", "jail"]
)
def test_the_lower_layers_know_no_web_framework_or_database(package: str) -> None:
    for path in sorted((ROOT / "sandbox" / package).rglob("*.py")):
        allowed = {"sqlalchemy"} if path in READS_DEPARTMENT_DATABASES else set()
        bad = _imports(path) & ({"fastapi", "starlette", "sqlalchemy", "typer"} - allowed)
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
