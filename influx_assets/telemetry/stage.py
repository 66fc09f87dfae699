"""What every stage shares: the retry policy, the run's window, storage metadata and stage metadata.

A run covers one partition or, in a single-run backfill, a range of them; ``run_window`` is always the
whole range, and stage code works on ranges (grouping by hour or day itself where it must). Metadata
returned by a range run is copied by Dagster to every partition of the range: the counts are then
range totals, and ``partitions_in_run`` says so.
"""

import inspect
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    BackfillPolicy,
    Backoff,
    BetaWarning,
    Jitter,
    MetadataValue,
    PreviewWarning,
    RetryPolicy,
    TimeWindowPartitionsDefinition,
    asset,
)

from influx_assets.telemetry.fingerprint import frame_fingerprint
from influx_assets.observability.stage_metrics import record_stage_metrics
from influx_assets.telemetry.partitions import hourly_windows
from influx_assets.telemetry.contract import SERIES_TAGS
from influx_assets.telemetry.keys import EARLIEST_ROW_NS, FINGERPRINT, LATEST_ROW_NS, ROWS_IN, ROWS_OUT

# Partitioned asset checks (a check result per window) and a partitioned observable source asset are
# what this pipeline needs; Dagster 1.13 labels them preview/beta. Every stage module imports this one
# before its decorators run, so the notice is silenced once, here, for exactly these two features.
warnings.filterwarnings("ignore", category=PreviewWarning, message=".*partitions_def on an AssetCheckSpec.*")
warnings.filterwarnings("ignore", category=BetaWarning, message=".*observable_source_asset.*")
warnings.filterwarnings("ignore", category=BetaWarning, message=".*backfill_policy.*")

#: Every stage retries a failed step three times. Dagster's exponential backoff waits
#: delay * (2**n - 1): 1 s, 3 s, 7 s, each +- up to 1 s of jitter.
STAGE_RETRY = RetryPolicy(max_retries=3, delay=1, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)

#: Hourly stages backfill a day of windows per run; daily stages a week per run. A range run reads and
#: writes the whole range at once (the IO manager supports ranges), so a 7-day backfill is 7 runs, not
#: 168, while one bad day still fails only its own run.
HOURLY_BACKFILL = BackfillPolicy.multi_run(max_partitions_per_run=24)
DAILY_BACKFILL = BackfillPolicy.multi_run(max_partitions_per_run=7)


def writer_pool(stage: str) -> str:
    """Concurrency pool of the steps writing one stage's measurement.

    dagster.yaml limits every pool to one step at a time (``concurrency.pools.default_limit: 1``), so
    two runs never write the same measurement (and so the same window) at once, while different stages
    still run in parallel.
    """
    return f"influxdb_write/{stage}"

#: Group of all pipeline assets in the UI.
GROUP = "telemetry"

IO_MANAGER_KEY = "influxdb_io_manager"
KINDS_TAGS = {"influxdb", "pandas"}


def influx_storage(measurement: str, tags: Iterable[str]) -> dict[str, object]:
    """Definition metadata telling the InfluxDB IO manager where a stage's partitions live."""
    return {"influxdb/measurement": measurement, "influxdb/tags": list(tags)}


def influx_stage(
    measurement: str, windows: TimeWindowPartitionsDefinition, **asset_kwargs: Any
) -> Callable[[Callable[..., Any]], AssetsDefinition]:
    """``@asset`` for a stage whose windows are stored in an InfluxDB measurement (tags: the series).

    Every such stage shares the IO manager, kinds, group, :data:`STAGE_RETRY`, the backfill policy of
    its partitioning and a writer pool named after the asset; ``asset_kwargs`` adds the rest (``ins``).
    """
    backfill = HOURLY_BACKFILL if windows == hourly_windows else DAILY_BACKFILL
    needs = set(asset_kwargs.pop("required_resource_keys", set()))

    def decorate(compute: Callable[..., Any]) -> AssetsDefinition:
        # ``influxdb`` for the stage's metrics point (observability.stage_metrics), unless a parameter asks
        required = needs | ({"influxdb"} if "influxdb" not in inspect.signature(compute).parameters else set())
        return asset(
            partitions_def=windows,
            io_manager_key=IO_MANAGER_KEY,
            metadata=influx_storage(measurement, SERIES_TAGS),
            kinds=KINDS_TAGS,
            group_name=GROUP,
            retry_policy=STAGE_RETRY,
            backfill_policy=backfill,
            pool=writer_pool(compute.__name__),
            required_resource_keys=required,
            **asset_kwargs,
        )(compute)

    return decorate


def run_window(context: AssetExecutionContext) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The run's half-open window ``[start, end)`` in UTC (a range run's whole range)."""
    window = context.partition_time_window
    return pd.Timestamp(window.start).tz_convert("UTC"), pd.Timestamp(window.end).tz_convert("UTC")


def partitions_in_run(context: AssetExecutionContext) -> int:
    """How many partitions this run materializes (more than one in a single-run backfill)."""
    return len(context.partition_keys) if context.has_partition_key_range else 1


def time_bounds_ns(frame: pd.DataFrame) -> tuple[int, int]:
    """Earliest and latest ``time`` of a frame in ns since the epoch (``(0, 0)`` when empty)."""
    if frame.empty:
        return 0, 0
    stamps = frame["time"].dt.tz_convert("UTC").dt.as_unit("ns").astype("int64")
    return int(stamps.min()), int(stamps.max())


def report_stage(
    context: AssetExecutionContext,
    frame: pd.DataFrame,
    rows_in: int,
    started: float,
    stage: AssetKey | None = None,
    **extra: MetadataValue,
) -> dict[str, MetadataValue]:
    """Report a finished stage: record its metrics, and return the metadata it attaches to its output.

    Side effects, all here and nowhere else in a stage: scans the event log for latency and queue
    depth, exports to OpenTelemetry and writes one point to ``pipeline_metrics``
    (:mod:`influx_assets.observability.stage_metrics`); never fails the stage. The returned metadata
    holds the numbers every stage reports plus the fingerprint the quality gates compare against
    (keys in :mod:`influx_assets.telemetry.keys`).

    Args:
        context: the asset's execution context (for the window and partition count).
        frame: what the stage returns (and the IO manager writes).
        rows_in: rows the stage read.
        started: ``time.perf_counter()`` when the stage began.
        stage: which asset of a multi-asset this is (default: the context's asset).
        extra: stage-specific metadata.
    """
    earliest, latest = time_bounds_ns(frame)
    start, end = run_window(context)
    sample = record_stage_metrics(context, rows=len(frame), asset_key=stage, attach=False)
    measured = {k: MetadataValue.float(float(v)) for k, v in (sample.as_metadata() if sample else {}).items()}
    return {
        **measured,
        ROWS_IN: MetadataValue.int(int(rows_in)),
        ROWS_OUT: MetadataValue.int(len(frame)),
        "duration_seconds": MetadataValue.float(round(time.perf_counter() - started, 4)),
        "window_hours": MetadataValue.float((end - start).total_seconds() / 3600.0),
        "partitions_in_run": MetadataValue.int(partitions_in_run(context)),
        EARLIEST_ROW_NS: MetadataValue.int(earliest),
        LATEST_ROW_NS: MetadataValue.int(latest),
        FINGERPRINT: MetadataValue.text(frame_fingerprint(frame)),
        **extra,
    }


def floor_time(times: pd.Series, freq: str) -> pd.Series:
    """Start of the fixed UTC bucket (``"5min"``, ``"1h"``, ``"1D"``) each timestamp falls in."""
    return times.dt.tz_convert("UTC").dt.floor(freq)
