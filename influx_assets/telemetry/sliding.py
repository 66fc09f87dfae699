"""Stage 4: ``telemetry_sliding_15m`` — a 15-minute sliding mean at 5-minute hops.

The row stamped ``t`` (every 5 minutes inside the hour) covers ``[t - 10 min, t + 5 min)``: the
5-minute window starting at ``t`` and the two before it. The first hops of an hour need the last two
5-minute windows of the previous hour, so the asset loads the previous ``telemetry_5m`` partition too
(``TimeWindowPartitionMapping(start_offset=-1)``). The mean is count-weighted over the 5-minute
means, which equals the mean of the points; ``count`` is the number of points and ``windows`` the
number of non-empty 5-minute windows (1-3). Hops without points produce no row.

Each window records what it read of the previous hour (``lookback_rows``, ``lookback_fingerprint``):
the lookback check (:mod:`influx_assets.telemetry.lookback`) compares them with what ``telemetry_5m``
holds for that hour now, so a window computed before its previous hour existed — or before that hour
was re-run — is flagged, and the lookback sensor re-runs it.
"""

import time

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, MetadataValue, TimeWindowPartitionMapping

from influx_assets.telemetry.partitions import hourly_windows
from influx_assets.telemetry.aggregate import empty_aggregates
from influx_assets.telemetry.contract import SERIES_TAGS, SLIDING_MEASUREMENT
from influx_assets.telemetry.fingerprint import frame_fingerprint
from influx_assets.telemetry.keys import LOOKBACK_FINGERPRINT, LOOKBACK_ROWS
from influx_assets.telemetry.stage import (
    influx_stage,
    run_window,
    WindowFacts,
    report_stage,
)
from influx_assets.telemetry.windows import Window, split_by_window

HOP = pd.Timedelta(minutes=5)
SLIDING_FIELDS = ("mean", "count", "windows")
#: how far back a window's first hops read (the previous hourly partition of ``telemetry_5m``)
LOOKBACK = pd.Timedelta(hours=1)


def previous_window(window: Window) -> Window:
    """The hour before ``window``, whose ``telemetry_5m`` rows the window's first hops read."""
    return Window("previous", window.start - LOOKBACK, window.start)


def lookback_facts(five_minute: pd.DataFrame) -> WindowFacts:
    """Per window: how many previous-hour ``telemetry_5m`` rows it read, and their fingerprint."""

    def facts(window: Window, out: pd.DataFrame, rows_in: pd.DataFrame) -> dict[str, MetadataValue]:
        read = split_by_window(five_minute, [previous_window(window)])[0]
        return {
            LOOKBACK_ROWS: MetadataValue.int(len(read)),
            LOOKBACK_FINGERPRINT: MetadataValue.text(frame_fingerprint(read)),
        }

    return facts


def sliding_15m(five_minute: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Sliding 15-minute means for hops in ``[start, end)`` from 5-minute aggregates.

    Args:
        five_minute: ``telemetry_5m`` rows (``time``, series tags, ``mean``, ``count``) covering at
            least ``[start - 10 min, end)``.
        start: first hop (inclusive), on the 5-minute grid.
        end: hop bound (exclusive).
    """
    if five_minute.empty:
        return empty_aggregates(SLIDING_FIELDS)[["time", *SERIES_TAGS, *SLIDING_FIELDS]].astype(
            {"count": "int64", "windows": "int64"}
        )
    base = five_minute[["time", *SERIES_TAGS, "mean", "count"]].copy()
    base["weighted"] = base["mean"].to_numpy(dtype="float64") * base["count"].to_numpy(dtype="float64")
    base["windows"] = (base["count"] > 0).astype("int64")
    # each 5-minute window contributes to the hops stamped at its own start and the two after it
    hops = pd.concat([base.assign(hop=base["time"] + HOP * k) for k in range(3)], ignore_index=True)
    hops = hops[(hops["hop"] >= start) & (hops["hop"] < end)]
    grouped = hops.groupby(["hop", *SERIES_TAGS], sort=True)
    result = grouped.agg(weighted=("weighted", "sum"), count=("count", "sum"), windows=("windows", "sum"))
    result = result[result["count"] > 0].reset_index().rename(columns={"hop": "time"})
    result["mean"] = result["weighted"] / result["count"].to_numpy(dtype="float64")
    result = result.astype({"count": "int64", "windows": "int64"})
    return result[["time", *SERIES_TAGS, *SLIDING_FIELDS]].reset_index(drop=True)


@influx_stage(
    SLIDING_MEASUREMENT,
    hourly_windows,
    ins={
        "five_minute": AssetIn("telemetry_5m", partition_mapping=TimeWindowPartitionMapping(start_offset=-1))
    },
)
def telemetry_sliding_15m(context: AssetExecutionContext, five_minute: pd.DataFrame) -> pd.DataFrame:
    """15-minute sliding mean at 5-minute hops; reads the previous hour too for the first hops."""
    started = time.perf_counter()
    start, end = run_window(context)
    sliding = sliding_15m(five_minute, start, end)
    context.add_output_metadata(
        report_stage(context, sliding, five_minute, started, window_facts=lookback_facts(five_minute))
    )
    return sliding
