"""What every stage shares: the retry policy, the run's window, storage metadata and stage metadata.

A run covers one partition or, in a single-run backfill, a range of them; ``run_window`` is always the
whole range, and stage code works on ranges (grouping by hour or day itself where it must).
:func:`report_stage` gives every partition its own window's metadata; what Dagster copies to every
partition of a range run (the run-level metadata) is named ``range_*``.
"""

import inspect
import os
import time
import warnings
from datetime import timedelta
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    BackfillPolicy,
    Backoff,
    BetaWarning,
    FreshnessPolicy,
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
from influx_assets.influxdb import InfluxDBConfigError, time_column_to_ns
from influx_assets.telemetry.keys import (
    EARLIEST_ROW,
    FINGERPRINT,
    HOURLY_WINDOWS_USED,
    LATEST_ROW,
    ROWS_IN,
    ROWS_OUT,
    WINDOW_END,
    WINDOW_START,
)
from influx_assets.telemetry.windows import fingerprints_by_window, Window, run_windows, split_by_window

# Partitioned asset checks (a check result per window) and a partitioned observable source asset are
# what this pipeline needs; Dagster 1.13 labels them preview/beta. Every stage module imports this one
# before its decorators run, so the notice is silenced once, here, for exactly these two features.
warnings.filterwarnings("ignore", category=PreviewWarning, message=".*partitions_def on an AssetCheckSpec.*")
warnings.filterwarnings("ignore", category=BetaWarning, message=".*observable_source_asset.*")
warnings.filterwarnings("ignore", category=BetaWarning, message=".*backfill_policy.*")

#: Every stage retries a failed step three times. Dagster's exponential backoff waits
#: delay * (2**n - 1): 1 s, 3 s, 7 s, each +- up to 1 s of jitter.
STAGE_RETRY = RetryPolicy(max_retries=3, delay=1, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)

HOURS_PER_RUN_VARIABLE = "INFLUX_ASSETS_HOURS_PER_RUN"
DAYS_PER_RUN_VARIABLE = "INFLUX_ASSETS_DAYS_PER_RUN"


def windows_per_run(variable: str, default: int, environ: Mapping[str, str] = os.environ) -> int:
    """How many partitions one backfill run of a stage covers: ``variable`` if set, else ``default``.

    Raises:
        InfluxDBConfigError: the variable is set but not a positive integer.
    """
    raw = (environ.get(variable) or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise InfluxDBConfigError(f"{variable} must be a positive integer (partitions per backfill run); got {raw!r}")
    return int(raw)


#: Hourly stages backfill a day of windows per run; daily stages a week per run. A range run reads and
#: writes the whole range at once (the IO manager supports ranges), so a 7-day backfill is 7 runs, not
#: 168, while one bad day still fails only its own run. A run holds its range in memory (about 0.8 KB
#: per raw point at its peak, bench/README), so big fleets lower these (read when the code loads).
HOURLY_BACKFILL = BackfillPolicy.multi_run(max_partitions_per_run=windows_per_run(HOURS_PER_RUN_VARIABLE, 24))
DAILY_BACKFILL = BackfillPolicy.multi_run(max_partitions_per_run=windows_per_run(DAYS_PER_RUN_VARIABLE, 7))


def writer_pool(stage: str) -> str:
    """Concurrency pool of the steps writing one stage's measurement.

    dagster.yaml limits every pool to one step at a time (``concurrency.pools.default_limit: 1``), so
    two runs never write the same measurement (and so the same window) at once, while different stages
    still run in parallel.
    """
    return f"influxdb_write/{stage}"

#: Group of all pipeline assets in the UI.
GROUP = "telemetry"

#: Who answers for the pipeline's assets (shown in the UI; ``INFLUX_ASSETS_OWNERS``, comma-separated
#: emails or ``team:`` names, overrides it).
OWNERS = [
    owner.strip()
    for owner in os.environ.get("INFLUX_ASSETS_OWNERS", "team:telemetry-pipeline").split(",")
    if owner.strip()
]

#: Freshness the Dagster freshness daemon evaluates: an hourly stage is processed 15 minutes after its
#: window closes (the schedule's grace), so it warns after 2 h and fails after 3 h without a new
#: materialization; a daily stage (run at 00:45) warns after 26 h and fails after 30 h.
HOURLY_FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(hours=3), warn_window=timedelta(hours=2))
DAILY_FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(hours=30), warn_window=timedelta(hours=26))


def freshness_of(windows: TimeWindowPartitionsDefinition) -> FreshnessPolicy:
    """The freshness policy of a stage partitioned by ``windows``."""
    return HOURLY_FRESHNESS if windows == hourly_windows else DAILY_FRESHNESS

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
            owners=OWNERS,
            freshness_policy=freshness_of(windows),
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


#: Rows of a window shown in its materialization (``preview``, a Markdown table).
PREVIEW_ROWS = 5

WindowFacts = Callable[[Window, pd.DataFrame, pd.DataFrame], Mapping[str, MetadataValue]]


def preview_table(frame: pd.DataFrame, rows: int = PREVIEW_ROWS) -> MetadataValue:
    """The first ``rows`` rows of a frame as a Markdown table (times in ISO 8601, floats to 4 places)."""
    if frame.empty:
        return MetadataValue.md("*no rows*")
    shown = frame.head(rows)
    columns = [str(c) for c in shown.columns]

    def cell(value: object) -> str:
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA or value is pd.NaT:
            return ""
        if isinstance(value, pd.Timestamp):
            return value.isoformat()
        if isinstance(value, float):
            return f"{value:.4f}".rstrip("0").rstrip(".")
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    more = f"\n\n{len(frame) - rows} more rows" if len(frame) > rows else ""
    return MetadataValue.md("\n".join(lines) + more)


def window_metadata(
    window: Window, out: pd.DataFrame, rows_in: pd.DataFrame, fingerprint: str | None = None
) -> dict[str, MetadataValue]:
    """What one window's materialization says about that window alone (the quality gates read it).

    ``fingerprint`` is ``frame_fingerprint(out)`` when the caller has it already.
    """
    metadata: dict[str, MetadataValue] = {
        WINDOW_START: MetadataValue.timestamp(window.start.timestamp()),
        WINDOW_END: MetadataValue.timestamp(window.end.timestamp()),
        ROWS_IN: MetadataValue.int(len(rows_in)),
        ROWS_OUT: MetadataValue.int(len(out)),
        FINGERPRINT: MetadataValue.text(fingerprint or frame_fingerprint(out)),
        "preview": preview_table(out),
    }
    if len(out):
        times = time_column_to_ns(out["time"], "time")
        metadata[EARLIEST_ROW] = MetadataValue.timestamp(int(times.min()) / 1e9)
        metadata[LATEST_ROW] = MetadataValue.timestamp(int(times.max()) / 1e9)
    if window.hours > 1:
        # a daily stage says how many hourly windows of its input held data
        hours = floor_time(rows_in["time"], "1h").nunique() if len(rows_in) and "time" in rows_in else 0
        metadata[HOURLY_WINDOWS_USED] = MetadataValue.int(int(hours))
        metadata["hourly_windows_expected"] = MetadataValue.int(int(round(window.hours)))
    return metadata


def report_stage(
    context: AssetExecutionContext,
    frame: pd.DataFrame,
    inputs: pd.DataFrame,
    started: float,
    stage: AssetKey | None = None,
    window_facts: WindowFacts | None = None,
    **extra: MetadataValue,
) -> dict[str, MetadataValue]:
    """Report a finished stage: per-window metadata, metrics, and the run-level metadata it returns.

    Each window of the run gets its own metadata on its own materialization (``add_asset_metadata``
    with its partition key): its bounds, rows in and out, first and last row, fingerprint (what the
    quality gates compare against), a preview of its rows and, for a daily stage, how many hourly
    windows held data — plus ``window_facts(window, out, inputs)`` of the stage. Dagster copies the
    returned (run-level) metadata to every partition of a range run, so there every run-level value
    is named ``range_*``: never mistaken for the window's own.

    Side effects, all here and nowhere else in a stage: scans the event log for latency and queue
    depth, exports to OpenTelemetry and writes one point to ``pipeline_metrics``
    (:mod:`influx_assets.observability.stage_metrics`); never fails the stage.

    Args:
        context: the asset's execution context (for the windows).
        frame: what the stage returns (and the IO manager writes).
        inputs: what the stage read (rows outside every window, e.g. a lookback hour, count for none).
        started: ``time.perf_counter()`` when the stage began.
        stage: which asset of a multi-asset this is (default: the context's asset).
        window_facts: stage-specific metadata of one window.
        extra: stage-specific run-level metadata.
    """
    key = stage or context.asset_key
    windows = run_windows(context, context.assets_def.partitions_def)
    prints = [fingerprint for fingerprint, _rows in fingerprints_by_window(frame, windows)]  # one pass
    for window, out, rows_in, fingerprint in zip(
        windows, split_by_window(frame, windows), split_by_window(inputs, windows), prints, strict=True
    ):
        facts = window_metadata(window, out, rows_in, fingerprint) | dict(window_facts(window, out, rows_in) if window_facts else {})
        context.add_asset_metadata(facts, asset_key=key, partition_key=window.key)
    sample = record_stage_metrics(context, rows=len(frame), asset_key=stage, attach=False)
    measured = sample.as_metadata() if sample else {}
    run_level: dict[str, MetadataValue] = {
        **measured,
        "duration_seconds": MetadataValue.float(round(time.perf_counter() - started, 3)),
        **extra,
    }
    if len(windows) == 1:
        return run_level
    return {
        **{(k if k.startswith(("range_", "pipeline/")) else f"range_{k}"): v for k, v in run_level.items()},
        "range_windows": MetadataValue.int(len(windows)),
        "range_rows_in": MetadataValue.int(len(inputs)),
        "range_rows_out": MetadataValue.int(len(frame)),
    }


def floor_time(times: pd.Series, freq: str) -> pd.Series:
    """Start of the fixed UTC bucket (``"5min"``, ``"1h"``, ``"1D"``) each timestamp falls in."""
    return times.dt.tz_convert("UTC").dt.floor(freq)
