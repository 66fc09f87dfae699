"""Every kind of Dagster partition through the IO manager, on a real server, asserted through InfluxQL.

A static or dynamic key is a tag value; a multi-partition key (hour x site) is a tag value's series inside
its hour. The dagster-duckdb pattern: materialize A, then B, then A again with other rows; A is
replaced, B untouched. Plus polars frames through the same IO manager.
"""

from collections.abc import Iterator

import numpy as np
import pandas as pd
import polars as pl
import pytest
from dagster import (
    AssetExecutionContext,
    AssetIn,
    DagsterInstance,
    DimensionPartitionMapping,
    DynamicPartitionsDefinition,
    IdentityPartitionMapping,
    MultiPartitionKey,
    MultiPartitionMapping,
    MultiPartitionsDefinition,
    StaticPartitionsDefinition,
    TimeWindowPartitionMapping,
    asset,
    materialize,
)

from influx_assets.influxdb import InfluxDBResource, LEDGER_MEASUREMENT
from influx_assets.resources import resources_for
from influx_assets.telemetry.partitions import daily_windows, hourly_windows
from influx_assets_tests.influxql_oracle import InfluxQLOracle

H0 = pd.Timestamp("2024-03-10T00:00:00Z")
SITES = StaticPartitionsDefinition(["north", "south"])
HOUR_BY_SITE = MultiPartitionsDefinition({"hour": hourly_windows, "site": SITES})
DAY_BY_SITE = MultiPartitionsDefinition({"day": daily_windows, "site": SITES})
DYNAMIC_SITES = DynamicPartitionsDefinition(name="test_sites")


@pytest.fixture
def rows_per_key() -> Iterator[dict[str, int]]:
    """How many rows the next materialization of a key returns (default 30)."""
    counts: dict[str, int] = {}
    yield counts


@pytest.fixture
def seen() -> dict[str, object]:
    """What downstream assets received."""
    return {}


def site_rows(site: str, start: pd.Timestamp, count: int) -> pd.DataFrame:
    times = start + pd.to_timedelta(np.arange(count), unit="min")
    return pd.DataFrame({"time": times, "site": site, "value": np.arange(count, dtype=float)})


def hour_of(hour_key: str) -> pd.Timestamp:
    return pd.to_datetime(hour_key, format="%Y-%m-%d-%H:%M").tz_localize("UTC")


def defs_for(rows_per_key: dict[str, int], seen: dict[str, object]) -> list:
    @asset(partitions_def=HOUR_BY_SITE, io_manager_key="influxdb_io_manager",
           metadata={"influxdb/partition_expr": {"site": "site"}})
    def site_hours(context: AssetExecutionContext) -> pd.DataFrame:
        keys = context.partition_key.keys_by_dimension
        count = rows_per_key.get(f"{keys['hour']}|{keys['site']}", 30)
        return site_rows(keys["site"], hour_of(keys["hour"]), count)

    @asset(
        partitions_def=DAY_BY_SITE, io_manager_key="influxdb_io_manager",
        metadata={"influxdb/partition_expr": {"site": "site"}},
        ins={"site_hours": AssetIn(partition_mapping=MultiPartitionMapping({
            "hour": DimensionPartitionMapping("day", TimeWindowPartitionMapping()),
            "site": DimensionPartitionMapping("site", IdentityPartitionMapping()),
        }))},
    )
    def site_days(context: AssetExecutionContext, site_hours: pd.DataFrame) -> None:
        seen["site_days"] = site_hours

    @asset(partitions_def=SITES, io_manager_key="influxdb_io_manager", metadata={"influxdb/partition_expr": "site"})
    def site_catalog(context: AssetExecutionContext) -> pd.DataFrame:
        count = rows_per_key.get(context.partition_key, 30)
        return site_rows(context.partition_key, H0, count).drop(columns="site")  # the IO manager adds it

    @asset(partitions_def=DYNAMIC_SITES, io_manager_key="influxdb_io_manager",
           metadata={"influxdb/partition_expr": "site"})
    def dynamic_catalog(context: AssetExecutionContext) -> pl.DataFrame:
        count = rows_per_key.get(context.partition_key, 30)
        rows = pl.from_pandas(site_rows(context.partition_key, H0, count))
        return rows.with_columns(pl.Series("readings", [None, *range(1, count)], dtype=pl.Int64))  # a null int

    @asset(io_manager_key="influxdb_io_manager")
    def catalog_copy(dynamic_catalog: pl.DataFrame) -> None:
        seen["catalog_copy"] = dynamic_catalog

    return [site_hours, site_days, site_catalog, dynamic_catalog, catalog_copy]


def run(influxdb: InfluxDBResource, assets: list, instance: DagsterInstance, **kwargs: object) -> object:
    return materialize(assets, resources=resources_for(influxdb), instance=instance, **kwargs)


def by_site(oracle: InfluxQLOracle, measurement: str, where: str = "") -> dict[str, int]:
    result = oracle.query(f'SELECT count("value") FROM "{measurement}" {where} GROUP BY "site"')
    return {s["tags"]["site"]: s["values"][0][1] for s in result}


HOUR = "WHERE time >= '2024-03-10T00:00:00Z' AND time < '2024-03-10T01:00:00Z'"
NEXT_HOUR = "WHERE time >= '2024-03-10T01:00:00Z' AND time < '2024-03-10T02:00:00Z'"


def test_a_multi_partition_rerun_replaces_only_its_sites_series_in_its_hour(influxdb, oracle, rows_per_key, seen) -> None:
    site_hours = defs_for(rows_per_key, seen)[0]
    instance = DagsterInstance.ephemeral()
    for hour, site in [("2024-03-10-00:00", "north"), ("2024-03-10-00:00", "south"), ("2024-03-10-01:00", "north")]:
        run(influxdb, [site_hours], instance, partition_key=MultiPartitionKey({"hour": hour, "site": site}))
    rows_per_key["2024-03-10-00:00|north"] = 10
    run(influxdb, [site_hours], instance, partition_key=MultiPartitionKey({"hour": "2024-03-10-00:00", "site": "north"}))
    assert by_site(oracle, "site_hours", HOUR) == {"north": 10, "south": 30}
    assert by_site(oracle, "site_hours", NEXT_HOUR) == {"north": 30}
    targets = {s["tags"]["target"] for s in oracle.query(f'SELECT "state" FROM "{LEDGER_MEASUREMENT}" GROUP BY "target"')}
    assert targets == {"site_hours?site=north", "site_hours?site=south"}  # the ledger covers each site's slice


def test_a_daily_site_partition_loads_its_24_hourly_windows_of_that_site_only(influxdb, oracle, rows_per_key, seen) -> None:
    site_hours, site_days = defs_for(rows_per_key, seen)[:2]
    instance = DagsterInstance.ephemeral()
    for hour in range(24):
        for site in ("north", "south"):
            key = (H0 + pd.Timedelta(hours=hour)).strftime("%Y-%m-%d-%H:%M")
            rows_per_key[f"{key}|{site}"] = 2
            run(influxdb, [site_hours], instance, partition_key=MultiPartitionKey({"hour": key, "site": site}))
    influxdb.write_frame(site_rows("north", H0 + pd.Timedelta(days=1), 5), "site_hours", ["site"])  # the next day
    run(influxdb, [site_hours, site_days], instance, selection=[site_days],
        partition_key=MultiPartitionKey({"day": "2024-03-10", "site": "north"}))
    loaded = seen["site_days"]
    assert len(loaded) == 48 and set(loaded["site"]) == {"north"}
    assert loaded["time"].min() == H0 and loaded["time"].max() < H0 + pd.Timedelta(days=1)


def test_a_static_partition_is_a_tag_value_replaced_alone_and_a_missing_column_is_filled(
    influxdb, oracle, rows_per_key, seen
) -> None:
    site_catalog = defs_for(rows_per_key, seen)[2]
    instance = DagsterInstance.ephemeral()
    run(influxdb, [site_catalog], instance, partition_key="north")
    run(influxdb, [site_catalog], instance, partition_key="south")
    rows_per_key["north"] = 4
    run(influxdb, [site_catalog], instance, partition_key="north")
    assert by_site(oracle, "site_catalog") == {"north": 4, "south": 30}


def test_a_dynamic_partition_of_polars_frames_round_trips_and_reruns_alone(influxdb, oracle, rows_per_key, seen) -> None:
    assets = defs_for(rows_per_key, seen)
    dynamic_catalog, catalog_copy = assets[3], assets[4]
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("test_sites", ["east", "west"])
    run(influxdb, [dynamic_catalog], instance, partition_key="east")
    run(influxdb, [dynamic_catalog], instance, partition_key="west")
    rows_per_key["east"] = 3
    run(influxdb, [dynamic_catalog], instance, partition_key="east")
    assert by_site(oracle, "dynamic_catalog") == {"east": 3, "west": 30}
    run(influxdb, [dynamic_catalog, catalog_copy], instance, selection=[catalog_copy])
    copy = seen["catalog_copy"]
    assert isinstance(copy, pl.DataFrame) and copy.height == 33
    assert copy.schema["time"] == pl.Datetime("ns", "UTC") and copy.schema["value"] == pl.Float64
    assert copy.schema["readings"] == pl.Int64  # stored as an integer field although it held a null
    assert {r["fieldKey"]: r["fieldType"] for r in oracle.rows('SHOW FIELD KEYS FROM "dynamic_catalog"')}["readings"] == "integer"


def test_a_rerun_with_a_row_of_another_partition_is_refused_before_anything_is_deleted(influxdb, oracle, rows_per_key, seen) -> None:
    site_hours = defs_for(rows_per_key, seen)[0]
    instance = DagsterInstance.ephemeral()
    key = MultiPartitionKey({"hour": "2024-03-10-00:00", "site": "south"})
    run(influxdb, [site_hours], instance, partition_key=key)

    @asset(name="site_hours", partitions_def=HOUR_BY_SITE, io_manager_key="influxdb_io_manager",
           metadata={"influxdb/partition_expr": {"site": "site"}})
    def wrong_site() -> pd.DataFrame:
        return site_rows("north", H0, 5)  # claims to be south's partition

    result = run(influxdb, [wrong_site], instance, partition_key=key, raise_on_error=False)
    assert not result.success
    assert by_site(oracle, "site_hours", HOUR) == {"south": 30}


@pytest.mark.parametrize(
    ("partitions_def", "partition_key", "expected"),
    [
        (HOUR_BY_SITE, MultiPartitionKey({"hour": "2024-03-10-00:00", "site": "north"}), "{'site': 'site'}"),
        (SITES, "north", "metadata={'influxdb/partition_expr': 'site'}"),
    ],
    ids=["hour_x_site", "static"],
)
def test_without_partition_expr_the_run_says_what_to_set_and_deletes_nothing(
    influxdb, oracle, partitions_def, partition_key, expected: str
) -> None:
    @asset(name="unmapped", partitions_def=partitions_def, io_manager_key="influxdb_io_manager")
    def unmapped() -> pd.DataFrame:
        return site_rows("north", H0, 10)

    influxdb.write_frame(site_rows("south", H0, 30), "unmapped", ["site"])
    result = run(influxdb, [unmapped], DagsterInstance.ephemeral(), partition_key=partition_key, raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    error = failure.step_failure_data.error
    text = error.message + (error.cause.message if error.cause else "")
    assert "UnsupportedPartitionsError" in text and expected in text and "Nothing was written" in text
    assert oracle.count("unmapped", "value") == 30


def test_a_slice_owns_rows_by_the_text_the_encoder_stores_and_targets_survive_odd_measurements() -> None:
    from influx_assets.influxdb import MeasurementSlice
    from influx_assets.influxdb.client.ledger import ledger_target, overlaps
    from influx_assets.influxdb.partition_slices import PartitionSlice, owning_slice

    frame = pd.DataFrame({"time": [H0, H0], "site": [1, 2], "value": [1.0, 2.0]})  # an integer tag column
    one = PartitionSlice(MeasurementSlice("d", "m", tag_filters=(("site", "1"),)), ("1",), (0,))
    assert owning_slice(frame, np.array([H0.value, H0.value]), [one]).tolist() == [0, -1]
    odd = MeasurementSlice("d", "a?b&c=d")
    assert overlaps(ledger_target(odd), odd)
    lookalike = MeasurementSlice("d", "a?site=north")
    assert not overlaps(ledger_target(lookalike), MeasurementSlice("d", "a", tag_filters=(("site", "north"),)))
