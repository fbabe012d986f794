"""Small helpers: output, free ports, the local time zone, numbers from states."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
import socket
import time
import zoneinfo

from .settings import UNAVAILABLE

# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


class DemoError(Exception):
    """A step of the demo failed; the message says which and why."""


class StopRequestedError(Exception):
    """Ctrl-C (or SIGTERM) arrived while the demo was setting up."""


def say(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def local_time_zone() -> str:
    """The machine's IANA time zone, so the simulated sun follows the user's clock."""
    candidates: list[str] = []
    if tz := os.environ.get("TZ", "").lstrip(":"):
        candidates.append(tz)
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    with contextlib.suppress(OSError):
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    for name in candidates:
        with contextlib.suppress(zoneinfo.ZoneInfoNotFoundError, ValueError):
            zoneinfo.ZoneInfo(name)
            return name
    return "UTC"


def as_number(state: str | None) -> float | None:
    if state is None or state.lower() in UNAVAILABLE:
        return None
    try:
        value = float(state)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
