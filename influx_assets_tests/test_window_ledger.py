"""The window ledger: readers never consume a window that a writer is replacing or left half-written.

Real server; a fault proxy between the writer and the server holds the writer right after its
``DELETE`` (the moment the window is empty) or rejects its data write (a writer that stops there).
"""

import threading
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest
from dagster import AssetExecutionContext, DagsterInstance, ResourceDefinition, asset, materialize

from influx_assets.influxdb import InfluxDBIOManager, InfluxDBResource
from influx_assets.influxdb.client.window_store import (
    COMMITTED,
    LEDGER_MEASUREMENT,
    WRITING,
    WindowNotCommittedError,
    WindowStore,
)
from influx_assets.telemetry.partitions import hourly_windows
from influx_assets_tests.fault_proxy import Fault, FaultProxy
from influx_assets_tests.influxql_oracle import InfluxQLOracle
from influx_assets_tests.pipeline_harness import deleting, writes_to

H0 = pd.Timestamp("2024-05-01T00:00:00Z")
KEY = H0.strftime("%Y-%m-%d-%H:%M")


@dataclass
class Script:
    """Per test: the value every point of the next ``gauges`` materialization carries, and what loads saw."""

    value: float = 1.0
    seen: dict[str, pd.DataFrame] = field(default_factory=dict)


@asset(partitions_def=hourly_windows, io_manager_key="influxdb_io_manager", metadata={"influxdb/tags": ["sensor_id"]},
       required_resource_keys={"script"})
def gauges(context: AssetExecutionContext) -> pd.DataFrame:
    window = context.partition_time_window
    times = pd.date_range(pd.Timestamp(window.start), pd.Timestamp(window.end), freq="1min", inclusive="left")
    return pd.DataFrame({
        "time": np.tile(times, 2), "sensor_id": np.repeat(["g1", "g2"], len(times)), "value": context.resources.script.value,
    })


@asset(partitions_def=hourly_windows, io_manager_key="influxdb_io_manager", required_resource_keys={"script"})
def gauge_count(context: AssetExecutionContext, gauges: pd.DataFrame) -> pd.DataFrame:
    context.resources.script.seen["gauges"] = gauges
    return pd.DataFrame({"time": [pd.Timestamp(context.partition_time_window.start)], "n": [len(gauges)]})


@pytest.fixture
def script() -> Script:
    return Script()


def resources_with(influxdb: InfluxDBResource, script: Script, wait: float = 120.0) -> dict[str, object]:
    waiting = InfluxDBResource(**{**influxdb.model_dump(), "writer_wait_seconds": wait})  # not model_copy: Dagster keeps the original config
    return {"influxdb": influxdb, "influxdb_io_manager": InfluxDBIOManager(influxdb=waiting),
            "script": ResourceDefinition.hardcoded_resource(script)}


def materialize_with(
    influxdb: InfluxDBResource, assets: list, script: Script, wait: float = 120.0, **kwargs: object
) -> object:
    resources = resources_with(influxdb, script, wait)
    # disposed where it was made: an ephemeral instance's SQLite connections belong to their thread
    with DagsterInstance.ephemeral() as instance:
        return materialize(assets, resources=resources, instance=instance, partition_key=KEY, **kwargs)


def through(proxy: FaultProxy, influxdb: InfluxDBResource) -> InfluxDBResource:
    return InfluxDBResource(url=proxy.url, api="v1", database=influxdb.database, max_attempts=1)


def ledger_rows(oracle: InfluxQLOracle, target: str) -> list[dict]:
    return oracle.rows(f"SELECT * FROM \"{LEDGER_MEASUREMENT}\" WHERE \"target\" = '{target}'")


def test_a_reader_waits_while_another_run_replaces_the_window_and_then_gets_it_whole(
    script: Script, influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    materialize_with(influxdb, [gauges], script)
    window = influxdb.slice("gauges", H0, H0 + pd.Timedelta(hours=1))
    deleted, release = threading.Event(), threading.Event()

    def hold_after_delete() -> None:
        deleted.set()
        release.wait(30)

    script.value = 2.0
    with FaultProxy(influxdb.url) as proxy:
        proxy.inject(Fault.pass_through(after_forward=hold_after_delete), where=deleting("gauges"))
        writer = threading.Thread(target=materialize_with, args=(through(proxy, influxdb), [gauges], script))
        writer.start()
        assert deleted.wait(30), "the rewrite never sent its DELETE"
        # the hazard is real: a plain read now sees an empty window
        assert influxdb.read_window(window).empty
        read: dict[str, pd.DataFrame] = {}
        reader = threading.Thread(target=lambda: read.update(frame=WindowStore(influxdb.connection, wait_seconds=30).read(window)))
        reader.start()
        reader.join(1.5)
        assert reader.is_alive() and not read, "the reader did not wait for the writer"
        release.set()
        writer.join(30)
        reader.join(30)
    frame = read["frame"]
    assert len(frame) == 120 and set(frame["value"]) == {2.0}
    (entry,) = ledger_rows(oracle, "gauges")
    assert entry["state"] == COMMITTED and entry["rows"] == 120


def test_a_writer_that_stops_after_its_delete_blocks_readers_until_the_window_is_materialized_again(
    script: Script, influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    materialize_with(influxdb, [gauges], script)
    with FaultProxy(influxdb.url) as proxy:
        # the first /write is the ledger's "writing" entry, the second the window's points
        proxy.inject(Fault.pass_through(), Fault.respond(400, body=b'{"error":"injected"}'), where="/write")
        failed = materialize_with(through(proxy, influxdb), [gauges], script, raise_on_error=False)
        assert [r.fault for r in proxy.requests("/write")] == ["pass", "respond"]
        assert writes_to(proxy.requests("/write")[1], "gauges")
    assert not failed.success
    (entry,) = ledger_rows(oracle, "gauges")
    assert entry["state"] == WRITING and entry["run_id"] == failed.run_id
    assert oracle.count("gauges") == 0  # deleted, never rewritten

    blocked = materialize_with(influxdb, [gauges, gauge_count], script, wait=0.5, selection=[gauge_count], raise_on_error=False)
    assert not blocked.success and "gauges" not in script.seen
    (failure,) = [e for e in blocked.all_events if e.event_type_value == "STEP_FAILURE"]
    cause = failure.step_failure_data.error.cause
    message = cause.message
    assert cause.cls_name == "WindowNotCommittedError"
    assert f"run {failed.run_id}" in message and "'gauges'" in message and "materialize the partition again" in message

    materialize_with(influxdb, [gauges], script)
    assert materialize_with(influxdb, [gauges, gauge_count], script, selection=[gauge_count]).success
    assert len(script.seen["gauges"]) == 120


def test_a_writer_that_finds_a_later_writer_leaves_the_commit_to_it(influxdb: InfluxDBResource) -> None:
    influxdb.ensure_database()
    window = influxdb.slice("gauges", H0, H0 + pd.Timedelta(hours=1))
    ledger = WindowStore(influxdb.connection, wait_seconds=0.3)
    first = ledger.begin(window, [H0.value], run_id="first")
    second = ledger.begin(window, [H0.value], run_id="second")
    assert ledger.commit(window, {H0.value: 5}, first, run_id="first") == [H0.value]
    assert ledger.entries(window)[H0.value].state == WRITING
    with pytest.raises(WindowNotCommittedError, match="run second"):
        ledger.read(window)
    assert ledger.commit(window, {H0.value: 5}, second, run_id="second") == []
    entry = ledger.entries(window)[H0.value]
    assert (entry.state, entry.run_id, entry.write_id, entry.rows) == (COMMITTED, "second", second, 5)
    assert ledger.read(window).empty


def test_a_range_run_records_each_partition_with_its_rows_and_run(influxdb: InfluxDBResource, oracle) -> None:
    keys = [(H0 + pd.Timedelta(hours=h)).strftime("%Y-%m-%d-%H:%M") for h in range(3)]
    resources = resources_with(influxdb, Script())
    result = materialize(
        [gauges], resources=resources, instance=DagsterInstance.ephemeral(),
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
    )
    entries = ledger_rows(oracle, "gauges")
    assert [pd.Timestamp(e["time"], unit="ns", tz="UTC") for e in entries] == [H0 + pd.Timedelta(hours=h) for h in range(3)]
    assert {(e["state"], e["rows"], e["run_id"]) for e in entries} == {(COMMITTED, 120, result.run_id)}


def test_under_a_finite_retention_policy_an_unpartitioned_asset_is_stored_untracked(
    influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    oracle.query(f'ALTER RETENTION POLICY "autogen" ON "{influxdb.database}" DURATION 1h SHARD DURATION 1h')
    now = pd.Timestamp.now(tz="UTC").floor("s")

    @asset(io_manager_key="influxdb_io_manager", metadata={"influxdb/tags": ["site"]})
    def site_table() -> pd.DataFrame:
        return pd.DataFrame({"time": [now, now], "site": ["a", "b"], "v": [1.0, 2.0]})

    seen: dict[str, pd.DataFrame] = {}

    @asset(io_manager_key="influxdb_io_manager")
    def site_count(site_table: pd.DataFrame) -> pd.DataFrame:
        seen["sites"] = site_table
        return pd.DataFrame({"time": [now], "n": [len(site_table)]})

    resources = {"influxdb": influxdb, "influxdb_io_manager": InfluxDBIOManager(influxdb=influxdb)}
    with DagsterInstance.ephemeral() as instance:
        assert materialize([site_table, site_count], resources=resources, instance=instance).success
    assert sorted(seen["sites"]["site"]) == ["a", "b"]
    assert oracle.count("site_table") == 2
    assert ledger_rows(oracle, "site_table") == []  # 1970 is beyond a 1-hour retention: untracked


def test_a_window_left_unfinished_by_a_run_that_ended_fails_at_once_instead_of_waiting(
    influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    def resources(resource: InfluxDBResource) -> dict[str, object]:
        return resources_with(resource, Script(), wait=600)  # a reader that would otherwise wait ten minutes

    with DagsterInstance.ephemeral() as instance:
        assert materialize([gauges], resources=resources(influxdb), instance=instance, partition_key=KEY).success
        with FaultProxy(influxdb.url) as proxy:
            proxy.inject(Fault.pass_through(), Fault.respond(400, body=b'{"error":"injected"}'), where="/write")
            failed = materialize([gauges], resources=resources(through(proxy, influxdb)), instance=instance,
                                 partition_key=KEY, raise_on_error=False)
        assert not failed.success and instance.get_run_by_id(failed.run_id).is_finished

        blocked = materialize([gauges, gauge_count], selection=[gauge_count], resources=resources(influxdb),
                              instance=instance, partition_key=KEY, raise_on_error=False)
    (failure,) = [e for e in blocked.all_events if e.event_type_value == "STEP_FAILURE"]
    cause = failure.step_failure_data.error.cause
    assert cause.cls_name == "WindowNotCommittedError"
    assert f"run {failed.run_id}" in cause.message and "ended without finishing" in cause.message


def test_a_write_that_begins_while_the_data_is_being_read_is_not_missed(
    script: Script, influxdb: InfluxDBResource, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sequence lock's second look at the ledger: entries, data, entries again. A writer that begins
    # (and deletes) after the first look but before the data arrives must make the reader retry.
    window = influxdb.slice("gauges", H0, H0 + pd.Timedelta(hours=1))
    assert materialize_with(influxdb, [gauges], script).success
    writer = WindowStore(influxdb.connection)
    read_data = influxdb.connection.read_window
    began: list[str] = []

    def read_then_a_writer_begins(where, schema=None):  # noqa: ANN001, ANN202
        frame = read_data(where, schema)
        if where.measurement == "gauges" and not began:
            began.append(writer.begin(window, [H0.value], run_id="racing"))
        return frame

    monkeypatch.setattr(influxdb.connection, "read_window", read_then_a_writer_begins)
    with pytest.raises(WindowNotCommittedError, match="run racing"):
        WindowStore(influxdb.connection, wait_seconds=0.5).read(window)
    assert began
