"""The time windows every stage is partitioned by. All UTC: windows are half-open ``[start, end)``.

The first window is configuration: ``INFLUX_ASSETS_START`` (a UTC date, ``YYYY-MM-DD``; default
:data:`DEFAULT_START`), read when the code location loads. Set it near your data: the UI shows every
window from the start on (each asset's "% filled", the launch dialog's partition count), and windows
before the start cannot be materialized. Moving the start later hides, but never deletes, windows
before it.
"""

import os
from collections.abc import Mapping

import pandas as pd
from dagster import DailyPartitionsDefinition, HourlyPartitionsDefinition

from influx_assets.influxdb import InfluxDBConfigError

START_VARIABLE = "INFLUX_ASSETS_START"
#: First day when ``INFLUX_ASSETS_START`` is not set.
DEFAULT_START = "2024-01-01"


def pipeline_start(environ: Mapping[str, str] = os.environ) -> str:
    """The first day of the pipeline's windows, ``YYYY-MM-DD``, from ``INFLUX_ASSETS_START``.

    Raises:
        InfluxDBConfigError: the variable is set but is not a calendar date in that form.
    """
    value = (environ.get(START_VARIABLE) or "").strip() or DEFAULT_START
    try:
        day = pd.Timestamp(value)
    except ValueError:
        day = None
    if day is None or len(value) != 10 or day.strftime("%Y-%m-%d") != value:
        raise InfluxDBConfigError(
            f"{START_VARIABLE} must be a UTC date as YYYY-MM-DD (the pipeline's first window), e.g. "
            f"{DEFAULT_START}; got {value!r}"
        )
    return value


#: First day the pipeline knows about. Backfills can cover anything after it.
PIPELINE_START_DAY = pipeline_start()
PIPELINE_START = f"{PIPELINE_START_DAY}-00:00"

hourly_windows = HourlyPartitionsDefinition(start_date=PIPELINE_START, timezone="UTC")
daily_windows = DailyPartitionsDefinition(start_date=PIPELINE_START_DAY, timezone="UTC")
