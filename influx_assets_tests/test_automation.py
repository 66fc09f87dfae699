"""Automation: schedule ticks, late-data re-runs, step retries with backoff, declared policies."""

import ast
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from dagster import (
    AssetKey,
    AssetSelection,
    Backoff,
    DagsterInstance,
    Jitter,
    build_schedule_context,
    build_sensor_context,
    materialize,
)

from influx_assets.automation.schedules import automation_running
from influx_assets.definitions import defs
from influx_assets.influxdb import InfluxDBConfigError
from influx_assets.devtools.feed import write_simulation
from influx_assets.automation.late_data import closed_windows, late_data_sensor, late_window_requests, stale_day_requests
from influx_assets.telemetry import ColdStorage, daily_assets, hourly_assets, pipeline_assets, pipeline_checks
from influx_assets.telemetry.partitions import hourly_windows
from influx_assets.telemetry.stage import DAILY_BACKFILL, HOURLY_BACKFILL
from influx_assets.resources import resources_for
from influx_assets.devtools.simulate import SimulationConfig, simulate

HOURLY = ["validated_telemetry", "quarantined_telemetry", "normalized_telemetry", "telemetry_5m", "telemetry_sliding_15m"]
DAILY = ["telemetry_1h", "telemetry_archive", "sensor_features"]


@pytest.mark.parametrize(
    ("schedule", "tick", "expected_partition"),
    [
        ("hourly_pipeline_schedule", datetime(2025, 3, 1, 11, 15, tzinfo=timezone.utc), "2025-03-01-10:00"),
        ("hourly_pipeline_schedule", datetime(2025, 3, 1, 0, 15, tzinfo=timezone.utc), "2025-02-28-23:00"),
        ("daily_pipeline_schedule", datetime(2025, 3, 2, 0, 45, tzinfo=timezone.utc), "2025-03-01"),
    ],
)
def test_a_schedule_tick_requests_the_window_that_closed(schedule: str, tick: datetime, expected_partition: str) -> None:
    schedule_def = defs.get_schedule_def(schedule)
    with DagsterInstance.ephemeral() as instance:
        context = build_schedule_context(instance=instance, scheduled_execution_time=tick)
        [request] = list(schedule_def.evaluate_tick(context).run_requests or [])
    assert request.partition_key == expected_partition


def test_schedules_are_on_by_default() -> None:
    statuses = {defs.get_schedule_def(name).default_status.value
                for name in ("hourly_pipeline_schedule", "daily_pipeline_schedule")}
    assert statuses == {"RUNNING"}


@pytest.mark.parametrize(("value", "running"), [(None, True), ("", True), ("running", True), (" Stopped ", False)])
def test_whether_automation_starts_running_is_configuration(value: str | None, running: bool) -> None:
    assert automation_running({} if value is None else {"INFLUX_ASSETS_AUTOMATION": value}) is running


def test_a_malformed_automation_state_is_refused_naming_the_variable() -> None:
    with pytest.raises(InfluxDBConfigError, match="INFLUX_ASSETS_AUTOMATION must be one of running, stopped; got 'off'"):
        automation_running({"INFLUX_ASSETS_AUTOMATION": "off"})


def test_stopped_automation_stops_what_launches_runs_and_keeps_the_observers() -> None:
    probe = (
        "from influx_assets.definitions import defs\n"
        "names = ['hourly_pipeline_schedule', 'daily_pipeline_schedule']\n"
        "print({n: defs.get_schedule_def(n).default_status.value for n in names})\n"
        "names = ['late_data_sensor', 'lookback_sensor', 'raw_telemetry_observer', 'pipeline_failure_sensor', 'pipeline_failure_spool_sensor']\n"
        "print({n: defs.get_sensor_def(n).default_status.value for n in names})\n"
    )
    env = {**os.environ, "INFLUX_ASSETS_AUTOMATION": "stopped"}
    shown = subprocess.run([sys.executable, "-W", "ignore", "-c", probe], env=env, capture_output=True, text=True, check=True)
    schedules, sensors = (ast.literal_eval(line) for line in shown.stdout.splitlines())
    assert schedules == {"hourly_pipeline_schedule": "STOPPED", "daily_pipeline_schedule": "STOPPED"}
    assert sensors == {"late_data_sensor": "STOPPED", "lookback_sensor": "STOPPED", "raw_telemetry_observer": "RUNNING",
                       "pipeline_failure_sensor": "RUNNING", "pipeline_failure_spool_sensor": "RUNNING"}


def test_jobs_select_exactly_the_hourly_and_the_daily_stages() -> None:
    for job, expected in [("hourly_pipeline", HOURLY), ("daily_pipeline", DAILY)]:
        selected = defs.resolve_job_def(job).asset_layer.selected_asset_keys
        assert sorted(k.to_user_string() for k in selected) == sorted(expected)


def test_every_stage_retries_with_exponential_backoff_and_jitter_and_backfills_in_ranges() -> None:
    for assets_def in [*hourly_assets, *daily_assets]:
        policy = assets_def.node_def.retry_policy
        assert policy.backoff == Backoff.EXPONENTIAL and policy.jitter == Jitter.PLUS_MINUS and policy.max_retries >= 2
        expected = HOURLY_BACKFILL if assets_def in hourly_assets else DAILY_BACKFILL
        assert assets_def.backfill_policy == expected


# --- late data -------------------------------------------------------------------------------------
DAY = "2025-04-02"
WINDOWS = ["2025-04-02-10:00", "2025-04-02-11:00"]


def run_keys(selection: list[str], partition: str, resources: dict, instance: DagsterInstance) -> None:
    result = materialize(
        [*pipeline_assets, *pipeline_checks], selection=AssetSelection.assets(*selection),
        partition_key=partition, resources=resources, instance=instance, raise_on_error=False,
    )
    assert result.success


def materialized(instance: DagsterInstance) -> dict[tuple[str, str], int]:
    """(asset, partition) -> number of materializations so far."""
    counts: dict[tuple[str, str], int] = {}
    for name in HOURLY + DAILY:
        for record in instance.fetch_materializations(AssetKey(name), limit=1000).records:
            key = (name, record.partition_key)
            counts[key] = counts.get(key, 0) + 1
    return counts


def test_late_points_rerun_exactly_their_window_and_its_day_once(influxdb, oracle, tmp_path) -> None:
    config = SimulationConfig(start=pd.Timestamp("2025-04-02T10:00Z"), end=pd.Timestamp("2025-04-02T12:00Z"),
                              sensors=8, seed=7)
    simulation = simulate(config)
    write_simulation(simulation, influxdb, "on_time")
    resources = resources_for(influxdb, ColdStorage(base_url=str(tmp_path)))
    instance = DagsterInstance.ephemeral()
    for window in WINDOWS:
        run_keys(HOURLY, window, resources, instance)
    run_keys(DAILY, DAY, resources, instance)
    assert late_window_requests(instance, influxdb, WINDOWS) == []
    assert stale_day_requests(instance, WINDOWS) == []
    before = materialized(instance)

    late = pd.DataFrame({
        "time": [pd.Timestamp("2025-04-02T11:30:00.5Z")], "site": ["site-late"], "sensor_id": ["late-1"],
        "kind": ["temperature"], "gateway": ["gw-9"], "value": [21.5], "unit": ["C"],
        "received_ns": [pd.Timestamp("2025-04-02T12:40Z").value],
    })
    influxdb.write_frame(late, "sensor_raw", ["site", "sensor_id", "kind", "gateway"])

    hourly_requests = late_window_requests(instance, influxdb, WINDOWS)
    assert [(r.job_name, r.partition_key) for r in hourly_requests] == [("hourly_pipeline", "2025-04-02-11:00")]
    assert late_window_requests(instance, influxdb, WINDOWS)[0].run_key == hourly_requests[0].run_key  # same change, same key
    assert stale_day_requests(instance, WINDOWS) == []  # the day waits for the hourly re-run
    run_keys(HOURLY, hourly_requests[0].partition_key, resources, instance)

    assert late_window_requests(instance, influxdb, WINDOWS) == []
    daily_requests = stale_day_requests(instance, WINDOWS)
    assert [(r.job_name, r.partition_key) for r in daily_requests] == [("daily_pipeline", DAY)]
    run_keys(DAILY, DAY, resources, instance)
    assert stale_day_requests(instance, WINDOWS) == []

    after = materialized(instance)
    rerun = {key for key in after if after[key] != before.get(key)}
    assert rerun == {(name, "2025-04-02-11:00") for name in HOURLY} | {(name, DAY) for name in DAILY}
    assert all(after[key] == before[key] + 1 for key in rerun)
    assert oracle.count("validated_telemetry", "value", "WHERE \"sensor_id\" = 'late-1'") == 1


def test_the_sensor_looks_at_recently_closed_windows_only(influxdb) -> None:
    now = pd.Timestamp("2025-04-03T05:20Z")
    windows = closed_windows(now, lookback=3)
    assert windows == ["2025-04-03-02:00", "2025-04-03-03:00", "2025-04-03-04:00"]
    with DagsterInstance.ephemeral() as instance, build_sensor_context(
        instance=instance, resources={"influxdb": influxdb}
    ) as context:
        result = late_data_sensor(context)
    assert result.run_requests == []  # nothing processed yet: the schedules' job, not the sensor's


def test_every_stage_has_owners_and_a_freshness_policy_its_schedule_can_meet() -> None:
    graph = defs.resolve_asset_graph()
    stages = [k for k in graph.materializable_asset_keys if graph.get(k).group_name == "telemetry"]
    assert len(stages) == 8  # every stage; raw_telemetry is external
    for key in stages:
        node = graph.get(key)
        assert node.owners == ["team:telemetry-pipeline"], key
        cadence = timedelta(hours=1) if node.partitions_def == hourly_windows else timedelta(days=1)
        policy = node.freshness_policy
        # a window is processed grace minutes after it closes, so a healthy stage is never older than
        # one cadence plus the grace: warn only beyond that, fail later still
        assert cadence + timedelta(minutes=40) < policy.warn_window.to_timedelta() < policy.fail_window.to_timedelta(), key
