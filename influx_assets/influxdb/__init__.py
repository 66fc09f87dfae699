"""InfluxDB for Dagster: a resource, a partition-aware IO manager and a line-protocol encoder."""

from .errors import (
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
)
from .line_protocol import EncodedFrame, encode_frame
from .resource import InfluxDBResource, WriteResult
from .slice import MeasurementSlice

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "DatabaseNotFoundError",
    "EncodedFrame",
    "FieldTypeConflictError",
    "InfluxAssetsError",
    "InfluxDBResource",
    "InvalidFrameError",
    "MeasurementSlice",
    "PartialWriteError",
    "ServerBusyError",
    "ServerUnreachableError",
    "TerminalInfluxError",
    "TransientInfluxError",
    "WriteResult",
    "encode_frame",
]
