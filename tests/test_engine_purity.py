"""The engine must not import Home Assistant (DESIGN.md: one engine, one thin shell)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).parent.parent / "custom_components" / "peer_energy" / "core"


ENGINE = "custom_components.peer_energy.core"


def _package_of(path: Path) -> list[str]:
    """The dotted package a file of the engine lives in, as parts."""
    try:
        rel = path.parent.relative_to(CORE)
    except ValueError:  # a file outside the engine (the checker's own test)
        return ENGINE.split(".")
    return [*ENGINE.split("."), *rel.parts]


def _imported_modules(path: Path) -> list[str]:
    """Absolute names of the modules a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _package_of(path)
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - (node.level - 1)]
            names.append(".".join([*base, *([node.module] if node.module else [])]))
    return names


def _engine_files() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_engine_has_modules() -> None:
    assert _engine_files(), "engine package is empty"


@pytest.mark.parametrize("path", _engine_files(), ids=lambda p: str(p.relative_to(CORE)))
def test_engine_module_imports_no_homeassistant(path: Path) -> None:
    offending = [
        name
        for name in _imported_modules(path)
        if name == "homeassistant"
        or name.startswith("homeassistant.")
        or (
            name.startswith("custom_components.peer_energy")
            and name != ENGINE
            and not name.startswith(f"{ENGINE}.")
        )
    ]
    assert offending == [], f"{path} imports {offending}"


def test_checker_catches_a_homeassistant_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from homeassistant.core import HomeAssistant\nimport os\n", encoding="utf-8")
    assert "homeassistant.core" in _imported_modules(bad)


def test_checker_resolves_a_relative_import_out_of_the_engine(tmp_path: Path) -> None:
    """From the engine's top level, ``..const`` is the shell's module, not the engine's."""
    bad = tmp_path / "climbs.py"
    source = "from ..const import DOMAIN\nfrom .market.orders import Order\n"
    bad.write_text(source, encoding="utf-8")
    names = _imported_modules(bad)
    assert "custom_components.peer_energy.const" in names
    assert f"{ENGINE}.market.orders" in names
