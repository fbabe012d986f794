"""A real Mosquitto per test, on 127.0.0.1 and a free port (scripts/bootstrap installs it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
import getpass
from pathlib import Path
import shutil
import socket
import subprocess
import time

import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


@dataclass
class Broker:
    """A running Mosquitto: where it listens and how to restart it."""

    host: str
    port: int
    process: subprocess.Popen[bytes]
    config: Path

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:  # pragma: no cover - a stuck broker
                self.process.kill()
                self.process.wait(5)

    def start(self) -> None:
        self.process = _launch(self.config, self.port)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(config: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode() if process.stderr else ""
            pytest.fail(f"mosquitto exited: {err}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.02)
    process.kill()
    pytest.fail("mosquitto did not listen within 10 s")


@pytest.fixture
def mosquitto_factory(socket_enabled: None, tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Start brokers: ``factory()`` anonymous, ``factory(users={"u": "pw"})`` with a
    password file. All are stopped after the test."""
    if not Path(MOSQUITTO).exists():
        pytest.fail(
            "Mosquitto is missing: install it with 'apt-get install -y mosquitto' "
            "(scripts/bootstrap does so when run as root)."
        )
    brokers: list[Broker] = []

    def factory(users: dict[str, str] | None = None) -> Broker:
        port = _free_port()
        config = tmp_path / f"mosquitto-{port}.conf"
        # ``user``: a broker started as root keeps running as root (else it would switch
        # to the "mosquitto" user, which cannot read the test's private directory).
        lines = [
            f"listener {port} 127.0.0.1",
            "persistence false",
            "log_dest stderr",
            f"user {getpass.getuser()}",
        ]
        if users:
            pw = tmp_path / f"passwd-{port}"
            pw.touch()
            for user, password in users.items():
                subprocess.run([MOSQUITTO_PASSWD, "-b", str(pw), user, password], check=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        broker = Broker("127.0.0.1", port, _launch(config, port), config)
        brokers.append(broker)
        return broker

    yield factory
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., Broker]) -> Broker:
    """One anonymous broker."""
    return mosquitto_factory()
