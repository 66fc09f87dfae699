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

Every tick logs what it decided: each changed window with the point count and fingerprint
``validated_telemetry`` recorded and the ones observed now, each day requested again, or — when
nothing changed — one line saying how many processed windows were compared.
"""


from dataclasses import dataclass

import pandas as pd
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from influx_assets.influxdb import InfluxDBResource
from influx_assets.telemetry.checks import latest_materializations
from influx_assets.telemetry.partitions import daily_windows, hourly_windows
from influx_assets.telemetry.raw import WindowObservation, observe_window, window_changed
from influx_assets.automation.schedules import automation_running, daily_pipeline_job, hourly_pipeline_job
from influx_assets.telemetry.keys import (
    RAW_FINGERPRINT,
    RAW_POINTS,
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


def processed_fingerprint(record: object) -> str | None:
    """The raw fingerprint ``validated_telemetry`` recorded for its window (range runs: per partition)."""
    single = record.asset_materialization.metadata.get(RAW_FINGERPRINT)  # type: ignore[attr-defined]
    return None if single is None else str(single.value)


def processed_points(record: object) -> int | None:
    """The raw point count ``validated_telemetry`` recorded for its window (``None`` if it did not)."""
    single = record.asset_materialization.metadata.get(RAW_POINTS)  # type: ignore[attr-defined]
    return None if single is None else int(single.value)


@dataclass(frozen=True)
class WindowComparison:
    """A processed raw window: what ``validated_telemetry`` recorded for it, and what it holds now."""

    partition_key: str
    recorded_points: int | None
    recorded_fingerprint: str | None
    observed: WindowObservation

    @property
    def changed(self) -> bool:
        """Whether the window no longer holds what was processed."""
        return window_changed(self.observed.fingerprint, self.recorded_fingerprint)

    def describe(self) -> str:
        """One log line: the window, its old and new point count and fingerprint."""
        old = short_fingerprint(self.recorded_fingerprint)
        new = short_fingerprint(self.observed.fingerprint)
        return (
            f"raw window {self.partition_key} changed since validated_telemetry processed it: "
            f"points {self.recorded_points if self.recorded_points is not None else '?'} -> "
            f"{self.observed.points}, fingerprint {old} -> {new}"
        )


def short_fingerprint(fingerprint: str | None) -> str:
    """The first 16 hex digits of a fingerprint (``?`` when none was recorded)."""
    return fingerprint.removeprefix("sha256:")[:16] if fingerprint else "?"


def closed_windows(now: pd.Timestamp, lookback: int = LOOKBACK_WINDOWS) -> list[str]:
    """The last ``lookback`` hourly partition keys whose window has ended by ``now``."""
    keys = hourly_windows.get_partition_keys(current_time=now.to_pydatetime())
    return list(keys[-lookback:])


def compare_windows(
    instance: DagsterInstance, influxdb: InfluxDBResource, windows: list[str]
) -> list[WindowComparison]:
    """Each processed window among ``windows``, observed now and set against what was processed."""
    return [
        WindowComparison(partition, processed_points(record), processed_fingerprint(record),
                         observe_window(influxdb, partition))
        for partition, record in latest_materializations(instance, VALIDATED, windows).items()
    ]


def late_window_request(comparison: WindowComparison) -> RunRequest:
    """The hourly re-run of a changed window, keyed by its new content (one run per change)."""
    observed = comparison.observed
    return RunRequest(
        job_name=hourly_pipeline_job.name,
        partition_key=comparison.partition_key,
        run_key=f"late-{comparison.partition_key}-{observed.data_version}",
        tags={"influx_assets/trigger": "late_data", "influx_assets/raw_points": str(observed.points)},
    )


def late_window_requests(
    instance: DagsterInstance, influxdb: InfluxDBResource, windows: list[str]
) -> list[RunRequest]:
    """Hourly re-runs for processed windows whose raw content changed."""
    return [late_window_request(c) for c in compare_windows(instance, influxdb, windows) if c.changed]


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
    default_status=DefaultSensorStatus.RUNNING if automation_running() else DefaultSensorStatus.STOPPED,
    description="Re-runs a processed window whose raw data changed (late points), then its day.",
)
def late_data_sensor(context: SensorEvaluationContext, influxdb: InfluxDBResource) -> SensorResult:
    """Request re-runs of changed windows and of days whose hourly windows were re-run; log why."""
    windows = closed_windows(pd.Timestamp.now(tz="UTC"))
    comparisons = compare_windows(context.instance, influxdb, windows)
    changed = [c for c in comparisons if c.changed]
    for comparison in changed:
        context.log.info(f"{comparison.describe()}; requesting hourly_pipeline for it")
    day_requests = stale_day_requests(context.instance, windows)
    for request in day_requests:
        context.log.info(
            f"day {request.partition_key}: hourly windows were re-run after its daily stages; "
            f"requesting {request.job_name} for it"
        )
    if not changed and not day_requests:
        context.log.info(
            f"no late data: compared {len(comparisons)} processed window(s) of the last {len(windows)} "
            f"closed hourly windows ({windows[0] if windows else '-'} .. {windows[-1] if windows else '-'}), "
            "none changed"
        )
    return SensorResult(run_requests=[late_window_request(c) for c in changed] + day_requests)
