"""Stage 7: ``sensor_features`` — one row per sensor per day for an ML feature store (in InfluxDB).

Daily partitions over the day's normalized points. Per ``(site, sensor_id, kind)``, stamped at the
day's start:

=================  ===========================================================================
``count``          points that day
``mean``/``std``   mean and population standard deviation (0 for a single point)
``min``/``max``    extremes
``p95``            95th percentile (linear interpolation)
``trend_slope``    least-squares slope of value over time, in units per hour (0 below 2 points)
``cadence_s``      the sensor's cadence: median spacing of its points (the default cadence below
                   2 points)
``gap_count``      spacings longer than twice the cadence
``anomaly_count``  points with ``|z| > 3`` (z from the day's mean and std; 0 when std is 0)
``completeness``   points over the points the cadence implies for the day, capped at 1
=================  ===========================================================================
"""

import time

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, MetadataValue

from influx_assets.telemetry.partitions import daily_windows
from influx_assets.telemetry.contract import FEATURES_MEASUREMENT, SERIES_TAGS
from influx_assets.telemetry.stage import (
    influx_stage,
    run_window,
    report_stage,
)

FEATURE_FIELDS = (
    "count",
    "mean",
    "std",
    "min",
    "max",
    "p95",
    "trend_slope",
    "cadence_s",
    "gap_count",
    "anomaly_count",
    "completeness",
)
DEFAULT_CADENCE_SECONDS = 60.0
_INT_FIELDS = ("count", "gap_count", "anomaly_count")


def _series_features(times_s: np.ndarray, values: np.ndarray, day_seconds: float) -> dict[str, float]:
    count = len(values)
    mean = float(values.mean())
    std = float(values.std(ddof=0))
    spacing = np.diff(times_s)
    cadence = float(np.median(spacing)) if count >= 2 and np.median(spacing) > 0 else DEFAULT_CADENCE_SECONDS
    slope = 0.0
    if count >= 2 and np.ptp(times_s) > 0:
        hours = (times_s - times_s[0]) / 3600.0
        slope = float(np.polyfit(hours, values, 1)[0])
    anomalies = int((np.abs(values - mean) > 3.0 * std).sum()) if std > 0 else 0
    return {
        "count": count,
        "mean": mean,
        "std": std,
        "min": float(values.min()),
        "max": float(values.max()),
        "p95": float(np.percentile(values, 95)),
        "trend_slope": slope,
        "cadence_s": cadence,
        "gap_count": int((spacing > 2.0 * cadence).sum()),
        "anomaly_count": anomalies,
        "completeness": min(1.0, count / (day_seconds / cadence)),
    }


def features_by_sensor(points: pd.DataFrame, day_start: pd.Timestamp, day_end: pd.Timestamp) -> pd.DataFrame:
    """Per-sensor features of normalized points, one row per sensor and day in ``[day_start, day_end)``."""
    columns = ["time", *SERIES_TAGS, *FEATURE_FIELDS]
    if points.empty:
        frame = pd.DataFrame({c: pd.Series([], dtype="str") for c in columns})
        dtypes = {f: "int64" if f in _INT_FIELDS else "float64" for f in FEATURE_FIELDS}
        return frame.astype({"time": "datetime64[ns, UTC]", **dtypes})
    frame = points[["time", *SERIES_TAGS, "value"]].sort_values(["time", *SERIES_TAGS], kind="stable")
    frame = frame.assign(day=frame["time"].dt.tz_convert("UTC").dt.floor("1D"))
    rows = []
    for (day, *series), group in frame.groupby(["day", *SERIES_TAGS], sort=True):
        seconds = group["time"].dt.as_unit("ns").astype("int64").to_numpy() / 1e9
        day_seconds = float((min(day + pd.Timedelta(days=1), day_end) - max(day, day_start)).total_seconds())
        features = _series_features(seconds, group["value"].to_numpy(dtype="float64"), day_seconds)
        rows.append({"time": day, **dict(zip(SERIES_TAGS, series, strict=True)), **features})
    result = pd.DataFrame(rows, columns=columns)
    return result.astype({f: "int64" for f in _INT_FIELDS}).reset_index(drop=True)


@influx_stage(FEATURES_MEASUREMENT, daily_windows)
def sensor_features(context: AssetExecutionContext, normalized_telemetry: pd.DataFrame) -> pd.DataFrame:
    """One feature row per sensor per day: mean, std, min, max, p95, trend, gaps, anomalies, completeness."""
    started = time.perf_counter()
    start, end = run_window(context)
    features = features_by_sensor(normalized_telemetry, start, end)
    context.add_output_metadata(
        report_stage(
            context,
            features,
            normalized_telemetry,
            started,
            window_facts=lambda _window, out, _rows_in: {
                "sensors": MetadataValue.int(len(out)),
                "anomalies": MetadataValue.int(int(out["anomaly_count"].sum())),
            },
        )
    )
    return features
