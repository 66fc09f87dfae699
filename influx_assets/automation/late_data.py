"""Late data: a window that changes after it was processed is re-run, once, with its daily dependants.

Choice (documented in the README): a sensor, not declarative automation, because the rule is easy to
state and test. Each tick, for the last :data:`LOOKBACK_WINDOWS` closed hourly windows that
``validated_telemetry`` has processed:

1. the raw window is observed now (point count + content fingerprint, :func:`observe_window`) and
   compared with the fingerprint the latest ``validated_telemetry`` materialization of that window
   recorded; a difference requests the hourly job for exactly that window, with a run key naming the
   new fingerprint — Dagster never launches the same run key twice, so one change gives one run;
2. for each day whose daily stages were already materialized, if an hourly ``telemetry_5m`` window of
   that day was materialized *after* the day's daily stages, the daily job is requested for that day
   (run key: the newest hourly materialization's storage id), so dependants re-run only after the
   hourly re-run has finished, never against half-updated windows.

Windows that did not change are never re-run; windows not yet processed are the schedules' job.
"""


import pandas as pd
from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from influx_assets.influxdb import InfluxDBResource
from influx_assets.telemetry.partitions import daily_windows, hourly_windows
from influx_assets.telemetry.raw import observe_window, window_changed
from influx_assets.automation.schedules import daily_pipeline_job, hourly_pipeline_job
from influx_assets.telemetry.keys import (
    RAW_FINGERPRINT,
    SENSOR_FEATURES,
    TELEMETRY_1H,
    TELEMETRY_5M,
    TELEMETRY_ARCHIVE,
    VALIDATED_TELEMETRY,
)

#: How many closed hourly windows back the sensor looks for late data.
LOOKBACK_WINDOWS = 24
VALIDATED = VALIDATED_TELEMETRY
FIVE_MINUTE = TELEMETRY_5M
DAILY_KEYS = (TELEMETRY_1H, TELEMETRY_ARCHIVE, SENSOR_FEATURES)


def latest_materializations(instance: DagsterInstance, key: AssetKey, partitions: list[str]) -> dict[str, object]:
    """The newest materialization record of each listed partition (partitions never materialized are absent)."""
    if not partitions:
        return {}
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=partitions), limit=len(partitions) * 4
    ).records
    newest: dict[str, object] = {}
    for record in records:  # newest first
        partition = record.partition_key
        if partition is not None and partition not in newest:
            newest[partition] = record
    missing = [p for p in partitions if p not in newest]
    if missing and len(records) == len(partitions) * 4:  # page was full: fetch the rest one by one
        for partition in missing:
            page = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
            ).records
            if page:
                newest[partition] = page[0]
    return newest


def processed_fingerprint(record: object) -> str | None:
    """The raw fingerprint ``validated_telemetry`` recorded for its window (range runs: per partition)."""
    single = record.asset_materialization.metadata.get(RAW_FINGERPRINT)  # type: ignore[attr-defined]
    return None if single is None else str(single.value)


def closed_windows(now: pd.Timestamp, lookback: int = LOOKBACK_WINDOWS) -> list[str]:
    """The last ``lookback`` hourly partition keys whose window has ended by ``now``."""
    keys = hourly_windows.get_partition_keys(current_time=now.to_pydatetime())
    return list(keys[-lookback:])


def late_window_requests(
    instance: DagsterInstance, influxdb: InfluxDBResource, windows: list[str]
) -> list[RunRequest]:
    """Hourly re-runs for processed windows whose raw content changed."""
    requests = []
    for partition, record in latest_materializations(instance, VALIDATED, windows).items():
        observed = observe_window(influxdb, partition)
        if window_changed(observed.fingerprint, processed_fingerprint(record)):
            requests.append(
                RunRequest(
                    job_name=hourly_pipeline_job.name,
                    partition_key=partition,
                    run_key=f"late-{partition}-{observed.data_version}",
                    tags={"influx_assets/trigger": "late_data", "influx_assets/raw_points": str(observed.points)},
                )
            )
    return requests


def stale_day_requests(instance: DagsterInstance, windows: list[str]) -> list[RunRequest]:
    """Daily re-runs for days whose hourly ``telemetry_5m`` windows changed after the daily run."""
    days = sorted({daily_windows.get_partition_key_for_timestamp(
        hourly_windows.time_window_for_partition_key(w).start.timestamp()) for w in windows})
    newest = DagsterEventType.ASSET_MATERIALIZATION
    hourly = instance.get_latest_storage_id_by_partition(FIVE_MINUTE, newest, set(windows))
    daily = [instance.get_latest_storage_id_by_partition(key, newest, set(days)) for key in DAILY_KEYS]
    requests = []
    for day in days:
        if any(day not in ids for ids in daily):
            continue  # never processed: the daily schedule will do it
        oldest_daily = min(ids[day] for ids in daily)
        newer = [storage_id for w, storage_id in hourly.items() if w.startswith(day) and storage_id > oldest_daily]
        if newer:
            requests.append(
                RunRequest(
                    job_name=daily_pipeline_job.name,
                    partition_key=day,
                    run_key=f"late-day-{day}-{max(newer)}",
                    tags={"influx_assets/trigger": "late_data"},
                )
            )
    return requests


@sensor(
    jobs=[hourly_pipeline_job, daily_pipeline_job],
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Re-runs a processed window whose raw data changed (late points), then its day.",
)
def late_data_sensor(context: SensorEvaluationContext, influxdb: InfluxDBResource) -> SensorResult:
    """Request re-runs of changed windows and of days whose hourly windows were re-run."""
    windows = closed_windows(pd.Timestamp.now(tz="UTC"))
    requests = late_window_requests(context.instance, influxdb, windows)
    requests += stale_day_requests(context.instance, windows)
    return SensorResult(run_requests=requests)
