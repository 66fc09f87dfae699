"""Where one pipeline's time goes: a py-spy sampling profile of P4's runs, broken down by kind of work.

Writes the simulated raw points into the benchmark server (a new ``influxd``, or ``INFLUXDB_URL``),
then samples this process's main thread (wall clock, idle included) with ``py-spy`` while the hourly range run(s) and the daily run execute
exactly as in P4, and prints the share of samples per category plus wall, client and server CPU::

    pip install py-spy                                                # not a project dependency
    .venv/bin/python -m bench.profile_pipeline 1000 10 6             # sensors, cadence s, hours
    .venv/bin/python -m bench.profile_pipeline 20 60 168             # P3's full size

A sample belongs to the first category (in the order of ``CATEGORIES``) that any frame of its stack
matches, so "waiting on InfluxDB" includes the checks' and loads' reads. The raw samples are kept
(``--out``, py-spy's collapsed format) for other cuts. A diagnostic: no ratio, no goal.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import BenchContext, bench_server
from bench.pipeline_rates import simulated_pipeline

#: (category, substrings of a frame ``function (file:line)``): first match in this order wins.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("line-protocol encode", ("line_protocol.py", "line_text.py")),
    ("waiting on InfluxDB: writes", ("_post_while_rendering", "write_encoded")),
    ("waiting on InfluxDB: queries and reads", ("socket.py", "ssl.py", "http/client.py", "urllib3/", "selectors.py")),
    ("Dagster event storage (SQLite)", ("storage/event_log", "sqlalchemy", "sqlite")),
    ("Dagster event creation and serialization", ("_serdes/", "dagster/_core/events", "metadata/")),
    ("content fingerprints", ("fingerprint.py",)),
    ("CSV parse of query responses", ("influxql_csv.py", "pandas/io/parsers")),
    ("Parquet archive", ("pyarrow/parquet", "archive.py")),
    ("stage compute", tuple(f"telemetry/{m}.py" for m in ("validate", "normalize", "aggregate", "sliding", "downsample", "features"))),
    ("asset checks (their own compute)", ("telemetry/checks.py", "telemetry/reconciliation.py", "telemetry/lookback.py")),
    ("other influx_assets", ("influx_assets/",)),
    ("other Dagster", ("dagster/",)),
)


def category(frames: list[str]) -> str:
    """The category of one sampled stack (outermost frame first)."""
    for name, markers in CATEGORIES:
        if any(marker in frame for frame in frames for marker in markers):
            return name
    return "other"


def breakdown(collapsed: Path) -> dict[str, float]:
    """Share of the main thread's samples inside the backfill, by category (py-spy ``--format raw``)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        frames = stack.split(";")
        if any("backfill (" in frame for frame in frames):
            counts[category(frames)] += int(number)
    total = sum(counts.values()) or 1
    return {name: n / total for name, n in counts.most_common()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sensors", type=int)
    parser.add_argument("cadence_seconds", type=float)
    parser.add_argument("hours", type=int)
    parser.add_argument("--out", type=Path, default=Path("bench/results/profile.txt"))
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy")
    if spy is None:
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cold = Path(tempfile.mkdtemp(prefix="bench-profile-cold-"))
    try:
        with bench_server() as server:
            ctx = BenchContext(url=server.url, quick=False, trials=1, credentials=server.credentials,
                               server_pid=server.pid)
            raw, backfill, outcomes = simulated_pipeline(
                ctx, "bench_profile", args.sensors, args.cadence_seconds, args.hours, cold
            )
            sampler = subprocess.Popen(
                [spy, "record", "--pid", str(os.getpid()), "--rate", "50", "--format", "raw", "--idle",
                 "--threads", "-o", str(args.out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            time.sleep(2)  # py-spy attaches
            timing = ctx.measure(backfill)
            sampler.send_signal(signal.SIGINT)
            sampler.wait(60)
            ctx.drop_database("bench_profile")
    finally:
        shutil.rmtree(cold, ignore_errors=True)
    server_cpu = "unknown (external server)" if timing.server_cpu is None else f"{timing.server_cpu:.1f} s"
    print(f"raw points {raw:,}; runs ok: {all(outcomes)}; wall {timing.wall:.1f} s, "
          f"client CPU {timing.client_cpu:.1f} s, influxd CPU {server_cpu}")
    for name, share in breakdown(args.out).items():
        print(f"  {share * 100:5.1f} %  {name}")
    return 0 if all(outcomes) else 1

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
