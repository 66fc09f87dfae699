"""Points read and written per raw point, by measurement and by the reader that caused each read.

One pipeline as P4 runs it (the hourly range run(s) and the daily run, checks included) against the
benchmark server (a new ``influxd``, or ``INFLUXDB_URL``), with every server read and every window
replacement counted::

    .venv/bin/python -m bench.io_by_caller              # 100 sensors x 10 s x 6 h (P4 quick size)
    .venv/bin/python -m bench.io_by_caller 1000 6       # sensors, hours

A read is attributed to the outermost ``influx_assets/telemetry`` function on its stack (a check's
function, e.g. ``reconciliation.py:raw_count_reconciles``), or to ``io manager`` for a stage's input
load. Reads served by the read cache never reach the server and are not counted: the table is what
the server had to answer. A diagnostic, not a benchmark (no ratio, no goal): it wraps
``InfluxDBConnection.read_window`` and ``WindowStore.replace`` for its own process only.
"""

from __future__ import annotations

import collections
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import pandas as pd

from influx_assets.influxdb.client.connection import InfluxDBConnection
from influx_assets.influxdb.client.window_store import WindowStore

from bench.common import BenchContext, bench_server
from bench.pipeline_rates import simulated_pipeline

points_read: collections.Counter[tuple[str, str]] = collections.Counter()
points_written: collections.Counter[str] = collections.Counter()
largest_mib: dict[str, float] = {}


def reader() -> str:
    """The outermost pipeline function on the stack (``file:function``), or ``io manager``."""
    for frame in traceback.extract_stack():
        if "influx_assets/telemetry/" in frame.filename:
            return f"{Path(frame.filename).name}:{frame.name}"
    return "io manager"


def count_io() -> None:
    """Wrap the server read and the window replacement so that each counts its points."""
    read_window, replace = InfluxDBConnection.read_window, WindowStore.replace

    def counted_read(self: InfluxDBConnection, where: Any, schema: Any = None) -> pd.DataFrame:
        frame = read_window(self, where, schema)
        points_read[(where.measurement, reader())] += len(frame)
        mib = float(frame.memory_usage(deep=True, index=True).sum()) / 2**20
        largest_mib[where.measurement] = max(largest_mib.get(where.measurement, 0.0), mib)
        return frame

    def counted_replace(self: WindowStore, where: Any, *args: Any, **kwargs: Any) -> Any:
        result = replace(self, where, *args, **kwargs)
        points_written[where.measurement] += result.points_written
        return result

    InfluxDBConnection.read_window = counted_read  # type: ignore[method-assign]
    WindowStore.replace = counted_replace  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    sensors, hours = (int(a) for a in (argv or ["100", "6"]))
    cold = Path(tempfile.mkdtemp(prefix="bench-io-cold-"))
    try:
        with bench_server() as server:
            ctx = BenchContext(url=server.url, quick=False, trials=1, credentials=server.credentials,
                               server_pid=server.pid)
            raw, backfill, outcomes = simulated_pipeline(ctx, "bench_io_by_caller", sensors, 10.0, hours, cold)
            count_io()
            backfill()
            ctx.drop_database("bench_io_by_caller")
    finally:
        shutil.rmtree(cold, ignore_errors=True)
    if not all(outcomes):
        print("a pipeline run failed", outcomes)
        return 2
    print(f"raw points {raw:,}")
    print("points read per raw point, by measurement and reader:")
    for (measurement, who), n in sorted(points_read.items(), key=lambda kv: -kv[1]):
        if n:
            print(f"  {n / raw:6.3f}  {measurement:24s} {who}")
    print(f"  {sum(points_read.values()) / raw:6.3f}  total")
    print("points written per raw point, by measurement:")
    for measurement, n in sorted(points_written.items(), key=lambda kv: -kv[1]):
        print(f"  {n / raw:6.3f}  {measurement}")
    print(f"  {sum(points_written.values()) / raw:6.3f}  total")
    print("largest frame read, MiB in pandas:", {m: round(v, 1) for m, v in largest_mib.items() if v})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
