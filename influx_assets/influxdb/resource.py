"""``InfluxDBResource``: Dagster configuration and lifecycle around one :class:`InfluxDBConnection`."""


import dataclasses
from collections.abc import Callable, Mapping, Sequence

import pandas as pd
from dagster import ConfigurableResource, DagsterInstance, EnvVar, InitResourceContext
from pydantic import Field, PrivateAttr, field_validator

from influx_assets.influxdb.client.connection import ConnectionSettings, InfluxDBConnection, WriteResult
from influx_assets.influxdb.client.environment import DEFAULT_API, DEFAULT_DATABASE, check_secret, check_url, normalize_api, settings_from_env
from influx_assets.influxdb.client.http import public_url
from influx_assets.influxdb.client.line_protocol import EncodedFrame
from influx_assets.influxdb.client.slice import MeasurementSlice
from influx_assets.influxdb.client.transport import KnownSchema, ServerInfo, Transport
from influx_assets.influxdb.client.read_cache import DEFAULT_READ_CACHE_BYTES, shared_read_cache
from influx_assets.influxdb.client.window_store import WindowStore

__all__ = ["InfluxDBResource", "WriteResult", "dagster_run_ended"]


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
        default=DEFAULT_API, description="'v1' (1.x, 3.x), 'v2' (2.x, Cloud) or 'auto' (ask /ping)."
    )
    database: str = Field(default=DEFAULT_DATABASE, description="Default database (1.x/3.x) or bucket (2.x).")
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
    gzip_level: int = Field(default=0, ge=0, le=9, description="gzip level for writes (1-9); 0 sends uncompressed.")
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

    @field_validator("token", "password", mode="before")
    @classmethod
    def _sendable_secret(cls, value: object) -> object:
        """A token or password must fit in an HTTP header (checked without ever showing it)."""
        if isinstance(value, EnvVar) or value is None:
            return value
        return check_secret(str(value), "InfluxDBResource token/password")

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

    writer_wait_seconds: float = Field(
        default=120.0,
        description="How long a load or check of a window waits for another run that is replacing it to "
        "finish (the window ledger) before failing with WindowNotCommittedError.",
    )

    read_cache_mb: int = Field(
        default=DEFAULT_READ_CACHE_BYTES // (1024 * 1024),
        ge=0,
        description="Memory (MiB) for windows read through the ledger and reused while their ledger entries "
        "are unchanged: the checks and downstream stages of an in-process run then read each stored window "
        "once. Shared by every step in the process; 0 reads every window from the server.",
    )

    _connection: InfluxDBConnection | None = PrivateAttr(default=None)

    # --- lifecycle -------------------------------------------------------------------------------
    def teardown_after_execution(self, context: InitResourceContext) -> None:  # noqa: D102
        self.close()

    @property
    def connection(self) -> InfluxDBConnection:
        """The Dagster-free connection these settings describe (created on first use)."""
        if self._connection is None:
            # every connection setting is a field of this resource of the same name
            settings = {f.name: getattr(self, f.name) for f in dataclasses.fields(ConnectionSettings)}
            self._connection = InfluxDBConnection(ConnectionSettings(**settings))
        return self._connection

    def window_store(self, instance: DagsterInstance | None = None) -> WindowStore:
        """The gateway for replacing and reading windows (see :mod:`.client.window_store`).

        With ``instance``, a window left unfinished by a run that instance knows has ended fails at once
        instead of being waited for.
        """
        return WindowStore(self.connection, wait_seconds=self.writer_wait_seconds,
                           writer_ended=dagster_run_ended(instance) if instance is not None else None,
                           cache=shared_read_cache(self.read_cache_mb * 1024 * 1024))

    def close(self) -> None:
        """Release the connection's pooled connections (the next request opens new ones)."""
        if self._connection is not None:
            self._connection.close()

    # --- the connection's operations, for convenience --------------------------------------------
    @property
    def public_url(self) -> str:
        """The URL without credentials, safe to show."""
        return public_url(self.url)

    @property
    def retries_observed(self) -> list[float]:
        """Delays (seconds) of the latest retries (at most 1,000) made through this resource; for metrics."""
        return list(self.connection.retries_observed)

    def get_transport(self) -> Transport:
        """The transport for the configured (or detected) API, created on first use."""
        return self.connection.transport()

    def ping(self) -> ServerInfo:
        """Ask the server for its version (raises ``ServerUnreachableError`` if it does not answer)."""
        return self.connection.ping()

    def ensure_database(self, database: str | None = None) -> None:
        """Create the database (1.x) or bucket (2.x) if missing."""
        self.connection.ensure_database(database)

    def prepare_database(self, database: str | None = None) -> None:
        """Before writing: create the database once per resource instance if ``create_database``."""
        self.connection.prepare_database(database)

    def write_frame(
        self, frame: pd.DataFrame, measurement: str, tag_columns: Sequence[str] = (), time_column: str = "time",
        database: str | None = None,
    ) -> WriteResult:
        """Encode ``frame`` as line protocol and write it (not through the ledger: for raw data)."""
        return self.connection.write_frame(frame, measurement, tag_columns, time_column, database)

    def write_encoded(self, encoded: EncodedFrame, database: str | None = None) -> WriteResult:
        """Write already-encoded points (not through the ledger)."""
        return self.connection.write_encoded(encoded, database)

    def read_window(self, where: MeasurementSlice, schema: KnownSchema | None = None) -> pd.DataFrame:
        """Read the points of ``where`` as they are now (not through the ledger; see :meth:`window_store`)."""
        return self.connection.read_window(where, schema)

    def delete_window(self, where: MeasurementSlice) -> bool:
        """Delete the points of ``where``; returns whether a delete was sent."""
        return self.connection.delete_window(where)

    def field_types(self, measurement: str, database: str | None = None) -> dict[str, str]:
        """Field types of a measurement as the server reports them."""
        return self.connection.field_types(measurement, database)

    def slice(
        self, measurement: str, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None,
        database: str | None = None, **kwargs: object,
    ) -> MeasurementSlice:
        """Convenience: a :class:`MeasurementSlice` in this resource's default database."""
        return self.connection.slice(measurement, start, end, database, **kwargs)

    def wait_until_ready(self, timeout: float = 30.0) -> ServerInfo:
        """Ping until the server answers or ``timeout`` passes (useful right after starting one)."""
        return self.connection.wait_until_ready(timeout)


def dagster_run_ended(instance: DagsterInstance) -> Callable[[str], bool]:
    """Whether a run has ended, as ``instance`` knows it (for :class:`WindowStore`'s ``writer_ended``)."""

    def ended(run_id: str) -> bool:
        run = instance.get_run_by_id(run_id)
        return run is not None and run.is_finished

    return ended
