"""The command line clears the documented example books exactly, and rejects bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path
import subprocess
import sys

import pytest

from custom_components.peer_energy.core.cli import EXIT_INVALID, main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.book.json"))


def _run(stdin: str, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["clear", *args], stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize("book", EXAMPLES, ids=lambda p: p.name.removesuffix(".book.json"))
def test_example_reproduced_in_process(book: Path) -> None:
    expected = (book.parent / book.name.replace(".book.", ".result.")).read_text("utf-8")
    code, out, err = _run(book.read_text("utf-8"))
    assert (code, err) == (0, "")
    assert out == expected
    assert json.loads(out) == json.loads(expected)


@pytest.mark.parametrize(
    "book", [EXAMPLES[0], EXAMPLES[-1]], ids=lambda p: p.name.removesuffix(".book.json")
)
def test_example_reproduced_by_subprocess(book: Path) -> None:
    expected = (book.parent / book.name.replace(".book.", ".result.")).read_text("utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "custom_components.peer_energy.core", "clear"],
        input=book.read_text("utf-8"),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == expected


def test_compact_output_is_one_line() -> None:
    code, out, _ = _run(EXAMPLES[0].read_text("utf-8"), "--compact")
    assert code == 0
    assert out.count("\n") == 1
    assert json.loads(out)["slots"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("not json", "Expecting value"),
        ("[]", "order book must be an object"),
        ('{"orders": [{"order_id": "a"}]}', "owner"),
        (
            '{"orders": [{"order_id": "a", "owner": "x", "side": "hold", "slot_start": 0,'
            ' "price": 1, "energy_wh": 1}]}',
            "side must be 'buy' or 'sell'",
        ),
        (
            '{"orders": [{"order_id": "a", "owner": "x", "side": "buy", "slot_start": 0,'
            ' "price": 1, "energy_wh": -5}]}',
            "energy_wh must be >= 0",
        ),
        (
            '{"orders": [{"order_id": "a", "owner": "x", "side": "buy", "slot_start": 0,'
            ' "price": 1.5, "energy_wh": 5}]}',
            "price must be an integer",
        ),
        ('{"rules": {"pricing": "auction"}}', "pricing"),
        ('{"fairness": {"margin_wins": {"x": -1}}}', "fairness"),
        ("[" * 100_000, "nested"),
    ],
)
def test_invalid_input_exits_2_with_message(text: str, needle: str) -> None:
    code, out, err = _run(text)
    assert code == EXIT_INVALID
    assert out == ""
    assert needle in err
    assert "Traceback" not in err


def test_invalid_input_by_subprocess_has_no_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "custom_components.peer_energy.core", "clear"],
        input='{"orders": [{"order_id": "a", "owner": "x", "side": "sideways"}]}',
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 2
    assert "side must be" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_exits_0() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["clear", "--help"], stdout=io.StringIO())
    assert exc.value.code == 0


def test_unknown_command_exits_2() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
