"""The read cache: a window is transferred again only when its ledger entries changed (real server).

Every read here goes through :class:`WindowStore` with a fresh :class:`WindowReadCache`; the server's
own answer (a store without a cache) is the reference for every frame the cache serves.
"""

from collections.abc import Iterator

import pandas as pd
import pytest
from dagster import AssetExecutionContext, DagsterInstance, asset, materialize

from influx_assets.influxdb import InfluxDBIOManager, InfluxDBResource
from influx_assets.influxdb.client.read_cache import WindowReadCache
from influx_assets.influxdb.client.slice import MeasurementSlice
from influx_assets.influxdb.client.window_store import WindowStore
from influx_assets.telemetry.checks import readback_check
from influx_assets.telemetry.partitions import hourly_windows
from influx_assets.telemetry.stage import window_metadata
from influx_assets.telemetry.windows import run_windows, split_by_window
from influx_assets_tests.influxql_oracle import InfluxQLOracle
from influx_assets_tests.test_window_ledger import H0, Script, gauges, resources_with

HOURS = [H0 + pd.Timedelta(hours=h) for h in range(3)]
KEYS = [h.strftime("%Y-%m-%d-%H:%M") for h in HOURS]


@asset(name="gauges", partitions_def=hourly_windows, io_manager_key="influxdb_io_manager",
       metadata={"influxdb/tags": ["sensor_id"]}, required_resource_keys={"script"})
def fingerprinted_gauges(context: AssetExecutionContext) -> pd.DataFrame:
    """``gauges`` with the per-window metadata of a pipeline stage (what the read-back check compares)."""
    frame = gauges.op.compute_fn.decorated_fn(context)  # the same points as ``gauges``
    windows = run_windows(context, hourly_windows)
    for window, part in zip(windows, split_by_window(frame, windows), strict=True):
        context.add_asset_metadata(window_metadata(window, part, part), partition_key=window.key)
    return frame


RANGE = {"dagster/asset_partition_range_start": KEYS[0], "dagster/asset_partition_range_end": KEYS[-1]}


def materialize_range(influxdb: InfluxDBResource, value: float):
    with DagsterInstance.ephemeral() as instance:
        return materialize([gauges], resources=resources_with(influxdb, Script(value=value)), instance=instance, tags=RANGE)


@pytest.fixture
def transferred(influxdb: InfluxDBResource, monkeypatch: pytest.MonkeyPatch) -> list[MeasurementSlice]:
    """The data reads of ``gauges`` that reached the server (ledger reads are not counted)."""
    seen: list[MeasurementSlice] = []
    read_window = influxdb.connection.read_window

    def counting(where: MeasurementSlice, schema=None):  # noqa: ANN001, ANN202
        if where.measurement == "gauges":
            seen.append(where)
        return read_window(where, schema)

    monkeypatch.setattr(influxdb.connection, "read_window", counting)
    return seen


def cached_store(influxdb: InfluxDBResource, max_bytes: int = 64 * 1024 * 1024) -> WindowStore:
    return WindowStore(influxdb.connection, wait_seconds=1.0, cache=WindowReadCache(max_bytes))


def span(influxdb: InfluxDBResource, start: pd.Timestamp = HOURS[0], end: pd.Timestamp = HOURS[-1] + pd.Timedelta(hours=1)):
    return influxdb.slice("gauges", start, end)


def test_a_window_read_again_unchanged_is_served_without_a_transfer_and_equals_the_servers_answer(
    influxdb: InfluxDBResource, transferred: list[MeasurementSlice],
) -> None:
    assert materialize_range(influxdb, 1.0).success
    store = cached_store(influxdb)
    reference = WindowStore(influxdb.connection)  # no cache: the server's answer

    first = store.read(span(influxdb))
    again = store.read(span(influxdb))
    hours = [store.read(span(influxdb, h, h + pd.Timedelta(hours=1))) for h in HOURS]

    assert transferred == [span(influxdb)]  # one transfer; the span again and each hour come from it
    pd.testing.assert_frame_equal(again, first)
    pd.testing.assert_frame_equal(first, reference.read(span(influxdb)))
    for hour, frame in zip(HOURS, hours, strict=True):
        pd.testing.assert_frame_equal(frame, reference.read(span(influxdb, hour, hour + pd.Timedelta(hours=1))))
    assert [len(f) for f in hours] == [120, 120, 120]


def test_a_rewrite_through_the_ledger_makes_the_next_read_transfer_the_new_points(influxdb: InfluxDBResource, transferred: list[MeasurementSlice]) -> None:
    assert materialize_range(influxdb, 1.0).success
    store = cached_store(influxdb)
    assert set(store.read(span(influxdb))["value"]) == {1.0}

    assert materialize_range(influxdb, 2.0).success

    assert set(store.read(span(influxdb))["value"]) == {2.0}
    assert set(store.read(span(influxdb, HOURS[1], HOURS[2]))["value"]) == {2.0}
    assert len(transferred) == 2


def test_a_frame_handed_out_is_a_copy_the_caller_may_change(influxdb: InfluxDBResource, transferred: list[MeasurementSlice]) -> None:
    assert materialize_range(influxdb, 1.0).success
    store = cached_store(influxdb)
    handed_out = store.read(span(influxdb))
    handed_out["value"] = 99.0
    served = store.read(span(influxdb))
    served["value"] = 98.0
    assert set(store.read(span(influxdb))["value"]) == {1.0}
    assert len(transferred) == 1


def test_data_the_ledger_does_not_track_is_always_transferred(influxdb: InfluxDBResource, transferred: list[MeasurementSlice]) -> None:
    # raw points written by devices have no ledger entries: nothing would tell the cache they changed
    frame = pd.DataFrame({"time": HOURS, "sensor_id": "g1", "value": [1.0, 1.0, 1.0]})
    influxdb.write_frame(frame, "gauges", ["sensor_id"])
    store = cached_store(influxdb)
    assert set(store.read(span(influxdb))["value"]) == {1.0}
    influxdb.write_frame(frame.assign(value=5.0), "gauges", ["sensor_id"])
    assert set(store.read(span(influxdb))["value"]) == {5.0}
    assert len(transferred) == 2


def test_a_slice_not_starting_at_a_tracked_window_is_transferred(influxdb: InfluxDBResource, transferred: list[MeasurementSlice]) -> None:
    # half an hour in: a rewrite of the window that starts before the slice would not show in its entries
    assert materialize_range(influxdb, 1.0).success
    store = cached_store(influxdb)
    inner = span(influxdb, HOURS[0] + pd.Timedelta(minutes=30), HOURS[-1])
    store.read(inner)
    store.read(inner)
    assert len(transferred) == 2


def test_a_zero_budget_disables_the_cache_and_a_frame_over_budget_is_not_kept(influxdb: InfluxDBResource, transferred: list[MeasurementSlice]) -> None:
    assert materialize_range(influxdb, 1.0).success
    for budget in (0, 1024):  # 360 rows are more than 1 KiB
        transferred.clear()
        store = cached_store(influxdb, budget)
        store.read(span(influxdb))
        store.read(span(influxdb))
        assert len(transferred) == 2
        assert store.cache is not None and store.cache.nbytes == 0


def test_the_readback_check_compares_a_transfer_made_after_the_write_even_when_others_read_first(
    influxdb: InfluxDBResource, oracle: InfluxQLOracle,
) -> None:
    # The window is read (and cached) after the first write; a second run rewrites it with one value
    # changed on its way to the server. The check must see the new write's points, not the cached ones.
    check = readback_check("gauges", "gauges", hourly_windows)
    instance = DagsterInstance.ephemeral()
    assert materialize(
        [fingerprinted_gauges, check], resources=resources_with(influxdb, Script(value=1.0)), instance=instance, tags=RANGE
    ).success
    assert set(influxdb.window_store().read(span(influxdb))["value"]) == {1.0}  # cached now

    resources = resources_with(influxdb, Script(value=1.0))
    resources["influxdb_io_manager"] = ChangingOneValue(influxdb=influxdb)
    result = materialize([fingerprinted_gauges, check], resources=resources, instance=instance, tags=RANGE,
                         raise_on_error=False)

    evaluations = {
        e.partition: e.passed for e in (ev.event_specific_data for ev in result.all_events
                                        if ev.event_type_value == "ASSET_CHECK_EVALUATION")
    }
    assert evaluations == {KEYS[0]: True, KEYS[1]: False, KEYS[2]: True}
    assert sorted(r["value"] for r in oracle.rows('SELECT * FROM "gauges"'))[-1] == 2.0


class ChangingOneValue(InfluxDBIOManager):
    """Stores one value of the range's second hour changed: a silent write corruption."""

    def handle_output(self, context, obj):  # noqa: ANN001, ANN201
        changed = obj.copy()
        changed.loc[changed["time"] == HOURS[1], "value"] = 2.0
        super().handle_output(context, changed)


@pytest.fixture(autouse=True)
def _empty_shared_cache(influxdb: InfluxDBResource) -> Iterator[None]:
    influxdb.window_store().cache.clear()  # type: ignore[union-attr]
    yield
    influxdb.window_store().cache.clear()  # type: ignore[union-attr]
