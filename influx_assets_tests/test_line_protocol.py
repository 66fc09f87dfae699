"""The line-protocol encoder: exact text for tricky inputs, and what the real server stores from it.

DESIGN.md lists influxdb-client's serializer bugs; each has a test here proving ours does not share it.
"""

import math

import numpy as np
import pandas as pd
import pytest

from influx_assets.influxdb import InfluxDBResource, InvalidFrameError, encode_frame
from influx_assets.influxdb.client.line_protocol import escape_key, escape_measurement, escape_string_field
from influx_assets_tests.influxql_oracle import InfluxQLOracle

T0 = pd.Timestamp("2024-01-01T00:00:00Z")


def frame(**columns: object) -> pd.DataFrame:
    n = len(next(iter(columns.values())))  # type: ignore[arg-type]
    return pd.DataFrame({"time": [T0 + pd.Timedelta(seconds=i) for i in range(n)], **columns})


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [("plain", "plain"), ("a b", "a\\ b"), ("a,b", "a\\,b"), ("a=b", "a\\=b"), ('q"x', 'q"x'), ("ü€", "ü€"),
     ("back\\slash", "back\\slash")],
)
def test_escape_key_escapes_only_separators(raw: str, escaped: str) -> None:
    assert escape_key(raw) == escaped


def test_measurement_escaping_leaves_equals_sign() -> None:
    assert escape_measurement("m a,b=c") == "m\\ a\\,b=c"


def test_string_field_quotes_and_escapes_quote_and_backslash() -> None:
    assert escape_string_field('he said "hi" \\') == '"he said \\"hi\\" \\\\"'


@pytest.mark.parametrize("bad", ["a\nb", "ends\\"])
def test_unrepresentable_tag_values_are_rejected_with_a_reason(bad: str) -> None:
    with pytest.raises(InvalidFrameError, match="newline|backslash"):
        encode_frame(frame(site=[bad], v=[1.0]), "m", ["site"])


def test_exact_lines_for_every_field_type() -> None:
    df = frame(site=["a"], f=[40.0], i=[3], b=[True], s=["x y"])
    lines = encode_frame(df, "m", ["site"]).lines
    assert list(lines) == [f'm,site=a f=40.0,i=3i,b=true,s="x y" {T0.value}']


def test_null_tag_is_omitted_not_written_as_text() -> None:
    # influxdb-client writes a null tag as an escaped string, turning "a,b=c" into an extra tag
    df = frame(site=["a,b=c", None], v=[1.0, 2.0])
    encoded = encode_frame(df, "m", ["site"])
    assert list(encoded.lines) == [f"m,site=a\\,b\\=c v=1.0 {T0.value}", f"m v=2.0 {T0.value + 1_000_000_000}"]
    assert encoded.empty_tag_values == 1


def test_empty_string_tag_is_omitted_not_written_as_nan() -> None:
    encoded = encode_frame(frame(site=[""], v=[1.0]), "m", ["site"])
    assert list(encoded.lines) == [f"m v=1.0 {T0.value}"]
    assert encoded.empty_tag_values == 1


def test_infinite_field_is_rejected_before_sending() -> None:
    with pytest.raises(InvalidFrameError, match="infinite"):
        encode_frame(frame(v=[1.0, math.inf]), "m", [])


def test_nan_fields_are_omitted_per_row_and_all_null_rows_are_counted() -> None:
    encoded = encode_frame(frame(a=[1.0, np.nan, np.nan], b=[np.nan, 2.0, np.nan]), "m", [])
    assert [line.split(" ")[1] for line in encoded.lines] == ["a=1.0", "b=2.0"]
    assert encoded.rows_without_fields == 1
    assert list(encoded.written) == [True, True, False]


def test_nullable_integers_and_object_columns_keep_their_kind() -> None:
    df = frame(n=pd.array([1, None], dtype="Int64"), flag=[True, False], mixed=pd.Series([1, None], dtype=object))
    fields = [line.split(" ")[1] for line in encode_frame(df, "m", []).lines]
    assert fields == ["n=1i,flag=true,mixed=1i", "flag=false"]


def test_naive_timestamps_are_refused() -> None:
    df = pd.DataFrame({"time": [pd.Timestamp("2024-01-01")], "v": [1.0]})
    with pytest.raises(InvalidFrameError, match="tz-aware"):
        encode_frame(df, "m", [])


def test_time_cannot_be_a_field_name() -> None:
    df = pd.DataFrame({"ts": [T0], "time": [1.0]})
    with pytest.raises(InvalidFrameError, match="'time'"):
        encode_frame(df, "m", [], time_column="ts")


HOSTILE = ["a b", "a,b", "a=b", 'say "hi"', "it's", "x\\y", "ünï©ødé ✓", "x\" OR 1=1", ") |> drop(", "a\\,b"]


def test_hostile_tag_and_field_values_round_trip_through_the_server(
    influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    df = frame(site=HOSTILE, note=[v + " \\ \"end\"" for v in HOSTILE], v=[float(i) for i in range(len(HOSTILE))])
    result = influxdb.write_frame(df, "odd measurement,x=1", ["site"])
    assert result.points_written == len(HOSTILE)
    rows = oracle.rows('SELECT * FROM "odd measurement,x=1" WHERE time >= 0')
    assert sorted((r["site"], r["note"], r["v"]) for r in rows) == sorted(
        zip(df["site"], df["note"], df["v"], strict=True)
    )
