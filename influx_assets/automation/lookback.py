"""Lookback dependents follow their upstream: the sliding window of H+1 is recomputed after H changes.

``telemetry_sliding_15m`` of hour H+1 reads ``telemetry_5m`` of hour H (see
:mod:`influx_assets.telemetry.lookback`). Dagster's asset backfills add H+1 by themselves; nothing else
does — not the schedules, not the late-data sensor (it re-runs H only), not runs an operator or a
parallel catch-up launches out of order. This sensor does, for every kind of run:

* its cursor is the newest event-log storage id it has handled; each tick it reads the
  materializations of ``telemetry_5m`` and ``telemetry_sliding_15m`` stored after it (in storage
  order, and only those whose run has finished: a run still writing the hour is waited for);
* each one names a sliding window to verify: H+1 for a ``telemetry_5m`` hour H, H for a sliding
  window H;
* a sliding window whose recorded previous-hour rows (count + fingerprint) differ from what the
  latest ``telemetry_5m`` materialization of its previous hour reported is requested again: the
  hourly job for that window with only ``telemetry_sliding_15m`` (and its checks) selected. The run
  key names both materializations compared, so one state gives at most one run; after the re-run the
  window matches and nothing more is requested.

The comparison is the one the ``lookback_is_current`` check makes; the check shows the window red in
the UI until this sensor's run has recomputed it.
"""

from collections.abc import Iterable

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    DefaultSensorStatus,
    EventLogRecord,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from influx_assets.automation.schedules import automation_running, hourly_pipeline_job
from influx_assets.telemetry.checks import latest_materializations
from influx_assets.telemetry.keys import TELEMETRY_5M, TELEMETRY_SLIDING_15M
from influx_assets.telemetry.lookback import lookback_matches, next_hour_key, previous_hour_key

#: Materialization records read per asset and tick (the rest on the next tick).
PAGE = 500


def _new_records(instance: DagsterInstance, key: AssetKey, after: int | None) -> tuple[list[EventLogRecord], bool]:
    page = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=PAGE, ascending=True
    ).records
    return list(page), len(page) == PAGE


def handled_records(instance: DagsterInstance, after: int | None) -> tuple[list[EventLogRecord], int | None]:
    """The new 5-minute and sliding materializations this tick handles, and the cursor after them.

    In storage order; stops before the first one whose run has not finished (and, when a page was
    full, at the end of the shorter page), so nothing is skipped and nothing is read half-written.
    """
    five, five_full = _new_records(instance, TELEMETRY_5M, after)
    sliding, sliding_full = _new_records(instance, TELEMETRY_SLIDING_15M, after)
    limits = [page[-1].storage_id for page, full in ((five, five_full), (sliding, sliding_full)) if full]
    bound = min(limits) if limits else None
    handled: list[EventLogRecord] = []
    finished: dict[str, bool] = {}
    for record in sorted(five + sliding, key=lambda r: r.storage_id):
        if bound is not None and record.storage_id > bound:
            break
        if record.run_id not in finished:
            run = instance.get_run_by_id(record.run_id)
            finished[record.run_id] = run is None or run.is_finished
        if not finished[record.run_id]:
            break
        handled.append(record)
    return handled, handled[-1].storage_id if handled else after


def windows_to_verify(records: Iterable[EventLogRecord]) -> set[str]:
    """The sliding windows the records concern: H+1 of a ``telemetry_5m`` hour H, H of a sliding window."""
    windows = set()
    for record in records:
        key = record.partition_key
        if key is None:
            continue
        windows.add(next_hour_key(key) if record.asset_key == TELEMETRY_5M else key)
    return windows


def stale_windows(instance: DagsterInstance, windows: set[str]) -> list[tuple[str, EventLogRecord, EventLogRecord]]:
    """Materialized sliding windows that do not match the latest ``telemetry_5m`` of their previous hour.

    Returns ``(window, sliding record, previous hour's record)`` in window order.
    """
    previous = {w: p for w in windows if (p := previous_hour_key(w)) is not None}
    sliding = latest_materializations(instance, TELEMETRY_SLIDING_15M, set(previous))
    upstream = latest_materializations(instance, TELEMETRY_5M, set(previous.values()))
    stale = []
    for window in sorted(sliding):
        before = upstream.get(previous[window])
        if before is None:
            continue  # the previous hour was never processed: nothing to recompute against yet
        if lookback_matches(sliding[window], before) is False:
            stale.append((window, sliding[window], before))
    return stale


def lookback_request(window: str, sliding: EventLogRecord, previous: EventLogRecord) -> RunRequest:
    """Recompute one sliding window (its checks included), keyed by the two materializations compared."""
    return RunRequest(
        job_name=hourly_pipeline_job.name,
        partition_key=window,
        asset_selection=[TELEMETRY_SLIDING_15M],
        run_key=f"lookback-{window}-{previous.storage_id}-{sliding.storage_id}",
        tags={"influx_assets/trigger": "lookback"},
    )


@sensor(
    job=hourly_pipeline_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING if automation_running() else DefaultSensorStatus.STOPPED,
    description="Recomputes telemetry_sliding_15m of hour H+1 when hour H of telemetry_5m changed after it.",
)
def lookback_sensor(context: SensorEvaluationContext) -> SensorResult:
    """Request the sliding windows whose previous hour changed since they were computed; log why."""
    after = int(context.cursor) if context.cursor else None
    records, cursor = handled_records(context.instance, after)
    windows = windows_to_verify(records)
    stale = stale_windows(context.instance, windows)
    for window, _, previous in stale:
        context.log.info(
            f"telemetry_sliding_15m {window} was computed from another telemetry_5m {previous.partition_key} "
            f"than the one materialized now (run {previous.run_id[:8]}); requesting it again"
        )
    if records and not stale:
        context.log.info(f"verified {len(windows)} sliding window(s): each read its previous hour as it is now")
    return SensorResult(
        run_requests=[lookback_request(*entry) for entry in stale],
        cursor=str(cursor) if cursor is not None else None,
    )
