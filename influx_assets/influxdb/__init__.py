"""The Dagster-InfluxDB integration: reusable on its own, with no knowledge of the telemetry pipeline.

Two layers, imports one way:

- :mod:`influx_assets.influxdb.client` — no Dagster: HTTP, retries, errors, the v1/v2 transports, query
  builders, response parsers, the line-protocol encoder, :class:`InfluxDBConnection` and
  :class:`WindowStore` (the one gateway that replaces and reads a slice, with the window ledger).
- The Dagster-facing modules: :class:`InfluxDBResource` (configuration and lifecycle around a
  connection), :class:`InfluxDBIOManager` with its frame-type handlers (pandas, polars) and the
  mapping of every kind of Dagster partition to slices.
"""

from typing import Any

from influx_assets.influxdb.client.connection import ConnectionSettings, InfluxDBConnection, WriteResult
from influx_assets.influxdb.client.errors import (
    AuthenticationError,
    BadRequestError,
    DatabaseNotFoundError,
    FieldTypeConflictError,
    InfluxAssetsError,
    InvalidFrameError,
    PartialWriteError,
    ServerBusyError,
    ServerUnreachableError,
    TerminalInfluxError,
    TransientInfluxError,
    UnsupportedPartitionsError,
    UnsupportedServerError,
)
from influx_assets.influxdb.client.environment import InfluxDBConfigError
from influx_assets.influxdb.client.errors import redact
from influx_assets.influxdb.client.line_protocol import EncodedFrame, encode_frame, time_column_to_ns
from influx_assets.influxdb.client.pandas_versions import as_text
from influx_assets.influxdb.client.retries import RetrySettings
from influx_assets.influxdb.client.server_stats import OWN_QUERIES, ServerCounters
from influx_assets.influxdb.client.slice import MeasurementSlice, to_epoch_ns
from influx_assets.influxdb.client.transport import Capabilities, ServerInfo
from influx_assets.influxdb.client.window_store import LEDGER_MEASUREMENT, WindowNotCommittedError, WindowStore

#: The Dagster-facing names, imported on first use: importing the client layer (a submodule of this
#: package) must not import Dagster.
_DAGSTER_FACING = {
    "InfluxDBIOManager": "influx_assets.influxdb.io_manager",
    "InfluxDBResource": "influx_assets.influxdb.resource",
    "PARTITION_EXPR_KEY": "influx_assets.influxdb.partition_slices",
}


def __getattr__(name: str) -> Any:
    if name in _DAGSTER_FACING:
        import importlib

        value = getattr(importlib.import_module(_DAGSTER_FACING[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "LEDGER_MEASUREMENT",
    "OWN_QUERIES",
    "PARTITION_EXPR_KEY",
    "AuthenticationError",
    "BadRequestError",
    "Capabilities",
    "ConnectionSettings",
    "DatabaseNotFoundError",
    "EncodedFrame",
    "FieldTypeConflictError",
    "InfluxAssetsError",
    "InfluxDBConfigError",
    "InfluxDBConnection",
    "InfluxDBIOManager",
    "InfluxDBResource",
    "InvalidFrameError",
    "MeasurementSlice",
    "PartialWriteError",
    "RetrySettings",
    "ServerBusyError",
    "ServerCounters",
    "ServerInfo",
    "ServerUnreachableError",
    "TerminalInfluxError",
    "TransientInfluxError",
    "UnsupportedPartitionsError",
    "UnsupportedServerError",
    "WindowNotCommittedError",
    "WindowStore",
    "WriteResult",
    "as_text",
    "encode_frame",
    "redact",
    "time_column_to_ns",
    "to_epoch_ns",
]
