"""Runs left "in progress" by a Dagster that was stopped while they ran, and what the demo still has to do.

On one machine with the default run launcher, a run worker is a child of the code server that
``dagster dev`` started. ``scripts/stop.sh`` ends that whole process tree. A worker that gets to say
so fails its run ("execution interrupted"); one that does not leaves its run ``STARTED`` in the
instance for ever: nothing is left to notice that the worker is gone (the default launcher offers
the monitoring daemon no health check), and the run keeps the writer-pool slots of the step it was
in, so every later run of that stage waits behind it.

``scripts/demo.sh`` therefore, before it starts Dagster again, marks such runs failed
(:func:`fail_orphaned_runs`): their slots are freed (``run_monitoring.free_slots_after_run_end_seconds``)
and Dagster's run retries (``run_retries`` in ``dagster.yaml``) re-run them, as they re-run the
interrupted ones. The demo then launches a backfill only if no earlier demo backfill is still in
progress (:func:`unfinished_backfills`; its runs and their retries finish its windows), and only over
windows that no run finished (:func:`windows_not_processed`): one run per unfinished window, never a
storm of re-runs of finished work.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus

from influx_assets.devtools.local_server import pid_alive

#: Statuses of a run whose worker should be alive.
IN_PROGRESS = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
#: Statuses of a backfill that may still launch runs.
BACKFILL_IN_PROGRESS = [BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING, BulkActionStatus.FAILING]
_WORKER_PID = re.compile(r"Started process for run \(pid: (\d+)\)")


@dataclass(frozen=True)
class OrphanedRun:
    """A run marked failed because its worker process was gone."""

    run_id: str
    worker_pid: int | None


def worker_pid(instance: DagsterInstance, run_id: str) -> int | None:
    """The pid the run's worker reported when it started (``None`` if it never did)."""
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        found = _WORKER_PID.search(entry.message or "")
        if found:
            return int(found.group(1))
    return None


def dagster_process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process running Dagster code (a reused pid is not)."""
    if not pid_alive(pid):
        return False
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return True  # no /proc: trust the liveness check
    return "dagster" in command


def fail_orphaned_runs(
    instance: DagsterInstance, alive: Callable[[int], bool] = dagster_process_alive
) -> list[OrphanedRun]:
    """Mark failed every in-progress run whose worker is not running; return them.

    Call it only while no Dagster process serves the instance: a run just being launched has no
    worker yet and would be failed too. Dagster's run retries then re-run them like any crashed run.
    """
    orphans = []
    for run in instance.get_runs(RunsFilter(statuses=IN_PROGRESS)):
        pid = worker_pid(instance, run.run_id)
        if pid is not None and alive(pid):
            continue
        worker = "never reported a worker" if pid is None else f"its worker (pid {pid}) is not running"
        instance.report_run_failed(
            run,
            message=(
                f"Dagster was stopped while this run was in progress and {worker}: marked failed so "
                "that its pool slots are freed and run retries re-run it."
            ),
        )
        orphans.append(OrphanedRun(run.run_id, pid))
    return orphans


def unfinished_backfills(instance: DagsterInstance, tags: dict[str, str]) -> list[str]:
    """Ids of the backfills carrying ``tags`` that may still launch runs."""
    found = instance.get_backfills(filters=BulkActionsFilter(statuses=BACKFILL_IN_PROGRESS, tags=tags))
    return [backfill.backfill_id for backfill in found]


def windows_not_processed(instance: DagsterInstance, stages: Sequence[AssetKey], windows: Sequence[str]) -> list[str]:
    """The ``windows`` (partition keys) that some of ``stages`` has not materialized, in order."""
    missing: set[str] = set()
    for stage in stages:
        done = instance.get_materialized_partitions(stage)
        missing.update(w for w in windows if w not in done)
    return [w for w in windows if w in missing]
