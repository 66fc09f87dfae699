"""Stage 3: ``telemetry_5m`` — 5-minute tumbling windows per site/sensor_id/kind.

Each hourly partition holds the twelve 5-minute windows ``[t, t + 5 min)`` of its hour, stamped at
``t``. Per series and window: ``mean``, ``min``, ``max``, ``count`` (points), ``first`` and ``last``
(the values of the earliest and latest point). Windows without points produce no row.
"""

import time

import pandas as pd
from dagster import AssetExecutionContext, MetadataValue

from influx_assets.telemetry.partitions import hourly_windows
from influx_assets.telemetry.contract import FIVE_MINUTE_MEASUREMENT, SERIES_TAGS
from influx_assets.telemetry.stage import (
    floor_time,
    influx_stage,
    report_stage,
)

AGGREGATE_FIELDS = ("mean", "min", "max", "count", "first", "last")


def empty_aggregates(fields: tuple[str, ...] = AGGREGATE_FIELDS) -> pd.DataFrame:
    """A zero-row aggregate frame with the right dtypes."""
    columns = {"time": pd.Series([], dtype="datetime64[ns, UTC]")}
    columns |= {t: pd.Series([], dtype="str") for t in SERIES_TAGS}
    columns |= {f: pd.Series([], dtype="int64" if f == "count" else "float64") for f in fields}
    return pd.DataFrame(columns)


def aggregate_5m(points: pd.DataFrame) -> pd.DataFrame:
    """5-minute tumbling aggregates of normalized points (``time``, series tags, ``value``)."""
    if points.empty:
        return empty_aggregates()
    frame = points[["time", *SERIES_TAGS, "value"]].copy()
    frame["bucket"] = floor_time(frame["time"], "5min")
    frame = frame.sort_values(["time", *SERIES_TAGS], kind="stable")
    grouped = frame.groupby(["bucket", *SERIES_TAGS], sort=True, dropna=False)["value"]
    result = grouped.agg(mean="mean", min="min", max="max", count="count", first="first", last="last")
    result = result.reset_index().rename(columns={"bucket": "time"})
    result["count"] = result["count"].astype("int64")
    return result[["time", *SERIES_TAGS, *AGGREGATE_FIELDS]]


@influx_stage(FIVE_MINUTE_MEASUREMENT, hourly_windows)
def telemetry_5m(context: AssetExecutionContext, normalized_telemetry: pd.DataFrame) -> pd.DataFrame:
    """Mean, min, max, count, first and last per series and 5-minute window."""
    started = time.perf_counter()
    aggregates = aggregate_5m(normalized_telemetry)
    context.add_output_metadata(
        report_stage(
            context,
            aggregates,
            normalized_telemetry,
            started,
            window_facts=lambda _window, out, _rows_in: {"points_aggregated": MetadataValue.int(int(out["count"].sum()))},
        )
    )
    return aggregates
