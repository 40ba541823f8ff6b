"""Run a real `datagate serve` process: start, wait until ready, stop or SIGKILL.

Used by the load benchmark and by the tests (through ``tests/serve.py``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

DATAGATE = Path(sys.executable).parent / "datagate"


class ServeFailed(RuntimeError):
    """The process exited or did not become ready; the message holds its log."""


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    """One `datagate serve` (in its own process group, as in a container) and its log file."""

    def __init__(
        self,
        home: Path,
        database_url: str,
        log: Path,
        *,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        """Start ``datagate serve`` with ``env`` (DATAGATE_* settings) on a free port."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        settings = {
            "DATAGATE_HOME": str(home),
            "DATAGATE_DATABASE_URL": database_url,
            "DATAGATE_PORT": str(self.port),
            "DATAGATE_LOG_LEVEL": "warning",
            **(env or {}),
        }
        self._log = log.open("a")
        self.process = subprocess.Popen(
            [DATAGATE, "serve", *args],
            env={**os.environ, **settings},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_text(self) -> str:
        """Everything the process has written so far."""
        return self.log_path.read_text()

    def wait_ready(self, timeout: float = 90) -> ServeProcess:
        """Block until ``/readyz`` answers 200; fail the test if the process exits first."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise ServeFailed(f"datagate serve exited: {self.log_text()}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise ServeFailed(f"datagate serve was not ready in {timeout} s: {self.log_text()}")
            time.sleep(0.1)

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        """Block until ``text`` appears in the log."""
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise ServeFailed(f"never logged {text!r}: {self.log_text()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the whole process group, like a container runtime or the OOM killer."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=20)
        self._log.close()

    def stop(self) -> None:
        """SIGTERM and wait for a clean shutdown (SIGKILL after 20 s)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
