"""The first example: two hourly assets stored through the InfluxDB IO manager.

``example_readings`` produces a deterministic reading per minute and per sensor inside its window;
``example_readings_summary`` reads that window back and stores one row per sensor with the mean.
"""


import hashlib

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, asset

from influx_assets.observability.stage_metrics import record_stage_metrics
from influx_assets.telemetry.partitions import hourly_windows

EXAMPLE_SENSORS = ("s-1", "s-2", "s-3")


@asset(
    partitions_def=hourly_windows,
    io_manager_key="influxdb_io_manager",
    metadata={"influxdb/measurement": "example_readings", "influxdb/tags": ["sensor_id"]},
    kinds={"influxdb", "pandas"},
    group_name="examples",
    required_resource_keys={"influxdb"},  # the stage's metrics point
)
def example_readings(context: AssetExecutionContext) -> pd.DataFrame:
    """One reading per minute per sensor in the window, the same on every run of that window."""
    window = context.partition_time_window
    minutes = pd.date_range(window.start, window.end, freq="1min", inclusive="left", tz="UTC")
    frames = []
    for sensor in EXAMPLE_SENSORS:
        seed = int.from_bytes(hashlib.sha256(f"{sensor}{window.start}".encode()).digest()[:4], "big")
        values = np.random.default_rng(seed).normal(20.0, 2.0, len(minutes)).round(3)
        frames.append(pd.DataFrame({"time": minutes, "sensor_id": sensor, "value": values}))
    readings = pd.concat(frames, ignore_index=True)
    record_stage_metrics(context, rows=len(readings))
    return readings


@asset(
    partitions_def=hourly_windows,
    io_manager_key="influxdb_io_manager",
    metadata={"influxdb/measurement": "example_readings_summary", "influxdb/tags": ["sensor_id"]},
    kinds={"influxdb", "pandas"},
    group_name="examples",
    required_resource_keys={"influxdb"},
)
def example_readings_summary(context: AssetExecutionContext, example_readings: pd.DataFrame) -> pd.DataFrame:
    """Mean and count per sensor for the window, stamped at the window start."""
    summary = (
        example_readings.groupby("sensor_id", as_index=False)
        .agg(mean=("value", "mean"), count=("value", "count"))
    )
    summary.insert(0, "time", pd.Timestamp(context.partition_time_window.start).tz_convert("UTC"))
    record_stage_metrics(context, rows=len(summary))
    return summary
