"""``InfluxDBConnection``: every operation on one InfluxDB server, with no Dagster in sight.

The Dagster resource (:class:`influx_assets.influxdb.InfluxDBResource`) is configuration and lifecycle
around one of these; scripts, tests and other orchestrators can use it directly.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from influx_assets.influxdb.client.server_stats import ServerCounters
from influx_assets.influxdb.client.environment import DEFAULT_API, DEFAULT_DATABASE, normalize_api
from influx_assets.influxdb.client.errors import TransientInfluxError
from influx_assets.influxdb.client.http import HttpSession, public_url
from influx_assets.influxdb.client.line_protocol import EncodedFrame, encode_frame
from influx_assets.influxdb.client.retries import RetrySettings
from influx_assets.influxdb.client.slice import MeasurementSlice
from influx_assets.influxdb.client.transport import Capabilities, KnownSchema, ServerInfo, Transport, WriteStats
from influx_assets.influxdb.client.v1 import V1Transport

log = logging.getLogger("influx_assets.influxdb")

#: How many retry delays a connection remembers for metrics (the newest win).
RETRY_MEMORY = 1000


@dataclass(frozen=True)
class ConnectionSettings:
    """How to reach one server. ``token`` and ``password`` never appear in ``repr``."""

    url: str
    api: str = DEFAULT_API
    database: str = DEFAULT_DATABASE
    token: str | None = field(default=None, repr=False)
    org: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_seconds: float = 30.0
    max_attempts: int = 5
    initial_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    max_retry_after_seconds: float = 300.0
    write_batch_size: int = 10_000
    gzip_level: int = 0
    create_database: bool = True

    @property
    def retry(self) -> RetrySettings:
        """The backoff schedule these settings describe."""
        return RetrySettings(
            max_attempts=max(1, self.max_attempts), initial_delay=self.initial_backoff_seconds,
            max_delay=self.max_backoff_seconds, max_retry_after=self.max_retry_after_seconds,
        )


@dataclass(frozen=True)
class WriteResult:
    """What a write did: points written and rows that could not be."""

    points_written: int
    rows_without_fields: int
    empty_tag_values: int
    batches: int
    seconds: float


class InfluxDBConnection:
    """Operations on one server; the transport (v1 or v2 API) is picked on first use.

    Examples:
        >>> connection = InfluxDBConnection(ConnectionSettings(url="http://127.0.0.1:8086"))
        >>> connection.settings.database
        'telemetry'
    """

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self._transport: Transport | None = None
        self._server: ServerInfo | None = None
        self._ensured: set[str] = set()
        self.retries_observed: deque[float] = deque(maxlen=RETRY_MEMORY)

    @property
    def database(self) -> str:
        """The default database (1.x/3.x) or bucket (2.x)."""
        return self.settings.database

    @property
    def public_url(self) -> str:
        """The URL without credentials, safe to show."""
        return public_url(self.settings.url)

    def _note_retry(self, attempt: int, delay: float, error: TransientInfluxError) -> None:
        self.retries_observed.append(delay)

    def transport(self) -> Transport:
        """The transport for the configured (or detected) API, created on first use."""
        if self._transport is None:
            s = self.settings
            api = normalize_api(s.api)
            session = HttpSession(url=s.url, token=s.token, username=s.username, password=s.password,
                                  timeout=s.timeout_seconds, retry=s.retry, on_retry=self._note_retry)
            v1 = V1Transport(session, batch_size=s.write_batch_size, gzip_level=s.gzip_level)
            if api == "auto":
                self._server = v1.ping()
                detected_v2 = self._server.major == 2 or (self._server.major == 0 and bool(s.org))
                api = "v2" if detected_v2 else "v1"
            if api == "v1":
                self._transport = v1
            else:
                from influx_assets.influxdb.client.v2 import V2Transport

                self._transport = V2Transport(
                    url=s.url, token=s.token, org=s.org, timeout=s.timeout_seconds, retry=s.retry,
                    gzip_level=s.gzip_level, batch_size=s.write_batch_size, on_retry=self._note_retry,
                )
        return self._transport

    @property
    def capabilities(self) -> Capabilities:
        """What the server can do (on the v1 API, where it depends on the version, asks once)."""
        transport = self.transport()
        if transport.server is None and transport.capabilities.api == "v1":
            transport.ping()
        return transport.capabilities

    def close(self) -> None:
        """Release pooled connections (the next request opens new ones)."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    # --- operations ------------------------------------------------------------------------------
    def server_counters(self) -> ServerCounters:
        """The server's cumulative query and write counters (1.x ``SHOW STATS``, 2.x ``/metrics``).

        Take one before and one after some work; ``after.since(before, OWN_QUERIES)`` is what the
        server did meanwhile (see :mod:`.server_stats`). Raises like any request (a 3.x server or a
        token without access to the statistics: ``InfluxAssetsError``).
        """
        return self.transport().server_counters()

    def ping(self) -> ServerInfo:
        """Ask the server for its version (raises ``ServerUnreachableError`` if it does not answer)."""
        self._server = self.transport().ping()
        return self._server

    def ensure_database(self, database: str | None = None) -> None:
        """Create the database (1.x) or bucket (2.x) if missing."""
        self.transport().ensure_database(database or self.database)

    def prepare_database(self, database: str | None = None) -> None:
        """Before writing: create the database once per connection if ``create_database``."""
        name = database or self.database
        if self.settings.create_database and name not in self._ensured:
            self.ensure_database(name)
            self._ensured.add(name)

    def write_frame(
        self, frame: pd.DataFrame, measurement: str, tag_columns: Sequence[str] = (), time_column: str = "time",
        database: str | None = None,
    ) -> WriteResult:
        """Encode ``frame`` as line protocol and write it (see :mod:`.line_protocol` for the rules)."""
        return self.write_encoded(encode_frame(frame, measurement, list(tag_columns), time_column), database)

    def write_encoded(self, encoded: EncodedFrame, database: str | None = None) -> WriteResult:
        """Write already-encoded points."""
        if encoded.rows_without_fields:
            log.warning("%d rows have no non-null field and were not written", encoded.rows_without_fields)
        stats = (self.transport().write(database or self.database, encoded) if encoded.points
                 else WriteStats(0, 0, 0, 0.0))
        return WriteResult(
            points_written=stats.points, rows_without_fields=encoded.rows_without_fields,
            empty_tag_values=encoded.empty_tag_values, batches=stats.batches, seconds=stats.seconds,
        )

    def read_window(self, where: MeasurementSlice, schema: KnownSchema | None = None) -> pd.DataFrame:
        """Read the points of ``where`` as a typed DataFrame (``time`` UTC, tags text, fields typed).

        ``schema`` (tag keys and field types known in advance) spares the server's schema queries.
        """
        return self.transport().read(where, schema)

    def delete_window(self, where: MeasurementSlice) -> bool:
        """Delete the points of ``where``; returns whether a delete was sent.

        False where the window was empty or the server cannot delete a time range (InfluxDB 3).
        """
        if self.capabilities.delete_time_range:
            return self.transport().delete(where)
        log.warning("server cannot delete a time range; stale points may remain in %s", where)
        return False

    def delete_caveat(self) -> str | None:
        """Why a window replacement by DELETE is unsafe on this server, if it is (InfluxDB 1.x < 1.7.5)."""
        server = (self._transport.server if self._transport is not None else None) or self._server
        return server.delete_bug_warning() if server is not None else None

    def field_types(self, measurement: str, database: str | None = None) -> dict[str, str]:
        """Field types of a measurement as the server reports them."""
        return self.transport().field_types(database or self.database, measurement)

    def slice(
        self, measurement: str, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None,
        database: str | None = None, **kwargs: object,
    ) -> MeasurementSlice:
        """Convenience: a :class:`MeasurementSlice` in the default database."""
        return MeasurementSlice.for_window(database or self.database, measurement, start, end, **kwargs)

    def wait_until_ready(self, timeout: float = 30.0) -> ServerInfo:
        """Ping until the server answers or ``timeout`` passes (useful right after starting one)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.ping()
            except TransientInfluxError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
