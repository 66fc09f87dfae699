"""``InfluxDBResource``: one configured connection to InfluxDB 1.x, 2.x or 3.x for Dagster."""


import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
from dagster import ConfigurableResource, EnvVar, InitResourceContext
from pydantic import Field, PrivateAttr, field_validator

from .environment import check_url, normalize_api, settings_from_env
from .errors import TransientInfluxError
from .http import HttpSession, public_url
from .line_protocol import EncodedFrame, encode_frame
from .retries import RetrySettings
from .slice import MeasurementSlice
from .transport import KnownSchema, ServerInfo, Transport, WriteStats
from .v1 import V1Transport

log = logging.getLogger("influx_assets.influxdb")


@dataclass(frozen=True)
class WriteResult:
    """What :meth:`InfluxDBResource.write_frame` did: points written and rows that could not be."""

    points_written: int
    rows_without_fields: int
    empty_tag_values: int
    batches: int
    seconds: float


class InfluxDBResource(ConfigurableResource):
    """A connection to InfluxDB, with retries, timeouts and the API picked per server version.

    ``api="auto"`` asks ``/ping``: 1.x and 3.x are spoken to over the v1 API (``/write`` + InfluxQL),
    2.x and Cloud over the v2 API (influxdb-client: ``/api/v2/write``, Flux, DeleteApi). Transient
    failures (connection errors, 429, 5xx) are retried with exponential backoff and jitter, honouring
    ``Retry-After``; 4xx errors are not. Tokens and passwords never appear in messages or logs.

    Examples:
        .. code-block:: python

            from dagster import Definitions, EnvVar
            from influx_assets.influxdb import InfluxDBResource

            influxdb = InfluxDBResource(
                url=EnvVar("INFLUXDB_URL"),
                token=EnvVar("INFLUXDB_TOKEN"),
                database="telemetry",
            )
    """

    url: str = Field(default="http://127.0.0.1:8086", description="Base URL of the InfluxDB HTTP API.")
    api: str = Field(
        default="auto", description="'v1' (1.x, 3.x), 'v2' (2.x, Cloud) or 'auto' (ask /ping)."
    )
    database: str = Field(default="telemetry", description="Default database (1.x/3.x) or bucket (2.x).")
    # repr=False: a logged or printed resource must not show credentials.
    token: str | None = Field(
        default=None, description="API token (2.x/3.x, or 1.8+ 'user:password').", repr=False
    )
    org: str | None = Field(default=None, description="Organization (2.x only).")
    username: str | None = Field(default=None, description="User for 1.x basic authentication.")
    password: str | None = Field(
        default=None, description="Password for 1.x basic authentication.", repr=False
    )
    timeout_seconds: float = Field(default=30.0, description="Connect and read timeout per request.")
    max_attempts: int = Field(default=5, description="Attempts per request for transient errors.")
    initial_backoff_seconds: float = Field(default=0.5, description="First retry delay (doubles).")
    max_backoff_seconds: float = Field(default=30.0, description="Upper bound of one retry delay.")
    max_retry_after_seconds: float = Field(
        default=300.0,
        description="Longest Retry-After honoured; a server asking for more fails the request at once.",
    )
    write_batch_size: int = Field(default=10_000, description="Points per write request.")
    gzip_level: int = Field(default=0, description="gzip level for writes; 0 sends uncompressed.")
    create_database: bool = Field(
        default=True, description="Create a missing database/bucket before the first write to it."
    )

    @field_validator("api", mode="before")
    @classmethod
    def _known_api(cls, value: object) -> object:
        """Refuse an unknown ``api`` when the resource is configured, not at its first request."""
        if isinstance(value, EnvVar) or value is None:  # an EnvVar is checked once Dagster resolves it
            return value
        return normalize_api(str(value))

    @field_validator("url", mode="before")
    @classmethod
    def _usable_url(cls, value: object) -> object:
        if isinstance(value, EnvVar) or value is None:
            return value
        return check_url(str(value))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, prefix: str = "INFLUXDB_", **overrides: object) -> "InfluxDBResource":
        """A resource configured from ``<prefix>URL``, ``<prefix>TOKEN``, ... read now.

        Unlike ``EnvVar`` (which fails on an unset variable), unset or empty variables take the
        defaults documented in :mod:`.environment`; a missing or malformed URL or an unknown API
        raises :class:`.environment.InfluxDBConfigError` naming the variable. Call it when a run
        starts (e.g. inside a Dagster resource function), not at import. ``overrides`` are other
        fields (``max_attempts``, ...).

        Examples:
            >>> InfluxDBResource.from_env({"INFLUXDB_URL": "http://db:8086"}).database
            'telemetry'
        """
        return cls(**settings_from_env(environ, prefix), **overrides)  # type: ignore[arg-type]

    _transport: Transport | None = PrivateAttr(default=None)
    _server: ServerInfo | None = PrivateAttr(default=None)
    _retries: list[float] = PrivateAttr(default_factory=list)
    _ensured: set[str] = PrivateAttr(default_factory=set)

    # --- lifecycle -------------------------------------------------------------------------------
    def teardown_after_execution(self, context: InitResourceContext) -> None:  # noqa: D102
        self.close()

    def close(self) -> None:
        """Release the transport's connections (the next request opens new ones)."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    @property
    def retry_settings(self) -> RetrySettings:
        """The backoff schedule built from this configuration."""
        return RetrySettings(
            max_attempts=max(1, self.max_attempts),
            initial_delay=self.initial_backoff_seconds,
            max_delay=self.max_backoff_seconds,
            max_retry_after=self.max_retry_after_seconds,
        )

    @property
    def public_url(self) -> str:
        """The URL without credentials, safe to show."""
        return public_url(self.url)

    @property
    def retries_observed(self) -> list[float]:
        """Delays (seconds) of every retry this resource instance has made; used for metrics."""
        return self._retries

    def _note_retry(self, attempt: int, delay: float, error: TransientInfluxError) -> None:
        self._retries.append(delay)

    def _session(self) -> HttpSession:
        return HttpSession(
            url=self.url, token=self.token, username=self.username, password=self.password,
            timeout=self.timeout_seconds, retry=self.retry_settings, on_retry=self._note_retry,
        )

    def get_transport(self) -> Transport:
        """The transport for the configured (or detected) API, created on first use."""
        if self._transport is None:
            api = normalize_api(self.api)
            v1 = V1Transport(self._session(), batch_size=self.write_batch_size, gzip_level=self.gzip_level)
            if api == "auto":
                self._server = v1.ping()
                detected_v2 = self._server.major == 2 or (self._server.major == 0 and bool(self.org))
                api = "v2" if detected_v2 else "v1"
            if api == "v1":
                self._transport = v1
            else:
                from .v2 import V2Transport

                self._transport = V2Transport(
                    url=self.url, token=self.token, org=self.org, timeout=self.timeout_seconds,
                    retry=self.retry_settings, gzip_level=self.gzip_level, batch_size=self.write_batch_size, on_retry=self._note_retry,
                )
        return self._transport

    # --- operations ------------------------------------------------------------------------------
    def ping(self) -> ServerInfo:
        """Ask the server for its version (raises ``ServerUnreachableError`` if it does not answer)."""
        self._server = self.get_transport().ping()
        return self._server

    def ensure_database(self, database: str | None = None) -> None:
        """Create the database (1.x) or bucket (2.x) if missing."""
        self.get_transport().ensure_database(database or self.database)

    def prepare_database(self, database: str | None = None) -> None:
        """Before writing: create the database once per resource instance if ``create_database``."""
        name = database or self.database
        if self.create_database and name not in self._ensured:
            self.ensure_database(name)
            self._ensured.add(name)

    def write_frame(
        self,
        frame: pd.DataFrame,
        measurement: str,
        tag_columns: Sequence[str] = (),
        time_column: str = "time",
        database: str | None = None,
    ) -> WriteResult:
        """Encode ``frame`` as line protocol and write it (see :mod:`.line_protocol` for the rules)."""
        encoded = encode_frame(frame, measurement, list(tag_columns), time_column)
        return self.write_encoded(encoded, database)

    def write_encoded(self, encoded: EncodedFrame, database: str | None = None) -> WriteResult:
        """Write already-encoded points."""
        if encoded.rows_without_fields:
            log.warning("%d rows have no non-null field and were not written", encoded.rows_without_fields)
        stats: WriteStats = (
            self.get_transport().write(database or self.database, encoded)
            if encoded.points
            else WriteStats(0, 0, 0, 0.0)
        )
        return WriteResult(
            points_written=stats.points, rows_without_fields=encoded.rows_without_fields,
            empty_tag_values=encoded.empty_tag_values, batches=stats.batches, seconds=stats.seconds,
        )

    def read_window(self, where: MeasurementSlice, schema: KnownSchema | None = None) -> pd.DataFrame:
        """Read the points of ``where`` as a typed DataFrame (``time`` UTC, tags ``str``, fields typed).

        ``schema`` (tag keys and field types known in advance) spares the server's schema queries.
        """
        return self.get_transport().read(where, schema)

    def delete_window(self, where: MeasurementSlice) -> bool:
        """Delete the points of ``where``; returns whether points were deleted.

        False where the window was empty or the server cannot delete a time range (InfluxDB 3).
        """
        transport = self.get_transport()
        if transport.supports_delete and transport.delete(where):
            return True
        if not transport.supports_delete:  # known before, or learnt by the transport's first ping
            log.warning("server cannot delete a time range; stale points may remain in %s", where)
        return False

    def delete_caveat(self) -> str | None:
        """Why a window replacement by DELETE is unsafe on this server, if it is (InfluxDB 1.x < 1.7.5)."""
        server = getattr(self._transport, "server", None) or self._server
        return server.delete_bug_warning() if server is not None else None

    def field_types(self, measurement: str, database: str | None = None) -> dict[str, str]:
        """Field types of a measurement as the server reports them."""
        return self.get_transport().field_types(database or self.database, measurement)

    def slice(
        self,
        measurement: str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
        database: str | None = None,
        **kwargs: object,
    ) -> MeasurementSlice:
        """Convenience: a :class:`MeasurementSlice` in this resource's default database."""
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
