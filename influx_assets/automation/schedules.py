"""Jobs and schedules: each window is processed once it has closed, plus a grace period for late data.

Hourly stages run for window ``H`` at ``H + 1h + grace``; daily stages run for day ``D`` after the last
hourly window of ``D`` has had its turn. Data that arrives after that re-opens its window through the
late-data sensor (:mod:`influx_assets.automation.late_data`), not through the schedule.
"""

import os
from collections.abc import Mapping

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    build_schedule_from_partitioned_job,
    define_asset_job,
)

from influx_assets.influxdb import InfluxDBConfigError
from influx_assets.telemetry.partitions import daily_windows, hourly_windows

AUTOMATION_VARIABLE = "INFLUX_ASSETS_AUTOMATION"
_AUTOMATION_STATES = {"running": True, "stopped": False}


def automation_running(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether what launches runs by itself (both schedules, the late-data and lookback sensors) starts on.

    ``INFLUX_ASSETS_AUTOMATION``: ``running`` (default) or ``stopped``. It sets Dagster's *default*
    status only: a status an operator set in the UI is kept in the instance and wins. The sensors that
    launch no runs (raw observation, failures) are always on.

    Raises:
        InfluxDBConfigError: any other value.
    """
    value = (environ.get(AUTOMATION_VARIABLE) or "").strip().lower() or "running"
    if value not in _AUTOMATION_STATES:
        raise InfluxDBConfigError(
            f"{AUTOMATION_VARIABLE} must be one of {', '.join(_AUTOMATION_STATES)}; got {value!r}"
        )
    return _AUTOMATION_STATES[value]

#: Minutes after a window closes before it is processed (late points inside this grace are included).
DEFAULT_GRACE_MINUTES = 15

HOURLY_STAGES = AssetSelection.assets(
    "validated_telemetry",
    "quarantined_telemetry",
    "normalized_telemetry",
    "telemetry_5m",
    "telemetry_sliding_15m",
)
DAILY_STAGES = AssetSelection.assets("telemetry_1h", "telemetry_archive", "sensor_features")

hourly_pipeline_job = define_asset_job(
    "hourly_pipeline",
    selection=HOURLY_STAGES,
    partitions_def=hourly_windows,
    description="Validate, normalize and aggregate one hourly window of raw telemetry.",
)
daily_pipeline_job = define_asset_job(
    "daily_pipeline",
    selection=DAILY_STAGES,
    partitions_def=daily_windows,
    description="Downsample, archive and compute features for one UTC day.",
)


def pipeline_schedules(grace_minutes: int = DEFAULT_GRACE_MINUTES, running: bool | None = None) -> list:
    """The hourly and daily schedules.

    Args:
        grace_minutes: wait this long after a window closes (0-29) before processing it.
        running: whether the schedules are on by default; ``None``: :func:`automation_running`.
    """
    if not 0 <= grace_minutes < 30:
        raise ValueError("grace_minutes must be between 0 and 29")
    if running is None:
        running = automation_running()
    status = DefaultScheduleStatus.RUNNING if running else DefaultScheduleStatus.STOPPED
    return [
        build_schedule_from_partitioned_job(
            hourly_pipeline_job, name="hourly_pipeline_schedule", minute_of_hour=grace_minutes,
            default_status=status,
        ),
        build_schedule_from_partitioned_job(
            daily_pipeline_job, name="daily_pipeline_schedule", hour_of_day=0,
            minute_of_hour=grace_minutes + 30, default_status=status,
        ),
    ]
