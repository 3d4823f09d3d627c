"""The relay's two wings never import each other; what they share imports neither (read from
the source with ``ast``, nothing imported)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RELAY = Path(__file__).resolve().parent.parent / "services" / "relay"
WINGS = ("to_planfix", "to_telegram")
SHARED = ("directory.py", "effects.py", "config.py", "shared.py")


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            # ``from services.relay import to_telegram`` names the wing as an imported name.
            modules |= {f"{node.module}.{alias.name}" for alias in node.names}
    return modules


def reaches(modules: set[str], wing: str) -> bool:
    package = f"services.relay.{wing}"
    return any(module == package or module.startswith(f"{package}.") for module in modules)


@pytest.mark.parametrize(("wing", "other"), [WINGS, WINGS[::-1]])
def test_no_import_crosses_between_the_wings(wing: str, other: str) -> None:
    files = sorted((RELAY / wing).rglob("*.py"))
    assert files
    crossing = [str(path.relative_to(RELAY)) for path in files if reaches(imported_modules(path), other)]
    assert crossing == []


def test_what_the_wings_share_imports_neither_wing() -> None:
    for name in SHARED:
        modules = imported_modules(RELAY / name)
        assert not any(reaches(modules, wing) for wing in WINGS), name


def test_only_the_shared_modules_and_the_composition_sit_beside_the_wings() -> None:
    beside = {path.name for path in RELAY.glob("*.py")}
    assert beside == {*SHARED, "__init__.py", "__main__.py", "app.py"}


# What runs at a group's turn, minutes after the comment came: it never asks the directory
# again (docs/architecture.md, "One message each way": no file entered twice).
GROUP_TURN = ("sender.py", "courier.py", "telegram_text.py", "revisions.py", "task_card.py", "media.py")


@pytest.mark.parametrize("name", GROUP_TURN)
def test_a_groups_turn_does_not_read_the_directory(name: str) -> None:
    assert "services.relay.directory" not in imported_modules(RELAY / "to_telegram" / name)
