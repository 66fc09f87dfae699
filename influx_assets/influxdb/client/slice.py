"""The one object that says *which points*: :class:`MeasurementSlice`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd

# InfluxDB's valid timestamp range (1.x and 2.x), in ns since the epoch.
MIN_TIME_NS = -9_223_372_036_854_775_806
MAX_TIME_NS = 9_223_372_036_854_775_806


def to_epoch_ns(moment: datetime | pd.Timestamp) -> int:
    """Convert a tz-aware datetime to integer ns since the epoch (UTC). Naive datetimes are refused."""
    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is None:
        raise ValueError(f"timestamp {moment!r} has no timezone; pass a tz-aware (UTC) datetime")
    return int(stamp.tz_convert(timezone.utc).as_unit("ns").value)


@dataclass(frozen=True)
class MeasurementSlice:
    """The points of one measurement inside a half-open time window ``[start_ns, end_ns)``.

    Modelled on Dagster's ``TableSlice``: the IO manager builds it once; transports and query builders
    only take it.

    Args:
        database: database (1.x/3.x) or bucket (2.x) name.
        measurement: measurement name.
        start_ns: inclusive window start, ns since the epoch (UTC).
        end_ns: exclusive window end, ns since the epoch (UTC).
        tag_filters: only points whose tag equals the value (AND of all pairs).
        columns: only these fields (``None`` means all fields); tags and time are always returned.

    Examples:
        >>> from datetime import datetime, timezone
        >>> s = MeasurementSlice.for_window("telemetry", "sensor_raw",
        ...     datetime(2024, 1, 1, tzinfo=timezone.utc), datetime(2024, 1, 1, 1, tzinfo=timezone.utc))
        >>> s.end_ns - s.start_ns
        3600000000000
    """

    database: str
    measurement: str
    start_ns: int = MIN_TIME_NS
    end_ns: int = MAX_TIME_NS
    tag_filters: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    columns: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.measurement:
            raise ValueError("measurement name must not be empty")
        if self.start_ns >= self.end_ns:
            raise ValueError(f"empty window: start {self.start_ns} >= end {self.end_ns}")

    @classmethod
    def for_window(
        cls,
        database: str,
        measurement: str,
        start: datetime | None,
        end: datetime | None,
        **kwargs: object,
    ) -> MeasurementSlice:
        """Build a slice from tz-aware datetimes; ``None`` bounds mean the whole time range."""
        return cls(
            database=database,
            measurement=measurement,
            start_ns=MIN_TIME_NS if start is None else to_epoch_ns(start),
            end_ns=MAX_TIME_NS if end is None else to_epoch_ns(end),
            **kwargs,  # type: ignore[arg-type]
        )

    @property
    def is_unbounded(self) -> bool:
        """True when the slice covers InfluxDB's whole time range (an unpartitioned asset)."""
        return self.start_ns == MIN_TIME_NS and self.end_ns == MAX_TIME_NS

    def describe_window(self) -> str:
        """Human-readable ``[start, end)`` in UTC, for messages and metadata."""
        if self.is_unbounded:
            return "all time"
        start = pd.Timestamp(self.start_ns, unit="ns", tz="UTC").isoformat()
        end = pd.Timestamp(self.end_ns, unit="ns", tz="UTC").isoformat()
        return f"[{start}, {end})"
