"""Sensors of the code location: a record of every failed stage and window, and its cause on the run.

``pipeline_failure_sensor`` fires for each failed run of this code location and, per failed stage:

- tags the run with its cause, where the operator looks first (the run's headline is often just
  "Exceeded max_retries of 3"): ``influx_assets/failed_stage``, ``influx_assets/error_class`` and
  ``influx_assets/cause``, the redacted first line of the innermost error, at most
  :data:`MAX_CAUSE_CHARS` characters (see :func:`cause_tags`). Dagster's automatic run retry
  (``run_retries``) copies a parent's tags: a retry launched after this sensor tagged the parent
  carries them too, until its own failure replaces them (a retry that succeeds keeps them);
- writes a point to the InfluxDB measurement ``pipeline_failures`` and an error line to the sensor log:
  tags ``stage`` (asset key of the failed step; each asset of a multi-asset step), ``window``
  (``dagster/partition``, or ``start...end`` of a range run) and ``error_class`` (the innermost
  exception class, e.g. ``PartialWriteError``); fields ``message`` (redacted: no InfluxDB token,
  password, URL credentials or token query parameters, at most :data:`MAX_MESSAGE_CHARS`),
  ``step_key``, ``run_id``, ``job_name`` and ``failures=1``; time: when the step failed.

A run that failed without a failed step (it crashed, or could not start) is recorded once per asset
it was meant to materialize, with the run's error, at the time of its run-failure event.

Dagster moves this sensor's cursor past a run even when the evaluation raises, so a failure that
InfluxDB cannot take (it is down) is kept in the Dagster instance and written later by
``pipeline_failure_spool_sensor``, exactly once (:mod:`influx_assets.automation.failure_spool`).
"""

import re
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DefaultSensorStatus,
    RunFailureSensorContext,
    run_failure_sensor,
)

from influx_assets.automation.failure_spool import (
    FAILURES_MEASUREMENT,
    StageFailure,
    failures_frame,
    pipeline_failure_spool_sensor,
    record_failures,
)
from influx_assets.influxdb import InfluxDBResource
from influx_assets.influxdb import redact

__all__ = [
    "FAILURES_MEASUREMENT", "StageFailure", "cause_tags", "failures_frame", "pipeline_failure_sensor",
    "redact_message", "run_window", "sensors", "stage_failures",
]

MAX_MESSAGE_CHARS = 500
#: Longest ``influx_assets/cause`` tag value. Dagster checks run tag values only for being strings
#: (``normalize_tags(strict=False)``; its strict rule — at most 63 of ``[A-Za-z0-9_.-]`` — is for
#: definition tags); one line of at most 200 characters stays readable on the run page.
MAX_CAUSE_CHARS = 200
#: Longest ``influx_assets/failed_stage`` and ``influx_assets/error_class`` value (Dagster's 63).
MAX_SHORT_TAG_CHARS = 63
FAILED_STAGE_TAG = "influx_assets/failed_stage"
ERROR_CLASS_TAG = "influx_assets/error_class"
CAUSE_TAG = "influx_assets/cause"
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
_URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s@]+@", re.IGNORECASE)
# ?token=..., &p=... (InfluxDB 1.x query authentication), and "Token <secret>" / "Bearer <secret>".
_QUERY_SECRETS = re.compile(
    r"([?&](?:token|p|password|access_token|api_key|apikey)=)[^&\s#\"']+", re.IGNORECASE
)
_SCHEME_SECRETS = re.compile(r"\b(Token|Bearer)\s+[^\s\"',;]{8,}")


def run_window(tags: Mapping[str, str]) -> str:
    """The window a run worked on, from its tags (``""`` for an unpartitioned run)."""
    if tags.get(PARTITION_TAG):
        return tags[PARTITION_TAG]
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if start and end:
        return start if start == end else f"{start}...{end}"
    return ""


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters (an ellipsis marks a cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def redact_message(text: str, secrets: Iterable[str | None], limit: int = MAX_MESSAGE_CHARS) -> str:
    """One line, without secrets, URL credentials or token parameters, at most ``limit`` characters."""
    text = _URL_CREDENTIALS.sub(r"\1***@", redact(text, secrets))
    text = _SCHEME_SECRETS.sub(r"\1 ***", _QUERY_SECRETS.sub(r"\1***", text))
    return shorten(" ".join(text.split()), limit)


def cause_line(message: str, secrets: Iterable[str | None]) -> str:
    """The first non-empty line of ``message``, redacted, at most :data:`MAX_CAUSE_CHARS` characters."""
    first = next((line for line in message.splitlines() if line.strip()), "")
    return redact_message(first, secrets, MAX_CAUSE_CHARS)


def root_error(error: object | None, fallback: str) -> tuple[str, str]:
    """``(class name, message)`` of the innermost cause of a serialized error (Dagster wraps user errors)."""
    if error is None:
        return "DagsterRunFailure", fallback
    while getattr(error, "cause", None) is not None:
        error = error.cause
    cls_name = getattr(error, "cls_name", None) or "Error"
    message = str(getattr(error, "message", "") or fallback).strip()
    # Python prints non-builtin exceptions with their module: "package.module.ClassName: text".
    prefix = re.match(rf"(?:[A-Za-z_][\w.]*\.)?{re.escape(cls_name)}:", message)
    if prefix:
        message = message[prefix.end() :].strip()
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


def run_failed_at(instance: DagsterInstance, run: DagsterRun) -> float:
    """When the run failed: its run-failure event (stable, unlike the record's update time, which
    moves when tags are added), else its end time, else now."""
    events = instance.get_records_for_run(run_id=run.run_id, of_type=DagsterEventType.RUN_FAILURE).records
    if events:
        return events[-1].timestamp
    record = instance.get_run_record_by_id(run.run_id)
    if record is not None and record.end_time is not None:
        return record.end_time
    return pd.Timestamp.now("UTC").timestamp()


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
                record.timestamp, cause_line(message, secrets),
            ))
    if not failures:
        cls_name, message = root_error(run_error, run_message)
        stages = sorted(key.to_user_string() for key in run.asset_selection or ()) or [""]
        failures = [
            StageFailure(
                stage, window, cls_name, redact_message(message, secrets), "", run.run_id, run.job_name,
                failed_at, cause_line(message, secrets),
            )
            for stage in stages
        ]
    return failures


def cause_tags(failures: Sequence[StageFailure]) -> dict[str, str]:
    """Run tags naming the first failed stage (``+N more`` when several failed), its error and cause."""
    if not failures:
        return {}
    first = failures[0]
    stages = list(dict.fromkeys(f.stage or f.step_key or "-" for f in failures))
    more = f" (+{len(stages) - 1} more)" if len(stages) > 1 else ""
    return {
        FAILED_STAGE_TAG: shorten(stages[0], MAX_SHORT_TAG_CHARS - len(more)) + more,
        ERROR_CLASS_TAG: shorten(first.error_class, MAX_SHORT_TAG_CHARS),
        CAUSE_TAG: first.cause or shorten(first.message, MAX_CAUSE_CHARS),
    }


@run_failure_sensor(
    name="pipeline_failure_sensor",
    description="Tags each failed run with its cause and records each failed stage and window (and why) "
    "in InfluxDB measurement pipeline_failures.",
    default_status=DefaultSensorStatus.RUNNING,
)
def pipeline_failure_sensor(context: RunFailureSensorContext, influxdb: InfluxDBResource) -> None:
    """Tag the failed run with its cause; write one ``pipeline_failures`` point and log line per failed stage.

    If InfluxDB cannot take the points they are spooled in the Dagster instance (and written later by
    ``pipeline_failure_spool_sensor``): Dagster would not evaluate this run again.
    """
    run = context.dagster_run
    event = context.failure_event
    run_error = getattr(event.event_specific_data, "error", None)
    failures = stage_failures(
        context.instance, run, run_error, event.message or "run failed", run_failed_at(context.instance, run),
        secrets=[influxdb.token, influxdb.password],
    )
    for failure in failures:
        context.log.error(
            f"stage {failure.stage or '-'} window {failure.window or '-'} failed in run {failure.run_id} "
            f"(step {failure.step_key or '-'}): {failure.error_class}: {failure.message}"
        )
    context.instance.add_run_tags(run.run_id, cause_tags(failures))
    record_failures(context.instance, influxdb, failures, context.log.error)


#: Every sensor of this module, for ``Definitions(sensors=...)``.
sensors = [pipeline_failure_sensor, pipeline_failure_spool_sensor]
