"""``INFLUX_ASSETS_EXECUTOR=celery`` for real: a private Redis, two ``dagster-celery`` workers, a daemon.

Every process gets the variables a deployment sets (``INFLUX_ASSETS_EXECUTOR``, ``CELERY_BROKER_URL``,
``CELERY_RESULT_BACKEND``, the ``INFLUXDB_*`` ones, a shared ``ARCHIVE_URL``, one ``DAGSTER_HOME``), the
workers their settings from ``deploy/celery-worker.yaml``, and runs are launched with ``dagster job
launch`` on the code location ``influx_assets.definitions`` with **no run config**, as backfills,
schedules and sensors launch them: the executor must come from the environment, not from the launch.

* A range run of every simulated hour and then the daily run of the day: both succeed, every step is
  a Celery task, the steps run on both workers (the worker's name is the one Dagster records in each
  step's "Executing steps … in celery worker" engine event), and the windows equal a fault-free
  in-process run.
* The pool process running a step is SIGKILLed mid-step: its worker reports the task lost, the run
  fails (``WorkerLostError``), the daemon's run retry re-executes the step from the failure on a live
  worker, and the window holds one correct copy, within a bounded time (the repository's
  ``dagster.yaml``: the dead step's pool slot is freed 15 s after the run ended, the monitor looks
  every 5 s).
* A whole worker is SIGKILLed mid-step (all its processes, as a lost machine: nobody reports the task
  lost): with ``deploy/celery-worker.yaml`` (``task_acks_late``) the unacknowledged task goes to the
  other worker once the visibility timeout has passed, the same run finishes, and the window holds one
  correct copy. (Acknowledged on receipt, Celery's default, the task would be gone and the run would
  wait for its result for ever.)
* ``INFLUX_ASSETS_EXECUTOR=celery`` without ``CELERY_BROKER_URL`` does not load; a worker without
  ``CELERY_RESULT_BACKEND`` would store results where no run reads them.

The instance is SQLite on this one machine (every process shares the ``DAGSTER_HOME``).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
import yaml
from dagster import DagsterEventType, DagsterInstance, DagsterRun

from influx_assets.devtools.feed import write_simulation
from influx_assets.devtools.simulate import Simulation
from influx_assets.influxdb import InfluxDBResource
from influx_assets.resources import resources_for
from influx_assets.telemetry import ColdStorage, daily_assets
from influx_assets.telemetry.fingerprint import frame_fingerprint
from influx_assets_tests.celery_workers import (
    WORKER_CONFIG,
    WORKERS,
    CeleryWorkers,
    celery_deployment,
    launch_run,
    step_workers,
)
from influx_assets_tests.fault_proxy import Fault, FaultProxy
from influx_assets_tests.influxql_oracle import InfluxQLOracle
from influx_assets_tests.pipeline_harness import (
    BIN,
    REPO_CONFIG,
    REPO_ROOT,
    WindowContent,
    clean_reference,
    clean_window_reference,
    finished_run,
    hour_keys,
    location_env,
    open_instance,
    probing,
    rows,
    run_stages,
    small_simulation,
    wait_for,
    window_clause,
    window_contents,
    write_dagster_home,
)

if TYPE_CHECKING:  # the plugin module is imported by pytest, as a plugin (so its asserts are rewritten)
    from influx_assets_tests.redis_server import LocalRedis

pytest_plugins = ["influx_assets_tests.redis_server"]

DAILY_MEASUREMENTS = ("telemetry_1h", "sensor_features")
#: The lost-worker test's visibility timeout (deploy/celery-worker.yaml: 1800 s, longer than any step).
VISIBILITY_SECONDS = 15
#: Redis database numbers: each test its own broker and result backend, so no task outlives its test.
_DATABASES = itertools.count(0, 2)


@pytest.fixture(scope="module")
def simulation() -> Simulation:
    return small_simulation()


CeleryEnv = Callable[[str, str], dict[str, str]]


@pytest.fixture
def celery_env(redis_server: LocalRedis, tmp_path: Path) -> CeleryEnv:
    """``make(url, database)``: the environment of every process of a Celery deployment of the location."""
    broker = next(_DATABASES)
    home = write_dagster_home(tmp_path / "home", REPO_CONFIG)
    open_instance(home)  # storage created before the processes start

    def make(url: str, database: str) -> dict[str, str]:
        return location_env(
            home, url, database,
            INFLUX_ASSETS_EXECUTOR="celery",
            CELERY_BROKER_URL=redis_server.url(broker),
            CELERY_RESULT_BACKEND=redis_server.url(broker + 1),
            INFLUX_ASSETS_AUTOMATION="stopped",  # no schedule or sensor launches runs of its own
            ARCHIVE_URL=(tmp_path / "archive").as_uri(),  # "shared" storage: every worker is on this machine
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # dagster-celery starts `celery`
        )

    return make


def steps_with(instance: DagsterInstance, run_id: str, event_type: DagsterEventType) -> list:
    """The run's events of ``event_type`` that belong to a step."""
    return [e for e in instance.all_logs(run_id, of_type=event_type) if e.step_key]


def day_contents(oracle: InfluxQLOracle, day: str) -> dict[str, WindowContent]:
    """What each daily stage holds for ``day`` (``YYYY-MM-DD``), through the oracle."""
    where = window_clause(f"{day}-00:00", pd.Timedelta(days=1))
    found = {}
    for measurement in DAILY_MEASUREMENTS:
        stored = rows(oracle, measurement, where)
        found[measurement] = WindowContent(len(stored), frame_fingerprint(pd.DataFrame(stored)))
    return found


def assert_every_step_ran_on_celery(instance: DagsterInstance, run: DagsterRun) -> dict[str, set[str]]:
    assert run.run_config == {}, "the run was launched with run config"
    started = {e.step_key for e in steps_with(instance, run.run_id, DagsterEventType.STEP_START)}
    on_workers = step_workers(instance, run.run_id)
    assert started and set(on_workers) == started, f"not run as Celery tasks: {started - set(on_workers)}"
    return on_workers


@pytest.mark.slow
def test_runs_launched_without_run_config_execute_their_steps_on_both_celery_workers_to_correct_windows(
    influx_url: str, influxdb: InfluxDBResource, oracle: InfluxQLOracle, simulation: Simulation,
    celery_env: CeleryEnv, tmp_path: Path,
) -> None:
    keys = hour_keys(simulation)
    day = keys[0][:10]
    reference = clean_reference(influx_url, simulation)
    write_simulation(simulation, influxdb)
    env = celery_env(influx_url, influxdb.database)
    home = Path(env["DAGSTER_HOME"])
    instance = open_instance(home)
    started = time.monotonic()
    with celery_deployment(env):
        hourly_id = launch_run(env, "hourly_pipeline", {
            "dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1],
        })
        hourly = wait_for(lambda: finished_run(instance, hourly_id), 240, "the hourly range run", 1)
        hourly_seconds = time.monotonic() - started
        assert hourly.status.value == "SUCCESS"
        daily_id = launch_run(env, "daily_pipeline", {"dagster/partition": day})
        daily = wait_for(lambda: finished_run(instance, daily_id), 180, "the daily run", 1)
        assert daily.status.value == "SUCCESS"
    print(f"\nhourly range run ({len(keys)} windows): {hourly_seconds:.1f} s after start; "
          f"daily run: {time.monotonic() - started - hourly_seconds:.1f} s")

    hourly_workers = assert_every_step_ran_on_celery(instance, hourly)
    daily_workers = assert_every_step_ran_on_celery(instance, daily)
    assert set().union(*hourly_workers.values()) == set(WORKERS), hourly_workers
    assert set().union(*hourly_workers.values(), *daily_workers.values()) == set(WORKERS)
    # one run for the whole range (not one per window), and every window as a fault-free run stores it
    assert len([r for r in instance.get_runs() if r.job_name == "hourly_pipeline"]) == 1
    assert window_contents(oracle, keys) == reference
    # the daily stages as the Celery workers stored them = as an in-process run of the same day stores them
    by_celery = day_contents(oracle, day)
    assert all(content.points > 0 for content in by_celery.values()), by_celery
    in_process = run_stages(
        daily_assets, resources_for(influxdb, ColdStorage(base_url=str(tmp_path / "reference-archive"))),
        DagsterInstance.ephemeral(), partition_key=day,
    )
    assert in_process.success
    assert day_contents(oracle, day) == by_celery


@dataclass(frozen=True)
class HeldStep:
    """A run whose ``normalized_telemetry`` step is held mid-way on a Celery worker."""

    instance: DagsterInstance
    run_id: str
    pid: int  # the process executing the step (a pool process of the worker)
    worker: str


def launch_and_hold_normalize(
    env: Mapping[str, str], workers: CeleryWorkers, proxy: FaultProxy, key: str
) -> HeldStep:
    """Launch the hourly run of ``key`` (no run config); return once its normalize step is stuck mid-step.

    The proxy holds back the answer to the step's "does the window hold points?" query, so the step has
    started (its window read, its pool slot taken) and not finished when this returns.
    """
    proxy.inject(Fault.delay(90), where=probing("normalized_telemetry"))
    instance = open_instance(Path(env["DAGSTER_HOME"]))
    run_id = launch_run(env, "hourly_pipeline", {"dagster/partition": key})
    wait_for(lambda: proxy.requests(probing("normalized_telemetry")), 180, "the normalize step's probe")
    step = "normalized_telemetry"
    (start,) = [e for e in steps_with(instance, run_id, DagsterEventType.STEP_START) if e.step_key == step]
    assert not [e for e in steps_with(instance, run_id, DagsterEventType.STEP_SUCCESS) if e.step_key == step]
    pid = start.dagster_event.pid
    worker = workers.owner_of(pid)
    assert worker in WORKERS, f"pid {pid} that runs the step belongs to no worker"
    return HeldStep(instance, run_id, pid, worker)


@pytest.mark.slow
def test_a_step_process_killed_mid_step_fails_the_run_and_its_retry_rewrites_the_window_promptly(
    influx_url: str, influxdb: InfluxDBResource, oracle: InfluxQLOracle, simulation: Simulation,
    celery_env: CeleryEnv,
) -> None:
    key = hour_keys(simulation)[0]
    reference = clean_window_reference(influx_url, simulation, key)
    write_simulation(simulation, influxdb)
    with FaultProxy(influx_url) as proxy:
        env = celery_env(proxy.url, influxdb.database)
        with celery_deployment(env) as (workers, _daemon):
            held = launch_and_hold_normalize(env, workers, proxy, key)
            instance, run_id = held.instance, held.run_id
            os.kill(held.pid, signal.SIGKILL)  # the pool process running the step; its worker lives on
            killed_at = time.time()
            failed = wait_for(lambda: finished_run(instance, run_id), 60, "the run to fail", 0.5)
            retry = wait_for(lambda: _child_run(instance, run_id), 120, "the daemon's run retry", 0.5)
            done = wait_for(lambda: finished_run(instance, retry.run_id), 180, "the retry to finish", 0.5)
        probes = len(proxy.requests(probing("normalized_telemetry")))

    failed_at = instance.get_run_record_by_id(run_id).end_time
    record = instance.get_run_record_by_id(done.run_id)
    (dequeued,) = instance.all_logs(done.run_id, of_type=DagsterEventType.RUN_STARTING)  # left the queue
    timeline = (f"killed the step's process on {held.worker}; run failed {failed_at - killed_at:.1f} s later; "
                f"its retry left the queue {dequeued.timestamp - failed_at:.1f} s and started "
                f"{record.start_time - failed_at:.1f} s after the failure, and succeeded "
                f"{record.end_time - killed_at:.1f} s after the kill")
    print(f"\n{timeline}")
    assert failed.status.value == "FAILURE"
    (failure,) = instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)
    error = failure.dagster_event.event_specific_data.error.to_string()
    lost = "[normalized_telemetry]: billiard.exceptions.WorkerLostError: Worker exited prematurely: signal 9"
    assert lost in error
    # a run exception, not an asset failure: run_retries (retry_on_asset_or_op_failure: false) retry it
    assert failed.tags["dagster/failure_reason"] == "RUN_EXCEPTION"
    assert done.status.value == "SUCCESS", timeline
    assert done.tags["dagster/retry_number"] == "1" and done.tags["dagster/partition"] == key
    retried = step_workers(instance, done.run_id)
    assert "normalized_telemetry" in retried and "validate_telemetry" not in retried  # from the failure on
    assert probes == 2
    assert window_contents(oracle, [key]) == reference
    # the retry stays queued until the dead step's pool slot is freed: 15 s after its run ended, seen by
    # the monitor that looks every 5 s (~20-25 s in all; ~100 s with Dagster's default 120 s polling)
    assert dequeued.timestamp - failed_at < 50, timeline


@pytest.mark.slow
def test_a_whole_worker_lost_mid_step_hands_its_step_to_the_other_worker_in_the_same_run(
    influx_url: str, influxdb: InfluxDBResource, oracle: InfluxQLOracle, simulation: Simulation,
    celery_env: CeleryEnv, tmp_path: Path,
) -> None:
    key = hour_keys(simulation)[0]
    reference = clean_window_reference(influx_url, simulation, key)
    write_simulation(simulation, influxdb)
    # deploy/celery-worker.yaml with a visibility timeout the test can wait for (and a sweep every second)
    config = yaml.safe_load(WORKER_CONFIG.read_text())
    transport = config["execution"]["config"]["config_source"]["broker_transport_options"]
    transport |= {
        "visibility_timeout": VISIBILITY_SECONDS, "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    }
    (tmp_path / "worker.yaml").write_text(yaml.safe_dump(config))
    with FaultProxy(influx_url) as proxy:
        env = celery_env(proxy.url, influxdb.database)
        with celery_deployment(env, config=tmp_path / "worker.yaml") as (workers, _daemon):
            held = launch_and_hold_normalize(env, workers, proxy, key)
            instance, run_id = held.instance, held.run_id
            workers.kill(held.worker)  # the worker's every process at once: nobody reports the task lost
            killed_at = time.time()
            done = wait_for(lambda: finished_run(instance, run_id), 180, "the run to finish", 0.5)
        probes = len(proxy.requests(probing("normalized_telemetry")))

    survivor = next(name for name in WORKERS if name != held.worker)
    timeline = (f"killed worker {held.worker} mid-step; the run succeeded "
                f"{instance.get_run_record_by_id(run_id).end_time - killed_at:.1f} s after the kill")
    print(f"\n{timeline}")
    assert done.status.value == "SUCCESS", timeline
    assert _child_run(instance, run_id) is None  # no run retry: the step was redelivered within the run
    assert step_workers(instance, run_id)["normalized_telemetry"] == {held.worker, survivor}
    assert probes == 2
    assert window_contents(oracle, [key]) == reference


def _child_run(instance: DagsterInstance, run_id: str) -> DagsterRun | None:
    children = [r for r in instance.get_runs() if r.tags.get("dagster/parent_run_id") == run_id]
    return children[0] if children else None


def test_celery_without_a_broker_url_does_not_load_and_says_what_to_set(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_")}
    env |= {"INFLUX_ASSETS_EXECUTOR": "celery", "ARCHIVE_URL": (tmp_path / "archive").as_uri(),
            "DAGSTER_HOME": str(tmp_path), "PYTHONPATH": str(REPO_ROOT)}
    loaded = subprocess.run([sys.executable, "-W", "ignore", "-c", "import influx_assets.definitions"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert loaded.returncode != 0
    message = "INFLUX_ASSETS_EXECUTOR=celery needs CELERY_BROKER_URL (e.g. redis://"
    assert message in loaded.stderr, loaded.stderr[-2000:]


@pytest.mark.parametrize(
    ("backend", "worker_stores_in"), [(None, "rpc://"), ("redis://r:6379/1", "redis://r:6379/1")]
)
def test_a_worker_takes_its_result_backend_from_celery_result_backend_only(
    backend: str | None, worker_stores_in: str
) -> None:
    """Why every worker needs ``CELERY_RESULT_BACKEND``: without it, ``dagster_celery.app`` stores results
    with ``rpc://``, which a run reading the broker's Redis never sees (it would wait for ever)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_")}
    env["CELERY_BROKER_URL"] = "redis://r:6379/0"
    if backend:
        env["CELERY_RESULT_BACKEND"] = backend
    shown = subprocess.run(
        [sys.executable, "-W", "ignore", "-c",
         "from dagster_celery.app import app; print(app.conf.result_backend)"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )
    assert shown.stdout.strip().splitlines()[-1] == worker_stores_in
