"""The import rules between packages (GUIDE section 1) hold in the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("watcher", "detector", "storage", "reports", "training")
ALLOWED: dict[str, set[str]] = {
    "detector": set(),
    "storage": set(),
    "training": {"detector"},
    "reports": {"storage", "detector", "training"},
    "watcher": set(PACKAGES),
}


def _project_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_what_it_may(package: str) -> None:
    for path in sorted((ROOT / package).rglob("*.py")):
        forbidden = _project_imports(path) - ALLOWED[package] - {package}
        assert not forbidden, f"{path.relative_to(ROOT)} imports {sorted(forbidden)}"


def _modules_imported(path: Path) -> set[str]:
    """Full dotted names of the project modules a file imports (from-imports name both the
    module and module.name, so `from watcher.commands import scan` counts too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_only_the_command_line_imports_its_commands() -> None:
    # The daemon's services (reports, retraining, the scheduler) must not lean on the CLI:
    # the commands call the services, never the other way round.
    allowed = {ROOT / "watcher" / "cli.py", *(ROOT / "watcher" / "commands").rglob("*.py")}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path in allowed:
                continue
            leaning = {m for m in _modules_imported(path) if m.startswith("watcher.commands")}
            assert not leaning, f"{path.relative_to(ROOT)} imports {sorted(leaning)}"
