"""The domain packages stay pure: no web framework, database or cluster imports."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
FORBIDDEN = {"fastapi", "starlette", "sqlalchemy", "ray", "sandbox"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", ["operators", "contracts", "pricing"])
def test_domain_package_imports_nothing_forbidden(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    for path in files:
        bad = _imports(path) & FORBIDDEN
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_jail_side_language_does_not_import_data_libraries() -> None:
    """What runs next to operator code must not even have pyarrow or numpy loaded."""
    for name in ("api.py", "plan.py", "policy.py"):
        bad = _imports(ROOT / "sandbox" / "language" / name) & {"pyarrow", "numpy", "ray"}
        assert not bad, f"sandbox/language/{name} imports {sorted(bad)}"


def test_the_export_writer_knows_no_web_framework_or_database() -> None:
    bad = _imports(ROOT / "sandbox" / "exports.py") & {"fastapi", "starlette", "sqlalchemy", "ray"}
    assert not bad, f"sandbox/exports.py imports {sorted(bad)}"
