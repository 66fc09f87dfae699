"""Lookback dependents: ``telemetry_sliding_15m`` of hour H+1 reads ``telemetry_5m`` of hour H.

A sliding window is only right if the previous hour it read is the previous hour as processed *now*.
Two ways it goes wrong silently: windows processed out of order (H+1 before H — parallel catch-up, or
an operator backfilling a later range first), and H re-run after H+1 (late data). Both leave H+1's
first hops computed from rows that are not, or no longer, there.

* :func:`lookback_matches` compares the previous-hour rows a sliding window recorded having read
  (count + content fingerprint) with what the latest ``telemetry_5m`` materialization of that hour
  reported — the lookback sensor (:mod:`influx_assets.automation.lookback`) re-runs a window that
  does not match;
* ``lookback_is_current`` (non-blocking: nothing downstream reads the sliding window) makes the same
  comparison for every window of a run: ERROR when the previous hour was processed and the window
  read something else; WARN when the previous hour was never processed (like ``built_from_every_hour``
  of the daily stages: the first window an operator processes has no processed hour before it; when
  that hour is processed, the lookback sensor recomputes the window).
"""

from collections.abc import Mapping

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    EventLogRecord,
    MetadataValue,
    asset_check,
)

from influx_assets.telemetry.checks import (
    CheckOutput,
    check_windows,
    each_window,
    latest_materializations,
    metadata_of,
    window_materializations,
)
from influx_assets.telemetry.keys import FINGERPRINT, LOOKBACK_FINGERPRINT, LOOKBACK_ROWS, ROWS_OUT, TELEMETRY_5M, TELEMETRY_SLIDING_15M
from influx_assets.telemetry.partitions import hourly_windows
from influx_assets.telemetry.sliding import LOOKBACK
from influx_assets.telemetry.stage import STAGE_RETRY
from influx_assets.telemetry.windows import Window


def previous_hour_key(key: str) -> str | None:
    """The hourly partition key before ``key`` (``None`` for the first window of the pipeline)."""
    start = pd.Timestamp(hourly_windows.time_window_for_partition_key(key).start) - LOOKBACK
    first = pd.Timestamp(hourly_windows.start)
    if start < first:
        return None
    return start.tz_convert("UTC").strftime(hourly_windows.fmt)


def next_hour_key(key: str) -> str:
    """The hourly partition key after ``key`` (the window whose first hops read ``key``)."""
    end = pd.Timestamp(hourly_windows.time_window_for_partition_key(key).end)
    return end.tz_convert("UTC").strftime(hourly_windows.fmt)


def lookback_matches(sliding: EventLogRecord, previous: EventLogRecord) -> bool | None:
    """Whether a sliding window read what the latest ``telemetry_5m`` materialization of its previous hour holds.

    ``False`` too when the window did not record what it read; ``None`` when that materialization
    reported no fingerprint (nothing to compare).
    """
    read, now = metadata_of(sliding) or {}, metadata_of(previous) or {}
    if FINGERPRINT not in now:
        return None
    return LOOKBACK_FINGERPRINT in read and read[LOOKBACK_FINGERPRINT].value == now[FINGERPRINT].value


def lookback_verdict(
    window: Window, sliding: Mapping[str, EventLogRecord], upstream: Mapping[str, EventLogRecord]
) -> AssetCheckResult:
    """The check's result for one sliding window, from its latest materialization and its previous hour's."""
    previous = previous_hour_key(window.key)
    metadata = metadata_of(sliding.get(window.key))
    if metadata is None or LOOKBACK_FINGERPRINT not in metadata:
        return AssetCheckResult(passed=False, description=f"no materialization of the sliding window {window.key} that records its lookback")
    read_rows = int(metadata[LOOKBACK_ROWS].value)
    if previous is None:
        return AssetCheckResult(passed=True, description="the pipeline's first window: there is no previous hour to read.",
                                metadata={LOOKBACK_ROWS: MetadataValue.int(read_rows)})
    upstream_record = upstream.get(previous)
    if upstream_record is None:
        return AssetCheckResult(
            passed=False,
            severity=AssetCheckSeverity.WARN,
            description=f"computed without its previous hour: telemetry_5m {previous} was never materialized "
            f"(the first hops read {read_rows} rows of it). Process {previous}; the lookback sensor then re-runs this window.",
            metadata={LOOKBACK_ROWS: MetadataValue.int(read_rows), "previous_hour": MetadataValue.text(previous)},
        )
    expected_rows = int(dict(metadata_of(upstream_record) or {})[ROWS_OUT].value)
    current = lookback_matches(sliding[window.key], upstream_record) is not False
    return AssetCheckResult(
        passed=current,
        description=(
            f"the first hops read {read_rows} rows of telemetry_5m {previous}, which now holds {expected_rows}: "
            + ("the same content." if current else
               "that hour changed after this window was computed; the lookback sensor re-runs this window.")
        ),
        metadata={
            LOOKBACK_ROWS: MetadataValue.int(read_rows),
            "previous_hour_rows": MetadataValue.int(expected_rows),
            "previous_hour": MetadataValue.text(previous),
        },
    )


@asset_check(
    asset=TELEMETRY_SLIDING_15M,
    name="lookback_is_current",
    partitions_def=hourly_windows,
    retry_policy=STAGE_RETRY,
    description=(
        "The window's first hops were computed from the previous hour of telemetry_5m as it is now: that hour "
        "was processed first and has not been re-run since (content fingerprint compared). WARN when the "
        "previous hour was never processed; lookback_sensor recomputes the window once it is."
    ),
)
def lookback_is_current(context: AssetCheckExecutionContext) -> CheckOutput:
    """Each sliding window against the latest ``telemetry_5m`` materialization of its previous hour."""
    windows = check_windows(context)
    sliding = window_materializations(context, TELEMETRY_SLIDING_15M, windows)
    previous = [key for key in (previous_hour_key(w.key) for w in windows) if key is not None]
    upstream = latest_materializations(context.instance, TELEMETRY_5M, previous)
    yield from each_window(context, lambda window: lookback_verdict(window, sliding, upstream), sliding)
