"""Start and stop a project-local ``influxd`` (InfluxDB 1.x, Debian package ``influxdb``).

Used by the test session fixture, the benchmarks and the demo scripts, so all three run the server
the same way: bound to 127.0.0.1 on a chosen (or free) port, data under a directory we own, no
systemd, no /var/lib, usage reporting and the ``_internal`` monitor database off.

Command line::

    python -m influx_assets.devtools.local_server start --dir .influxdb --port 8086
    python -m influx_assets.devtools.local_server stop --dir .influxdb
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

_CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{root}/meta"

[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
  max-values-per-tag = 0

[monitor]
  store-enabled = false

[http]
  bind-address = "127.0.0.1:{port}"
  auth-enabled = {auth}
  log-enabled = false
  pprof-enabled = false
  max-row-limit = 0
  flux-enabled = false

[continuous_queries]
  enabled = false
"""


class InfluxdNotInstalledError(RuntimeError):
    """``influxd`` is not on PATH; install Debian's ``influxdb`` package (``scripts/setup.sh`` does)."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def influxd_path() -> str:
    """Path of the ``influxd`` binary, or raise :class:`InfluxdNotInstalledError`."""
    found = shutil.which("influxd") or ("/usr/bin/influxd" if os.path.exists("/usr/bin/influxd") else None)
    if not found:
        raise InfluxdNotInstalledError(
            "influxd not found: install InfluxDB 1.x (`apt-get install influxdb`) or set INFLUXDB_URL"
        )
    return found


@dataclass
class LocalInfluxd:
    """One ``influxd`` process with its own data directory.

    Examples:
        >>> server = LocalInfluxd(Path("/tmp/influx-demo")).start()  # doctest: +SKIP
        >>> server.url  # doctest: +SKIP
        'http://127.0.0.1:40123'
        >>> server.stop()  # doctest: +SKIP
    """

    root: Path
    port: int = 0
    auth_enabled: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> LocalInfluxd:
        """Write the config, start ``influxd`` and wait until ``/ping`` answers."""
        binary = influxd_path()
        self.root = Path(self.root).absolute()
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        config = self.root / "influxdb.conf"
        config.write_text(
            _CONFIG.format(
                root=self.root, port=self.port, rpc_port=free_port(),
                auth="true" if self.auth_enabled else "false",
            )
        )
        log = open(self.root / "influxd.log", "ab")  # noqa: SIM115 - owned by the child process
        self.process = subprocess.Popen(
            [binary, "-config", str(config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        (self.root / "influxd.pid").write_text(str(self.process.pid))
        (self.root / "influxd.url").write_text(self.url)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until ``/ping`` answers 204, or raise ``RuntimeError`` with the server log's tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as response:
                    if response.status == 204:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        tail = (self.root / "influxd.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"influxd did not become ready on {self.url}:\n{tail}")

    def kill(self) -> None:
        """SIGKILL the server (fault tests); data on disk stays, :meth:`start` again to recover."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process: it exists and is not a zombie (ended, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True  # no /proc here: trust kill(pid, 0)
    return state not in ("Z", "X")


def start_detached(root: Path, port: int) -> str:
    """Start a server that outlives this process unless one is already running there; return its URL."""
    pid_file = root / "influxd.pid"
    if pid_file.exists() and pid_alive(int(pid_file.read_text())):
        url = (root / "influxd.url").read_text()
        LocalInfluxd(root, port).wait_ready()
        return url
    return LocalInfluxd(root, port).start().url


def stop_detached(root: Path) -> bool:
    """Stop a server started by :func:`start_detached`; return whether one was running."""
    pid_file = root / "influxd.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    pid_file.unlink()
    if not pid_alive(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return True


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``start`` or ``stop`` a detached server."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", type=Path, default=Path(".influxdb"))
    parser.add_argument("--port", type=int, default=8086)
    args = parser.parse_args(argv)
    if args.action == "start":
        print(start_detached(args.dir, args.port))
    else:
        print("stopped" if stop_detached(args.dir) else "not running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
