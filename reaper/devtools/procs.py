"""Start and stop reaper's local processes (emulator, delay service, function) for the demo and tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Final

import function

FUNCTION_SOURCE: Final = Path(function.__file__).with_name("main.py")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


class Process:
    """A child process listening on one loopback port; stopped with SIGTERM, then SIGKILL."""

    def __init__(
        self,
        argv: Sequence[str],
        port: int,
        *,
        env: Mapping[str, str] | None = None,
        stderr: IO[bytes] | int | None = None,
        stdout: IO[bytes] | int | None = None,
    ) -> None:
        self.argv = list(argv)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._env = {**os.environ, **(env or {})}
        self._stderr = stderr
        self._stdout = stdout
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> Process:
        """Start the process and wait until it listens."""
        self.proc = subprocess.Popen(
            self.argv,
            env=self._env,
            stdout=self._stdout if self._stdout is not None else subprocess.DEVNULL,
            stderr=self._stderr,
            start_new_session=True,
        )
        try:
            wait_for_port(self.port, timeout, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the whole process group (gunicorn workers included)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait(timeout)

    def terminate(self) -> None:
        """Send SIGTERM and return at once (``stop`` waits); for stopping many processes together."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing gets to clean up."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGKILL)
            self.proc.wait(10)

    def _signal(self, signum: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signum)


def stop_all(processes: Sequence[Process]) -> None:
    """Stop several processes in parallel: each gets SIGTERM first, then each is waited for."""
    for process in processes:
        process.terminate()
    for process in processes:
        process.stop()


def reaper_command(*args: str) -> list[str]:
    """argv for a ``reaper`` subcommand run by this interpreter."""
    return [sys.executable, "-m", "reaper.cli", *args]


def function_command(port: int, target: str = "handle", signature: str = "cloudevent") -> list[str]:
    """argv for ``reaper serve`` (gunicorn with reaper's limits, as in production)."""
    return [
        sys.executable, "-m", "reaper.cli", "serve",
        "--source", str(FUNCTION_SOURCE),
        "--target", target,
        "--signature-type", signature,
        "--host", "127.0.0.1",
        "--port", str(port),
    ]  # fmt: skip
