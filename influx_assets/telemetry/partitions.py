"""The time windows every stage is partitioned by. All UTC: windows are half-open ``[start, end)``."""

from __future__ import annotations

from dagster import DailyPartitionsDefinition, HourlyPartitionsDefinition

#: First window the pipeline knows about. Backfills can cover anything after it.
PIPELINE_START = "2024-01-01-00:00"

hourly_windows = HourlyPartitionsDefinition(start_date=PIPELINE_START, timezone="UTC")
daily_windows = DailyPartitionsDefinition(start_date=PIPELINE_START[:10], timezone="UTC")
