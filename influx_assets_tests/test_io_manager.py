"""The IO manager's promises, proven on a real server and asserted through independent InfluxQL.

Pattern from dagster-duckdb: materialize window A, then B, then A again; A is replaced, B untouched.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest
from dagster import (
    AssetExecutionContext,
    AssetIn,
    DagsterInstance,
    ResourceDefinition,
    TimeWindowPartitionMapping,
    AssetKey,
    asset,
    build_input_context,
    build_output_context,
    materialize,
)

from influx_assets.influxdb import InfluxDBIOManager, InfluxDBResource, InvalidFrameError
from influx_assets.telemetry.partitions import daily_windows, hourly_windows
from influx_assets.resources import resources_for
from influx_assets_tests.influxql_oracle import InfluxQLOracle
from influx_assets.influxdb.client.pandas_versions import TEXT_DTYPE
from influx_assets.influxdb.client.transport import ServerInfo

H0 = pd.Timestamp("2024-03-10T00:00:00Z")


@dataclass
class Script:
    """Per test: what the assets return (``produce``: asset -> rows of a window) and what they received."""

    produce: dict[str, Callable[[pd.Timestamp, pd.Timestamp], pd.DataFrame]] = field(default_factory=dict)
    seen: dict[str, pd.DataFrame] = field(default_factory=dict)


def minute_rows(start: pd.Timestamp, end: pd.Timestamp, sensors: tuple[str, ...] = ("s1", "s2")) -> pd.DataFrame:
    times = pd.date_range(start, end, freq="1min", inclusive="left")
    parts = [
        pd.DataFrame({"time": times, "sensor_id": s, "value": np.arange(len(times), dtype=float) + i * 1000})
        for i, s in enumerate(sensors)
    ]
    return pd.concat(parts, ignore_index=True)


@asset(partitions_def=hourly_windows, io_manager_key="influxdb_io_manager",
       metadata={"influxdb/tags": ["sensor_id"]}, kinds={"influxdb", "pandas"}, required_resource_keys={"script"})
def readings(context: AssetExecutionContext) -> pd.DataFrame:
    window = context.partition_time_window
    produce = context.resources.script.produce.get("readings", minute_rows)
    return produce(pd.Timestamp(window.start), pd.Timestamp(window.end))


@asset(partitions_def=daily_windows, io_manager_key="influxdb_io_manager", kinds={"influxdb", "pandas"},
       required_resource_keys={"script"})
def daily_count(context: AssetExecutionContext, readings: pd.DataFrame) -> pd.DataFrame:
    context.resources.script.seen["daily"] = readings
    return pd.DataFrame({"time": [pd.Timestamp(context.partition_time_window.start)], "n": [len(readings)]})


@asset(
    partitions_def=hourly_windows, io_manager_key="influxdb_io_manager", kinds={"influxdb", "pandas"},
    ins={"readings": AssetIn(partition_mapping=TimeWindowPartitionMapping(start_offset=-1))},
    required_resource_keys={"script"},
)
def lookback_count(context: AssetExecutionContext, readings: pd.DataFrame) -> pd.DataFrame:
    context.resources.script.seen["lookback"] = readings
    return pd.DataFrame({"time": [pd.Timestamp(context.partition_time_window.start)], "n": [len(readings)]})


@asset(partitions_def=hourly_windows, io_manager_key="influxdb_io_manager", kinds={"influxdb", "pandas"},
       required_resource_keys={"script"})
def readings_seen_downstream(context: AssetExecutionContext, readings: pd.DataFrame) -> None:
    context.resources.script.seen["downstream"] = readings


@asset(io_manager_key="influxdb_io_manager", metadata={"influxdb/measurement": "sensor_catalog", "influxdb/tags": ["sensor_id"]},
       required_resource_keys={"script"})
def catalog(context: AssetExecutionContext) -> pd.DataFrame:
    return context.resources.script.produce["catalog"](H0, H0)


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def run(script: Script) -> Callable[..., object]:
    def materialize_with_script(influxdb: InfluxDBResource, assets: list, **kwargs: object) -> object:
        resources = {**resources_for(influxdb), "script": ResourceDefinition.hardcoded_resource(script)}
        return materialize(assets, resources=resources, instance=DagsterInstance.ephemeral(), **kwargs)

    return materialize_with_script


def key(hour: int) -> str:
    return (H0 + pd.Timedelta(hours=hour)).strftime("%Y-%m-%d-%H:%M")


def window_where(hour: int, hours: int = 1) -> str:
    start = H0 + pd.Timedelta(hours=hour)
    return f"WHERE time >= {start.value} AND time < {(start + pd.Timedelta(hours=hours)).value}"


def test_materializing_a_window_twice_leaves_exactly_one_copy(run, influxdb, oracle: InfluxQLOracle) -> None:
    run(influxdb, [readings], partition_key=key(0))
    first = oracle.rows(f'SELECT * FROM "readings" {window_where(0)}')
    run(influxdb, [readings], partition_key=key(0))
    second = oracle.rows(f'SELECT * FROM "readings" {window_where(0)}')
    assert len(first) == 120
    assert second == first
    assert len({(r["time"], r["sensor_id"]) for r in second}) == 120


def test_a_first_write_sends_no_delete_and_a_rewrite_does(run, influxdb) -> None:
    # InfluxDB 1.6's DELETE can hide recent points of other windows (influxdata/influxdb#10503):
    # the IO manager deletes only when the window holds something to replace.
    first = run(influxdb, [readings], partition_key=key(0)).get_asset_materialization_events()[0]
    again = run(influxdb, [readings], partition_key=key(0)).get_asset_materialization_events()[0]
    assert first.materialization.metadata["window_replaced"].value is False
    assert again.materialization.metadata["window_replaced"].value is True


def test_rewriting_a_window_with_fewer_rows_removes_stale_points(run, script, influxdb, oracle) -> None:
    run(influxdb, [readings], partition_key=key(0))
    script.produce["readings"] = lambda s, e: minute_rows(s, e, sensors=("s1",)).iloc[::2]
    run(influxdb, [readings], partition_key=key(0))
    rows = oracle.rows(f'SELECT * FROM "readings" {window_where(0)}')
    assert len(rows) == 30
    assert {r["sensor_id"] for r in rows} == {"s1"}


def test_neighbouring_windows_and_other_measurements_are_untouched(run, script, influxdb, oracle) -> None:
    influxdb.write_frame(minute_rows(H0, H0 + pd.Timedelta(hours=2)), "bystander", ["sensor_id"])
    run(influxdb, [readings], partition_key=key(0))
    run(influxdb, [readings], partition_key=key(1))
    before_b = oracle.rows(f'SELECT * FROM "readings" {window_where(1)}')
    script.produce["readings"] = lambda s, e: minute_rows(s, e).assign(value=-1.0)
    run(influxdb, [readings], partition_key=key(0))
    assert {r["value"] for r in oracle.rows(f'SELECT * FROM "readings" {window_where(0)}')} == {-1.0}
    assert oracle.rows(f'SELECT * FROM "readings" {window_where(1)}') == before_b
    assert oracle.count("bystander") == 240


def test_an_empty_frame_clears_its_window_only(run, script, influxdb, oracle) -> None:
    run(influxdb, [readings], partition_key=key(0))
    run(influxdb, [readings], partition_key=key(1))
    script.produce["readings"] = lambda s, e: minute_rows(s, e).iloc[0:0]
    result = run(influxdb, [readings], partition_key=key(0))
    assert oracle.count("readings", where=window_where(0)) == 0
    assert oracle.count("readings", where=window_where(1)) == 120
    [event] = result.get_asset_materialization_events()
    assert event.materialization.metadata["dagster/row_count"].value == 0


def test_rows_outside_the_window_are_rejected_and_nothing_is_written(run, script, influxdb, oracle) -> None:
    run(influxdb, [readings], partition_key=key(0))
    script.produce["readings"] = lambda s, e: minute_rows(s, e + pd.Timedelta(minutes=1)).assign(value=7.0)
    with pytest.raises(InvalidFrameError, match=r"2 of 122 rows .* outside the window .*01:00:00\+00:00") as error:
        run(influxdb, [readings], partition_key=key(0))
    assert "Nothing was written" in str(error.value)
    assert {r["value"] for r in oracle.rows(f'SELECT * FROM "readings" {window_where(0, 2)}')} != {7.0}
    assert oracle.count("readings", where=window_where(0, 2)) == 120


def test_a_point_on_the_window_end_belongs_to_the_next_window(run, script, influxdb, oracle) -> None:
    script.produce["readings"] = lambda s, e: pd.DataFrame({"time": [e], "sensor_id": ["s1"], "value": [1.0]})
    with pytest.raises(InvalidFrameError, match="1 of 1 rows"):
        run(influxdb, [readings], partition_key=key(0))
    script.produce["readings"] = lambda s, e: pd.DataFrame({"time": [s], "sensor_id": ["s1"], "value": [1.0]})
    run(influxdb, [readings], partition_key=key(1))
    assert oracle.count("readings", where=window_where(1)) == 1


def test_daily_partition_loads_exactly_its_24_hourly_windows(run, script, influxdb, oracle) -> None:
    influxdb.write_frame(minute_rows(H0 - pd.Timedelta(hours=1), H0 + pd.Timedelta(hours=25)), "readings", ["sensor_id"])
    run(influxdb, [readings.to_source_asset(), daily_count], partition_key="2024-03-10")
    loaded = script.seen["daily"]
    assert len(loaded) == 24 * 60 * 2
    assert loaded["time"].min() == H0
    assert loaded["time"].max() == H0 + pd.Timedelta(hours=24) - pd.Timedelta(minutes=1)
    assert oracle.rows('SELECT "n" FROM "daily_count" WHERE time >= 0')[0]["n"] == 2880


def test_lookback_mapping_loads_the_previous_and_current_window(run, script, influxdb) -> None:
    influxdb.write_frame(minute_rows(H0, H0 + pd.Timedelta(hours=3)), "readings", ["sensor_id"])
    run(influxdb, [readings.to_source_asset(), lookback_count], partition_key=key(2))
    loaded = script.seen["lookback"]
    assert loaded["time"].min() == H0 + pd.Timedelta(hours=1)
    assert loaded["time"].max() == H0 + pd.Timedelta(hours=3) - pd.Timedelta(minutes=1)
    assert len(loaded) == 240


def test_a_range_run_writes_every_window_and_reports_true_per_partition_counts(run, script, influxdb, oracle) -> None:
    script.produce["readings"] = lambda s, e: minute_rows(s, e).query("time.dt.hour != 1")
    result = run(
        influxdb, [readings],
        tags={"dagster/asset_partition_range_start": key(0), "dagster/asset_partition_range_end": key(2)},
    )
    assert [oracle.count("readings", where=window_where(h)) for h in range(3)] == [120, 0, 120]
    events = result.get_asset_materialization_events()
    by_partition = {e.partition: e.materialization.metadata for e in events}
    assert {k: m["dagster/row_count"].value for k, m in by_partition.items()} == {key(0): 120, key(1): 0, key(2): 120}
    assert {m["range_row_count"].value for m in by_partition.values()} == {240}
    # each partition shows its own window; the run's whole window is named range_*
    for hour in range(3):
        own = by_partition[key(hour)]
        start = (H0 + pd.Timedelta(hours=hour)).timestamp()
        assert (own["window_start"].value, own["window_end"].value) == (start, start + 3600)
        assert own["window"].value.startswith(f"[{(H0 + pd.Timedelta(hours=hour)).isoformat()}, ")
        assert own["range_window_start"].value == H0.timestamp()
        assert own["range_window_end"].value == H0.timestamp() + 3 * 3600


def test_random_doubles_and_null_tags_reach_a_downstream_asset_exactly(run, script, influxdb) -> None:
    rng = np.random.default_rng(20261202)
    values = np.concatenate([rng.uniform(-1e6, 1e6, 400), rng.uniform(0, 1, 300), 10 ** rng.uniform(-12, -5, 300)])
    sensor = np.where(np.arange(1000) % 2 == 0, None, "s1")  # null in half the rows

    def produce(start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        times = start + pd.to_timedelta(np.arange(1000) * 3_600_000_000, unit="ns")
        return pd.DataFrame({"time": times, "sensor_id": pd.Series(sensor, dtype="str"), "value": values})

    script.produce["readings"] = produce
    run(influxdb, [readings, readings_seen_downstream], partition_key=key(0))
    loaded = script.seen["downstream"].sort_values("time").reset_index(drop=True)
    assert len(loaded) == 1000
    changed = int((loaded["value"].to_numpy() != values).sum())
    assert changed == 0, f"{changed} of 1000 doubles changed on the way through InfluxDB"
    assert loaded["sensor_id"].isna().tolist() == [s is None for s in sensor]
    assert set(loaded["sensor_id"].dropna()) == {"s1"}


def test_types_round_trip_including_whole_number_floats(influxdb) -> None:
    written = pd.DataFrame({
        "time": pd.date_range(H0, periods=3, freq="1s"),
        "site": ["a", "b", "c"],
        "whole": [40.0, 41.0, 42.0],
        "count": np.array([1, 2, 3], dtype="int64"),
        "ok": [True, False, True],
        "label": ["x", "y z", "ü"],
    })
    influxdb.write_frame(written, "typed", ["site"])
    loaded = influxdb.read_window(influxdb.slice("typed", H0, H0 + pd.Timedelta(hours=1)))
    assert dict(loaded.dtypes.astype(str)) == {
        "time": "datetime64[ns, UTC]", "site": TEXT_DTYPE, "count": "int64", "label": TEXT_DTYPE, "ok": "bool", "whole": "float64",
    }
    pd.testing.assert_frame_equal(loaded, written[loaded.columns].astype({"time": "datetime64[ns, UTC]"}))


def test_input_metadata_can_load_only_some_fields(influxdb) -> None:
    written = minute_rows(H0, H0 + pd.Timedelta(minutes=3)).assign(extra=1.5)
    influxdb.write_frame(written, "readings", ["sensor_id"])
    loaded = influxdb.read_window(influxdb.slice("readings", H0, H0 + pd.Timedelta(hours=1), columns=("value",)))
    assert list(loaded.columns) == ["time", "sensor_id", "value"]
    assert len(loaded) == 6


def test_unpartitioned_asset_replaces_the_whole_measurement(run, script, influxdb, oracle) -> None:
    script.produce["catalog"] = lambda s, e: minute_rows(H0, H0 + pd.Timedelta(minutes=10))
    run(influxdb, [catalog])
    script.produce["catalog"] = lambda s, e: minute_rows(H0 + pd.Timedelta(days=30), H0 + pd.Timedelta(days=30, minutes=2))
    run(influxdb, [catalog])
    assert oracle.count("sensor_catalog") == 4


def test_materialization_metadata_describes_what_was_stored(run, influxdb) -> None:
    result = run(influxdb, [readings], partition_key=key(0))
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["dagster/row_count"].value == 120
    schema = metadata["dagster/column_schema"].schema
    assert [(c.name, c.description) for c in schema.columns] == [("time", "time"), ("sensor_id", "tag"), ("value", "field")]
    assert metadata["influxdb/measurement"].value == "readings"
    assert metadata["influxdb/database"].value == influxdb.database
    assert metadata["window_start"].value == H0.timestamp()
    assert metadata["points_dropped"].value == 0


def test_a_long_range_run_gives_each_partition_its_own_small_metadata(run, script, influxdb, oracle) -> None:
    hours = 72
    script.produce["readings"] = lambda s, e: minute_rows(s, e, sensors=("s1",)).iloc[::30]
    result = run(
        influxdb, [readings],
        tags={"dagster/asset_partition_range_start": key(0), "dagster/asset_partition_range_end": key(hours - 1)},
    )
    events = result.get_asset_materialization_events()
    assert len(events) == hours
    assert all(e.materialization.metadata["dagster/row_count"].value == 2 for e in events)
    # no entry grows with the range: Dagster copies run-wide metadata to every partition's event
    assert max(len(repr(v)) for e in events for v in e.materialization.metadata.values()) < 2000
    assert events[0].materialization.metadata["range_row_count"].value == 2 * hours == oracle.count(
        "readings", where=window_where(0, hours)
    )


def test_a_server_with_the_delete_bug_warns_once_when_a_window_is_replaced(influxdb, influx_server) -> None:
    version = influxdb.ping().version
    if influxdb.ping().delete_bug_warning() is None:
        pytest.skip(f"server {version} has no DELETE bug")
    instance = DagsterInstance.ephemeral()
    resources = {**resources_for(influxdb), "script": ResourceDefinition.hardcoded_resource(Script())}

    def warnings_of(result: object) -> list[str]:
        logs = instance.all_logs(result.run_id)  # type: ignore[attr-defined]
        return [e.user_message for e in logs if "influxdata/influxdb#10503" in e.user_message]

    first = materialize([readings], resources=resources, instance=instance, partition_key=key(0))
    assert warnings_of(first) == []  # a first write sends no DELETE
    again = materialize([readings, lookback_count], resources=resources, instance=instance,
                        partition_key=key(0))  # replaces readings' window (DELETE); lookback's first write
    (warning,) = warnings_of(again)
    assert "1.7.5" in warning and version in warning


@pytest.mark.parametrize(("version", "warned"), [
    ("1.6.7", True), ("v1.7.4", True), ("1.7.5", False), ("1.8.10", False), ("v2.7.12", False),
    ("3.10.1", False), ("unknown", False), ("", False),
])
def test_only_1x_before_1_7_5_is_warned_about(version: str, warned: bool) -> None:
    assert (ServerInfo(version, "").delete_bug_warning() is not None) is warned


def test_gzip_writes_store_exactly_the_same_points(influx_url, database_name, influxdb, oracle) -> None:
    zipped = InfluxDBResource(url=influx_url, database=database_name, gzip_level=6)
    written = minute_rows(H0, H0 + pd.Timedelta(hours=1)).assign(note="a \"q\", b")
    zipped.write_frame(written, "zipped", ["sensor_id"])
    loaded = influxdb.read_window(influxdb.slice("zipped", H0, H0 + pd.Timedelta(hours=1)))
    assert oracle.count("zipped", "value") == 120
    pd.testing.assert_frame_equal(loaded[written.columns].sort_values(["sensor_id", "time"]).reset_index(drop=True),
                                  written.sort_values(["sensor_id", "time"]).reset_index(drop=True), check_dtype=False)


def test_the_io_manager_works_with_contexts_built_by_hand(influxdb, oracle) -> None:
    manager = InfluxDBIOManager(influxdb=influxdb)
    upstream = build_output_context(asset_key=AssetKey("hand_made"), definition_metadata={"influxdb/tags": ["sensor_id"]})
    manager.handle_output(upstream, minute_rows(H0, H0 + pd.Timedelta(minutes=5)))
    loaded = manager.load_input(build_input_context(upstream_output=upstream, asset_key=AssetKey("downstream")))
    assert len(loaded) == 10 == oracle.count("hand_made", "value")
