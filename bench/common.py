"""What every benchmark shares: the server, its clients, fresh databases and interleaved timed trials.

A benchmark measures a *ratio* of two rates taken side by side in one process against one server
(absolute times drift with machine load; ratios drift much less). Each trial of each contender gets a
fresh database, contenders are interleaved (A B, B A, A B, ...), and the median of the trials counts
(:mod:`bench.figures` turns them into figures).
"""

from __future__ import annotations

import ctypes
import gc
import os
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import urllib3

from influx_assets.influxdb import InfluxDBResource
from influx_assets.influxdb.client.http import HttpSession
from influx_assets.influxdb.client.influxql import quote_ident
from influx_assets.devtools.local_server import LocalInfluxd

from bench.figures import median


@dataclass
class BenchContext:
    """What a benchmark function gets: the server, the size mode and the trial count."""

    url: str
    quick: bool
    trials: int
    credentials: dict[str, str | None]
    server_pid: int | None = None  # known for a local server: its CPU time is recorded too

    def measure(self, operation: Callable[[], object]) -> Timing:
        """Run ``operation``; return its wall time, this process's CPU time and the server's CPU time."""
        server_before = _process_cpu_seconds(self.server_pid)
        rss_before = _reset_peak_rss()
        client_before = time.process_time()
        started = time.perf_counter()
        operation()
        wall = time.perf_counter() - started
        client = time.process_time() - client_before
        server_after = _process_cpu_seconds(self.server_pid)
        server = None if server_before is None or server_after is None else server_after - server_before
        return Timing(wall, client, server, rss_before, _memory_kib("VmHWM"))

    def resource(self, database: str, **overrides: object) -> InfluxDBResource:
        """An :class:`InfluxDBResource` on the benchmark server (fails fast: two attempts)."""
        settings: dict[str, object] = {
            "url": self.url, "database": database, "max_attempts": 2, "initial_backoff_seconds": 0.1,
            "timeout_seconds": 120.0, **{k: v for k, v in self.credentials.items() if v},
        }
        return InfluxDBResource(**(settings | overrides))

    def fresh_database(self, name: str) -> str:
        """Drop and create database ``name`` (outside any timer); return the name."""
        client = self.raw_client()
        client.query(f"DROP DATABASE {quote_ident(name)}")
        client.query(f"CREATE DATABASE {quote_ident(name)}")
        return name

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` so trials do not pile data up on the server."""
        self.raw_client().query(f"DROP DATABASE {quote_ident(name)}")

    def raw_client(self) -> RawClient:
        """A plain urllib3 client for baselines: no retries, no classification, just bytes."""
        session = HttpSession(
            url=self.url, token=self.credentials.get("token"), username=self.credentials.get("username"),
            password=self.credentials.get("password"),
        )
        return RawClient(self.url.rstrip("/"), session.auth_headers())


@dataclass(frozen=True)
class Timing:
    """One timed operation: wall seconds, CPU seconds of this process (all threads) and of the server."""

    wall: float
    client_cpu: float
    server_cpu: float | None
    rss_before_kib: int | None = None  # this process's resident memory when the operation began
    peak_rss_kib: int | None = None  # its peak resident memory during the operation (Linux)


def _memory_kib(name: str) -> int | None:
    """A ``/proc/self/status`` memory line (``VmRSS``, ``VmHWM``) in KiB, or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> int | None:
    """Reset this process's peak-RSS mark to its current RSS (``clear_refs`` 5); return that RSS in KiB.

    Freed memory is returned to the system first (``gc``, glibc ``malloc_trim``), so that an operation
    cannot reuse it unseen: the peak minus the returned RSS is what the operation needed on top.
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return _memory_kib("VmRSS")


def _process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process (Linux ``/proc``), or None when unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_summary(timings: dict[str, list[Timing]]) -> dict[str, dict[str, float | None]]:
    """Median wall, client CPU and server CPU seconds per contender (for the notes of a figure)."""
    summary: dict[str, dict[str, float | None]] = {}
    for name, runs in timings.items():
        servers = [t.server_cpu for t in runs if t.server_cpu is not None]
        summary[name] = {
            "wall_s": round(median([t.wall for t in runs]), 3),
            "client_cpu_s": round(median([t.client_cpu for t in runs]), 3),
            "server_cpu_s": round(median(servers), 3) if servers else None,
        }
        peaks = [t.peak_rss_kib for t in runs if t.peak_rss_kib is not None]
        if peaks:
            summary[name]["peak_rss_mib"] = round(max(peaks) / 1024, 1)
            summary[name]["rss_before_mib"] = round(max(t.rss_before_kib or 0 for t in runs) / 1024, 1)
    return summary


@dataclass
class RawClient:
    """The baselines' HTTP: one pooled urllib3 connection, status checked, nothing else."""

    base: str
    headers: dict[str, str]
    pool: urllib3.PoolManager = field(default_factory=lambda: urllib3.PoolManager(maxsize=2, retries=False))

    def post(
        self,
        path: str,
        params: dict[str, str],
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> bytes:
        """POST and return the body; any non-2xx status raises ``RuntimeError``."""
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        response = self.pool.request(
            "POST", url, body=body, headers=self.headers | (headers or {}),
            timeout=urllib3.Timeout(connect=10, read=300),
        )
        if response.status >= 300:
            raise RuntimeError(f"POST {path} -> HTTP {response.status}: {response.data[:300]!r}")
        return bytes(response.data)

    def query(self, statement: str, database: str | None = None) -> bytes:
        """Run one InfluxQL statement (JSON response)."""
        params = {"q": statement} | ({"db": database} if database else {})
        return self.post("/query", params)


@dataclass(frozen=True)
class BenchServer:
    """The server a benchmark runs against."""

    url: str
    credentials: dict[str, str | None]
    pid: int | None  # None for an external server (INFLUXDB_URL)


@contextmanager
def bench_server() -> Iterator[BenchServer]:
    """The server: ``INFLUXDB_URL`` (+ ``INFLUXDB_TOKEN``/``USERNAME``/``PASSWORD``) or a new ``influxd``."""
    credentials = {
        "token": os.environ.get("INFLUXDB_TOKEN") or None,
        "username": os.environ.get("INFLUXDB_USERNAME") or None,
        "password": os.environ.get("INFLUXDB_PASSWORD") or None,
    }
    if os.environ.get("INFLUXDB_URL"):
        yield BenchServer(os.environ["INFLUXDB_URL"], credentials, None)
        return
    root = Path(tempfile.mkdtemp(prefix="influx-bench-"))
    server = LocalInfluxd(root).start()
    try:
        yield BenchServer(server.url, credentials, server.process.pid if server.process else None)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def timed(operation: Callable[[], object]) -> float:
    """Seconds of wall time ``operation`` takes."""
    started = time.perf_counter()
    operation()
    return time.perf_counter() - started


def interleaved_trials(
    contenders: dict[str, Callable[[int], float]], trials: int
) -> dict[str, list[float]]:
    """Run every contender ``trials`` times, rotating the order each round; return raw values per name.

    Each contender is called with the trial number and returns its measurement for that trial (it
    sets up fresh state itself, outside its own timer).
    """
    names = list(contenders)
    results: dict[str, list[float]] = {name: [] for name in names}
    for trial in range(trials):
        shift = trial % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(contenders[name](trial))
    return results


def server_version(url: str, client: RawClient) -> str:
    """The ``X-Influxdb-Version`` header of ``/ping``."""
    response = client.pool.request("GET", url.rstrip("/") + "/ping", headers=client.headers)
    return str(response.headers.get("X-Influxdb-Version", "unknown"))
