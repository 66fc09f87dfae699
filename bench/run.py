"""Run the benchmarks: ``python -m bench.run [--quick] [--only P1,P2] [--trials 3]``.

Each benchmark is a function ``(BenchContext) -> list[Figure]`` registered below with the figure ids
it produces. Each one gets its own server (a fresh local ``influxd``, or ``INFLUXDB_URL``), prints its
raw trials, medians, ratio, goal and verdict as soon as it finishes, and all figures go to
``bench/results/<utc-stamp>.json`` plus a Markdown table on stdout. A benchmark whose module cannot be
imported (a pipeline stage not written yet) is reported as skipped, not failed.

Exit status: 0 when every figure that ran meets its goal, 1 when one misses, 2 on an error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from bench.common import BenchContext, bench_server, server_version
from bench.figures import Figure, machine, render_table, report, write_results


@dataclass(frozen=True)
class Benchmark:
    """A registered benchmark: which figures it yields and where its function lives."""

    ids: tuple[str, ...]
    module: str
    function: str
    summary: str

    def load(self) -> Callable[[BenchContext], list[Figure]]:
        """Import the function (ImportError when the code it measures does not exist yet)."""
        return getattr(importlib.import_module(self.module), self.function)


#: Add a benchmark here: ids, "bench.<module>", function name, one line.
#: P3 and P4 live in bench/pipeline_rates.py, P5 in bench/pipeline.py.
BENCHMARKS = (
    Benchmark(("P1", "P1b"), "bench.write_read", "write_benchmarks", "IO-manager write vs raw POST, client"),
    Benchmark(("P2",), "bench.write_read", "read_benchmark", "IO-manager read vs raw CSV fetch"),
    Benchmark(("P3",), "bench.pipeline_rates", "backfill_vs_loop", "7-day backfill of all stages vs a plain loop"),
    Benchmark(("P6", "P4"), "bench.pipeline_rates", "end_to_end",
              "server CPU of the pipeline vs ingest; end-to-end pipeline rate vs raw ingest"),
    Benchmark(("P5",), "bench.pipeline", "per_window_vs_range", "168 per-window runs vs one range run"),
    Benchmark(("P7",), "bench.launched_run", "launched_vs_in_process", "daemon-launched one-window run vs in-process"),
    Benchmark(("P8",), "bench.backfill_celery", "backfill_celery",
              "one-day range run on 2 Celery workers vs in-process"),
)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the selected benchmarks, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes in all)")
    parser.add_argument("--only", default="", help="comma-separated figure ids, e.g. P1,P2")
    parser.add_argument("--trials", type=int, default=3, help="interleaved trials per contender (median)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    wanted = {i.strip().lower() for i in args.only.split(",") if i.strip()}
    selected = [b for b in BENCHMARKS if not wanted or wanted & {i.lower() for i in b.ids}]
    if args.list or not selected:
        for bench in BENCHMARKS:
            print(f"{'/'.join(bench.ids):<8} {bench.module}.{bench.function}: {bench.summary}")
        return 0 if args.list else 2

    logging.getLogger("dagster").setLevel(logging.WARNING)  # IO-manager debug lines would bury the figures
    figures: list[Figure] = []
    skipped: dict[str, str] = {}
    errors: dict[str, str] = {}
    versions: dict[str, str] = {}
    started = time.perf_counter()
    for bench in selected:
        label = "/".join(bench.ids)
        try:
            function = bench.load()
        except (ImportError, AttributeError) as error:
            skipped[label] = f"{type(error).__name__}: {error}"
            print(f"\n{label}: skipped ({skipped[label]})")
            continue
        print(f"\n=== {label}: {bench.summary} ({'quick' if args.quick else 'full'} size)", flush=True)
        try:
            with bench_server() as server:
                context = BenchContext(
                    url=server.url, quick=args.quick, trials=args.trials, credentials=server.credentials,
                    server_pid=server.pid,
                )
                versions[label] = server_version(server.url, context.raw_client())
                for figure in function(context):
                    if not wanted or figure.id.lower() in wanted:
                        figures.append(figure)
                        report(figure)
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others
            errors[label] = traceback.format_exc()
            print(f"\n{label}: ERROR\n{errors[label]}", file=sys.stderr)

    context_info = {
        "mode": "quick" if args.quick else "full", "trials": args.trials, "machine": machine(),
        "influxdb_versions": versions, "skipped": skipped, "errors": errors,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    path = write_results(figures, context_info)
    print("\n" + render_table(figures))
    if skipped:
        print("\nskipped: " + ", ".join(skipped))
    print(f"\nresults: {path}")
    if errors:
        return 2
    return 0 if all(f.passed for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
