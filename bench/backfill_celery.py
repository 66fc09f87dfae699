"""P8: a one-day backfill (24 hourly windows in one range run) on two Celery workers vs in-process.

What a backfill of one day launches is one ``hourly_pipeline`` run over 24 windows
(``BackfillPolicy.multi_run``), queued and launched by ``dagster-daemon`` with no run config, so its
executor comes from ``INFLUX_ASSETS_EXECUTOR`` (:mod:`influx_assets.automation.executors`). Measured
here, each contender on the same simulated day (S1's, :mod:`bench.backfill_storage`) in a database of
its own, from the run's creation to its end in the run record (parts in the notes):

* ``celery_2_workers``: ``INFLUX_ASSETS_EXECUTOR=celery`` on a private Redis, two ``dagster-celery``
  workers of one process each (:class:`influx_assets_tests.celery_workers.CeleryWorkers`, with
  ``deploy/celery-worker.yaml``), every step a Celery task;
* ``in_process`` (the baseline, the code location's default): every step in the run worker.

On one machine Celery can only add cost (each step is a task that a worker picks up, plans and
reports back); the figure says how much, i.e. what distributing the steps must win back on more
machines. Each contender's processes (Redis, workers, daemon) start once, outside the timers, and
its trials run back to back on the same day (a re-run replaces the windows).

Run alone: ``python -m bench.backfill_celery [--trials 2]`` (or ``python -m bench.run --only P8``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from dagster import DagsterInstance
from dagster._core.instance.ref import InstanceRef

from bench.common import BenchContext, bench_server
from bench.figures import Figure, Goal, report
from bench.launched_run import run_parts
from influx_assets.devtools.feed import write_simulation
from influx_assets.devtools.simulate import Simulation, SimulationConfig, simulate
from influx_assets_tests.celery_workers import LOCATION, WORKERS, CeleryWorkers, launch_run, step_workers
from influx_assets_tests.pipeline_harness import Daemon, finished_run, wait_for
from influx_assets_tests.redis_server import LocalRedis

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DAY = pd.Timestamp("2025-05-05T00:00:00Z")  # S1's day
CONTENDERS = ("celery_2_workers", "in_process")


def p8_sizes(quick: bool) -> dict[str, object]:
    """S1's day (:mod:`bench.backfill_storage`): 24 windows of 20 sensors at 60 s, seed 17, either size."""
    return {"windows": 24, "sensors": 20, "cadence_seconds": 60.0, "seed": 17, "quick": quick}


def _key(hour: int) -> str:
    return (DAY + pd.Timedelta(hours=hour)).strftime("%Y-%m-%d-%H:%M")


def _steps_per_worker(instance: DagsterInstance, run_id: str) -> dict[str, int]:
    """How many steps each Celery worker executed (what Dagster recorded, :func:`step_workers`)."""
    counts: dict[str, int] = {}
    for workers in step_workers(instance, run_id).values():
        for name in workers:
            counts[name] = counts.get(name, 0) + 1
    return counts


def _environment(ctx: BenchContext, contender: str, home: Path, database: str) -> dict[str, str]:
    return {
        **os.environ, "DAGSTER_HOME": str(home), "INFLUXDB_URL": ctx.url, "INFLUXDB_DATABASE": database,
        "INFLUXDB_API": "v1", "INFLUX_ASSETS_AUTOMATION": "stopped", "ARCHIVE_URL": (home / "archive").as_uri(),
        "INFLUX_ASSETS_EXECUTOR": "celery" if contender == "celery_2_workers" else "in_process",
        "PYTHONPATH": str(REPO_ROOT), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **{f"INFLUXDB_{k.upper()}": v for k, v in ctx.credentials.items() if v},
    }


def _backfill_runs(ctx: BenchContext, contender: str, simulation: Simulation, trials: int) -> tuple[list, list]:
    """Start the contender's processes, run ``trials`` one-day range runs, stop them; totals and parts."""
    database = ctx.fresh_database(f"bench_p8_{contender}")
    write_simulation(simulation, ctx.resource(database), "all")
    home = Path(tempfile.mkdtemp(prefix=f"bench-p8-{contender}-"))
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = _environment(ctx, contender, home, database)
    instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    instance.get_runs(limit=1)  # storage created before the processes start
    redis = workers = None
    if contender == "celery_2_workers":
        redis = LocalRedis().start()
        env |= {"CELERY_BROKER_URL": redis.url(0), "CELERY_RESULT_BACKEND": redis.url(1)}
        workers = CeleryWorkers(WORKERS, env, home)
    daemon = Daemon(home, env, LOCATION)
    totals: list[float] = []
    parts: list[dict] = []
    try:
        if workers is not None:
            workers.wait_ready()
        time.sleep(5)  # the daemon's first iteration
        day = {"dagster/asset_partition_range_start": _key(0), "dagster/asset_partition_range_end": _key(23)}
        for _ in range(trials):
            run_id = launch_run(env, "hourly_pipeline", day)
            run = wait_for(lambda run_id=run_id: finished_run(instance, run_id), 900, f"P8 run {run_id}", 0.5)
            if run.status.value != "SUCCESS":
                raise RuntimeError(f"P8: {contender} run {run_id} ended {run.status.value}; see {home}")
            parts.append({**{k: round(v, 2) for k, v in run_parts(instance, run_id).items()},
                          "steps_per_worker": _steps_per_worker(instance, run_id)})
            totals.append(parts[-1]["total"])
    finally:
        daemon.stop()
        if workers is not None:
            workers.stop()
        if redis is not None:
            redis.stop()
        ctx.drop_database(database)
    shutil.rmtree(home, ignore_errors=True)
    return totals, parts


def backfill_celery(ctx: BenchContext) -> list[Figure]:
    """P8: one-day range run on two Celery workers / the same run in-process (both daemon-launched)."""
    size = p8_sizes(ctx.quick)
    simulation = simulate(SimulationConfig(
        start=DAY, end=DAY + pd.Timedelta(hours=24), sensors=int(size["sensors"]),  # type: ignore[arg-type]
        cadence_seconds=float(size["cadence_seconds"]), seed=int(size["seed"]),  # type: ignore[arg-type]
    ))
    size["raw_points"] = len(simulation.points)
    trials: dict[str, list[float]] = {}
    notes: dict[str, object] = {"trials_back_to_back_per_contender": True}
    for contender in CONTENDERS:
        trials[contender], notes[f"{contender}_runs"] = _backfill_runs(ctx, contender, simulation, ctx.trials)
    return [Figure.from_trials(
        "P8", "one-day backfill (24 windows, one run): 2 Celery workers vs in-process, one machine",
        "celery_2_workers", "in_process", "s", trials, Goal(3.0, at_least=False), size, notes,
    )]


def main(argv: list[str] | None = None) -> int:
    """Run P8 alone against a fresh local ``influxd`` (or ``INFLUXDB_URL``) and print the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trials", type=int, default=2)
    args = parser.parse_args(argv)
    with bench_server() as server:
        context = BenchContext(url=server.url, quick=args.quick, trials=args.trials,
                               credentials=server.credentials, server_pid=server.pid)
        for figure in backfill_celery(context):
            report(figure)
            print(figure.notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
