"""The windows a run covers, one per partition key, and a frame cut into them.

A run covers one partition or, in a single-run backfill, a range of them. Stages and checks work on
the whole range at once (one read, one write) but report per window: each partition's materialization
and check result in the UI carries that window's own bounds and numbers, never the range's.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from dagster import AssetCheckExecutionContext, AssetExecutionContext, TimeWindowPartitionsDefinition

from influx_assets.influxdb import time_column_to_ns
from influx_assets.telemetry.fingerprint import frame_fingerprint, window_fingerprints


@dataclass(frozen=True)
class Window:
    """One partition's half-open time window ``[start, end)`` in UTC."""

    key: str
    start: pd.Timestamp
    end: pd.Timestamp

    @property
    def hours(self) -> float:
        """Length of the window in hours."""
        return (self.end - self.start).total_seconds() / 3600.0


def windows_for(partitions_def: TimeWindowPartitionsDefinition, keys: Sequence[str]) -> list[Window]:
    """The windows of ``keys`` of a time-partitioned asset, in the order given."""
    windows = []
    for key in keys:
        span = partitions_def.time_window_for_partition_key(key)
        windows.append(Window(key, pd.Timestamp(span.start).tz_convert("UTC"), pd.Timestamp(span.end).tz_convert("UTC")))
    return windows


def _run_keys(context: AssetExecutionContext | AssetCheckExecutionContext) -> list[str]:
    return list(context.partition_keys) if context.has_partition_key_range else [context.partition_key]


def run_windows(
    context: AssetExecutionContext | AssetCheckExecutionContext, partitions_def: TimeWindowPartitionsDefinition
) -> list[Window]:
    """Every window of the run (one, or each partition of a range run), in time order."""
    return sorted(windows_for(partitions_def, _run_keys(context)), key=lambda w: w.start)


def split_by_window(frame: pd.DataFrame, windows: Sequence[Window], column: str = "time") -> list[pd.DataFrame]:
    """``frame``'s rows in each window (rows outside every window are in none), aligned with ``windows``."""
    if frame.empty or column not in frame.columns:
        return [frame.iloc[0:0] for _ in windows]
    times = time_column_to_ns(frame[column], column)
    parts = []
    for window in windows:
        rows = (times >= window.start.value) & (times < window.end.value)
        parts.append(frame[np.asarray(rows)])
    return parts


def fingerprints_by_window(frame: pd.DataFrame, windows: Sequence[Window], column: str = "time") -> list[tuple[str, int]]:
    """``(frame_fingerprint, rows)`` of ``frame``'s rows in each of the contiguous ``windows``, in one pass.

    Each equals :func:`~influx_assets.telemetry.fingerprint.frame_fingerprint` of
    ``split_by_window(frame, windows)[i]``; one pass over a range run's frame instead of one per window
    (a fingerprint has a fixed cost per column that dominates for small windows).
    """
    if frame.empty or column not in frame.columns:
        empty = frame_fingerprint(frame.iloc[0:0])
        return [(empty, 0) for _ in windows]
    bounds = [w.start.value for w in windows] + [windows[-1].end.value]
    return window_fingerprints(frame, time_column_to_ns(frame[column], column), bounds)
