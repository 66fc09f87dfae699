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

import gzip
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
    InvalidFrameError,
    MeasurementSlice,
    ServerBusyError,
    ServerUnreachableError,
    UnsupportedServerError,
    encode_frame,
)
from influx_assets.influxdb.client import flux
from influx_assets.influxdb.client.annotated_csv import parse_annotated_csv
from influx_assets.influxdb.client.retries import RetrySettings
from influx_assets.influxdb.client.v2 import V2Transport
from influx_assets.devtools.local_server import free_port
from influx_assets_tests.fake_influxdb2 import (
    EMPTY_QUERY_RESULT,
    ORG,
    ORG_ID,
    FakeInfluxDB2,
    Reply,
    compact_error,
    start_fake_influxdb2,
)
from influx_assets.influxdb.client.pandas_versions import TEXT_DTYPE

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


def csv_reply(name: str) -> Reply:
    """A 200 query response whose body is the sample ``name``; its ``// source:`` line is the citation."""
    source = (DATA / name).read_text(encoding="utf-8").splitlines()[0].removeprefix("// source: ")
    return Reply(200, sample(name), {"Content-Type": "text/csv; charset=utf-8"}, source)


@pytest.fixture
def influx2() -> Iterator[FakeInfluxDB2]:
    """A recording InfluxDB 2.x look-alike on a free loopback port."""
    fake, server = start_fake_influxdb2(buckets={"telemetry": "00000000000000aa"})
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
    influx2.script("/api/v2/query", csv_reply("pivoted_data.csv"))
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
    assert (info.version, info.major, info.build, made.capabilities.delete_time_range) == ("v2.7.12", 2, "OSS", True)


def test_ensure_database_creates_a_missing_bucket_once_in_the_org(influx2: FakeInfluxDB2) -> None:
    made = transport(influx2.url)
    made.ensure_database("fresh")  # 2.7 answers the lookup of a missing bucket with 404, not []
    made.ensure_database("fresh")
    (created,) = [r for r in influx2.on("/api/v2/buckets") if r.method == "POST"]
    assert created.json()["name"] == "fresh" and created.json()["orgID"] == ORG_ID
    lookups = [r.params for r in influx2.on("/api/v2/buckets") if r.method == "GET"]
    assert lookups == [{"name": "fresh", "org": ORG}] * 2
    assert "fresh" in influx2.buckets


def test_ensure_database_without_org_says_what_to_set(influx2: FakeInfluxDB2) -> None:
    with pytest.raises(BadRequestError, match="INFLUXDB_ORG"):
        V2Transport(url=influx2.url, token=TOKEN, org=None).ensure_database("telemetry")
    assert influx2.requests == []


# --- parsing real annotated CSV ----------------------------------------------------------------------
def test_pivoted_sample_parses_to_typed_frame_with_nullable_columns(influx2: FakeInfluxDB2) -> None:
    influx2.script("/api/v2/query", csv_reply("pivoted_data.csv"))
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
    influx2.script("/api/v2/query", csv_reply("pivoted_two_series_crlf.csv"))
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
    assert frame["note"].iloc[1] == 'two\n\n#lines, "quoted"'  # stored with \n; Flux's CSV sent \r\n
    assert str(frame["seq"].dtype) == "Int64" and frame["seq"].tolist() == [1, pd.NA, pd.NA, pd.NA]


def test_field_types_come_from_the_datatype_of_each_table(influx2: FakeInfluxDB2) -> None:
    influx2.script("/api/v2/query", csv_reply("more_tables.csv"))
    types = transport(influx2.url).field_types("telemetry", "mem")
    assert types == {"used": "integer", "available": "integer", "free": "integer"}
    (request,) = influx2.on("/api/v2/query")
    assert request.json()["query"] == flux.first_per_series(MeasurementSlice("telemetry", "mem"))


def test_empty_window_gives_an_empty_frame_with_the_measurements_columns(influx2: FakeInfluxDB2) -> None:
    influx2.script("/api/v2/query", EMPTY_QUERY_RESULT)
    influx2.script("/api/v2/query", csv_reply("more_tables.csv"))
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
    influx2.script("/api/v2/query", csv_reply("error_table.csv"))
    with pytest.raises(BadRequestError, match="engine: unknown field type for value: xyz"):
        transport(influx2.url).read(HOUR)


# --- retries and errors ------------------------------------------------------------------------------
def test_429_is_retried_after_the_servers_retry_after(influx2: FakeInfluxDB2) -> None:
    influx2.script("/api/v2/write", Reply(
        429, b'{"code":"too many requests","message":"org 0123456789abcdef has exceeded limited_write plan limit"}',
        {"Content-Type": "application/json; charset=utf-8", "Retry-After": "1"},
        "InfluxDB Cloud rate limits (docs: influxdb/cloud/account-management/limits: HTTP 429 with Retry-After); "
        "body layout from kit/transport/http/error_handler.go (too many requests -> 429); the message text "
        "is Cloud's and not published verbatim",
    ))
    made = transport(influx2.url)
    stats = made.write("telemetry", encode_frame(three_points(), "sensor_raw", ["site"]))
    first, second = influx2.on("/api/v2/write")
    assert stats.points == 3 and first.body == second.body
    assert made.delays == [1.0]  # type: ignore[attr-defined]
    assert second.at - first.at >= 1.0


def test_503_exhausts_our_attempts_and_the_client_itself_never_retries(influx2: FakeInfluxDB2) -> None:
    for _ in range(2):
        influx2.script("/api/v2/query", compact_error(
            503, "unavailable", "Unable to connect to password service. Please try again; Err: timeout",
            "kit/platform/errors/error_user.go UnavailablePasswordServiceError (unavailable -> 503)",
        ))
    with pytest.raises(ServerBusyError, match="gave up after 2 attempts"):
        transport(influx2.url, attempts=2).read(HOUR)
    assert len(influx2.on("/api/v2/query")) == 2


def test_400_is_not_retried_and_the_token_is_redacted(influx2: FakeInfluxDB2) -> None:
    # 2.7 echoes the rejected line; a line can carry any text, a secret included
    influx2.script("/api/v2/write", compact_error(
        400, "invalid", f"unable to parse 'sensor_raw,site=a note=\"{TOKEN}\" 1x': bad timestamp",
        "http/points/points_parser.go via models/points.go: 'unable to parse '<line>': <err>' (compact encoder)",
    ))
    with pytest.raises(BadRequestError) as caught:
        transport(influx2.url).write("telemetry", encode_frame(three_points(), "sensor_raw", ["site"]))
    assert "bad timestamp" in str(caught.value) and "***" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert len(influx2.on("/api/v2/write")) == 1


def test_401_is_an_authentication_error_without_the_token(influx2: FakeInfluxDB2) -> None:
    influx2.token = "another-token"
    with pytest.raises(AuthenticationError, match="HTTP 401") as caught:
        transport(influx2.url).delete(HOUR)
    assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value.__cause__)
    assert len(influx2.on("/api/v2/delete")) == 1


def test_missing_bucket_and_type_conflict_map_to_their_errors(influx2: FakeInfluxDB2) -> None:
    made, encoded = transport(influx2.url), encode_frame(three_points(), "sensor_raw", ["site"])
    with pytest.raises(DatabaseNotFoundError, match='bucket "nope" not found'):
        made.write("nope", encoded)  # not a bucket of the fake: the write handler's 404
    influx2.script("/api/v2/write", compact_error(
        422, "unprocessable entity",
        "failure writing points to database: partial write: field type conflict: "
        'input field "temperature" on measurement "sensor_raw" is type integer, already exists as type float dropped=1',
        "tsdb/field_validator.go + tsdb/shard.go PartialWriteError, wrapped by http/write_handler.go",
    ))
    with pytest.raises(FieldTypeConflictError, match="field type conflict"):
        made.write("telemetry", encoded)


def test_query_on_a_missing_bucket_is_database_not_found(influx2: FakeInfluxDB2) -> None:
    influx2.script("/api/v2/query", compact_error(
        404, "not found", 'failed to initialize execute state: could not find bucket "nope"',
        "flux/stdlib/influxdata/influxdb from.go -> query/control handleFluxError (NotFound -> 404)",
    ))
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
    influx2.script("/api/v2/query", csv_reply("pivoted_two_series_crlf.csv"))
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


# --- InfluxDB 2.7 as its source behaves ----------------------------------------------------------------
def test_ensure_database_with_an_org_id_looks_up_by_org_id_and_creates_without_resolving_it(
    influx2: FakeInfluxDB2,
) -> None:
    made = V2Transport(url=influx2.url, token=TOKEN, org=ORG_ID, retry=RetrySettings(max_attempts=1))
    made.ensure_database("by_id")
    lookup, create = influx2.on("/api/v2/buckets")
    assert lookup.params == {"name": "by_id", "orgID": ORG_ID}  # org= would be looked up as a *name*
    assert create.json()["orgID"] == ORG_ID and influx2.on("/api/v2/orgs") == []


def test_a_write_only_token_neither_fails_nor_duplicates_an_existing_bucket(influx2: FakeInfluxDB2) -> None:
    influx2.token_reads_buckets = False  # 2.7: the lookup of an existing but unreadable bucket gives []
    influx2.token_creates_buckets = False  # ... and creating one is refused for permission (401)
    made = transport(influx2.url)
    made.ensure_database("telemetry")
    assert made.write("telemetry", encode_frame(three_points(), "sensor_raw", ["site"])).points == 3
    assert influx2.buckets == {"telemetry": "00000000000000aa"}


def test_a_token_that_cannot_read_orgs_is_told_to_give_the_org_id(influx2: FakeInfluxDB2) -> None:
    influx2.token_reads_orgs = False
    with pytest.raises(BadRequestError) as caught:
        transport(influx2.url).ensure_database("fresh")
    message = str(caught.value)
    assert "INFLUXDB_ORG" in message and "16 hex digits" in message and TOKEN not in message
    assert "fresh" not in influx2.buckets


def test_an_unknown_org_is_named_and_not_retried(influx2: FakeInfluxDB2) -> None:
    made = V2Transport(url=influx2.url, token=TOKEN, org="nobody", retry=RetrySettings(max_attempts=3))
    with pytest.raises(BadRequestError, match='organization name \\\\?"nobody\\\\?" not found'):
        made.ensure_database("telemetry")
    assert len(influx2.on("/api/v2/buckets")) == 1


@pytest.mark.parametrize(
    "reply",
    [
        compact_error(400, "invalid", "queue length exceeded",
                      "query/control/controller.go enqueueQuery (ResourceExhausted -> invalid -> 400)"),
        Reply(200, b"#datatype,string,string\r\n#group,true,true\r\n#default,,\r\n,error,reference\r\n"
              b',"memory allocation limit reached: limit 1024 bytes, allocated: 0, wanted: 2048",\r\n',
              {"Content-Type": "text/csv; charset=utf-8"},
              "flux csv/result.go EncodeError (in-band error table, CRLF) with flux memory/allocator.go "
              "LimitExceededError text"),
    ],
    ids=["queue_full_400", "memory_limit_in_band"],
)
def test_flux_out_of_capacity_is_transient_and_retried(influx2: FakeInfluxDB2, reply: Reply) -> None:
    influx2.script("/api/v2/query", reply)
    influx2.script("/api/v2/query", EMPTY_QUERY_RESULT)
    influx2.script("/api/v2/query", csv_reply("more_tables.csv"))
    frame = transport(influx2.url).read(HOUR)
    assert len(frame) == 0 and len(influx2.on("/api/v2/query")) == 3


@pytest.mark.parametrize(
    ("reply", "error", "attempts"),
    [
        (compact_error(400, "invalid", "error decoding json body: the logical operator OR is not supported yet at position 25",
                       "http/delete_handler.go decodeDeleteRequest + predicate/parser.go"), BadRequestError, 1),
        (compact_error(501, "not implemented", "delete by field is not supported",
                       "http/delete_handler.go decodeDeleteRequest (_field in predicate)"), BadRequestError, 1),
        (compact_error(500, "internal error", "unable to delete: engine is closed",
                       "http/delete_handler.go handleDelete: DeleteBucketRangePredicate failed"), ServerBusyError, 3),
    ],
    ids=["bad_predicate_400", "field_predicate_501", "storage_500"],
)
def test_delete_failures_are_retried_only_when_the_storage_failed(
    influx2: FakeInfluxDB2, reply: Reply, error: type[Exception], attempts: int
) -> None:
    for _ in range(3):
        influx2.script("/api/v2/delete", reply)
    with pytest.raises(error):
        transport(influx2.url, attempts=3).delete(HOUR)
    assert len(influx2.on("/api/v2/delete")) == attempts


def test_names_flux_cannot_read_back_are_refused_before_anything_is_sent(influx2: FakeInfluxDB2) -> None:
    frame = three_points().rename(columns={"status": "result"})
    with pytest.raises(InvalidFrameError, match="result"):
        transport(influx2.url).write("telemetry", encode_frame(frame, "sensor_raw", ["site"]))
    for tag in ("_field", "_measurement"):  # 2.7 rejects the whole batch (models/points.go reservedTagKeys)
        with pytest.raises(InvalidFrameError, match="reserved"):
            encode_frame(three_points().rename(columns={"site": tag}), "sensor_raw", [tag])
    assert influx2.requests == []


def test_a_table_with_a_duplicated_column_is_a_clear_error_not_a_pandas_crash(influx2: FakeInfluxDB2) -> None:
    influx2.script("/api/v2/query", Reply(
        200, b"#datatype,string,long,dateTime:RFC3339,double,string\r\n#group,false,false,false,false,true\r\n"
        b",result,table,_time,result,site\r\n,_result,0,2024-01-01T00:00:00Z,1.5,a\r\n\r\n",
        {"Content-Type": "text/csv; charset=utf-8"},
        "flux csv/result.go: a pivot of a field named 'result' yields a second 'result' column (constructed)",
    ))
    with pytest.raises(BadRequestError, match=r"\['result'\] twice"):
        transport(influx2.url).read(HOUR)


def test_newlines_in_strings_come_back_as_stored_and_a_bare_cr_is_the_servers_loss() -> None:
    # Go encoding/csv (UseCRLF, flux csv/result.go) wrote the stored "a\nb" as "a\r\nb"; a stored
    # "x\ry" went out as "xy" (the writer drops a bare \r)
    body = (b"#datatype,string,long,dateTime:RFC3339,string\r\n#group,false,false,false,false\r\n"
            b',result,table,_time,note\r\n,_result,0,2024-01-01T00:00:00Z,"a\r\nb"\r\n,_result,0,2024-01-01T00:00:01Z,xy\r\n\r\n')
    (table,) = parse_annotated_csv(body)
    assert table.rows["note"].tolist() == ["a\nb", "xy"]


def test_redirects_from_a_proxy_are_followed_while_our_own_retries_stay_in_charge(influx2: FakeInfluxDB2) -> None:
    influx2.script("/api/v2/query", Reply(
        307, b"", {"Location": "/moved/api/v2/query"},
        "a reverse proxy in front of InfluxDB answering 307 Temporary Redirect (RFC 9110 15.4.8)",
    ))
    frame = transport(influx2.url).read(HOUR)
    assert len(frame) == 0
    assert [r.path for r in influx2.requests][:2] == ["/api/v2/query", "/moved/api/v2/query"]


@pytest.mark.parametrize(("level", "xfl"), [(1, 4), (9, 2)])
def test_gzip_writes_use_the_configured_level(influx2: FakeInfluxDB2, level: int, xfl: int) -> None:
    encoded = encode_frame(three_points(), "sensor_raw", ["site"])
    transport(influx2.url, gzip_level=level).write("telemetry", encoded)
    (request,) = influx2.on("/api/v2/write")
    assert request.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(request.body) == next(encoded.batches(10_000))
    assert request.body[8] == xfl  # gzip header XFL: 4 = fastest (level 1), 2 = best (level 9)


def test_an_influxdb_3_server_is_spoken_to_over_v1_without_deletes() -> None:
    fake, server = start_fake_influxdb2(flavour="3-core")
    try:
        resource = InfluxDBResource(url=fake.url, api="auto", token=TOKEN)
        transport_ = resource.get_transport()
        assert not isinstance(transport_, V2Transport) and transport_.capabilities.delete_time_range is False
        assert resource.ping().version == "3.10.1" and resource.ping().major == 3
    finally:
        server.shutdown()
        server.server_close()


def test_the_v2_api_forced_on_influxdb_3_says_what_works_instead_of_retrying() -> None:
    fake, server = start_fake_influxdb2(flavour="3-core")
    try:
        made = transport(fake.url, attempts=3)
        with pytest.raises(UnsupportedServerError, match="has no /api/v2/delete.*api='v1'"):
            made.delete(HOUR)
        with pytest.raises(UnsupportedServerError, match="has no /api/v2/query"):
            made.read(HOUR)
        assert len(fake.on("/api/v2/delete")) == 1
    finally:
        server.shutdown()
        server.server_close()
