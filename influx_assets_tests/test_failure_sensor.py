"""The operator's view of failures: none lost in an outage, the cause on the run, late-data ticks explained.

Real parts only: runs fail for real on a temporary Dagster instance (SQLite on disk), sensors are
evaluated through Dagster's own tick path (``evaluate_tick``, which moves the run-failure sensor's
cursor as the daemon would), InfluxDB is a real ``influxd`` (stopped and restarted for the outage), and
what was stored is read back through the independent InfluxQL oracle.
"""

import json
from pathlib import Path

import pandas as pd
import pytest
from dagster import (
    AssetKey,
    AssetSelection,
    DagsterEventType,
    DagsterInstance,
    RetryPolicy,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    asset,
    build_sensor_context,
    instance_for_test,
    materialize,
)
from dagster._core.definitions.sensor_definition import SensorExecutionData
from dagster._core.instance.ref import InstanceRef

from influx_assets.automation.failure_spool import (
    SPOOL_KEY,
    StageFailure,
    pipeline_failure_spool_sensor,
    spool_failures,
    spooled_failures,
)
from influx_assets.automation.late_data import late_data_sensor
from influx_assets.automation.sensors import (
    CAUSE_TAG,
    ERROR_CLASS_TAG,
    FAILED_STAGE_TAG,
    MAX_CAUSE_CHARS,
    pipeline_failure_sensor,
)
from influx_assets.devtools.feed import write_simulation
from influx_assets.devtools.local_server import LocalInfluxd
from influx_assets.devtools.simulate import SimulationConfig, simulate
from influx_assets.influxdb import InfluxDBResource, ServerUnreachableError
from influx_assets.resources import resources_for
from influx_assets.telemetry import pipeline_assets, pipeline_checks
from influx_assets.telemetry.partitions import hourly_windows
from influx_assets_tests.influxql_oracle import InfluxQLOracle

WINDOW = "2025-05-06-07:00"
MONITORING = "monitoring"


def readings() -> pd.DataFrame:
    return pd.DataFrame({"time": [pd.Timestamp("2025-05-06T07:10Z")], "sensor_id": ["s1"], "value": [1.5]})


def failing_run(
    instance: DagsterInstance, influxdb: InfluxDBResource, raises: Exception | None = None
) -> str:
    """Materialize a stage that writes to ``influxdb`` (or raises ``raises``); it fails after one retry."""

    @asset(partitions_def=hourly_windows, retry_policy=RetryPolicy(max_retries=1))
    def store_readings(influxdb: InfluxDBResource) -> None:
        if raises is not None:
            raise raises
        influxdb.write_frame(readings(), "readings", ["sensor_id"])

    result = materialize(
        [store_readings], partition_key=WINDOW, instance=instance, resources={"influxdb": influxdb},
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    # The headline the operator sees on the run: Dagster's retry wrapper, not the cause.
    assert failure.step_failure_data.error.message.startswith("Exceeded max_retries of 1")
    return result.run_id


def tick(
    sensor_def: SensorDefinition, instance: DagsterInstance, influxdb: InfluxDBResource,
    cursor: str | None = None,
) -> SensorExecutionData:
    """One evaluation as the sensor daemon runs it (the run-failure sensor manages its own cursor)."""
    with build_sensor_context(instance=instance, cursor=cursor, resources={"influxdb": influxdb}) as context:
        return sensor_def.evaluate_tick(context)


def open_again(home: Path) -> DagsterInstance:
    """The same Dagster instance opened anew, as after a daemon restart."""
    return DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))


def test_a_failure_during_an_outage_is_written_once_when_influxdb_is_back(
    own_server: LocalInfluxd, tmp_path: Path
) -> None:
    influxdb = InfluxDBResource(url=own_server.url, api="v1", database=MONITORING, max_attempts=1)
    home = tmp_path / "dagster_home"
    home.mkdir()
    with instance_for_test(temp_dir=str(home)) as instance:
        started = tick(pipeline_failure_sensor, instance, influxdb)  # the first tick sets the cursor
        own_server.stop()

        run_id = failing_run(instance, influxdb)
        during = tick(pipeline_failure_sensor, instance, influxdb, started.cursor)

        # Dagster moved its cursor past the run: it will never show this run to the sensor again.
        assert [r.dagster_run.run_id for r in during.dagster_run_reactions] == [run_id]
        assert tick(pipeline_failure_sensor, instance, influxdb, during.cursor).dagster_run_reactions == []
        # ... so the failure must be in the spool.
        [kept] = spooled_failures(instance)
        assert (kept.run_id, kept.stage, kept.window, kept.error_class) == (
            run_id, "store_readings", WINDOW, "ServerUnreachableError"
        )
        still_down = tick(pipeline_failure_spool_sensor, instance, influxdb)
        assert "1 failure(s) still waiting" in still_down.skip_message
        assert len(spooled_failures(instance)) == 1

    own_server.start()  # InfluxDB is back, on the same port and data directory
    instance = open_again(home)  # and the Dagster daemon was restarted meanwhile
    back = tick(pipeline_failure_spool_sensor, instance, influxdb)
    assert back.skip_message == "wrote 1 spooled failure(s) to pipeline_failures"
    assert spooled_failures(instance) == []
    quiet = tick(pipeline_failure_spool_sensor, instance, influxdb)
    assert quiet.skip_message == "no failures waiting for InfluxDB"

    oracle = InfluxQLOracle(own_server.url, MONITORING)
    [point] = oracle.rows('SELECT * FROM "pipeline_failures"')
    assert (point["run_id"], point["stage"], point["window"]) == (run_id, "store_readings", WINDOW)
    assert point["error_class"] == "ServerUnreachableError" and point["failures"] == 1
    assert point["message"].startswith(f"cannot reach InfluxDB at {own_server.url} — is it running?")
    step_failed_at = max(
        e.timestamp for e in instance.all_logs(run_id) if e.dagster_event and e.dagster_event.is_step_failure
    )
    assert point["time"] == pytest.approx(step_failed_at * 1e9, abs=1e3)

    # Written again (a crash between the write and the spool's removal): the same point, not a second.
    spool_failures(instance, [kept])
    tick(pipeline_failure_spool_sensor, instance, influxdb)
    assert len(oracle.rows('SELECT * FROM "pipeline_failures"')) == 1
    instance.dispose()


def test_the_spool_keeps_each_failure_once_and_stays_bounded(tmp_path: Path) -> None:
    failures = [StageFailure("s", f"w{i}", "E", "m", "s", f"r{i}", "j", 1000.0 + i) for i in range(5)]
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert spool_failures(instance, failures[:2], limit=3) == 0
        assert spool_failures(instance, failures[:2], limit=3) == 0  # the same failures again: kept once
        assert [f.window for f in spooled_failures(instance)] == ["w0", "w1"]
        assert spool_failures(instance, failures[2:], limit=3) == 2  # over the bound: the oldest go
        assert [f.window for f in spooled_failures(instance)] == ["w2", "w3", "w4"]
        stored = instance.run_storage.get_cursor_values({SPOOL_KEY})[SPOOL_KEY]
        assert len(json.loads(stored)) == 3


def test_a_failed_runs_tags_name_stage_error_and_redacted_cause(influxdb: InfluxDBResource) -> None:
    configured, url_password, query_token = "cfg-9a8b7c6d5e", "pw-1f2e3d4c", "tk-0a1b2c3d4e5f"
    sensor_influxdb = InfluxDBResource(
        url=influxdb.url, database=influxdb.database, username="monitor", password=configured
    )
    error = ServerUnreachableError(
        f"cannot reach InfluxDB at http://monitor:{url_password}@10.0.0.9:8086/write?db=telemetry&token="
        f"{query_token} (auth {configured}) — is it running?\n"
        f"  urllib3 NewConnectionError: refused {configured}"
    )
    with instance_for_test() as instance:
        started = tick(pipeline_failure_sensor, instance, sensor_influxdb)
        run_id = failing_run(instance, influxdb, raises=error)
        tick(pipeline_failure_sensor, instance, sensor_influxdb, started.cursor)
        tags = instance.get_run_by_id(run_id).tags

    assert tags[FAILED_STAGE_TAG] == "store_readings"
    assert tags[ERROR_CLASS_TAG] == "ServerUnreachableError"
    assert tags[CAUSE_TAG] == (
        "cannot reach InfluxDB at http://***@10.0.0.9:8086/write?db=telemetry&token=*** (auth ***)"
        " — is it running?"
    )
    assert len(tags[CAUSE_TAG]) <= MAX_CAUSE_CHARS
    for secret in (configured, url_password, query_token):
        assert not any(secret in value for value in tags.values())


def test_a_long_cause_is_cut_to_the_tag_limit(influxdb: InfluxDBResource) -> None:
    with instance_for_test() as instance:
        started = tick(pipeline_failure_sensor, instance, influxdb)
        run_id = failing_run(instance, influxdb, raises=RuntimeError("x" * 1000 + "\nsecond line"))
        tick(pipeline_failure_sensor, instance, influxdb, started.cursor)
        cause = instance.get_run_by_id(run_id).tags[CAUSE_TAG]
    assert cause == "x" * (MAX_CAUSE_CHARS - 1) + "…"


# --- late data: what each tick decided, in the sensor's own log ------------------------------------
HOURLY = ["validated_telemetry", "quarantined_telemetry", "normalized_telemetry", "telemetry_5m",
          "telemetry_sliding_15m"]


def late_data_tick(
    instance: DagsterInstance, influxdb: InfluxDBResource, number: int
) -> tuple[SensorResult, list[str]]:
    """Evaluate ``late_data_sensor`` with a tick log, as the daemon does; returns result and log lines."""
    log_key = ["late_data_sensor", f"tick-{number}"]
    context = SensorEvaluationContext(
        instance_ref=instance.get_ref(), instance=instance, log_key=log_key,
        sensor_name="late_data_sensor", repository_name="__repository__",
    ).merge_resources({"influxdb": influxdb})
    with context:
        result = late_data_sensor(context)
    stderr = instance.compute_log_manager.get_log_data(log_key).stderr or b""
    lines = [json.loads(line)["msg"] for line in stderr.decode().splitlines() if line.strip()]
    return result, lines


def test_the_late_data_sensor_logs_what_changed_and_how_much_it_compared(
    influxdb: InfluxDBResource, oracle: InfluxQLOracle, tmp_path: Path
) -> None:
    # Two closed hours well inside the sensor's look-back of 24 windows from now.
    end = pd.Timestamp.now(tz="UTC").floor("h") - pd.Timedelta(hours=2)
    start = end - pd.Timedelta(hours=2)
    windows = [h.strftime("%Y-%m-%d-%H:%M") for h in pd.date_range(start, end, freq="h", inclusive="left")]
    write_simulation(simulate(SimulationConfig(start=start, end=end, sensors=4, seed=3)), influxdb, "on_time")
    with instance_for_test() as instance:
        for window in windows:
            result = materialize(
                [*pipeline_assets, *pipeline_checks], selection=AssetSelection.assets(*HOURLY),
                partition_key=window, resources=resources_for(influxdb), instance=instance,
            )
            assert result.success

        quiet, quiet_lines = late_data_tick(instance, influxdb, 1)
        assert quiet.run_requests == []
        assert len(quiet_lines) == 1
        assert "no late data: compared 2 processed window(s)" in quiet_lines[0]

        late_window = windows[1]
        clause = (f"WHERE time >= {pd.Timestamp(start + pd.Timedelta(hours=1)).value} "
                  f"AND time < {pd.Timestamp(end).value}")
        before = oracle.count("sensor_raw", where=clause)
        recorded = instance.fetch_materializations(AssetKey("validated_telemetry"), limit=10).records
        [record] = [r for r in recorded if r.partition_key == late_window]
        old_fingerprint = str(record.asset_materialization.metadata["raw_fingerprint"].value)
        influxdb.write_frame(pd.DataFrame({
            "time": [end - pd.Timedelta(minutes=20)], "site": ["site-late"], "sensor_id": ["late-1"],
            "kind": ["temperature"], "gateway": ["gw-9"], "value": [21.5], "unit": ["C"],
            "received_ns": [pd.Timestamp.now(tz="UTC").value],
        }), "sensor_raw", ["site", "sensor_id", "kind", "gateway"])
        after = oracle.count("sensor_raw", where=clause)
        assert after == before + 1

        changed, changed_lines = late_data_tick(instance, influxdb, 2)
    assert [r.partition_key for r in changed.run_requests] == [late_window]
    [line] = changed_lines
    assert f"raw window {late_window} changed" in line
    assert f"points {before} -> {after}" in line
    new_fingerprint = changed.run_requests[0].run_key.rsplit("-", 1)[1]  # points-<n>-<16 hex digits>
    assert f"fingerprint {old_fingerprint.removeprefix('sha256:')[:16]} -> {new_fingerprint}" in line
    assert old_fingerprint.removeprefix("sha256:")[:16] != new_fingerprint
