"""The engine must not import Home Assistant (DESIGN.md: one engine, one thin shell)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).parent.parent / "custom_components" / "peer_energy" / "core"


def _imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 1:
            # "from .. import x" climbs out of the engine into the shell.
            names.append("." * node.level + (node.module or ""))
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
        or name.startswith(("homeassistant.", ".."))
        or (
            name.startswith("custom_components.peer_energy")
            and not name.startswith("custom_components.peer_energy.core")
        )
    ]
    assert offending == [], f"{path} imports {offending}"


def test_checker_catches_a_homeassistant_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from homeassistant.core import HomeAssistant\nimport os\n", encoding="utf-8")
    assert "homeassistant.core" in _imported_modules(bad)
