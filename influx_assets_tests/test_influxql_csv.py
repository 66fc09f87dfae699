"""InfluxQL CSV parsing: the same frame however the response is cut into blocks, repeated headers or not."""

import pandas as pd
import pytest

from influx_assets.influxdb import InfluxDBResource
from influx_assets.influxdb.client.influxql_csv import parse_influxql_csv, parse_influxql_csv_stream

HEADER = b"name,tags,time,sensor_id,value,note\n"
ROWS = [
    b'm,,1000,s1,1.5,"a, b"\n',
    b"m,,2000,s2,,\n",
    b'm,,3000,"s 3",-2,"say ""hi"""\n',
]
TYPES = {"value": "float", "note": "string"}


def expected() -> pd.DataFrame:
    return pd.DataFrame({
        "time": pd.to_datetime([1000, 2000, 3000], unit="ns", utc=True),
        "sensor_id": pd.Series(["s1", "s2", "s 3"], dtype="str"),
        "note": pd.Series(["a, b", None, 'say "hi"'], dtype="str"),
        "value": [1.5, None, -2.0],
    })


def cut(body: bytes, size: int) -> list[bytes]:
    return [body[i: i + size] for i in range(0, len(body), size)]


@pytest.mark.parametrize("block", [1, 2, 5, 17, len(HEADER) - 1, len(HEADER), len(HEADER) + 1, 10_000])
def test_any_block_size_with_headers_repeated_at_chunk_boundaries_gives_the_same_frame(block: int) -> None:
    body = HEADER + ROWS[0] + HEADER + ROWS[1] + HEADER + HEADER + ROWS[2]
    frame = parse_influxql_csv_stream(cut(body, block), ["sensor_id"], TYPES)
    pd.testing.assert_frame_equal(frame, expected(), check_like=True)


def test_an_empty_response_has_no_frame() -> None:
    assert parse_influxql_csv(b"", ["sensor_id"], TYPES) is None
    assert parse_influxql_csv_stream([b"", b"\n"], ["sensor_id"], TYPES) is None


def test_a_tag_and_a_field_named_like_the_responses_own_columns_read_back_as_themselves(
    influxdb: InfluxDBResource,
) -> None:
    written = pd.DataFrame({
        "time": pd.date_range("2024-06-01", periods=3, freq="1s", tz="UTC"),
        "tags": pd.Series(["t1", "t2", "t3"], dtype="str"),
        "name": [1.0, 2.0, 3.0],
        "value": ["x", "y", "z"],
    })
    influxdb.write_frame(written, "clashing", ["tags"])
    back = influxdb.read_window(influxdb.slice("clashing"))
    pd.testing.assert_frame_equal(back[written.columns], written, check_dtype=False)
