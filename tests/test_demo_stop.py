"""Stopping the demo leaves no Home Assistant behind, whatever stop signal comes and when.

The demo starts Home Assistant in its own session, so a signal to the demo never reaches
it: the demo must stop it. These tests run the real demo (``scripts/demo.py``'s
neighbourhood, three homes) as a process with a stand-in for ``hass`` that records its
process id, never answers and takes a moment to shut down, like Home Assistant does, and
send the demo its stop signals while it waits for the homes to answer.
"""

from __future__ import annotations

from collections.abc import Iterator
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import pytest

ROOT = Path(__file__).parent.parent
HOMES = 3
# The stand-in's clean shutdown, in seconds (Home Assistant's takes about one).
SHUTDOWN_S = 2.0

FAKE_HASS = """\
import os, signal, sys, time
from pathlib import Path

def stop(signum, frame):
    time.sleep({shutdown})
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
Path(os.environ["FAKE_HASS_PIDS"], str(os.getpid())).write_text("started")
while True:
    time.sleep(1)
"""

RUN_DEMO = """\
import sys
from pathlib import Path

sys.path.insert(0, {scripts!r})
from peer_demo import neighbourhood, process

process.HASS_BIN = Path({fake!r})
neighbourhood.DEMO_ROOT = Path({root!r})
sys.exit(neighbourhood.main(["--homes", "{homes}"]))
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """The demo with stand-in Home Assistants, once all of them run; cleaned up after."""
    if sys.platform != "linux":
        pytest.skip("reads /proc")
    pids = tmp_path / "pids"
    pids.mkdir()
    fake = tmp_path / "hass"
    fake.write_text(f"#!{sys.executable}\n" + FAKE_HASS.format(shutdown=SHUTDOWN_S))
    fake.chmod(0o755)
    (tmp_path / "demo").mkdir()
    code = RUN_DEMO.format(
        scripts=str(ROOT / "scripts"), fake=str(fake), root=str(tmp_path / "demo"), homes=HOMES
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        # Without the coverage plugin's variables: the stand-ins start in other folders,
        # where coverage would measure without the project's settings (no branch data),
        # and the run's coverage could not combine their files.
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE", "COVERAGE"))},
            "FAKE_HASS_PIDS": str(pids),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while len(list(pids.iterdir())) < HOMES:
            assert proc.poll() is None, proc.communicate()[0].decode()
            assert time.monotonic() < deadline, "the stand-ins did not start"
            time.sleep(0.1)
        time.sleep(1.0)  # the demo now polls the homes, which never answer
        yield proc, pids
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for path in pids.iterdir():
            if alive(int(path.name)):
                os.kill(int(path.name), signal.SIGKILL)


def left_running(pids: Path) -> list[int]:
    return [int(p.name) for p in pids.iterdir() if alive(int(p.name))]


def finish(proc: subprocess.Popen[bytes], limit: float = 30) -> tuple[float, str]:
    started = time.monotonic()
    out, _ = proc.communicate(timeout=limit)
    return time.monotonic() - started, out.decode()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stop_signal_stops_every_home(
    demo: tuple[subprocess.Popen[bytes], Path], sig: signal.Signals
) -> None:
    """SIGTERM (kill, a service manager), Ctrl-C and SIGHUP (the terminal closed) each stop
    all Home Assistants, at once rather than one after the other."""
    proc, pids = demo
    proc.send_signal(sig)
    took, out = finish(proc)
    assert left_running(pids) == [], out
    assert proc.returncode == 1, out  # interrupted: not a pass
    assert took < SHUTDOWN_S * HOMES, out  # they stop together
    assert "interrupted" in out, out


def test_a_second_sigterm_while_stopping_kills_what_is_left(
    demo: tuple[subprocess.Popen[bytes], Path],
) -> None:
    """An impatient second SIGTERM while the homes shut down (a service manager's, or a
    user's kill again) must not kill the demo before its homes: it kills them at once."""
    proc, pids = demo
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert proc.poll() is None  # still waiting for the stand-ins' clean shutdown
    proc.send_signal(signal.SIGTERM)
    took, out = finish(proc)
    assert left_running(pids) == [], out
    assert took < SHUTDOWN_S, out
    assert "killing Home Assistant now" in out, out
