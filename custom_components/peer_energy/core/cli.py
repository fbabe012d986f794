"""Command line entry of the engine: ``python -m custom_components.peer_energy.core clear``.

``clear`` reads an order book as JSON on stdin (the format of :func:`.orders.parse_book`,
documented in ``docs/market.md``) and writes the clearing result as JSON on stdout (the
format of :meth:`.clearing.ClearingResult.to_dict`). Invalid input gives a one-line message
on stderr and exit code 2, never a traceback. This interface is kept stable for researchers
and acceptance checks.

Public API: :func:`main`, :func:`clear_json`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import json
import sys
from typing import Any, TextIO

from .market.clearing import clear_book
from .market.orders import OrderError, parse_book

EXIT_INVALID = 2


def clear_json(text: str) -> dict[str, Any]:
    """Parse an order book from JSON text, clear it, return the result as plain data.

    Raises ``ValueError`` (``OrderError`` or a JSON error) on invalid input.
    """
    try:
        data = json.loads(text)
    except RecursionError:
        raise ValueError("order book JSON is nested too deeply") from None
    return clear_book(parse_book(data)).to_dict()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m custom_components.peer_energy.core",
        description="Peer Energy market engine.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    clear = sub.add_parser(
        "clear",
        help="clear an order book (JSON on stdin) and print the result (JSON on stdout)",
        description=(
            "Read an order book as JSON on stdin, clear every slot in it and write the "
            "result as JSON on stdout. Formats: docs/market.md. Exit code 2 on invalid input."
        ),
    )
    clear.add_argument("--compact", action="store_true", help="print JSON on one line")
    return parser


def main(
    argv: Sequence[str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the command line; returns the exit code."""
    stdin = stdin if stdin is not None else sys.stdin
    stdout = stdout if stdout is not None else sys.stdout
    stderr = stderr if stderr is not None else sys.stderr
    args = _parser().parse_args(argv)
    try:
        result = clear_json(stdin.read())
    except (OrderError, ValueError, UnicodeDecodeError) as err:
        print(f"invalid order book: {err}", file=stderr)
        return EXIT_INVALID
    if args.compact:
        stdout.write(json.dumps(result, separators=(",", ":")) + "\n")
    else:
        stdout.write(json.dumps(result, indent=2) + "\n")
    return 0
