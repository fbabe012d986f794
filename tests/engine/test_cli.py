"""The command line clears the documented example books exactly, and rejects bad input."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
import subprocess
import sys

import pytest

from custom_components.peer_energy.core.cli import EXIT_INVALID, main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.book.json"))
CORE = ROOT / "custom_components" / "peer_energy" / "core"


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
        [sys.executable, str(CORE), "clear"],
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
        ("not json", "not valid JSON: Expecting value"),
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
            "energy_wh must be in 0..10000000, got -5",
        ),
        (
            '{"orders": [{"order_id": "a", "owner": "x", "side": "buy", "slot_start": 0,'
            ' "price": 1.5, "energy_wh": 5}]}',
            "float '1.5' is not allowed",
        ),
        ('{"orders": [], "orders": []}', "duplicate object key"),
        ('{"rules": {"import_price": 1e3}}', "float '1e3' is not allowed"),
        ('{"rules": {"import_price": 99999999999999999999}}', "outside the signed 64-bit"),
        ('{"rules": {"import_price": 100001}}', "rules.import_price must be in"),
        ('{"rules": {"distributor_fee": -1}}', "rules.distributor_fee must be in 0..100000"),
        ('{"rules": {"import_capacity_wh": 10000000000001}}', "rules.import_capacity_wh"),
        ('{"stakes": {"\\ud800": "x"}}', "lone surrogate"),
        ('{"fairness": {"margin_wins": {"x": 1000000000001}}}', "fairness"),
        (
            '{"orders": [{"order_id": "a", "owner": "\\udfff", "side": "buy", "slot_start": 0,'
            ' "price": 1, "energy_wh": 5}]}',
            "lone surrogate",
        ),
        ('{"rules": {"pricing": "auction"}}', "pricing"),
        ('{"fairness": {"margin_wins": {"x": -1}}}', "fairness"),
        ("[" * 100_000, "nesting too deep"),
        ("[" * 40 + "]" * 40, "nesting too deep"),
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
        [sys.executable, str(CORE), "clear"],
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


def _order(k: int, slot: int, energy: int) -> dict[str, object]:
    return {"order_id": f"o{k}", "owner": f"m{k}", "side": "sell", "slot_start": slot,
            "price": 1, "energy_wh": energy}  # fmt: skip


def test_a_slot_side_over_the_energy_bound_is_refused() -> None:
    # 10^6 orders of 10 MWh would be 10^13 Wh; one Wh more per side of a slot is refused.
    orders = [_order(k, 0, 10_000_000) for k in range(3)]
    code, _, _ = _run(json.dumps({"orders": orders}))
    assert code == 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            "custom_components.peer_energy.core.market.orders.MAX_SLOT_ENERGY_WH", 29_999_999
        )
        code, out, err = _run(json.dumps({"orders": orders}))
    assert (code, out) == (EXIT_INVALID, "")
    assert "the sell orders of slot 0 hold 30000000 Wh, more than 29999999 Wh" in err


def test_input_over_the_size_limit_is_refused_without_reading_it_all() -> None:
    text = json.dumps({"orders": [_order(k, 0, 1) for k in range(100)]})
    assert _run(text, "--max-bytes", str(len(text)))[0] == 0
    code, out, err = _run(text, "--max-bytes", str(len(text) - 1))
    assert (code, out) == (EXIT_INVALID, "")
    assert f"larger than {len(text) - 1} bytes" in err
    stream = io.BytesIO(b"[" + b" " * 10_000_000)
    code = main(["clear", "--max-bytes", "1000"], stdin=stream, stdout=io.StringIO(),
                stderr=io.StringIO())  # fmt: skip
    assert code == EXIT_INVALID
    assert stream.tell() == 1001  # it stopped reading after the limit


def test_invalid_utf8_is_refused() -> None:
    code, _, err = main_bytes(b'{"orders": [], "x\xff": 1}')
    assert code == EXIT_INVALID
    assert "not valid UTF-8" in err


def main_bytes(data: bytes) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["clear"], stdin=io.BytesIO(data), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_an_engine_failure_is_one_line_without_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(book: object) -> object:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("custom_components.peer_energy.core.cli.clear_book", broken)
    code, out, err = _run(EXAMPLES[0].read_text("utf-8"))
    assert (code, out) == (70, "")
    assert err == "internal error (please report): ZeroDivisionError: a bug\n"


def test_the_directory_form_runs_without_home_assistant(tmp_path: Path) -> None:
    # A homeassistant package that cannot be imported, first on the path: the command
    # must not need it (nor the integration's __init__, which imports it).
    blocked = tmp_path / "homeassistant"
    blocked.mkdir()
    (blocked / "__init__.py").write_text("raise ImportError('Home Assistant is not installed')\n")
    book = EXAMPLES[0]
    # (without the test run's coverage hooks, which would look for their settings there)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE", "COVERAGE"))}
    env["PYTHONPATH"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(CORE), "clear"],
        input=book.read_text("utf-8"),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == (book.parent / book.name.replace(".book.", ".result.")).read_text("utf-8")
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert "peer_energy_core.market.clearing" in imported
    assert not any(name.split(".")[0] in {"homeassistant", "custom_components", "nacl"}
                   for name in imported)  # fmt: skip
