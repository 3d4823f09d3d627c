"""Who may import whom, read statically from the source: contracts at the bottom, bridge_lib above
it, then the services (none importing another); the CLI, sandbox, tools and tests on top."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

OURS = frozenset(
    {"contracts", "bridge_lib", "services", "bridge_cli", "sandbox", "devtools", "bench", "tools", "tests"}
)
SERVICES = sorted(path.parent.name for path in (REPO_ROOT / "services").glob("*/__init__.py"))


def imported_modules(path: Path) -> Iterator[str]:
    """Every absolute module ``path`` imports, at any depth (function-local imports too)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            # `from services import relay` names a module through the package.
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def ours_imported_by(folder: str) -> Iterator[tuple[str, str]]:
    for path in sorted((REPO_ROOT / folder).rglob("*.py")):
        for module in imported_modules(path):
            if module.split(".")[0] in OURS:
                yield str(path.relative_to(REPO_ROOT)), module


def test_the_import_reader_sees_nested_and_from_imports(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text("import a.b\nfrom c import d\n\ndef f():\n    from e.f import g\n")
    assert set(imported_modules(source)) == {"a.b", "c", "c.d", "e.f", "e.f.g"}


def test_contracts_import_nothing_of_ours_but_contracts() -> None:
    wrong = [
        (path, module)
        for path, module in ours_imported_by("contracts")
        if module.split(".")[0] != "contracts"
    ]
    assert wrong == []


def test_bridge_lib_imports_no_service_sandbox_or_tool() -> None:
    allowed = {"contracts", "bridge_lib"}
    wrong = [
        (path, module)
        for path, module in ours_imported_by("bridge_lib")
        if module.split(".")[0] not in allowed
    ]
    assert wrong == []


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service_and_no_tooling(service: str) -> None:
    allowed = {"contracts", "bridge_lib"}
    wrong = [
        (path, module)
        for path, module in ours_imported_by(f"services/{service}")
        if module.split(".")[0] not in allowed
        and not (module + ".").startswith(f"services.{service}.")
        and module != "services"
    ]
    assert wrong == []


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_entry_point_tunes_imports_before_it_imports_its_app(service: str) -> None:
    # Module level: nothing that would import aiogram, httpx or structlog before main() runs.
    tree = ast.parse((REPO_ROOT / "services" / service / "__main__.py").read_text(encoding="utf-8"))
    top_level = [
        (node.module if isinstance(node, ast.ImportFrom) else node.names[0].name)
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    assert set(top_level) <= {"asyncio", "bridge_lib"}
    main = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "main")
    assert ast.unparse(main.body[0]) == "lean_imports.install()"


def assert_passes_in_a_fresh_interpreter(probe: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_an_entry_point_loads_nothing_heavy_before_main_runs() -> None:
    probe = (
        "import sys\n"
        f"for service in {SERVICES!r}:\n"
        "    __import__(f'services.{service}.__main__')\n"
        "heavy = [name for name in ('aiogram', 'httpx', 'structlog', 'pydantic') if name in sys.modules]\n"
        "assert heavy == [], heavy\n"
    )
    assert_passes_in_a_fresh_interpreter(probe)


def test_importing_bridge_lib_changes_nothing() -> None:
    probe = (
        "import sys\n"
        "finders, modules = list(sys.meta_path), set(sys.modules)\n"
        "import bridge_lib\n"
        "assert sys.meta_path == finders, sys.meta_path\n"
        "added = set(sys.modules) - modules\n"
        "assert added == {'bridge_lib'}, sorted(added)\n"
        "assert all(module is not None for module in sys.modules.values())\n"
    )
    assert_passes_in_a_fresh_interpreter(probe)
