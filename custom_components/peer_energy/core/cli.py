"""Command line entry of the engine: ``python custom_components/peer_energy/core clear``.

``clear`` reads an order book as JSON on stdin (the format of :func:`.orders.parse_book`,
documented in ``docs/market.md``) and writes the clearing result as JSON on stdout (the
format of :meth:`.clearing.ClearingResult.to_dict`). The input is parsed strictly (UTF-8,
no duplicate keys, no floats, integers within 64 bits, at most ``--max-bytes``) and checked
against the engine's bounds. Invalid input gives a one-line message on stderr and exit code
2; a failure of the engine itself (a bug) gives a one-line message and exit code 70. The
command never prints a traceback. This interface is kept stable for researchers and
acceptance checks.

Run as a directory (the form above), the engine is loaded as its own package and needs
neither Home Assistant nor the integration (see ``__main__.py``);
``python -m custom_components.peer_energy.core clear`` works too, but imports the
integration's package first, and with it Home Assistant.

Public API: :func:`main`, :func:`clear_json`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import json
import sys
from typing import IO, Any

from .market.clearing import clear_book
from .market.orders import OrderError, parse_book
from .trust.canonical import CanonicalError, decode

EXIT_INVALID = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE
MAX_INPUT_BYTES = 32 * 1024 * 1024


class InputTooLargeError(ValueError):
    """The input is longer than the limit."""


def clear_json(data: bytes | str) -> dict[str, Any]:
    """Parse an order book from JSON, clear it, return the result as plain data.

    Raises ``ValueError`` (``OrderError`` or ``CanonicalError``) on invalid input.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return clear_book(parse_book(decode(raw))).to_dict()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python custom_components/peer_energy/core",
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
    clear.add_argument(
        "--max-bytes",
        type=int,
        default=MAX_INPUT_BYTES,
        metavar="N",
        help=f"refuse input longer than N bytes (default {MAX_INPUT_BYTES})",
    )
    return parser


def _read(stream: IO[Any], limit: int) -> bytes:
    """At most ``limit`` bytes of ``stream`` (binary, or text encoded as UTF-8)."""
    source = getattr(stream, "buffer", stream)
    data = source.read(limit + 1)
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if len(raw) > limit:
        raise InputTooLargeError(f"the input is larger than {limit} bytes (see --max-bytes)")
    return raw


def main(
    argv: Sequence[str] | None = None,
    stdin: IO[Any] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """Run the command line; returns the exit code."""
    stdin = stdin if stdin is not None else sys.stdin
    stdout = stdout if stdout is not None else sys.stdout
    stderr = stderr if stderr is not None else sys.stderr
    args = _parser().parse_args(argv)
    try:
        result = clear_json(_read(stdin, max(0, args.max_bytes)))
        if args.compact:
            text = json.dumps(result, separators=(",", ":"))
        else:
            text = json.dumps(result, indent=2)
    except (OrderError, CanonicalError, InputTooLargeError) as err:
        print(f"invalid order book: {err}", file=stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # a bug of the engine: one line, no traceback (the contract)
        print(f"internal error (please report): {type(err).__name__}: {err}", file=stderr)
        return EXIT_INTERNAL
    stdout.write(text + "\n")
    return 0
