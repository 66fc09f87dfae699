"""Inputs at the edges: hostile strings and boundary windows, against the real server.

Hostile values (InfluxQL/Flux injection attempts, quotes, backslashes, separators, unicode, 10 kB
tags) go in as tag values, string fields and measurement names. Each is either stored and read back
verbatim — checked through the independent oracle and through our reader, with and without tag
filters — or refused with an error that says why, before anything is sent. A canary measurement
``sensor_raw`` in the same database proves that no value ever acted as a statement.

Boundaries: a point on a window's end belongs to the next window; an empty frame clears its window;
a field whose type changes between weekly shards reads back as one type; 10k series round-trip.
"""

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from dagster import HourlyPartitionsDefinition, asset, materialize, mem_io_manager

from influx_assets.influxdb import InfluxDBIOManager, InfluxDBResource, InvalidFrameError, MeasurementSlice
from influx_assets.influxdb.client.influxql import (
    delete_window,
    quote_ident,
    quote_literal,
    select_window,
    where_clause,
)
from influx_assets_tests.influxql_oracle import InfluxQLOracle

T0 = pd.Timestamp("2024-03-04T00:00:00Z").as_unit("ns")  # a Monday, the start of a 1.x shard week
HOUR = pd.Timedelta(hours=1)
CANARY = "sensor_raw"
CANARY_POINTS = 25

HOSTILE = {
    "influxql-or": 'x" OR 1=1',
    "influxql-drop": "x'; DROP MEASUREMENT sensor_raw",
    "influxql-comment": "x' -- \"; DELETE FROM sensor_raw",
    "flux-pipe": ") |> drop(",
    "backslash": "back\\slash",
    "two-backslashes": "two\\\\back",
    "leading-backslash": "\\lead",
    "backslash-before-separators": "esc\\,comma\\ space\\=eq",
    "separators": "comma,space =equals",
    "quotes": "'\"'\"",
    "unicode": "ünïcødé ✓ 温度 🌡",
    "tab": "tab\there",
    "leading-hash": "#hash",
    "long-10kB": "x" * 10_000,
}
#: Names InfluxDB 1.x cannot store verbatim as measurements; the encoder refuses them (see its docs).
NOT_A_MEASUREMENT = {"backslash-before-separators": "backslash before", "leading-hash": "comment"}


def points(n: int, start: pd.Timestamp = T0, step: str = "1min", **columns: object) -> pd.DataFrame:
    frame = pd.DataFrame({"time": pd.date_range(start, periods=n, freq=step)})
    for name, value in columns.items():
        frame[name] = value
    return frame


@pytest.fixture
def canary(influxdb: InfluxDBResource, oracle: InfluxQLOracle) -> Callable[[], None]:
    """Write ``sensor_raw``; the returned check asserts it is exactly as written."""
    frame = points(CANARY_POINTS, sensor_id=[f"s{i % 5}" for i in range(CANARY_POINTS)], value=1.0)
    influxdb.write_frame(frame, CANARY, ["sensor_id"])

    def untouched() -> None:
        assert CANARY in oracle.measurements()
        assert oracle.count(CANARY) == CANARY_POINTS

    untouched()
    return untouched


def tag_values(oracle: InfluxQLOracle, measurement: str, key: str) -> list[str]:
    series = oracle.query(f"SHOW TAG VALUES FROM {quote_ident(measurement)} WITH KEY = {quote_ident(key)}")
    return sorted(value for s in series for _, value in s["values"])


# --- the builders: exact InfluxQL text ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "ident", "literal"),
    [
        ('x" OR 1=1', '"x\\" OR 1=1"', "'x\" OR 1=1'"),
        ("x'; DROP sensor_raw", "\"x'; DROP sensor_raw\"", "'x\\'; DROP sensor_raw'"),
        (") |> drop(", '") |> drop("', "') |> drop('"),
        ("back\\slash", '"back\\\\slash"', "'back\\\\slash'"),
        ("end\\", '"end\\\\"', "'end\\\\'"),
        ("\\'", '"\\\\\'"', "'\\\\\\''"),
        ('\\"', '"\\\\\\""', "'\\\\\"'"),
        ("ünï 温度", '"ünï 温度"', "'ünï 温度'"),
    ],
)
def test_identifiers_and_literals_are_quoted_and_escaped(raw: str, ident: str, literal: str) -> None:
    assert quote_ident(raw) == ident
    assert quote_literal(raw) == literal


def test_window_statements_escape_every_hostile_part() -> None:
    where = MeasurementSlice(
        "telemetry", 'x" OR 1=1', 10, 20,
        tag_filters=(("site'", "x'; DROP MEASUREMENT sensor_raw"), ('s"id', "back\\slash")),
        columns=('v" FROM sensor_raw --',),
    )
    expected_where = (
        "WHERE time >= 10 AND time < 20 AND \"site'\" = 'x\\'; DROP MEASUREMENT sensor_raw' "
        "AND \"s\\\"id\" = 'back\\\\slash'"
    )
    assert where_clause(where) == expected_where
    assert select_window(where, ["site'"]) == (
        f'SELECT "v\\" FROM sensor_raw --", "site\'" FROM "x\\" OR 1=1" {expected_where}'
    )
    assert delete_window(where) == f'DELETE FROM "x\\" OR 1=1" {expected_where}'


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x00b"])
def test_the_builders_refuse_what_influxql_cannot_express(bad: str) -> None:
    with pytest.raises(ValueError, match="newline or NUL"):
        quote_literal(bad)
    with pytest.raises(ValueError, match="newline or NUL"):
        select_window(MeasurementSlice("db", bad))


# --- hostile values through the resource --------------------------------------------------------


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_tag_and_string_values_are_stored_and_filtered_verbatim(
    value: str, influxdb: InfluxDBResource, oracle: InfluxQLOracle, canary: Callable[[], None]
) -> None:
    frame = points(3, site=[value, "plain", value], note=[value, value, "plain"], v=[1.0, 2.0, 3.0])
    influxdb.write_frame(frame, "hostile", ["site"])

    assert tag_values(oracle, "hostile", "site") == sorted({value, "plain"})
    assert [r["note"] for r in oracle.rows('SELECT "note" FROM "hostile"')] == [value, value, "plain"]
    everything = influxdb.read_window(influxdb.slice("hostile"))
    pd.testing.assert_frame_equal(everything[["time", "site", "note", "v"]], frame, check_dtype=False)
    only = influxdb.read_window(influxdb.slice("hostile", tag_filters=(("site", value),)))
    assert only["site"].tolist() == [value, value] and only["v"].tolist() == [1.0, 3.0]
    one = influxdb.slice("hostile", T0, T0 + pd.Timedelta(minutes=1), tag_filters=(("site", value),))
    assert influxdb.delete_window(one)
    assert [r["v"] for r in oracle.rows('SELECT "v" FROM "hostile"')] == [2.0, 3.0]
    canary()


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_measurement_names_round_trip_or_are_refused_before_sending(
    value: str, influxdb: InfluxDBResource, oracle: InfluxQLOracle, canary: Callable[[], None]
) -> None:
    frame = points(2, sensor_id="s1", v=[1.5, 2.5])
    name = next((k for k, v in HOSTILE.items() if v == value), "")
    if name in NOT_A_MEASUREMENT:
        with pytest.raises(InvalidFrameError, match=NOT_A_MEASUREMENT[name]):
            influxdb.write_frame(frame, value, ["sensor_id"])
        assert oracle.measurements() == [CANARY]
    else:
        influxdb.write_frame(frame, value, ["sensor_id"])
        assert sorted(oracle.measurements()) == sorted([CANARY, value])
        assert oracle.count(value) == 2
        got = influxdb.read_window(influxdb.slice(value, tag_filters=(("sensor_id", "s1"),)))
        assert got["v"].tolist() == [1.5, 2.5]
        assert influxdb.delete_window(influxdb.slice(value, T0, T0 + HOUR))
        assert oracle.count(value) == 0
    canary()


def test_newlines_are_refused_in_tags_and_names_but_kept_in_string_fields(
    influxdb: InfluxDBResource, oracle: InfluxQLOracle, canary: Callable[[], None]
) -> None:
    with pytest.raises(InvalidFrameError, match="newline"):
        influxdb.write_frame(points(1, site="a\nb", v=1.0), "lines", ["site"])
    with pytest.raises(InvalidFrameError, match="newline"):
        influxdb.write_frame(points(1, site="a", v=1.0), "a\nb", ["site"])
    with pytest.raises(InvalidFrameError, match="newline"):
        influxdb.write_frame(points(1, v=1.0).rename(columns={"v": "a\nb"}), "lines", [])
    assert oracle.measurements() == [CANARY]

    text = "line one\nline two\r\n\"quoted\" \\ end\n"
    influxdb.write_frame(points(1, site="a", note=text), "lines", ["site"])

    assert oracle.rows('SELECT "note" FROM "lines"')[0]["note"] == text
    assert influxdb.read_window(influxdb.slice("lines"))["note"].tolist() == [text]
    with pytest.raises(ValueError, match="newline"):
        influxdb.read_window(influxdb.slice("lines", tag_filters=(("site", "a\nb"),)))
    canary()


# --- hostile values through the IO manager --------------------------------------------------------

hours = HourlyPartitionsDefinition(start_date="2024-03-04-00:00", timezone="UTC")


def io_manager(influxdb: InfluxDBResource) -> dict[str, object]:
    return {"io_manager": InfluxDBIOManager(influxdb=influxdb)}


def test_hostile_values_round_trip_through_the_io_manager(
    influxdb: InfluxDBResource, oracle: InfluxQLOracle, canary: Callable[[], None]
) -> None:
    values = list(HOSTILE.values())
    written = points(len(values), site=values, note=values[::-1], v=np.arange(len(values), dtype=float))
    loaded: list[pd.DataFrame] = []
    measurement = HOSTILE["influxql-drop"]

    @asset(partitions_def=hours, metadata={"influxdb/measurement": measurement, "influxdb/tags": ["site"]})
    def hostile() -> pd.DataFrame:
        return written

    @asset(partitions_def=hours, io_manager_key="mem")
    def hostile_copy(hostile: pd.DataFrame) -> None:
        loaded.append(hostile)

    result = materialize(
        [hostile, hostile_copy], partition_key="2024-03-04-00:00",
        resources=io_manager(influxdb) | {"mem": mem_io_manager},
    )

    assert result.success
    pd.testing.assert_frame_equal(loaded[0][["time", "site", "note", "v"]], written, check_dtype=False)
    assert tag_values(oracle, measurement, "site") == sorted(values)
    assert oracle.count(measurement) == len(values)
    canary()


# --- window boundaries ----------------------------------------------------------------------------


def materialize_window(influxdb: InfluxDBResource, key: str, frame: pd.DataFrame):
    @asset(partitions_def=hours, name="bounded", metadata={"influxdb/tags": ["sensor_id"]})
    def bounded() -> pd.DataFrame:
        return frame

    return materialize([bounded], partition_key=key, resources=io_manager(influxdb), raise_on_error=False)


def window_count(oracle: InfluxQLOracle, start: pd.Timestamp) -> int:
    return oracle.count("bounded", where=f"WHERE time >= {start.value} AND time < {(start + HOUR).value}")


def test_a_point_on_the_window_end_belongs_to_the_next_window(
    influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    assert materialize_window(influxdb, "2024-03-04-00:00", points(2, sensor_id="s1", v=1.0)).success
    on_the_end = points(1, T0 + HOUR, sensor_id="s1", v=9.0)
    first_plus_end = pd.concat([points(3, sensor_id="s1", v=2.0), on_the_end], ignore_index=True)

    refused = materialize_window(influxdb, "2024-03-04-00:00", first_plus_end)

    assert not refused.success
    failure = refused.get_step_failure_events()[0].step_failure_data.error
    assert "1 of 4 rows" in str(failure) and "2024-03-04T01:00:00+00:00" in str(failure)
    assert "Nothing was written" in str(failure)
    assert window_count(oracle, T0) == 2 and window_count(oracle, T0 + HOUR) == 0  # untouched

    assert materialize_window(influxdb, "2024-03-04-01:00", on_the_end).success
    assert oracle.rows('SELECT "v" FROM "bounded" WHERE time >= ' + str((T0 + HOUR).value)) == [
        {"time": (T0 + HOUR).value, "v": 9.0}
    ]
    first_window = influxdb.read_window(influxdb.slice("bounded", T0, T0 + HOUR))
    assert first_window["time"].max() < T0 + HOUR and len(first_window) == 2


def test_an_empty_frame_clears_its_window_and_nothing_else(
    influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    assert materialize_window(influxdb, "2024-03-04-00:00", points(3, sensor_id="s1", v=1.0)).success
    next_window = points(2, T0 + HOUR, sensor_id="s1", v=1.0)
    assert materialize_window(influxdb, "2024-03-04-01:00", next_window).success
    empty = points(0, sensor_id="s1", v=1.0).astype({"sensor_id": "str", "v": "float64"})

    result = materialize_window(influxdb, "2024-03-04-00:00", empty)

    assert result.success
    (materialization,) = result.asset_materializations_for_node("bounded")
    assert materialization.metadata["dagster/row_count"].value == 0
    assert window_count(oracle, T0) == 0
    assert window_count(oracle, T0 + HOUR) == 2
    assert len(influxdb.read_window(influxdb.slice("bounded", T0, T0 + HOUR))) == 0


def test_a_field_that_changes_type_between_shards_reads_back_as_float(
    influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    week1, week3 = T0, T0 + pd.Timedelta(days=14)  # 1.x shard groups: 7 days, Monday-aligned
    influxdb.write_frame(points(2, week1, sensor_id="s1", v=[1.5, 2.0]), "drift", ["sensor_id"])
    influxdb.write_frame(points(2, week3, sensor_id="s1", v=[5, 7]), "drift", ["sensor_id"])  # int64

    kinds = sorted(kind for s in oracle.query('SHOW FIELD KEYS FROM "drift"') for _, kind in s["values"])
    assert kinds == ["float", "integer"]  # the server keeps one type per shard
    first = influxdb.read_window(influxdb.slice("drift", week1, week1 + HOUR))
    third = influxdb.read_window(influxdb.slice("drift", week3, week3 + HOUR))
    both = influxdb.read_window(influxdb.slice("drift", week1, week3 + HOUR))
    assert first["v"].dtype == third["v"].dtype == both["v"].dtype == np.float64
    assert first["v"].tolist() == [1.5, 2.0]
    assert third["v"].tolist() == [5.0, 7.0]
    assert both["v"].tolist() == [1.5, 2.0, 5.0, 7.0]


def test_ten_thousand_series_in_one_window_round_trip_exactly(
    influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    n = 10_000
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({
        "time": T0 + pd.to_timedelta(rng.integers(0, 3_600_000_000_000, n), unit="ns"),
        "sensor_id": [f"sensor-{i:05d}" for i in range(n)],
        "site": [f"site-{i % 37}" for i in range(n)],
        "value": rng.normal(20, 5, n),
        "count": rng.integers(-(2**62), 2**62, n),
    })
    frame["time"] = frame["time"].dt.as_unit("ns")

    result = influxdb.write_frame(frame, "fleet", ["sensor_id", "site"])
    got = influxdb.read_window(influxdb.slice("fleet", T0, T0 + HOUR))

    assert result.points_written == n
    cardinality = oracle.query('SHOW SERIES EXACT CARDINALITY FROM "fleet"')
    assert cardinality[0]["values"][0][-1] == n
    expected = frame.sort_values(["time", "sensor_id"], ignore_index=True)
    actual = got.sort_values(["time", "sensor_id"], ignore_index=True)
    pd.testing.assert_frame_equal(actual[["time", "sensor_id", "site", "value", "count"]], expected)
