"""S1: a one-day backfill under ``dagster-daemon`` on PostgreSQL instance storage against SQLite.

``python -m bench.backfill_storage [--trials 1] [--modes range,per_window]`` (or registered in
:mod:`bench.run`). The same simulated day (24 hourly windows, 20 sensors at 60 s, seed 17) is written
outside the timers into a fresh InfluxDB database per side and trial; each side gets a fresh
``DAGSTER_HOME``: the repository's ``dagster.yaml`` (SQLite under ``DAGSTER_HOME``) or
``deploy/dagster.postgres.yaml`` on a fresh database of a private PostgreSQL cluster
(:class:`influx_assets_tests.postgres_server.LocalPostgres`) with PostgreSQL's default, durable
settings (fsync on, unlike the tests' cluster). Both run the production code location
(``influx_assets.definitions``, its executor from ``INFLUX_ASSETS_EXECUTOR``, schedules and the
late-data sensor switched off) with the queued run coordinator and the same pools and limits.

Two ways of backfilling the day (``--modes``):

* ``range`` — an asset backfill of the hourly stages launched through GraphQL, as the demo does; the
  stages' backfill policy makes range runs of up to 24 windows (the daemon may add a run for the
  lookback stage in a later loop);
* ``per_window`` — ``dagster job backfill`` of ``hourly_pipeline``: 24 single-window runs through the
  queue, at most two at a time (the ``dagster/backfill`` limit of the instance config).

Each instance gets its writer pools first (``influx-assets init-pools``, as ``scripts/demo.sh`` does:
without it, per-window runs racing to create a pool fail on PostgreSQL). The backfill is created
before the daemon starts (the backfill daemon looks for new backfills every
30 s); the timer runs from the daemon's start to the end of the backfill's last run (run records).
The notes split it into the wait until the daemon launches the first run (start-up and first
loops) and the runs' own execution time. Every run must succeed and both sides must store the same point
counts in every hourly measurement. Ratio: PostgreSQL wall time / SQLite wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.instance.ref import InstanceRef

from bench.common import BenchContext, bench_server, interleaved_trials, server_version
from bench.figures import Figure, Goal, machine, render_table, report, write_results
from influx_assets.devtools.demo import LAUNCH_BACKFILL
from influx_assets.devtools.feed import write_simulation
from influx_assets.devtools.simulate import SimulationConfig, simulate
from influx_assets.influxdb.client.influxql import quote_ident
from influx_assets_tests.postgres_server import LocalPostgres

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
START = pd.Timestamp("2025-05-05T00:00:00Z")
WINDOWS = 24
LOCATION = ["-m", "influx_assets.definitions"]
STAGES = ("validated_telemetry", "quarantined_telemetry", "normalized_telemetry", "telemetry_5m",
          "telemetry_sliding_15m")
MODES = ("range", "per_window")
CONFIGS = {"sqlite": REPO_ROOT / "dagster.yaml", "postgres": REPO_ROOT / "deploy" / "dagster.postgres.yaml"}


def _keys() -> list[str]:
    return [(START + pd.Timedelta(hours=h)).strftime("%Y-%m-%d-%H:%M") for h in range(WINDOWS)]


def _launch(mode: str, env: dict[str, str], home: Path) -> str:
    """Create the backfill (no daemon running yet); returns its id (its runs' ``dagster/backfill`` tag)."""
    keys = _keys()
    if mode == "range":
        params = {"assetSelection": [{"path": [s]} for s in STAGES], "partitionNames": keys,
                  "fromFailure": False, "tags": []}
        output = home / "backfill.json"
        subprocess.run([str(BIN / "dagster-graphql"), *LOCATION, "-t", LAUNCH_BACKFILL,
                        "-v", json.dumps({"params": params}), "-o", str(output)],
                       cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=300)
        result = json.loads(output.read_text())["data"]["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"S1: backfill not launched: {result}")
        return str(result["backfillId"])
    done = subprocess.run([str(BIN / "dagster"), "job", "backfill", *LOCATION, "-j", "hourly_pipeline",
                           "--from", keys[0], "--to", keys[-1], "--noprompt"],
                          cwd=REPO_ROOT, env=env, check=True, capture_output=True, text=True, timeout=600)
    return done.stdout.rsplit("Launched backfill job `", 1)[1].split("`", 1)[0]


def _finished_runs(instance: DagsterInstance, backfill_id: str) -> list | None:
    """The backfill's runs once all have finished and every stage holds every window (or a run failed)."""
    runs = instance.get_runs(filters=RunsFilter(tags={"dagster/backfill": backfill_id}))
    if not runs or not all(r.is_finished for r in runs):
        return None
    if any(r.status != DagsterRunStatus.SUCCESS for r in runs):
        return list(runs)
    keys = set(_keys())
    done = all(keys <= instance.get_materialized_partitions(AssetKey(stage)) for stage in STAGES)
    return list(runs) if done else None


def _stored_counts(ctx: BenchContext, database: str) -> dict[str, int]:
    counts = {}
    for measurement in STAGES:
        body = ctx.raw_client().query(f"SELECT count(*) FROM {quote_ident(measurement)}", database)
        series = json.loads(body)["results"][0].get("series", [])
        counts[measurement] = max(series[0]["values"][0][1:], default=0) if series else 0
    return counts


def _one_backfill(ctx: BenchContext, storage: str, mode: str, trial: int, postgres: LocalPostgres,
                  simulation: object, record: Callable[[dict[str, object]], None]) -> float:
    """One backfill of the day on ``storage``; returns its wall seconds (daemon start to last run end)."""
    database = ctx.fresh_database(f"bench_s1_{mode}_{storage}_{trial}")
    write_simulation(simulation, ctx.resource(database), "all")  # type: ignore[arg-type]
    home = Path(tempfile.mkdtemp(prefix=f"bench-s1-{storage}-"))
    shutil.copy(CONFIGS[storage], home / "dagster.yaml")
    pg_database = postgres.create_database() if storage == "postgres" else None
    env = {
        **os.environ, "DAGSTER_HOME": str(home), "INFLUXDB_URL": ctx.url, "INFLUXDB_DATABASE": database,
        "INFLUXDB_API": "v1", "INFLUX_ASSETS_AUTOMATION": "stopped", "ARCHIVE_URL": str(home / "archive"),
        "PYTHONPATH": str(REPO_ROOT),
        **{f"INFLUXDB_{k.upper()}": v for k, v in ctx.credentials.items() if v},
        **(postgres.environment(pg_database) if pg_database else {}),
    }
    saved = dict(os.environ)
    os.environ.update(env)  # the instance opened here resolves the config's env: references
    instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    instance.get_runs(limit=1)  # storage created before the daemon starts
    daemon = None
    succeeded = False
    try:
        # as scripts/demo.sh does and the README prescribes: on PostgreSQL, two runs creating a pool at
        # the same instant can fail one of them (dagster-postgres: InFailedSqlTransaction)
        subprocess.run([str(BIN / "influx-assets"), "init-pools"], cwd=REPO_ROOT, env=env, check=True,
                       capture_output=True, timeout=300)
        backfill_id = _launch(mode, env, home)
        log = (home / "daemon.log").open("wb")
        started = time.time()
        daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", *LOCATION], cwd=REPO_ROOT, env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 1800
        while not (runs := _finished_runs(instance, backfill_id)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"S1 {storage} {mode}: backfill unfinished; see {home / 'daemon.log'}")
            time.sleep(0.5)
        failed = [r.run_id for r in runs if r.status != DagsterRunStatus.SUCCESS]
        if failed:
            raise RuntimeError(f"S1 {storage} {mode}: runs failed: {failed}; see {home / 'daemon.log'}")
        records = [instance.get_run_record_by_id(r.run_id) for r in runs]
        launched = min(  # RUN_STARTING: the daemon took the run off the queue and launched it
            event.timestamp for run in runs
            for event in instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_STARTING)
        )
        wall = max(rec.end_time for rec in records) - started  # type: ignore[union-attr]
        record({
            "storage": storage, "mode": mode, "trial": trial, "wall_s": round(wall, 2), "runs": len(runs),
            "until_first_launch_s": round(launched - started, 2),
            "run_execution_s": round(sum(r.end_time - r.start_time for r in records), 2),  # type: ignore
            "stored": _stored_counts(ctx, database),
        })
        succeeded = True
        return wall
    finally:
        if daemon is not None:
            os.killpg(daemon.pid, 15)
            daemon.wait(timeout=60)
        instance.dispose()
        os.environ.clear()
        os.environ.update(saved)
        ctx.drop_database(database)
        if pg_database:
            postgres.drop_database(pg_database)
        if succeeded:  # else its daemon.log tells what happened
            shutil.rmtree(home, ignore_errors=True)


def backfill_storage(ctx: BenchContext, modes: tuple[str, ...] = MODES) -> list[Figure]:
    """S1 (range run) and S1b (per-window runs): PostgreSQL / SQLite wall time of a day's daemon backfill."""
    end = START + pd.Timedelta(hours=WINDOWS)
    simulation = simulate(SimulationConfig(start=START, end=end, sensors=20, cadence_seconds=60.0, seed=17))
    size = {"windows": WINDOWS, "sensors": 20, "cadence_seconds": 60.0, "raw_points": len(simulation.points)}
    postgres = LocalPostgres(settings={}).start()  # PostgreSQL's defaults: durable commits
    figures = []
    try:
        version = postgres.sql("SHOW server_version").strip()
        for mode, figure_id in zip(MODES, ("S1", "S1b")):
            if mode not in modes:
                continue
            details: list[dict[str, object]] = []
            def side(storage: str, mode: str = mode, details: list = details) -> Callable[[int], float]:
                record = details.append
                return lambda trial: _one_backfill(ctx, storage, mode, trial, postgres, simulation, record)

            contenders = {storage: side(storage) for storage in ("postgres", "sqlite")}
            trials = interleaved_trials(contenders, ctx.trials)
            stored = {json.dumps(d["stored"], sort_keys=True) for d in details}
            notes: dict[str, object] = {"postgresql": version, "trials_detail": details}
            if len(stored) != 1:
                notes["WARNING_stored_points_differ"] = True
            runs = "range runs" if mode == "range" else f"{WINDOWS} single-window runs"
            figures.append(Figure.from_trials(
                figure_id, f"one-day daemon backfill ({runs}): PostgreSQL vs SQLite instance", "postgres",
                "sqlite", "s", trials, Goal(1.25, at_least=False), {**size, "mode": mode}, notes,
            ))
    finally:
        postgres.stop()
    return figures


def main(argv: list[str] | None = None) -> int:
    """Run S1/S1b against a fresh ``influxd`` (or ``INFLUXDB_URL``); print the wall times and the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1, help="interleaved trials per storage (median)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: range, per_window")
    args = parser.parse_args(argv)
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    started = time.perf_counter()
    with bench_server() as server:
        ctx = BenchContext(url=server.url, quick=False, trials=args.trials, credentials=server.credentials,
                           server_pid=server.pid)
        influxdb_version = server_version(server.url, ctx.raw_client())
        figures = backfill_storage(ctx, modes)
    for figure in figures:
        report(figure)
        for detail in figure.notes["trials_detail"]:  # type: ignore[union-attr]
            print(f"  {detail['storage']:<8} {detail['mode']:<10} trial {detail['trial']}:"
                  f" wall {detail['wall_s']} s"
                  f" ({detail['runs']} run(s); first launched after {detail['until_first_launch_s']} s;"
                  f" runs executing {detail['run_execution_s']} s)")
    path = write_results(figures, {
        "trials": args.trials, "machine": machine(), "influxdb_versions": {"S1": influxdb_version},
        "wall_seconds": round(time.perf_counter() - started, 1),
    })
    print("\n" + render_table(figures))
    print(f"\nresults: {path}")
    return 0 if all(f.passed for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
