"""HTTP-level contract tests of the v2 transport (InfluxDB 2.x API through influxdb-client).

No InfluxDB 2.x server can be installed on these machines, so a small stdlib HTTP server on
127.0.0.1 (``fake_influxdb2.py``) answers like InfluxDB 2.x OSS and records every request. The tests
pin what goes over the wire (paths, query parameters, the ``Token`` header, the exact line-protocol
bytes, the delete body, the posted Flux) and how real annotated-CSV responses are parsed: the
samples in ``data/`` are taken verbatim from influxdb-client-python's own tests (each file names its
origin), plus one constructed two-series sample marked as such. Retries, ``Retry-After`` and the
error mapping are driven by scripted status codes.

With ``INFLUXDB_URL`` pointing at a real 2.x server and ``INFLUXDB_API=v2``, the behaviour suite
(the ``influxdb`` fixture) runs through this same transport against that server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from influx_assets.influxdb import (
    AuthenticationError,
    BadRequestError,
    DatabaseNotFoundError,
    FieldTypeConflictError,
    InfluxDBResource,
    MeasurementSlice,
    ServerBusyError,
    ServerUnreachableError,
    encode_frame,
    flux,
)
from influx_assets.influxdb.annotated_csv import parse_annotated_csv
from influx_assets.influxdb.retries import RetrySettings
from influx_assets.influxdb.v2 import V2Transport
from influx_assets.local_server import free_port
from influx_assets_tests.fake_influxdb2 import ORG, ORG_ID, FakeInfluxDB2, start_fake_influxdb2
from influx_assets.influxdb.pandas_versions import TEXT_DTYPE

DATA = Path(__file__).parent / "data"
TOKEN = "s3cr3t-token-do-not-print"
HOUR = MeasurementSlice.for_window(
    "telemetry",
    "sensor_raw",
    datetime(2024, 1, 1, tzinfo=timezone.utc),
    datetime(2024, 1, 1, 1, tzinfo=timezone.utc),
)


def sample(name: str) -> bytes:
    """A response body from ``data/`` without its ``//`` provenance lines."""
    raw = (DATA / name).read_bytes()
    return b"".join(line for line in raw.splitlines(keepends=True) if not line.startswith(b"//"))


@pytest.fixture
def influx2() -> Iterator[FakeInfluxDB2]:
    """A recording InfluxDB 2.x look-alike on a free loopback port."""
    fake, server = start_fake_influxdb2()
    yield fake
    server.shutdown()
    server.server_close()


def transport(url: str, attempts: int = 3, batch_size: int = 10_000, **kwargs: object) -> V2Transport:
    delays: list[float] = []
    made = V2Transport(
        url=url,
        token=TOKEN,
        org=ORG,
        timeout=5.0,
        batch_size=batch_size,
        retry=RetrySettings(max_attempts=attempts, initial_delay=0.01, jitter=0.0),
        on_retry=lambda attempt, delay, error: delays.append(delay),
        **kwargs,  # type: ignore[arg-type]
    )
    made.delays = delays  # type: ignore[attr-defined]
    return made


def three_points() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time": pd.to_datetime(
                ["2024-01-01T00:00:00Z", "2024-01-01T00:00:01.5Z", "2024-01-01T00:59:59.999999999Z"],
                format="ISO8601",
            ),
            "site": ["s 1", "s,2", "s=3"],
            "temperature": [20.5, 21.0, -3.25],
            "status": ['ok "quoted"', "x", "y"],
        }
    )


# --- what goes over the wire -----------------------------------------------------------------------
def test_write_posts_exactly_our_lines_to_api_v2_write_with_token_org_bucket_and_ns(
    influx2: FakeInfluxDB2,
) -> None:
    encoded = encode_frame(three_points(), "sensor_raw", ["site"])
    stats = transport(influx2.url, batch_size=2).write("telemetry", encoded)
    writes = influx2.on("/api/v2/write")
    assert [w.params for w in writes] == [{"org": ORG, "bucket": "telemetry", "precision": "ns"}] * 2
    assert all(w.method == "POST" and w.headers["Authorization"] == f"Token {TOKEN}" for w in writes)
    assert [w.body for w in writes] == list(encoded.batches(2))
    assert b"\n".join(w.body for w in writes).decode().split("\n") == list(encoded.lines)
    assert (stats.points, stats.batches, stats.bytes_sent) == (3, 2, sum(len(w.body) for w in writes))


def test_delete_posts_window_start_inclusive_stop_one_ns_before_end_and_predicate(
    influx2: FakeInfluxDB2,
) -> None:
    where = MeasurementSlice(
        HOUR.database, HOUR.measurement, HOUR.start_ns, HOUR.end_ns, tag_filters=(("site", 'a "b"'),)
    )
    transport(influx2.url).delete(where)
    (request,) = influx2.on("/api/v2/delete")
    assert request.params == {"org": ORG, "bucket": "telemetry"}
    assert request.headers["Authorization"] == f"Token {TOKEN}"
    assert request.json() == {
        "start": "2024-01-01T00:00:00Z",
        "stop": "2024-01-01T00:59:59.999999999Z",
        "predicate": '_measurement="sensor_raw" AND "site"="a \\"b\\""',
    }


def test_read_posts_exactly_the_flux_we_built_with_annotations(influx2: FakeInfluxDB2) -> None:
    influx2.script("/api/v2/query", 200, sample("pivoted_data.csv"), Content_Type="text/csv")
    where = MeasurementSlice(
        "telemetry", 'sensor "raw"', HOUR.start_ns, HOUR.end_ns, columns=("test_double",)
    )
    transport(influx2.url).read(where)
    (request,) = influx2.on("/api/v2/query")
    assert request.params == {"org": ORG}
    assert request.json()["query"] == flux.select_window(where)
    assert request.json()["dialect"]["annotations"] == ["datatype", "group"]


def test_ping_reads_the_version_header(influx2: FakeInfluxDB2) -> None:
    made = transport(influx2.url)
    info = made.ping()
    assert (info.version, info.major, info.build, made.supports_delete) == ("v2.7.11", 2, "OSS", True)


def test_ensure_database_creates_a_missing_bucket_once_in_the_org(influx2: FakeInfluxDB2) -> None:
    made = transport(influx2.url)
    made.ensure_database("telemetry")
    made.ensure_database("telemetry")
    (created,) = [r for r in influx2.on("/api/v2/buckets") if r.method == "POST"]
    assert created.json()["name"] == "telemetry" and created.json()["orgID"] == ORG_ID
    lookups = [r.params for r in influx2.on("/api/v2/buckets") if r.method == "GET"]
    assert lookups == [{"name": "telemetry", "org": ORG}] * 2


def test_ensure_database_without_org_says_what_to_set(influx2: FakeInfluxDB2) -> None:
    with pytest.raises(BadRequestError, match="INFLUXDB_ORG"):
        V2Transport(url=influx2.url, token=TOKEN, org=None).ensure_database("telemetry")
    assert influx2.requests == []


# --- parsing real annotated CSV ----------------------------------------------------------------------
def test_pivoted_sample_parses_to_typed_frame_with_nullable_columns(influx2: FakeInfluxDB2) -> None:
    influx2.script("/api/v2/query", 200, sample("pivoted_data.csv"), Content_Type="text/csv")
    frame = transport(influx2.url).read(HOUR)
    assert list(frame.columns) == ["time", "test_boolean", "test_double", "test_long", "test_string"]
    assert {c: str(t) for c, t in frame.dtypes.items()} == {
        "time": "datetime64[ns, UTC]",
        "test_boolean": "boolean",
        "test_double": "float64",
        "test_long": "Int64",
        "test_string": TEXT_DTYPE,
    }
    assert list(frame["time"]) == list(pd.to_datetime([f"2023-12-15T13:19:5{s}Z" for s in "5678"]))
    assert frame["test_double"].iloc[0] == 4.0 and frame["test_double"].iloc[1:].isna().all()
    assert frame["test_long"].tolist() == [pd.NA, 1, pd.NA, pd.NA]
    assert frame["test_string"].iloc[2] == "hi" and frame["test_string"].drop(index=2).isna().all()
    assert frame["test_boolean"].tolist() == [pd.NA, pd.NA, pd.NA, True]


def test_two_series_in_two_blocks_merge_into_one_time_ordered_frame(influx2: FakeInfluxDB2) -> None:
    influx2.script("/api/v2/query", 200, sample("pivoted_two_series_crlf.csv"), Content_Type="text/csv")
    frame = transport(influx2.url).read(HOUR)
    assert list(frame.columns) == ["time", "line", "site", "humidity", "note", "seq"]
    assert frame["time"].astype("int64").tolist() == [
        1_704_067_200_000_000_000,
        1_704_067_201_000_000_000,
        1_704_067_202_000_000_001,
        1_704_067_202_000_000_001,
    ]
    assert frame["site"].tolist() == ["s1", "s2", "s1", "s2"]
    assert frame["line"].iloc[[0, 2]].tolist() == ["l1", "l1"] and frame["line"].iloc[[1, 3]].isna().all()
    assert frame["humidity"].tolist()[:3] == [40.0, 39.0, 41.5] and pd.isna(frame["humidity"].iloc[3])
    assert frame["note"].iloc[1] == 'two\r\n\r\n#lines, "quoted"'
    assert str(frame["seq"].dtype) == "Int64" and frame["seq"].tolist() == [1, pd.NA, pd.NA, pd.NA]


def test_field_types_come_from_the_datatype_of_each_table(influx2: FakeInfluxDB2) -> None:
    influx2.script("/api/v2/query", 200, sample("more_tables.csv"), Content_Type="text/csv")
    types = transport(influx2.url).field_types("telemetry", "mem")
    assert types == {"used": "integer", "available": "integer", "free": "integer"}
    (request,) = influx2.on("/api/v2/query")
    assert request.json()["query"] == flux.first_per_series(MeasurementSlice("telemetry", "mem"))


def test_empty_window_gives_an_empty_frame_with_the_measurements_columns(influx2: FakeInfluxDB2) -> None:
    influx2.script("/api/v2/query", 200, b"\r\n", Content_Type="text/csv")
    influx2.script("/api/v2/query", 200, sample("more_tables.csv"), Content_Type="text/csv")
    frame = transport(influx2.url).read(HOUR)
    assert len(frame) == 0
    assert list(frame.columns) == ["time", "host", "available", "free", "used"]
    assert str(frame["time"].dtype) == "datetime64[ns, UTC]" and str(frame["used"].dtype) == "int64"


def test_genuine_samples_parse_with_declared_dtypes_group_keys_and_exact_values() -> None:
    used, available, free = parse_annotated_csv(sample("more_tables.csv"))
    assert [len(t.rows) for t in (used, available, free)] == [5, 5, 5]
    assert str(used.rows["_value"].dtype) == "Int64" and used.rows["_value"].iloc[0] == 11125907456
    assert used.tag_columns() == ["host"] and free.rows["_field"].unique().tolist() == ["free"]
    assert used.time_ns("_start")[0] == 1_573_546_144_795_385_031

    first, second = parse_annotated_csv(sample("two_schemas.csv"))  # #group before #datatype in block 2
    assert first.tag_columns() == ["host", "region"] and first.rows["value1"].tolist() == [11, 40]
    assert first.rows["value_str"].tolist() == ["test", "abc"]
    assert second.tag_columns() == ["language", "license", "name", "owner"]
    assert str(second.rows["le"].dtype) == "float64" and second.rows["le"].tolist() == [0.0, 10.0]
    assert second.rows["license"].iloc[0] == "MIT License" and second.rows["result"].iloc[0] == "_result"

    (typed,) = parse_annotated_csv(sample("column_datatypes.csv"))
    assert {c: str(typed.rows[c].dtype) for c in ("value1", "value2", "value3", "value5")} == {
        "value1": "Int64",
        "value2": "UInt64",
        "value3": TEXT_DTYPE,
        "value5": "float64",
    }
    assert typed.rows.iloc[0][["value1", "value2", "value3", "value4", "value5"]].tolist() == [
        121,
        11,
        "test",
        "true",
        6.56,
    ]

    (infinite,) = parse_annotated_csv(sample("inf_values.csv"))
    assert len(infinite.rows) == 12 and infinite.rows["le"].tolist()[-2:] == [float("inf"), float("-inf")]


def test_error_table_inside_a_200_response_raises_with_the_servers_message(influx2: FakeInfluxDB2) -> None:
    influx2.script("/api/v2/query", 200, sample("error_table.csv"), Content_Type="text/csv")
    with pytest.raises(BadRequestError, match="engine: unknown field type for value: xyz"):
        transport(influx2.url).read(HOUR)


# --- retries and errors ------------------------------------------------------------------------------
def test_429_is_retried_after_the_servers_retry_after(influx2: FakeInfluxDB2) -> None:
    influx2.script(
        "/api/v2/write", 429, '{"code":"too many requests","message":"slow down"}', Retry_After="1"
    )
    made = transport(influx2.url)
    stats = made.write("telemetry", encode_frame(three_points(), "sensor_raw", ["site"]))
    first, second = influx2.on("/api/v2/write")
    assert stats.points == 3 and first.body == second.body
    assert made.delays == [1.0]  # type: ignore[attr-defined]
    assert second.at - first.at >= 1.0


def test_503_exhausts_our_attempts_and_the_client_itself_never_retries(influx2: FakeInfluxDB2) -> None:
    for _ in range(2):
        influx2.script("/api/v2/query", 503, '{"code":"unavailable","message":"overloaded"}')
    with pytest.raises(ServerBusyError, match="gave up after 2 attempts"):
        transport(influx2.url, attempts=2).read(HOUR)
    assert len(influx2.on("/api/v2/query")) == 2


def test_400_is_not_retried_and_the_token_is_redacted(influx2: FakeInfluxDB2) -> None:
    influx2.script(
        "/api/v2/write", 400, json.dumps({"code": "invalid", "message": f"unable to parse: {TOKEN}"})
    )
    with pytest.raises(BadRequestError) as caught:
        transport(influx2.url).write("telemetry", encode_frame(three_points(), "sensor_raw", ["site"]))
    assert "unable to parse: ***" in str(caught.value) and TOKEN not in str(caught.value)
    assert len(influx2.on("/api/v2/write")) == 1


def test_401_is_an_authentication_error_without_the_token(influx2: FakeInfluxDB2) -> None:
    influx2.script(
        "/api/v2/delete", 401, json.dumps({"code": "unauthorized", "message": f"bad token {TOKEN}"})
    )
    with pytest.raises(AuthenticationError, match="HTTP 401") as caught:
        transport(influx2.url).delete(HOUR)
    assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value.__cause__)
    assert len(influx2.on("/api/v2/delete")) == 1


def test_missing_bucket_and_type_conflict_map_to_their_errors(influx2: FakeInfluxDB2) -> None:
    influx2.script("/api/v2/write", 404, '{"code":"not found","message":"bucket \\"nope\\" not found"}')
    influx2.script(
        "/api/v2/write",
        422,
        json.dumps(
            {
                "code": "unprocessable entity",
                "message": "failure writing points to database: partial write: field type conflict: "
                'input field "temperature" on measurement "sensor_raw" is type integer, '
                "already exists as type float dropped=1",
            }
        ),
    )
    made, encoded = transport(influx2.url), encode_frame(three_points(), "sensor_raw", ["site"])
    with pytest.raises(DatabaseNotFoundError, match='bucket "nope" not found'):
        made.write("nope", encoded)
    with pytest.raises(FieldTypeConflictError, match="field type conflict"):
        made.write("telemetry", encoded)


def test_query_on_a_missing_bucket_is_database_not_found(influx2: FakeInfluxDB2) -> None:
    body = {
        "code": "not found",
        "message": 'failed to initialize execute state: could not find bucket "nope"',
    }
    influx2.script("/api/v2/query", 404, json.dumps(body))
    with pytest.raises(DatabaseNotFoundError, match='could not find bucket "nope"'):
        transport(influx2.url).read(MeasurementSlice("nope", "sensor_raw"))
    assert len(influx2.on("/api/v2/query")) == 1


def test_unreachable_server_says_so_without_the_token() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServerUnreachableError) as caught:
        transport(url, attempts=2).ping()
    assert f"cannot reach InfluxDB at {url} — is it running?" in str(caught.value)
    assert TOKEN not in str(caught.value)


# --- through the resource ----------------------------------------------------------------------------
def test_resource_with_api_v2_writes_reads_and_deletes_through_this_transport(influx2: FakeInfluxDB2) -> None:
    resource = InfluxDBResource(
        url=influx2.url,
        api="v2",
        token=TOKEN,
        org=ORG,
        database="telemetry",
        max_attempts=2,
        initial_backoff_seconds=0.01,
        write_batch_size=2,
    )
    assert isinstance(resource.get_transport(), V2Transport)
    result = resource.write_frame(three_points(), "sensor_raw", ["site"])
    assert (result.points_written, result.batches) == (3, 2)
    assert resource.delete_window(HOUR) is True
    influx2.script("/api/v2/query", 200, sample("pivoted_two_series_crlf.csv"), Content_Type="text/csv")
    assert len(resource.read_window(HOUR)) == 4
    assert [r.path for r in influx2.requests] == [
        "/api/v2/write",
        "/api/v2/write",
        "/api/v2/delete",
        "/api/v2/query",
    ]
    assert all(r.headers["Authorization"] == f"Token {TOKEN}" for r in influx2.requests)


def test_resource_with_api_auto_picks_this_transport_for_a_2x_server(influx2: FakeInfluxDB2) -> None:
    resource = InfluxDBResource(url=influx2.url, api="auto", token=TOKEN, org=ORG)
    assert isinstance(resource.get_transport(), V2Transport)
    assert [r.path for r in influx2.requests] == ["/ping"]
