"""Stage 5: ``telemetry_1h`` — hourly aggregates computed from the 5-minute aggregates.

Daily partitions; each loads the day's 24 hourly ``telemetry_5m`` partitions. Per series and hour:
``mean`` is count-weighted (sum of mean x count over the sum of counts — the mean of the points, not
the mean of means), ``min`` the min of mins, ``max`` the max of maxes, ``count`` the sum of counts,
``first`` the ``first`` of the earliest 5-minute window and ``last`` the ``last`` of the latest.
"""

import time

import pandas as pd
from dagster import AssetExecutionContext, MetadataValue

from influx_assets.telemetry.partitions import daily_windows
from influx_assets.telemetry.aggregate import AGGREGATE_FIELDS, empty_aggregates
from influx_assets.telemetry.contract import HOURLY_MEASUREMENT, SERIES_TAGS
from influx_assets.telemetry.stage import (
    floor_time,
    influx_stage,
    report_stage,
)


def downsample_1h(five_minute: pd.DataFrame) -> pd.DataFrame:
    """Hourly aggregates from 5-minute aggregates (see the module docstring)."""
    if five_minute.empty:
        return empty_aggregates()
    frame = five_minute[["time", *SERIES_TAGS, *AGGREGATE_FIELDS]].copy()
    frame = frame[frame["count"] > 0].sort_values(["time", *SERIES_TAGS], kind="stable")
    frame["hour"] = floor_time(frame["time"], "1h")
    frame["weighted"] = frame["mean"].to_numpy(dtype="float64") * frame["count"].to_numpy(dtype="float64")
    grouped = frame.groupby(["hour", *SERIES_TAGS], sort=True)
    result = grouped.agg(
        weighted=("weighted", "sum"),
        min=("min", "min"),
        max=("max", "max"),
        count=("count", "sum"),
        first=("first", "first"),
        last=("last", "last"),
    )
    result["mean"] = result["weighted"] / result["count"].to_numpy(dtype="float64")
    result = result.reset_index().rename(columns={"hour": "time"}).astype({"count": "int64"})
    return result[["time", *SERIES_TAGS, *AGGREGATE_FIELDS]].reset_index(drop=True)


@influx_stage(HOURLY_MEASUREMENT, daily_windows)
def telemetry_1h(context: AssetExecutionContext, telemetry_5m: pd.DataFrame) -> pd.DataFrame:
    """Hourly downsample of the day's 5-minute aggregates (count-weighted mean, min of mins, ...)."""
    started = time.perf_counter()
    hourly = downsample_1h(telemetry_5m)
    context.add_output_metadata(
        report_stage(
            context,
            hourly,
            telemetry_5m,
            started,
            window_facts=lambda _window, out, _rows_in: {"points_aggregated": MetadataValue.int(int(out["count"].sum()))},
        )
    )
    return hourly
