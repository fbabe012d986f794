"""Every reason code the engine's agents emit is one the reason sensors can show.

The per-asset reason sensor is an enum with translated states; a code missing from
``market.AGENT_REASON_CODES`` would show as "other". This reads the codes out of
``core/home/agents.py`` itself, so a new code in the engine fails here until the shell knows it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from custom_components.peer_energy.core.home.planner import PLANNER_REASON_CODES
from custom_components.peer_energy.market import AGENT_REASON_CODES, REASON_CODES

HOME = Path(__file__).parents[2] / "custom_components" / "peer_energy" / "core" / "home"
AGENTS = HOME / "agents.py"
# What the slot clock runs: the planner, its per-asset curves and the slot planning step.
PLANNING = (HOME / "planner.py", HOME / "curve.py", HOME / "slot_plan.py", HOME / "netting.py")
# The home order's own reason: it describes the aggregate, never one asset.
ORDER_LEVEL = {"home_net"}


def _str(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def emitted_codes(source: str) -> set[str]:
    """Codes passed to ``Reason.of``/``add`` or assigned to a variable named ``code``."""
    codes: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "of" and node.args:
                code = _str(node.args[0])
            elif isinstance(func, ast.Name) and func.id == "add" and len(node.args) >= 3:
                code = _str(node.args[2])
            else:
                code = None
            if code:
                codes.add(code)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names = target.elts if isinstance(target, ast.Tuple) else [target]
                values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
                for name, value in zip(names, values, strict=False):
                    if isinstance(name, ast.Name) and name.id == "code" and (code := _str(value)):
                        codes.add(code)
    return codes


def test_scanner_finds_codes_in_every_form() -> None:
    source = (
        'Reason.of("a_one", x=1)\n'
        'add(Side.BUY, [], "b_two", own_wh=0)\n'
        'code = "c_three"\n'
        'price, code = 5, "d_four"\n'
    )
    assert emitted_codes(source) == {"a_one", "b_two", "c_three", "d_four"}


def test_every_agent_reason_code_is_known_to_the_shell() -> None:
    codes = emitted_codes(AGENTS.read_text(encoding="utf-8"))
    assert "pv_surplus" in codes  # the scan sees the engine's codes at all
    assert codes - ORDER_LEVEL <= set(AGENT_REASON_CODES)


def test_every_planner_reason_code_is_known_to_the_shell() -> None:
    """The planner's codes (and the slot planning step's) are sensor states, translated."""
    codes: set[str] = set()
    for path in PLANNING:
        codes |= emitted_codes(path.read_text(encoding="utf-8"))
    assert {"ev_on_plug_in", "plug_on", "battery_self_consumption"} <= codes
    assert codes - ORDER_LEVEL <= set(REASON_CODES)
    assert set(PLANNER_REASON_CODES) - ORDER_LEVEL <= set(AGENT_REASON_CODES)
