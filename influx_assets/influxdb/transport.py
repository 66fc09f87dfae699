"""What the resource needs from a server API: the :class:`Transport` protocol and its results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pandas as pd

from .line_protocol import EncodedFrame
from .slice import MeasurementSlice


@dataclass(frozen=True)
class ServerInfo:
    """What ``/ping`` told us about the server."""

    version: str
    build: str

    @property
    def major(self) -> int:
        """Major version number (0 when unknown)."""
        head = self.version.lstrip("v").split(".", 1)[0]
        return int(head) if head.isdigit() else 0


@dataclass(frozen=True)
class WriteStats:
    """What one write did."""

    points: int
    batches: int
    bytes_sent: int
    seconds: float


@dataclass(frozen=True)
class KnownSchema:
    """Tag keys and field types a reader already knows, so the transport need not ask the server.

    For measurements this package owns (the window ledger): on the v1 API it saves the two schema
    queries (``SHOW FIELD KEYS``, ``SHOW TAG KEYS``) that precede every other read.
    """

    tags: tuple[str, ...]
    fields: tuple[tuple[str, str], ...]

    @property
    def field_types(self) -> dict[str, str]:
        """``{field: "float" | "integer" | "string" | "boolean"}``."""
        return dict(self.fields)


class Transport(Protocol):
    """One server API (v1: InfluxQL + /write; v2: Flux + /api/v2/write)."""

    #: False where the server cannot delete a time range (InfluxDB 3).
    supports_delete: bool

    def ping(self) -> ServerInfo:
        """Contact the server and return its version."""
        ...

    def ensure_database(self, database: str) -> None:
        """Create the database/bucket if it does not exist (idempotent)."""
        ...

    def write(self, database: str, encoded: EncodedFrame) -> WriteStats:
        """Write encoded points."""
        ...

    def read(self, where: MeasurementSlice, schema: KnownSchema | None = None) -> pd.DataFrame:
        """Read the slice as a typed frame (see :mod:`.schema`); ``schema`` skips asking the server."""
        ...

    def delete(self, where: MeasurementSlice) -> bool:
        """Delete every point of the slice; return False when there was nothing to delete."""
        ...

    def field_types(self, database: str, measurement: str) -> dict[str, str]:
        """Canonical field types (``float``/``integer``/``string``/``boolean``) of a measurement."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
