"""The Dagster instance on PostgreSQL (``deploy/dagster.postgres.yaml``), on a private cluster.

* The config: every setting of ``dagster.yaml`` (pools, run limits, run retries, run monitoring) is
  the same, credentials come from ``DAGSTER_PG_*`` variables only, the driver is named, and the
  scripts never overwrite it in ``DAGSTER_HOME``.
* The instance it opens keeps runs, event logs and schedules in PostgreSQL; ``influx-assets
  init-pools`` creates the writer pools there (it failed with "No module named 'psycopg'" before the
  driver was named).
* Under a real ``dagster-daemon``: an asset backfill of 12 hourly windows (launched through GraphQL,
  as the demo does) goes through the queued run coordinator and stores every window as a fault-free
  run does; then a late point makes one ``late_data_sensor`` tick request exactly its window, and the
  re-run stores the point.

The racing-runs and killed-worker scenarios of ``test_run_recovery.py`` run on this instance too
(its ``instance_home`` fixture: ``[postgres]``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
import yaml
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.scheduler.instigation import InstigatorType, TickStatus
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from influx_assets.automation.pools import writer_pools
from influx_assets.devtools.demo import LAUNCH_BACKFILL
from influx_assets.devtools.feed import write_simulation
from influx_assets.influxdb import InfluxDBResource
from influx_assets_tests.influxql_oracle import InfluxQLOracle
from influx_assets_tests.pipeline_harness import (
    BIN,
    DAEMON_LOCATION,
    HOUR,
    HOURLY_MEASUREMENTS,
    POSTGRES_CONFIG,
    REPO_CONFIG,
    REPO_ROOT,
    Daemon,
    WindowContent,
    clean_reference,
    finished_run,
    hour_keys,
    hour_start,
    location_env,
    open_instance,
    small_simulation,
    wait_for,
    window_contents,
    write_dagster_home,
)

if TYPE_CHECKING:  # imported at run time by pytest_plugins only, so that pytest can rewrite its asserts
    from influx_assets_tests.postgres_server import LocalPostgres, PostgresHome

pytest_plugins = ["influx_assets_tests.postgres_server"]

#: Sections deploy/dagster.postgres.yaml sets on its own; every other section equals dagster.yaml's.
POSTGRES_ONLY = {"storage"}
#: Merged into the instance config: dequeue, monitor and free slots every second (the rest is kept).
FAST_DAEMON = {
    "run_monitoring": {"poll_interval_seconds": 1, "free_slots_after_run_end_seconds": 1},
    "run_coordinator": {"config": {"dequeue_interval_seconds": 1}},
}
HOURLY_KEYS = [AssetKey(name) for name in HOURLY_MEASUREMENTS]  # each hourly stage writes its own name
WINDOWS = 12


def test_the_postgres_config_keeps_every_setting_of_dagster_yaml_and_reads_credentials_from_env() -> None:
    repo, postgres = yaml.safe_load(REPO_CONFIG.read_text()), yaml.safe_load(POSTGRES_CONFIG.read_text())
    assert {"concurrency", "run_retries", "run_monitoring"} <= set(repo)
    assert {key: postgres.get(key) for key in set(repo) - POSTGRES_ONLY} == {
        key: repo[key] for key in set(repo) - POSTGRES_ONLY
    }
    assert set(postgres) == set(repo) | POSTGRES_ONLY
    database = postgres["storage"]["postgres"]["postgres_db"]
    assert {field: database[field] for field in ("hostname", "port", "username", "password", "db_name")} == {
        "hostname": {"env": "DAGSTER_PG_HOST"}, "port": {"env": "DAGSTER_PG_PORT"},
        "username": {"env": "DAGSTER_PG_USER"}, "password": {"env": "DAGSTER_PG_PASSWORD"},
        "db_name": {"env": "DAGSTER_PG_DB"},
    }
    assert database["scheme"] == "postgresql+psycopg2"  # the driver dagster-postgres installs
    assert postgres["run_coordinator"]["class"] == "QueuedRunCoordinator"


def test_the_scripts_never_overwrite_the_postgres_config_in_dagster_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(POSTGRES_CONFIG, home / "dagster.yaml")
    subprocess.run(["bash", "-c", "source scripts/env.sh"], cwd=REPO_ROOT,
                   env={**os.environ, "DAGSTER_HOME": str(home)}, check=True, timeout=60)
    assert (home / "dagster.yaml").read_text() == POSTGRES_CONFIG.read_text()


def test_the_postgres_instance_keeps_runs_events_and_schedules_in_postgres_with_the_repositorys_settings(
    postgres_home: PostgresHome, postgres_server: LocalPostgres, tmp_path: Path
) -> None:
    instance = open_instance(postgres_home())
    sqlite = open_instance(write_dagster_home(tmp_path / "sqlite", REPO_CONFIG))
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    assert instance.get_concurrency_config() == sqlite.get_concurrency_config()
    assert instance.run_monitoring_settings == sqlite.run_monitoring_settings
    assert instance.run_retries_enabled and instance.run_retries_max_retries == sqlite.run_retries_max_retries
    tables = set(postgres_server.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
                                     os.environ["DAGSTER_PG_DB"]).split())
    assert {"runs", "event_logs", "jobs", "job_ticks", "concurrency_limits"} <= tables
    instance.dispose()
    sqlite.dispose()


def test_init_pools_creates_the_writer_pools_in_the_postgres_instance(
    postgres_home: PostgresHome, postgres_server: LocalPostgres
) -> None:
    home = postgres_home()
    pools = writer_pools()
    init = subprocess.run([str(BIN / "influx-assets"), "init-pools"], cwd=REPO_ROOT,
                          env={**os.environ, "DAGSTER_HOME": str(home)}, capture_output=True, text=True,
                          timeout=120, check=False)
    assert init.returncode == 0, init.stdout + init.stderr[-3000:]
    assert init.stdout.strip() == f"init-pools: {len(pools)} created, 0 already there"
    # read back with psql, not through Dagster: one slot per pool, as concurrency.pools.default_limit says
    slots = postgres_server.sql(
        "SELECT concurrency_key, count(*) FROM concurrency_slots GROUP BY concurrency_key ORDER BY 1",
        os.environ["DAGSTER_PG_DB"],
    )
    assert slots.split() == [f"{pool}|1" for pool in pools]


# --- under a real dagster-daemon -----------------------------------------------------------------


@dataclass
class DaemonBackfill:
    """A daemon serving ``daemon_defs`` on a PostgreSQL instance, after its backfill of ``keys``."""

    instance: DagsterInstance
    env: dict[str, str]
    daemon: Daemon
    influxdb: InfluxDBResource
    oracle: InfluxQLOracle
    keys: list[str]
    reference: dict[tuple[str, str], WindowContent]
    stored: dict[tuple[str, str], WindowContent]  # window contents right after the backfill
    backfill_id: str
    runs: list[DagsterRun]


def launch_backfill(env: dict[str, str], keys: list[str], output: Path) -> subprocess.Popen[str]:
    """Start an asset backfill of the hourly stages over ``keys`` through GraphQL (``dagster-graphql``)."""
    params = {
        "assetSelection": [{"path": key.path} for key in HOURLY_KEYS], "partitionNames": keys,
        "fromFailure": False, "tags": [],
    }
    return subprocess.Popen(
        [str(BIN / "dagster-graphql"), *DAEMON_LOCATION, "-t", LAUNCH_BACKFILL,
         "-v", json.dumps({"params": params}), "-o", str(output)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def launched_backfill(launch: subprocess.Popen[str], output: Path) -> str:
    """The id of the backfill :func:`launch_backfill` launched."""
    printed = launch.communicate(timeout=120)[0]
    assert launch.returncode == 0, printed[-3000:]
    result = json.loads(output.read_text())["data"]["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return str(result["backfillId"])


def backfill_done(instance: DagsterInstance, backfill_id: str, keys: list[str]) -> list[DagsterRun] | None:
    """The backfill's runs once they have all finished and every hourly stage holds every window."""
    runs = list(instance.get_runs(filters=RunsFilter(tags={"dagster/backfill": backfill_id})))
    if not runs or not all(run.is_finished for run in runs):
        return None
    if any(run.status != DagsterRunStatus.SUCCESS for run in runs):
        return runs  # nothing more will come: let the test say what failed
    materialized = all(set(keys) <= instance.get_materialized_partitions(key) for key in HOURLY_KEYS)
    return runs if materialized else None


@pytest.fixture(scope="module")
def daemon_backfill(
    influx_url: str, postgres_server: LocalPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonBackfill]:
    """The last 12 closed hourly windows, simulated and backfilled by the daemon on a PostgreSQL instance."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    simulation = small_simulation(start=(now - WINDOWS * HOUR).isoformat(), hours=WINDOWS)
    keys = hour_keys(simulation)
    influxdb = InfluxDBResource(url=influx_url, api="v1", database=f"test_{uuid.uuid4().hex[:12]}")
    influxdb.ensure_database()
    oracle = InfluxQLOracle(influx_url, influxdb.database)
    write_simulation(simulation, influxdb)
    database = postgres_server.create_database()
    root = tmp_path_factory.mktemp("postgres_daemon")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in postgres_server.environment(database).items():
            patch.setenv(name, value)
        home = write_dagster_home(root / "home", POSTGRES_CONFIG, FAST_DAEMON)
        instance = open_instance(home)
        # the late-data sensor starts switched off: only the backfill launches runs until a test starts it
        env = location_env(home, influx_url, influxdb.database, INFLUX_ASSETS_AUTOMATION="stopped")
        # launched before the daemon starts (its backfill loop looks for new backfills every 30 s), and
        # while this process computes the reference
        launch = launch_backfill(env, keys, root / "backfill.json")
        reference = clean_reference(influx_url, simulation)
        backfill_id = launched_backfill(launch, root / "backfill.json")
        daemon = Daemon(home, env, DAEMON_LOCATION)
        try:
            try:
                runs = wait_for(lambda: backfill_done(instance, backfill_id, keys), 240, "the backfill")
            except Exception as error:
                raise AssertionError(f"{error}\n--- daemon log ---\n{daemon.tail()}") from error
            stored = window_contents(oracle, keys)
            yield DaemonBackfill(
                instance, env, daemon, influxdb, oracle, keys, reference, stored, backfill_id, runs
            )
        finally:
            daemon.stop()
            instance.dispose()
            oracle.drop_database()
            postgres_server.drop_database(database)


def test_a_daemon_backfill_of_12_hourly_windows_on_postgres_is_queued_and_stores_each_window_as_a_clean_run(
    daemon_backfill: DaemonBackfill,
) -> None:
    backfill = daemon_backfill
    instance = backfill.instance
    assert len(backfill.keys) == WINDOWS and instance.get_backfill(backfill.backfill_id) is not None
    assert backfill.runs and all(run.status == DagsterRunStatus.SUCCESS for run in backfill.runs), [
        (run.run_id, run.status) for run in backfill.runs
    ]
    for run in backfill.runs:
        events = {e.dagster_event.event_type for e in instance.all_logs(run.run_id) if e.dagster_event}
        # the queued run coordinator held it and the daemon launched it
        assert {DagsterEventType.RUN_ENQUEUED, DagsterEventType.RUN_STARTING} <= events, run.run_id
        # a range run (the hourly stages' backfill policy), starting at the first window
        assert run.tags["dagster/asset_partition_range_start"] == backfill.keys[0]
    differing = sorted(key for key in backfill.reference if backfill.stored[key] != backfill.reference[key])
    assert not differing, differing
    assert {key for key in backfill.stored} == {(m, k) for m in HOURLY_MEASUREMENTS for k in backfill.keys}


def sensor_runs(instance: DagsterInstance) -> list[DagsterRun]:
    return list(instance.get_runs(filters=RunsFilter(tags={"dagster/sensor_name": "late_data_sensor"})))


def test_a_late_data_tick_on_postgres_requests_exactly_the_changed_window_and_its_rerun_stores_the_point(
    daemon_backfill: DaemonBackfill,
) -> None:
    backfill = daemon_backfill
    instance = backfill.instance
    window = backfill.keys[5]
    at = hour_start(window) + pd.Timedelta("30min 500ms")
    received = at + pd.Timedelta(minutes=70)  # as in test_automation.py: after its window was processed
    late = pd.DataFrame({
        "time": [at], "site": ["site-late"], "sensor_id": ["late-1"], "kind": ["temperature"],
        "gateway": ["gw-9"], "value": [21.5], "unit": ["C"], "received_ns": [received.value],
    })
    backfill.influxdb.write_frame(late, "sensor_raw", ["site", "sensor_id", "kind", "gateway"])
    start = subprocess.run(
        [str(BIN / "dagster"), "sensor", "start", "late_data_sensor", *DAEMON_LOCATION],
        cwd=REPO_ROOT, env=backfill.env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert start.returncode == 0, start.stdout[-2000:] + start.stderr[-2000:]
    try:
        run = wait_for(lambda: sensor_runs(instance), 90, "the late-data sensor's run")[0]
        done = wait_for(lambda: finished_run(instance, run.run_id), 120, "the late-data re-run to finish")
    except Exception as error:
        raise AssertionError(f"{error}\n--- daemon log ---\n{backfill.daemon.tail()}") from error

    (state,) = [s for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
                if s.instigator_name == "late_data_sensor"]
    requesting = [t for t in instance.get_ticks(state.instigator_origin_id, state.selector_id) if t.run_ids]
    assert [(t.status, t.run_ids) for t in requesting] == [(TickStatus.SUCCESS, [run.run_id])]
    assert (run.job_name, run.tags["dagster/partition"], run.tags["influx_assets/trigger"]) == (
        "hourly_pipeline", window, "late_data")
    assert [r.run_id for r in sensor_runs(instance)] == [run.run_id]  # exactly one window, no day yet
    assert done.status == DagsterRunStatus.SUCCESS, backfill.daemon.tail()
    assert backfill.oracle.count("validated_telemetry", "value", "WHERE \"sensor_id\" = 'late-1'") == 1
    others = [key for key in backfill.keys if key != window]
    unchanged = {key: content for key, content in backfill.stored.items() if key[1] != window}
    assert window_contents(backfill.oracle, others) == unchanged
