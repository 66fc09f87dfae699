"""What the resource needs from a server API: the :class:`Transport` protocol and its results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pandas as pd

from influx_assets.influxdb.client.line_protocol import EncodedFrame
from influx_assets.influxdb.client.server_stats import ServerCounters
from influx_assets.influxdb.client.slice import MeasurementSlice


@dataclass(frozen=True)
class ServerInfo:
    """What ``/ping`` told us about the server."""

    version: str
    build: str

    @property
    def major(self) -> int:
        """Major version number (0 when unknown)."""
        return self.release[0] if self.release else 0

    @property
    def release(self) -> tuple[int, ...]:
        """``(major, minor, patch)`` as far as the version header says (``()`` when unknown)."""
        numbers = []
        for part in self.version.strip().lstrip("v").split("."):
            digits = "".join(c for c in part if c.isdigit()) if part[:1].isdigit() else ""
            if not digits:
                break
            numbers.append(int(digits))
            if not part.isdigit():
                break
        return tuple(numbers)

    def delete_bug_warning(self) -> str | None:
        """A warning for servers whose ``DELETE`` can hide other windows' points (1.x before 1.7.5)."""
        release = self.release
        if not release or release[0] != 1 or release[:3] >= (1, 7, 5):
            return None
        return (
            f"InfluxDB {self.version} has a DELETE bug (influxdata/influxdb#10503): deleting a time window "
            "to replace it can make recently written points of other windows invisible. Re-runs of "
            "written windows need a DELETE; upgrade the server to 1.7.5 or later (1.8.10 recommended)"
        )


@dataclass(frozen=True)
class Capabilities:
    """What one server offers through one API, declared once from the API and the server's version.

    Attributes:
        api: ``"v1"`` (``/write`` + InfluxQL) or ``"v2"`` (``/api/v2/write`` + Flux).
        delete_time_range: a time window can be deleted (not InfluxDB 3 / Cloud Serverless).
        flux: reads are Flux queries.
        influxql: reads are InfluxQL queries.
    """

    api: str
    delete_time_range: bool
    flux: bool
    influxql: bool

    @classmethod
    def of(cls, api: str, server: ServerInfo | None) -> Capabilities:
        """The capabilities of ``api`` on ``server`` (unknown server: assume a time range can be deleted)."""
        if api == "v2":
            return cls("v2", delete_time_range=True, flux=True, influxql=False)
        major = server.major if server is not None else 0
        return cls("v1", delete_time_range=major != 3, flux=False, influxql=True)


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

    @property
    def server(self) -> ServerInfo | None:
        """What the last ``ping`` said (None before the first)."""
        ...

    @property
    def capabilities(self) -> Capabilities:
        """What this API offers on this server (see :class:`Capabilities`)."""
        ...

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

    def server_counters(self) -> ServerCounters:
        """The server's cumulative query/write counters (see :mod:`.server_stats`)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
