"""Sensors of the code location. For now one: a record of every failed stage and window.

``pipeline_failure_sensor`` fires for each failed run of this code location and writes, per failed
stage, a point to the InfluxDB measurement ``pipeline_failures`` and an error line to the sensor log:

- tags ``stage`` (asset key of the failed step; each asset of a multi-asset step), ``window``
  (``dagster/partition``, or ``start...end`` of a range run) and ``error_class`` (the innermost
  exception class, e.g. ``PartialWriteError``);
- fields ``message`` (redacted: no InfluxDB token, password or URL credentials, at most
  :data:`MAX_MESSAGE_CHARS`), ``step_key``, ``run_id``, ``job_name`` and ``failures=1``;
- time: when the step failed.

A run that failed without a failed step (it crashed, or could not start) is recorded once per asset
it was meant to materialize, with the run's error. If InfluxDB cannot be written the evaluation
fails and Dagster evaluates the same run again on the next tick: failures are not lost.
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DefaultSensorStatus,
    RunFailureSensorContext,
    run_failure_sensor,
)

from influx_assets.influxdb import InfluxDBResource
from influx_assets.influxdb import redact

FAILURES_MEASUREMENT = "pipeline_failures"
MAX_MESSAGE_CHARS = 500
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
_URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s@]+@", re.IGNORECASE)


@dataclass(frozen=True)
class StageFailure:
    """One stage that failed for one window, and why."""

    stage: str
    window: str
    error_class: str
    message: str
    step_key: str
    run_id: str
    job_name: str
    failed_at: float


def run_window(tags: Mapping[str, str]) -> str:
    """The window a run worked on, from its tags (``""`` for an unpartitioned run)."""
    if tags.get(PARTITION_TAG):
        return tags[PARTITION_TAG]
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if start and end:
        return start if start == end else f"{start}...{end}"
    return ""


def redact_message(text: str, secrets: Iterable[str | None]) -> str:
    """One line, without secrets or URL credentials, at most :data:`MAX_MESSAGE_CHARS` long."""
    text = _URL_CREDENTIALS.sub(r"\1***@", redact(text, secrets))
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def root_error(error: object | None, fallback: str) -> tuple[str, str]:
    """``(class name, message)`` of the innermost cause of a serialized error (Dagster wraps user errors)."""
    if error is None:
        return "DagsterRunFailure", fallback
    while getattr(error, "cause", None) is not None:
        error = error.cause
    cls_name = getattr(error, "cls_name", None) or "Error"
    message = str(getattr(error, "message", "") or fallback).strip()
    if message.startswith(f"{cls_name}:"):
        message = message[len(cls_name) + 1 :].strip()
    return cls_name, message


def step_asset_keys(instance: DagsterInstance, run: DagsterRun) -> dict[str, list[str]]:
    """Step key → asset keys it materializes, from the run's execution plan snapshot."""
    if not run.execution_plan_snapshot_id:
        return {}
    snapshot = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    if snapshot is None:
        return {}
    assets: dict[str, list[str]] = {}
    for step in snapshot.steps:
        keys = [o.properties.asset_key for o in step.outputs if o.properties and o.properties.asset_key]
        assets[step.key] = [key.to_user_string() for key in keys]
    return assets


def stage_failures(
    instance: DagsterInstance, run: DagsterRun, run_error: object | None, run_message: str, failed_at: float,
    secrets: Sequence[str | None] = (),
) -> list[StageFailure]:
    """Every failed stage of ``run``: one per asset of each failed step, else one per selected asset."""
    window = run_window(run.tags)
    records = instance.get_records_for_run(run_id=run.run_id, of_type=DagsterEventType.STEP_FAILURE).records
    failures: list[StageFailure] = []
    assets_by_step = step_asset_keys(instance, run) if records else {}
    for record in records:
        event = record.event_log_entry.dagster_event
        step_key = event.step_key or ""
        error = event.step_failure_data.error if event.step_failure_data else None
        cls_name, message = root_error(error, event.message or "step failed")
        for stage in assets_by_step.get(step_key) or [step_key]:
            failures.append(StageFailure(
                stage, window, cls_name, redact_message(message, secrets), step_key, run.run_id, run.job_name,
                record.timestamp,
            ))
    if not failures:
        cls_name, message = root_error(run_error, run_message)
        message = redact_message(message, secrets)
        stages = sorted(key.to_user_string() for key in run.asset_selection or ()) or [""]
        failures = [
            StageFailure(stage, window, cls_name, message, "", run.run_id, run.job_name, failed_at)
            for stage in stages
        ]
    return failures


def failures_frame(failures: Sequence[StageFailure]) -> pd.DataFrame:
    """Failures as rows for ``pipeline_failures``."""
    return pd.DataFrame({
        "time": pd.to_datetime([f.failed_at for f in failures], unit="s", utc=True),
        "stage": [f.stage for f in failures],
        "window": [f.window for f in failures],
        "error_class": [f.error_class for f in failures],
        "message": pd.array([f.message for f in failures], dtype="str"),
        "step_key": pd.array([f.step_key for f in failures], dtype="str"),
        "run_id": pd.array([f.run_id for f in failures], dtype="str"),
        "job_name": pd.array([f.job_name for f in failures], dtype="str"),
        "failures": pd.array([1] * len(failures), dtype="int64"),
    })


@run_failure_sensor(
    name="pipeline_failure_sensor",
    description="Records each failed stage and window (and why) in InfluxDB measurement pipeline_failures.",
    default_status=DefaultSensorStatus.RUNNING,
)
def pipeline_failure_sensor(context: RunFailureSensorContext, influxdb: InfluxDBResource) -> None:
    """Write one ``pipeline_failures`` point and one log line per failed stage of the failed run."""
    event = context.failure_event
    run_error = getattr(event.event_specific_data, "error", None)
    failed_at = context.instance.get_run_record_by_id(context.dagster_run.run_id)
    failures = stage_failures(
        context.instance, context.dagster_run, run_error, event.message or "run failed",
        failed_at.update_timestamp.timestamp() if failed_at else pd.Timestamp.now("UTC").timestamp(),
        secrets=[influxdb.token, influxdb.password],
    )
    for failure in failures:
        context.log.error(
            f"stage {failure.stage or '-'} window {failure.window or '-'} failed in run {failure.run_id} "
            f"(step {failure.step_key or '-'}): {failure.error_class}: {failure.message}"
        )
    influxdb.prepare_database()
    influxdb.write_frame(failures_frame(failures), FAILURES_MEASUREMENT, ["stage", "window", "error_class"])


#: Every sensor of the code location, for ``Definitions(sensors=...)``.
sensors = [pipeline_failure_sensor]
