"""The v2 transport: InfluxDB 2.x OSS and Cloud through influxdb-client (``/api/v2/*``).

Writes send our own pre-encoded line protocol through the SYNCHRONOUS ``WriteApi`` (never the
client's DataFrame serializer); reads run Flux via ``QueryApi.query_raw`` and parse the annotated CSV
with ``pandas.read_csv`` (not the client's pure-Python parser), typed by the ``#datatype`` annotation;
deletes use ``DeleteApi`` whose stop is inclusive, hence ``end - 1 ns``. The client's own retries are
off: every request goes through :func:`.retries.call_with_retries`, and its errors are mapped onto
:mod:`.errors` with the token redacted.
"""

from __future__ import annotations

import gzip
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import pandas as pd
import urllib3
from influxdb_client.service.metrics_service import MetricsService
from influxdb_client import InfluxDBClient, PingService, WritePrecision
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from influx_assets.influxdb.client import flux
from influx_assets.influxdb.client.server_stats import ServerCounters, counters_from_prometheus
from influx_assets.influxdb.client.annotated_csv import AnnotatedTable, parse_annotated_csv, pivoted_frame
from influx_assets.influxdb.client.errors import (
    BadRequestError,
    InfluxAssetsError,
    InvalidFrameError,
    ServerUnreachableError,
    TransientInfluxError,
    UnsupportedServerError,
    redact,
)
from influx_assets.influxdb.client.http import classify_response, public_url, retry_after_seconds
from influx_assets.influxdb.client.line_protocol import EncodedFrame
from influx_assets.influxdb.client.retries import RetrySettings, call_with_retries
from influx_assets.influxdb.client.schema import empty_frame, merge_field_types
from influx_assets.influxdb.client.slice import MeasurementSlice
from influx_assets.influxdb.client.v2_protocol import (
    FLUX_OWN_COLUMNS,
    QUERY_DIALECT,
    body_text,
    is_missing_route,
    is_org_id,
    no_retries_but_redirects,
)
from influx_assets.influxdb.client.transport import Capabilities, KnownSchema, ServerInfo, WriteStats

T = TypeVar("T")
log = logging.getLogger("influx_assets.influxdb")

@dataclass
class V2Transport:
    """Flux + ``/api/v2/write`` + ``/api/v2/delete`` over influxdb-client.

    Args:
        url: base URL (``http://host:8086``).
        token: API token, sent as ``Authorization: Token ...``; never printed.
        org: organization name or ID (required by 2.x OSS for every call, and to create buckets).
        timeout: seconds to connect and for each read (not for the whole response, which may stream).
        retry: backoff for transient failures (connection errors, 429, 5xx).
        batch_size: points per write request.
        on_retry: called with ``(retry_number, delay, error)`` before each retry.

    Examples:
        >>> transport = V2Transport("http://localhost:8086", token="t", org="acme")  # doctest: +SKIP
        >>> transport.read(MeasurementSlice("telemetry", "sensor_raw"))  # doctest: +SKIP
    """

    url: str
    token: str | None = None
    org: str | None = None
    timeout: float = 30.0
    retry: RetrySettings = field(default_factory=RetrySettings)
    batch_size: int = 10_000
    on_retry: Callable[[int, float, TransientInfluxError], None] | None = None
    gzip_level: int = 0
    _client: InfluxDBClient = field(init=False, repr=False)
    _info: ServerInfo | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._client = InfluxDBClient(
            url=self.url,
            token=self.token or None,
            org=self.org,
            timeout=(max(1, int(self.timeout * 1000)),) * 2,  # (connect, read) in ms
            enable_gzip=self.gzip_level > 0,
            retries=no_retries_but_redirects(),
        )
        if self.gzip_level > 0:
            self._compress_writes_at(self.gzip_level)
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._query_api = self._client.query_api()

    def _compress_writes_at(self, level: int) -> None:
        """influxdb-client gzips write bodies at level 9; use the configured level instead."""
        conf = self._client.api_client.configuration
        plain = type(conf).__mro__[1].update_request_body  # Configuration's, without the client's gzip

        def update_request_body(path: str, body: object) -> object:
            data = plain(conf, path, body)
            if path != "/api/v2/write":
                return data
            raw = data if isinstance(data, bytes) else str(data).encode("utf-8")
            return gzip.compress(raw, compresslevel=level)

        conf.update_request_body = update_request_body  # type: ignore[method-assign]

    @property
    def where(self) -> str:
        """The printable base URL."""
        return public_url(self.url)

    # --- the calls -------------------------------------------------------------------------------
    def ping(self) -> ServerInfo:
        """``GET /ping``: the ``X-Influxdb-Version`` and ``X-Influxdb-Build`` headers."""
        service = PingService(self._client.api_client)
        _, _, headers = self._call(
            "ping", lambda: service.get_ping_with_http_info(_return_http_data_only=False)
        )
        self._info = ServerInfo(
            version=headers.get("X-Influxdb-Version", "unknown"), build=headers.get("X-Influxdb-Build", "")
        )
        return self._info

    @property
    def server(self) -> ServerInfo | None:
        """What the last ``ping`` said (None before the first)."""
        return self._info

    @property
    def capabilities(self) -> Capabilities:
        """Flux reads and ``/api/v2/delete``."""
        return Capabilities.of("v2", self._info)

    def ensure_database(self, database: str) -> None:
        """Create the bucket in ``org`` unless it exists there (or may exist unseen by this token).

        InfluxDB 2.7 answers a lookup of a missing bucket in an org with 404 (tenant/service_bucket.go,
        ``ErrBucketNotFoundByName``), and a token that may write but not read the bucket with 200 and no
        buckets. Creating needs the org's ID: ``org`` given as 16 hex digits is used as is, a name is
        resolved through ``/api/v2/orgs`` (which needs ``read:orgs``). A creation answered "already
        exists" (422) is success (created concurrently); after a lookup that found nothing it could see,
        a creation refused for permission (401/403: a write-only token, tenant/middleware_bucket_auth.go
        checks permission first) is taken as "the bucket exists but is not visible" — if it does not,
        the first write says so (bucket not found).
        """
        if not self.org:
            raise BadRequestError(
                f"cannot create bucket {database!r} at {self.where}: the v2 API needs an organization "
                "(set INFLUXDB_ORG / InfluxDBResource.org)"
            )
        buckets = self._client.buckets_api()
        by_org = {"org_id": self.org} if is_org_id(self.org) else {"org": self.org}

        def ensure() -> None:
            invisible = False
            try:
                if buckets.find_buckets(name=database, **by_org).buckets:
                    return
                invisible = True  # 2.7 would have answered 404 for a missing bucket
            except ApiException as error:
                if error.status != 404 or "organization" in body_text(error):
                    raise
            try:
                buckets.create_bucket(bucket_name=database, org=self.org)
            except ApiException as error:
                if invisible and error.status in (401, 403):
                    log.info("bucket %r is not visible to this token and it may not create one; assuming it "
                             "exists (a write to a missing bucket fails with 'bucket not found')", database)
                    return
                if error.status not in (409, 422) or "already exists" not in body_text(error):
                    raise
            except InfluxDBError as error:  # the org name could not be resolved to an ID
                raise BadRequestError(
                    f"cannot create bucket {database!r} at {self.where}: the token cannot look up the ID of "
                    f"organization {self.org!r} ({redact(str(error.message), (self.token,))}); set INFLUXDB_ORG "
                    "to the organization's ID (16 hex digits), create the bucket yourself, or give the token "
                    "read:orgs"
                ) from None

        self._call(f"ensure bucket {database!r}", ensure)

    def write(self, database: str, encoded: EncodedFrame) -> WriteStats:
        """POST the points in batches, exactly as encoded; the first rejected batch raises.

        Tags or fields named like Flux's own columns (:data:`FLUX_OWN_COLUMNS`) are refused before
        anything is sent: Flux could not read them back.
        """
        clashing = sorted(FLUX_OWN_COLUMNS.intersection(encoded.tag_keys + encoded.field_keys))
        if clashing:
            raise InvalidFrameError(
                f"columns {clashing} share a name with a column Flux adds to every result, so InfluxDB 2.x "
                "could not read them back; rename them"
            )
        started = time.perf_counter()
        batches = sent = 0
        for body in encoded.batches(self.batch_size):
            self._call(
                "write",
                lambda body=body: self._write_api.write(
                    bucket=database,
                    org=self.org,
                    record=body,
                    write_precision=WritePrecision.NS,
                ),
            )
            batches += 1
            sent += len(body)
        return WriteStats(encoded.points, batches, sent, time.perf_counter() - started)

    def query_tables(self, query: str) -> list[AnnotatedTable]:
        """Run Flux and parse the result; an in-band error saying the server ran out of capacity is retried."""
        return self._call("Flux query", lambda: parse_annotated_csv(self._fetch(query), self.where))

    def server_counters(self) -> ServerCounters:
        """The server's cumulative query counters (``GET /metrics``, Prometheus text)."""

        def fetch() -> str:
            response = MetricsService(self._client.api_client).get_metrics(_preload_content=False)
            try:
                return bytes(response.data).decode("utf-8", "replace")
            finally:
                response.release_conn()

        return counters_from_prometheus(self._call("metrics", fetch))

    def _fetch(self, query: str) -> bytes:
        response = self._query_api.query_raw(query, org=self.org, dialect=QUERY_DIALECT)
        try:
            return bytes(response.data)
        finally:
            response.release_conn()

    def read(self, where: MeasurementSlice, schema: KnownSchema | None = None) -> pd.DataFrame:
        """Read the slice: ``time`` (UTC) first, then tags (str), then fields typed by ``#datatype``.

        ``schema`` only spares the schema query that gives an empty result its columns.
        """
        def known_or_asked() -> tuple[list[str], dict[str, str]]:
            return (list(schema.tags), schema.field_types) if schema is not None else self._schema(where)

        if where.columns is not None and not where.columns:
            return empty_frame(known_or_asked()[0], {})
        tables = self.query_tables(flux.select_window(where))
        frame = pivoted_frame(tables)
        if frame is not None:
            return frame
        tag_keys, field_types = known_or_asked()
        if where.columns is not None:
            field_types = {k: v for k, v in field_types.items() if k in where.columns}
        return empty_frame(tag_keys, field_types)

    def delete(self, where: MeasurementSlice) -> bool:
        """``POST /api/v2/delete`` with start, stop = end - 1 ns (inclusive) and the predicate.

        Always sent (2.x has no delete bug that an emptiness check would avoid); returns True.
        """
        start, stop = flux.delete_bounds(where)
        predicate = flux.delete_predicate(where)
        delete_api = self._client.delete_api()
        self._call(
            "delete",
            lambda: delete_api.delete(
                start=start,
                stop=stop,
                predicate=predicate,
                bucket=where.database,
                org=self.org,
            ),
        )
        return True

    def field_types(self, database: str, measurement: str) -> dict[str, str]:
        """Canonical field types from the ``#datatype`` of each series' first point (all time)."""
        return self._schema(MeasurementSlice(database, measurement))[1]

    def close(self) -> None:
        """Release pooled connections."""
        self._client.close()

    # --- internals -------------------------------------------------------------------------------
    def _schema(self, where: MeasurementSlice) -> tuple[list[str], dict[str, str]]:
        """Tag keys and field types of the whole measurement (all time, no tag filters)."""
        whole = MeasurementSlice(where.database, where.measurement)
        tables = self.query_tables(flux.first_per_series(whole))
        tag_keys: set[str] = set()
        seen: dict[str, list[str]] = {}
        for table in tables:
            tag_keys.update(table.tag_columns())
            if "_field" in table.rows and "_value" in table.datatypes:
                for name in table.rows["_field"].dropna().unique():
                    seen.setdefault(str(name), []).append(table.datatypes["_value"].lower())
        return sorted(tag_keys), {name: merge_field_types(kinds) for name, kinds in seen.items()}

    def _call(self, description: str, operation: Callable[[], T]) -> T:
        """Run one request with our retries, translating client errors into :mod:`.errors`."""

        def attempt() -> T:
            try:
                return operation()
            except ApiException as error:
                raise self._api_error(error, description) from None
            except InfluxDBError as error:  # raised client-side, e.g. the org lookup found nothing
                message = redact(str(error.message), (self.token,))
                raise BadRequestError(f"InfluxDB at {self.where}: {message}") from None
            except urllib3.exceptions.HTTPError as error:
                detail = redact(f"{type(error).__name__}: {error}", (self.token,))
                raise ServerUnreachableError(
                    f"cannot reach InfluxDB at {self.where} — is it running? ({detail[:300]})"
                ) from None
            except ValueError as error:  # http.client refusing a header value: its message echoes the token
                if "header" not in str(error).lower():
                    raise
                detail = redact(f"{type(error).__name__}: {error}", (self.token,))
                raise BadRequestError(f"cannot send the {description} to InfluxDB at {self.where}: {detail[:300]}") from None

        return call_with_retries(
            attempt, self.retry, f"{description} at {self.where}", on_retry=self.on_retry
        )

    def _api_error(self, error: ApiException, description: str = "") -> InfluxAssetsError:
        if error.status == 404 and description in ("delete", "Flux query") and is_missing_route(error):
            endpoint = "/api/v2/delete" if description == "delete" else "/api/v2/query"
            return UnsupportedServerError(
                f"InfluxDB at {self.where} has no {endpoint} (InfluxDB 3 or Cloud Serverless): use "
                "InfluxDBResource(api='v1'), which reads with InfluxQL and writes through /write; those "
                "servers cannot delete a time range, so re-running a window there cannot remove stale points"
            )
        if not error.status:  # status 0: TLS failure before any HTTP exchange
            detail = redact(str(error.reason), (self.token,))
            return ServerUnreachableError(
                f"cannot reach InfluxDB at {self.where} — is it running? ({detail[:300]})"
            )
        text = redact(body_text(error), (self.token,)).strip()
        retry_after = retry_after_seconds(error) if error.headers is not None else None  # seconds or HTTP-date
        return classify_response(int(error.status), text, self.where, retry_after)
