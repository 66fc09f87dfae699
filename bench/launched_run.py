"""P7: a daemon-launched run of one hourly window against an in-process run of the same job.

What the schedules and sensors launch is one ``hourly_pipeline`` run of one window, queued and then
launched by ``dagster-daemon`` into a run worker process, executing with the code location's executor
(``INFLUX_ASSETS_EXECUTOR``, :mod:`influx_assets.automation.executors`). The baseline is what the
work costs: ``materialize`` of the same stages and checks in this process, on the next window of the
same simulation. Measured: from the run's creation (queued) to its end in the instance's run record,
with the parts (queue wait until the daemon dequeues it, worker start, execution) in the notes.

The daemon and the Dagster instance (the repository's ``dagster.yaml``: queued coordinator, pools)
are started once, outside the timers; schedules and sensors are switched off
(``INFLUX_ASSETS_AUTOMATION=stopped``) so only the measured runs exist.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from dagster import AssetSelection, DagsterEventType, DagsterInstance, materialize
from dagster._core.instance.ref import InstanceRef

from bench.common import BenchContext, interleaved_trials
from bench.figures import Figure, Goal
from influx_assets.devtools.feed import write_simulation
from influx_assets.devtools.simulate import SimulationConfig, simulate
from influx_assets.resources import resources_for
from influx_assets.telemetry import ColdStorage, hourly_assets, pipeline_assets, pipeline_checks

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
START = pd.Timestamp("2025-05-01T00:00:00Z")
LOCATION = ["-m", "influx_assets.definitions"]


def p7_sizes(quick: bool) -> dict[str, object]:
    """20 sensors at 10 s (the issue's window), either way: the figure is about fixed costs."""
    return {"sensors": 20, "cadence_seconds": 10.0, "windows_per_trial": 2, "quick": quick}


def _key(hour: int) -> str:
    return (START + pd.Timedelta(hours=hour)).strftime("%Y-%m-%d-%H:%M")


def run_parts(instance: DagsterInstance, run_id: str) -> dict[str, float]:
    """A daemon-launched run's seconds: total, queued (until RUN_STARTING), worker start, execution."""
    record = instance.get_run_record_by_id(run_id)
    assert record is not None and record.end_time is not None and record.start_time is not None
    created = record.create_timestamp.timestamp()
    # the daemon takes the run off the queue and marks it STARTING when it launches its run worker
    starting = next(
        (e.timestamp for e in instance.all_logs(run_id, of_type=DagsterEventType.RUN_STARTING)), None
    )
    if starting is None:
        raise RuntimeError(f"P7: run {run_id} has no RUN_STARTING event: was it launched by the daemon?")
    return {
        "total": record.end_time - created,
        "queued": starting - created,
        "worker_start": record.start_time - starting,
        "execution": record.end_time - record.start_time,
    }


def launched_vs_in_process(ctx: BenchContext) -> list[Figure]:
    """P7: daemon-launched single-window run / in-process run of the same stages and checks."""
    size = p7_sizes(ctx.quick)
    hours = ctx.trials * 2
    simulation = simulate(SimulationConfig(
        start=START, end=START + pd.Timedelta(hours=hours), sensors=int(size["sensors"]),  # type: ignore[arg-type]
        cadence_seconds=float(size["cadence_seconds"]), seed=5,  # type: ignore[arg-type]
    ))
    size["raw_points_per_window"] = len(simulation.points) // hours
    database = ctx.fresh_database("bench_p7")
    influxdb = ctx.resource(database)
    write_simulation(simulation, influxdb, "all")
    home = Path(tempfile.mkdtemp(prefix="bench-p7-home-"))
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ, "DAGSTER_HOME": str(home), "INFLUXDB_URL": ctx.url, "INFLUXDB_DATABASE": database,
        "INFLUXDB_API": "v1", "INFLUX_ASSETS_AUTOMATION": "stopped", "ARCHIVE_URL": str(home / "archive"),
        **{f"INFLUXDB_{k.upper()}": v for k, v in ctx.credentials.items() if v},
    }
    instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    instance.get_runs(limit=1)  # storage created before the daemon starts
    log = (home / "daemon.log").open("wb")
    daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", *LOCATION], cwd=REPO_ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    parts: list[dict[str, float]] = []
    resources = resources_for(influxdb, ColdStorage(base_url=str(home / "archive-in-process")))
    selection = AssetSelection.assets(*[k for a in hourly_assets for k in a.keys])
    try:
        time.sleep(5)  # the daemon's first iteration

        def launched(trial: int) -> float:
            key = _key(2 * trial)
            before = {r.run_id for r in instance.get_runs()}
            subprocess.run(
                [str(BIN / "dagster"), "job", "launch", *LOCATION, "-j", "hourly_pipeline",
                 "--tags", f'{{"dagster/partition": "{key}"}}'],
                cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=300,
            )
            (run_id,) = {r.run_id for r in instance.get_runs()} - before
            deadline = time.monotonic() + 600
            while not (run := instance.get_run_by_id(run_id)).is_finished:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"P7: launched run {run_id} did not finish; see {home / 'daemon.log'}")
                time.sleep(0.2)
            if run.status.value != "SUCCESS":
                raise RuntimeError(f"P7: launched run {run_id} ended {run.status.value}")
            parts.append(run_parts(instance, run_id))
            return parts[-1]["total"]

        def in_process(trial: int) -> float:
            key = _key(2 * trial + 1)
            started = time.perf_counter()
            result = materialize([*pipeline_assets, *pipeline_checks], selection=selection, partition_key=key,
                                 resources=resources, instance=DagsterInstance.ephemeral(), raise_on_error=False)
            elapsed = time.perf_counter() - started
            if not result.success:
                raise RuntimeError("P7: the in-process run failed")
            return elapsed

        trials = interleaved_trials({"daemon_launched_run": launched, "in_process_run": in_process}, ctx.trials)
    finally:
        os.killpg(daemon.pid, 15)
        daemon.wait(timeout=60)
        log.close()
        ctx.drop_database(database)
    executor = os.environ.get("INFLUX_ASSETS_EXECUTOR", "in_process") or "in_process"
    notes = {
        "executor": executor,
        "launched_run_parts_s": [{k: round(v, 2) for k, v in p.items()} for p in parts],
    }
    return [Figure.from_trials(
        "P7", f"daemon-launched one-window run vs in-process run ({executor} executor)",
        "daemon_launched_run", "in_process_run", "s", trials, Goal(2.0, at_least=False), size, notes,
    )]
