"""A private Redis for the tests: the broker and result backend of the Celery executor's workers.

:class:`LocalRedis` starts Debian's ``redis-server`` (package ``redis-server``; ``scripts/setup.sh``
installs it for the tests) in the foreground on a free loopback port, with its working directory in a
temporary directory of its own and persistence off (no RDB snapshots, no append-only file): nothing of
it outlives :meth:`LocalRedis.stop`, which shuts it down and removes the directory.

Registered as a pytest plugin by the modules that use it (``pytest_plugins``): the session fixture
:func:`redis_server`. Under ``CI=true`` a missing ``redis-server`` fails the tests instead of skipping,
as ``conftest.py`` does for ``influxd``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from influx_assets.devtools.local_server import free_port
from influx_assets_tests.real_servers import start_or_fail_in_ci


class RedisNotInstalledError(RuntimeError):
    """No ``redis-server`` binary on this machine."""


def redis_server_path() -> str:
    """Path of ``redis-server``, or raise :class:`RedisNotInstalledError`."""
    found = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)
    if not found:
        raise RedisNotInstalledError(
            "redis-server not found: run `INFLUX_ASSETS_FOR_TESTS=1 bash scripts/setup.sh` or "
            "`apt-get install redis-server`"
        )
    return found


class LocalRedis:
    """One ``redis-server`` of its own on 127.0.0.1, no persistence.

    Examples:
        >>> server = LocalRedis().start()  # doctest: +SKIP
        >>> server.url(0)  # doctest: +SKIP
        'redis://127.0.0.1:40123/0'
        >>> server.stop()  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self.binary = redis_server_path()
        self.host = "127.0.0.1"
        self.port = 0
        self.root: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, database: int = 0) -> str:
        """``redis://`` URL of one of the server's numbered databases."""
        return f"redis://{self.host}:{self.port}/{database}"

    @property
    def log(self) -> Path:
        assert self.root is not None, "the server was not started"
        return self.root / "redis.log"

    def start(self, attempts: int = 3, timeout: float = 20.0) -> LocalRedis:
        """Start the server and wait until it answers ``PING``; retries on a port taken meanwhile."""
        self.root = Path(tempfile.mkdtemp(prefix="influx-assets-redis-"))
        for _ in range(attempts):
            self.port = free_port()
            with self.log.open("ab") as log:
                self.process = subprocess.Popen(
                    [self.binary, "--bind", self.host, "--port", str(self.port), "--dir", str(self.root),
                     "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
                     "--logfile", ""],
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )
            if self._wait_ready(timeout):
                return self
        tail = self.log.read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"redis-server did not start:\n{tail}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process is not None and self.process.poll() is None:
            if self.command("PING") == "+PONG":
                return True
            time.sleep(0.05)
        return False

    def command(self, *words: str) -> str | None:
        """Send one command (RESP, stdlib sockets: not the client under test); the reply's first line."""
        request = f"*{len(words)}\r\n" + "".join(f"${len(w.encode())}\r\n{w}\r\n" for w in words)
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as connection:
                connection.sendall(request.encode())
                return connection.recv(65536).split(b"\r\n", 1)[0].decode(errors="replace")
        except OSError:
            return None

    def stop(self) -> None:
        """Stop the server (SIGTERM, SIGKILL after 10 s) and remove its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


# --- pytest plugin ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    """The session's own Redis."""
    server = start_or_fail_in_ci(lambda: LocalRedis().start(), RedisNotInstalledError)
    yield server
    server.stop()
