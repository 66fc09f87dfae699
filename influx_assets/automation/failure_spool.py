"""The ``pipeline_failures`` record, and the spool that keeps failures InfluxDB could not take yet.

Why a spool: Dagster 1.13's run-failure sensor moves its cursor past a failed run even when the sensor
function raises (``RunStatusSensorDefinition`` reports the error on the tick and the daemon calls
``set_should_update_cursor_on_failure(True)``: "run status sensors have side effects that we don't
want to repeat"). It never evaluates that run again, so a failure during an InfluxDB outage — exactly
when the dashboard needs it — would never be recorded.

Where: one key, :data:`SPOOL_KEY`, of the Dagster instance's key-value store (the table the daemons
keep their cursors in: SQLite under ``DAGSTER_HOME``, or Postgres), so spooled failures survive daemon
and code-location restarts. Bounded: at most :data:`MAX_SPOOLED_FAILURES` failures, the oldest dropped
first (with an error line in the sensor log); each message is at most 500 characters.

Who writes them: ``pipeline_failure_sensor`` writes a failed run's points at once and spools them only
when InfluxDB cannot take them (:func:`record_failures`); :data:`pipeline_failure_spool_sensor` tries
the spool every minute and removes what it wrote (:func:`flush_spool`).

Exactly once: a ``pipeline_failures`` point is identified by its time and tags (``stage``, ``window``,
``error_class``), and InfluxDB keeps one point per series and timestamp: writing the same failure again
replaces the point with identical fields. A failure leaves the spool only after a successful write, so
a crash between write and removal rewrites the same point — never a second one.

The daemon evaluates sensors one at a time by default. With ``sensors: use_threads: true`` in
``dagster.yaml`` the two sensors may run at once; the spool is read, changed and stored without a lock,
so a failure spooled in the instant the spool sensor stores its emptied spool could be lost.
"""

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
from dagster import DagsterInstance, DefaultSensorStatus, SensorEvaluationContext, SkipReason, sensor

from influx_assets.influxdb import (
    AuthenticationError,
    DatabaseNotFoundError,
    InfluxDBResource,
    TransientInfluxError,
    redact,
)

FAILURES_MEASUREMENT = "pipeline_failures"
FAILURE_TAGS = ("stage", "window", "error_class")
#: Key of the spool in the Dagster instance's key-value store.
SPOOL_KEY = "influx_assets/pipeline_failures_spool"
#: Most failures the spool keeps (about 0.5 MB of JSON at most); the oldest are dropped first.
MAX_SPOOLED_FAILURES = 500
#: Write errors after which failures are kept for later: the server did not answer, or refused the
#: credentials or lacks the database — states an operator fixes, after which the write succeeds.
#: Other errors (a rejected point) would fail again forever, so they fail the tick instead.
SPOOLED_ERRORS = (TransientInfluxError, AuthenticationError, DatabaseNotFoundError)


@dataclass(frozen=True)
class StageFailure:
    """One stage that failed for one window, and why (one ``pipeline_failures`` point).

    ``message`` is redacted and on one line; ``cause`` is the redacted, shortened first line of it,
    for the run's tags (not written to InfluxDB).
    """

    stage: str
    window: str
    error_class: str
    message: str
    step_key: str
    run_id: str
    job_name: str
    failed_at: float
    cause: str = ""

    @property
    def point_key(self) -> tuple[float, str, str, str]:
        """What identifies the failure's point in InfluxDB: its time and tags."""
        return (self.failed_at, self.stage, self.window, self.error_class)


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


def write_failures(influxdb: InfluxDBResource, failures: Sequence[StageFailure]) -> None:
    """Write ``failures`` to ``pipeline_failures`` (rewriting one replaces its point: idempotent)."""
    if failures:
        influxdb.prepare_database()
        influxdb.write_frame(failures_frame(failures), FAILURES_MEASUREMENT, list(FAILURE_TAGS))


def spooled_failures(instance: DagsterInstance) -> list[StageFailure]:
    """The failures waiting in the spool, oldest first."""
    stored = instance.run_storage.get_cursor_values({SPOOL_KEY}).get(SPOOL_KEY)
    return [StageFailure(**entry) for entry in json.loads(stored)] if stored else []


def _store_spool(instance: DagsterInstance, failures: Sequence[StageFailure]) -> None:
    entries = [dataclasses.asdict(f) for f in failures]
    instance.run_storage.set_cursor_values({SPOOL_KEY: json.dumps(entries, ensure_ascii=True)})


def spool_failures(
    instance: DagsterInstance, failures: Sequence[StageFailure], limit: int = MAX_SPOOLED_FAILURES
) -> int:
    """Add ``failures`` to the spool (once each), keeping at most ``limit``; returns how many of the
    oldest had to be dropped."""
    kept = {f.point_key: f for f in spooled_failures(instance)}
    for failure in failures:
        kept.setdefault(failure.point_key, failure)
    ordered = sorted(kept.values(), key=lambda f: f.failed_at)
    dropped = max(0, len(ordered) - limit)
    _store_spool(instance, ordered[dropped:])
    return dropped


def flush_spool(instance: DagsterInstance, influxdb: InfluxDBResource) -> int:
    """Write the spooled failures, then remove them from the spool; returns how many were written.

    Raises the write's error (and keeps the spool) when InfluxDB cannot take them.
    """
    pending = spooled_failures(instance)
    write_failures(influxdb, pending)
    written = {f.point_key for f in pending}
    # Re-read: the failure sensor may have spooled more while we were writing.
    _store_spool(instance, [f for f in spooled_failures(instance) if f.point_key not in written])
    return len(pending)


def record_failures(
    instance: DagsterInstance, influxdb: InfluxDBResource, failures: Sequence[StageFailure],
    log_error: Callable[[str], None],
) -> bool:
    """Write ``failures`` now, or spool them if InfluxDB cannot take them; returns whether written."""
    try:
        write_failures(influxdb, failures)
        return True
    except SPOOLED_ERRORS as error:
        dropped = spool_failures(instance, failures)
        waiting = len(spooled_failures(instance))
        log_error(
            f"could not write {len(failures)} failure(s) to {FAILURES_MEASUREMENT}: "
            f"{describe(error, influxdb)}; "
            f"kept in the Dagster instance ({waiting} waiting), pipeline_failure_spool_sensor writes them "
            f"once InfluxDB answers" + (f"; spool full, dropped the {dropped} oldest" if dropped else "")
        )
        return False


def describe(error: Exception, influxdb: InfluxDBResource) -> str:
    """``Class: message`` of a write error, on one line, without the resource's secrets."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return redact(text, [influxdb.token, influxdb.password])[:300]


@sensor(
    name="pipeline_failure_spool_sensor",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Writes failures recorded while InfluxDB was unreachable to pipeline_failures, once.",
)
def pipeline_failure_spool_sensor(context: SensorEvaluationContext, influxdb: InfluxDBResource) -> SkipReason:
    """Write the spooled failures once InfluxDB answers (a tick with an empty spool does nothing)."""
    waiting = len(spooled_failures(context.instance))
    if not waiting:
        return SkipReason("no failures waiting for InfluxDB")
    try:
        written = flush_spool(context.instance, influxdb)
    except SPOOLED_ERRORS as error:
        reason = f"{waiting} failure(s) still waiting for InfluxDB: {describe(error, influxdb)}"
        context.log.warning(reason)
        return SkipReason(reason)
    context.log.info(f"wrote {written} spooled failure(s) to {FAILURES_MEASUREMENT}")
    return SkipReason(f"wrote {written} spooled failure(s) to {FAILURES_MEASUREMENT}")
