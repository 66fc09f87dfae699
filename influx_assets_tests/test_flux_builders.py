"""The Flux and delete-predicate builders: exact text, exact timestamps, escaping of hostile values.

Escaping is checked twice: the exact text is pinned here, and every program the builders produce is
parsed by the real Flux parser in test_flux_parser.py. Delete predicates (parsed by the InfluxQL scanner's
``ScanString`` in InfluxDB 2.x, which no installable package offers) are decoded by an independent
decoder written from that scanner.
"""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pandas as pd
import pytest

from influx_assets.influxdb.client import flux
from influx_assets.influxdb.client.slice import MAX_TIME_NS, MIN_TIME_NS, MeasurementSlice

HOUR = MeasurementSlice.for_window(
    "telemetry",
    "sensor_raw",
    datetime(2024, 1, 1, tzinfo=timezone.utc),
    datetime(2024, 1, 1, 1, tzinfo=timezone.utc),
)
HOSTILE = [
    'x" OR 1=1',
    ") |> drop(",
    "${token}",
    "a\nb",
    "back\\slash",
    '\\"',
    "\\${x}",
    "$ {",
    "t\tr\r",
    "",
    "日本",
]


def decode_predicate_string(literal: str) -> str:
    """Decode a double-quoted identifier like influxql.ScanString (escapes: n, \\, ", ')."""
    assert literal[0] == '"' and literal[-1] == '"', literal
    inner, out, i = literal[1:-1], [], 0
    while i < len(inner):
        char = inner[i]
        assert char != "\n", "a raw newline is a bad string for the scanner"
        if char == "\\":
            escaped = {"n": "\n", "\\": "\\", '"': '"', "'": "'"}
            assert inner[i + 1] in escaped, f"bad escape in {literal!r}"
            out.append(escaped[inner[i + 1]])
            i += 2
            continue
        assert char != '"', f"unescaped quote ends {literal!r} early"
        out.append(char)
        i += 1
    return "".join(out)


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("plain", '"plain"'),
        ('x" OR 1=1', '"x\\" OR 1=1"'),
        (") |> drop(", '") |> drop("'),
        ("${token}", '"\\x24{token}"'),
        ('$"', '"\\x24\\""'),
        ("$\\", '"\\x24\\\\"'),
        ("a\nb", '"a\\nb"'),
        ("back\\slash", '"back\\\\slash"'),
        ("\\${x}", '"\\\\\\x24{x}"'),
        ("$ {", '"\\x24 {"'),
        ("t\tr\r", '"t\\tr\\r"'),
        ("", '""'),
    ],
)
def test_flux_string_escapes_quotes_backslashes_interpolation_and_newlines(value: str, literal: str) -> None:
    assert flux.flux_string(value) == literal


@pytest.mark.parametrize(
    ("epoch_ns", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1, "1970-01-01T00:00:00.000000001Z"),
        (-1, "1969-12-31T23:59:59.999999999Z"),
        (1_704_067_200_000_000_000, "2024-01-01T00:00:00Z"),
        (1_704_067_200_500_000_000, "2024-01-01T00:00:00.5Z"),
        (1_704_070_800_000_000_000 - 1, "2024-01-01T00:59:59.999999999Z"),
        (MIN_TIME_NS, "1677-09-21T00:12:43.145224194Z"),
        (MAX_TIME_NS, "2262-04-11T23:47:16.854775806Z"),
    ],
)
def test_rfc3339_nano_is_exact_to_the_nanosecond_in_utc(epoch_ns: int, text: str) -> None:
    assert flux.rfc3339_nano(epoch_ns) == text


def test_rfc3339_nano_round_trips_through_pandas_for_random_instants() -> None:
    rng = random.Random(20261124)
    for _ in range(2000):
        epoch_ns = rng.randint(MIN_TIME_NS, MAX_TIME_NS)
        assert pd.Timestamp(flux.rfc3339_nano(epoch_ns)).value == epoch_ns


def test_select_window_pins_range_filter_pivot_and_drop() -> None:
    assert flux.select_window(HOUR) == (
        'from(bucket: "telemetry")\n'
        '  |> range(start: time(v: "2024-01-01T00:00:00Z"), stop: time(v: "2024-01-01T01:00:00Z"))\n'
        '  |> filter(fn: (r) => r._measurement == "sensor_raw")\n'
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        '  |> drop(columns: ["_start", "_stop", "_measurement"])'
    )


def test_select_window_escapes_hostile_tags_fields_measurement_and_bucket() -> None:
    where = MeasurementSlice(
        'bucket"',
        "${m}",
        start_ns=1,
        end_ns=2,
        tag_filters=(("site", 'x" OR 1=1'), ('k"', "a\nb")),
        columns=("temp", ") |> drop("),
    )
    assert flux.select_window(where) == (
        'from(bucket: "bucket\\"")\n'
        '  |> range(start: time(v: "1970-01-01T00:00:00.000000001Z"), '
        'stop: time(v: "1970-01-01T00:00:00.000000002Z"))\n'
        '  |> filter(fn: (r) => r._measurement == "\\x24{m}")\n'
        '  |> filter(fn: (r) => r["site"] == "x\\" OR 1=1" and r["k\\""] == "a\\nb")\n'
        '  |> filter(fn: (r) => r._field == "temp" or r._field == ") |> drop(")\n'
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        '  |> drop(columns: ["_start", "_stop", "_measurement"])'
    )


def test_select_window_refuses_an_empty_column_list() -> None:
    with pytest.raises(ValueError, match="at least one column"):
        flux.select_window(MeasurementSlice("b", "m", columns=()))


def test_first_per_series_reads_the_whole_measurement_for_its_schema() -> None:
    assert flux.first_per_series(MeasurementSlice("telemetry", "sensor_raw")) == (
        'from(bucket: "telemetry")\n'
        '  |> range(start: time(v: "1677-09-21T00:12:43.145224194Z"), '
        'stop: time(v: "2262-04-11T23:47:16.854775806Z"))\n'
        '  |> filter(fn: (r) => r._measurement == "sensor_raw")\n'
        "  |> first()"
    )


@pytest.mark.parametrize(
    ("where", "predicate"),
    [
        (MeasurementSlice("b", "sensor_raw"), '_measurement="sensor_raw"'),
        (
            MeasurementSlice("b", "sensor_raw", tag_filters=(("site", "a"), ("line", "b 2"))),
            '_measurement="sensor_raw" AND "site"="a" AND "line"="b 2"',
        ),
        (
            MeasurementSlice("b", 'm" OR "x"="y', tag_filters=(("and", 'x" OR 1=1'),)),
            '_measurement="m\\" OR \\"x\\"=\\"y" AND "and"="x\\" OR 1=1"',
        ),
        (
            MeasurementSlice("b", "m", tag_filters=(("k", "a\\b\nc"),)),
            '_measurement="m" AND "k"="a\\\\b\\nc"',
        ),
    ],
)
def test_delete_predicate_quotes_and_escapes_every_name_and_value(
    where: MeasurementSlice, predicate: str
) -> None:
    assert flux.delete_predicate(where) == predicate


@pytest.mark.parametrize("value", HOSTILE)
def test_delete_predicate_values_decode_back_to_exactly_the_value(value: str) -> None:
    value = value or "v"  # InfluxDB has no empty measurement or tag value
    predicate = flux.delete_predicate(MeasurementSlice("b", value, tag_filters=(("tag", value),)))
    measurement_part, tag_part = predicate.split(' AND "tag"=')
    assert decode_predicate_string(measurement_part.removeprefix("_measurement=")) == value
    assert decode_predicate_string(tag_part) == value


def test_delete_predicate_refuses_field_filters_the_api_cannot_do() -> None:
    with pytest.raises(ValueError, match="_field"):
        flux.delete_predicate(MeasurementSlice("b", "m", tag_filters=(("_field", "temp"),)))


def test_delete_bounds_make_the_inclusive_stop_one_nanosecond_before_the_window_end() -> None:
    assert flux.delete_bounds(HOUR) == ("2024-01-01T00:00:00Z", "2024-01-01T00:59:59.999999999Z")
