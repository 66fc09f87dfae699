"""The window ledger's record format: one point per (slice, window) in :data:`LEDGER_MEASUREMENT`.

The protocol that uses it (begin, commit, sequence-lock reads) is :class:`.window_store.WindowStore`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode

import pandas as pd

from influx_assets.influxdb.client.errors import InfluxAssetsError
from influx_assets.influxdb.client.slice import MeasurementSlice
from influx_assets.influxdb.client.transport import KnownSchema

LEDGER_MEASUREMENT = "influx_assets_windows"
WRITING = "writing"
COMMITTED = "committed"
#: The ledger's columns as it writes them (reads need not ask the server).
LEDGER_SCHEMA = KnownSchema(
    tags=("measurement", "target"),
    fields=(("state", "string"), ("write_id", "string"), ("run_id", "string"), ("rows", "integer"),
            ("written_at", "integer")),
)
#: Ledger time of an unpartitioned asset's single entry.
WHOLE_MEASUREMENT_NS = 0


class WindowNotCommittedError(InfluxAssetsError):
    """A window is being replaced by another writer, or its last writer stopped before finishing.

    Attributes:
        measurement: the measurement.
        run_id: the run that began the unfinished write (``""`` if not a Dagster run).
    """

    def __init__(self, message: str, measurement: str, run_id: str) -> None:
        super().__init__(message)
        self.measurement, self.run_id = measurement, run_id


@dataclass(frozen=True)
class LedgerEntry:
    """One window's latest write, as the ledger holds it."""

    start_ns: int
    state: str
    write_id: str
    run_id: str
    rows: int | None
    written_at_ns: int


def ledger_target(where: MeasurementSlice) -> str:
    """The ledger's ``target`` tag of a slice: its measurement (percent-escaped), plus its tag filters."""
    measurement = quote(where.measurement, safe="")
    if not where.tag_filters:
        return measurement
    return f"{measurement}?{urlencode(sorted(where.tag_filters))}"


def overlaps(target: str, where: MeasurementSlice) -> bool:
    """Whether the slice ``target`` names can share points with ``where`` (no tag filter contradicts)."""
    measurement, filters = target_filters(target)
    if measurement != where.measurement:
        return False
    wanted = dict(where.tag_filters)
    return all(wanted.get(key, value) == value for key, value in filters.items())


def target_filters(target: str) -> tuple[str, dict[str, str]]:
    """``(measurement, tag filters)`` of a ledger target."""
    measurement, _, query = target.partition("?")
    return unquote(measurement), dict(parse_qsl(query, keep_blank_values=True))


def column_or_nulls(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame.columns else pd.Series([None] * len(frame), index=frame.index)
