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
    UnsupportedPartitionsError,
    UnsupportedServerError,
)
from .io_manager import InfluxDBIOManager
from .ledger import LEDGER_MEASUREMENT, WindowLedger, WindowNotCommittedError
from .line_protocol import EncodedFrame, encode_frame
from .resource import InfluxDBResource, WriteResult
from .slice import MeasurementSlice

__all__ = [
    "LEDGER_MEASUREMENT",
    "AuthenticationError",
    "BadRequestError",
    "DatabaseNotFoundError",
    "EncodedFrame",
    "FieldTypeConflictError",
    "InfluxAssetsError",
    "InfluxDBIOManager",
    "InfluxDBResource",
    "InvalidFrameError",
    "MeasurementSlice",
    "PartialWriteError",
    "ServerBusyError",
    "ServerUnreachableError",
    "TerminalInfluxError",
    "TransientInfluxError",
    "UnsupportedPartitionsError",
    "UnsupportedServerError",
    "WindowLedger",
    "WindowNotCommittedError",
    "WriteResult",
    "encode_frame",
]
