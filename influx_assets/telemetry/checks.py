"""Quality gates shared by every stage: stored = returned, rows inside the window, no NaN.

Each factory builds one partitioned ``@asset_check`` for a stage. They compare what the server holds
*now* with what the stage reported in each window's materialization metadata (``fingerprint``,
``rows_out``, ``earliest_row``/``latest_row``, ``window_start``/``window_end``; in a pipeline run, the
run's own). Every check gives **one result per window** of its run (:func:`window_results`): a range
run of 24 hours records 24 evaluations, each on its own partition, so the UI shows every window's own
verdict and numbers. Blocking checks stop downstream stages of the run when any window fails.
"""

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    EventLogRecord,
    MetadataValue,
    Output,
    PartitionsDefinition,
    asset_check,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from influx_assets.influxdb import InfluxDBResource
from influx_assets.telemetry.stage import STAGE_RETRY
from influx_assets.telemetry.keys import EARLIEST_ROW, FINGERPRINT, LATEST_ROW, ROWS_OUT
from influx_assets.telemetry.windows import Window, fingerprints_by_window, run_windows, split_by_window

CheckOutput = Iterator[AssetCheckEvaluation | Output]


def check_windows(context: AssetCheckExecutionContext) -> list[Window]:
    """The windows the check run covers (one, or each partition of a range run), in time order."""
    return run_windows(context, context.check_specs[0].partitions_def)


def latest_materializations(
    instance: DagsterInstance, asset_key: AssetKey, partitions: Iterable[str]
) -> dict[str, EventLogRecord]:
    """The latest materialization record of each of ``partitions`` (two indexed lookups in all).

    Partitions never materialized are absent. No partitions give ``{}``: Dagster reads an empty
    partition filter as no filter (every partition's latest).
    """
    wanted = set(partitions)
    if not wanted:
        return {}
    ids = instance.get_latest_storage_id_by_partition(asset_key, DagsterEventType.ASSET_MATERIALIZATION, wanted)
    if not ids:
        return {}
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key, storage_ids=list(ids.values())), limit=len(ids)
    ).records
    return {str(r.partition_key): r for r in records}


def window_materializations(
    context: AssetCheckExecutionContext, asset_key: AssetKey, windows: Sequence[Window]
) -> dict[str, EventLogRecord]:
    """The latest materialization of each window of ``asset_key`` (:func:`latest_materializations`).

    In a run that materialized the asset that is this run's materialization — unless another run
    materialized the partition since, whose claim is then the one the stored window must match.
    """
    return latest_materializations(context.instance, asset_key, (w.key for w in windows))


def metadata_of(record: EventLogRecord | None) -> dict | None:
    """A materialization record's metadata (None without a record)."""
    return None if record is None else dict(record.asset_materialization.metadata)  # type: ignore[union-attr]


def window_results(
    context: AssetCheckExecutionContext,
    results: Mapping[str, AssetCheckResult],
    materialized: Mapping[str, EventLogRecord] | None = None,
) -> CheckOutput:
    """One evaluation per window, each on its own partition, then the check's output.

    ``results`` maps partition keys to what the check found there. Dagster's ``AssetCheckResult``
    carries no partition (a range run's single result reaches no partition: the UI shows every
    window as skipped), so each becomes an ``AssetCheckEvaluation`` naming its partition and the
    materialization it checked. A failed blocking ERROR evaluation still fails the step.
    """
    spec = context.check_specs[0]
    if materialized is None:
        materialized = latest_materializations(context.instance, spec.asset_key, results)
    for key, result in results.items():
        record = materialized.get(key)
        target = None if record is None else AssetCheckEvaluationTargetMaterializationData(
            storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
        )
        yield AssetCheckEvaluation(
            asset_key=spec.asset_key,
            check_name=spec.name,
            passed=result.passed,
            metadata=result.metadata,
            target_materialization_data=target,
            severity=result.severity,
            description=result.description,
            blocking=spec.blocking,
            partition=key,
        )
    yield Output(None)


def each_window(
    context: AssetCheckExecutionContext,
    verdict: Callable[[Window], AssetCheckResult],
    materialized: Mapping[str, EventLogRecord] | None = None,
) -> CheckOutput:
    """:func:`window_results` of ``verdict`` applied to every window of the run."""
    return window_results(context, {w.key: verdict(w) for w in check_windows(context)}, materialized)


def read_measurement(
    influxdb: InfluxDBResource, measurement: str, start: pd.Timestamp, end: pd.Timestamp,
    instance: DagsterInstance | None = None,
) -> pd.DataFrame:
    """The measurement's points in ``[start, end)``, once no run is replacing them (the window ledger).

    With ``instance``, a window left unfinished by a run that has ended fails at once. A window read
    earlier under the same ledger state comes from the resource's read cache: what the server returned
    after the window's latest write.
    """
    return influxdb.window_store(instance).read(influxdb.slice(measurement, start, end))


def read_windows(
    influxdb: InfluxDBResource, measurement: str, windows: Sequence[Window], instance: DagsterInstance | None = None
) -> dict[str, pd.DataFrame]:
    """Each window's stored points: one ledger read of the run's whole span, cut by window."""
    frame = read_measurement(influxdb, measurement, windows[0].start, windows[-1].end, instance)
    if len(windows) == 1:  # the span is the window: no copy (a day of a big fleet is gigabytes)
        return {windows[0].key: frame}
    return {w.key: part for w, part in zip(windows, split_by_window(frame, windows), strict=True)}


def missing_materialization(asset_key: AssetKey, window: Window) -> AssetCheckResult:
    """The failed verdict of a window that has no materialization to compare with."""
    return AssetCheckResult(
        passed=False, description=f"no materialization of {asset_key.to_user_string()} for window {window.key} to compare"
    )


def readback_check(
    asset_key: str, measurement: str, partitions_def: PartitionsDefinition
) -> AssetChecksDefinition:
    """Blocking: the fingerprint of each window read back equals the fingerprint of what was returned.

    The rows compared are what the server returned after the window's latest write: transferred by
    this check, or by an earlier reader of the same ledger state (the read cache, :mod:`.read_cache`).
    """

    @asset_check(
        asset=asset_key,
        name="readback_matches_output",
        blocking=True,
        partitions_def=partitions_def,
        retry_policy=STAGE_RETRY,
        description=(
            "What reads back from InfluxDB for the window is exactly what the stage returned "
            "(content fingerprint of every row, stored vs reported)."
        ),
    )
    def _readback(context: AssetCheckExecutionContext, influxdb: InfluxDBResource) -> CheckOutput:
        windows = check_windows(context)
        materialized = window_materializations(context, AssetKey(asset_key), windows)
        span = read_measurement(influxdb, measurement, windows[0].start, windows[-1].end, context.instance)
        stored = dict(zip((w.key for w in windows), fingerprints_by_window(span, windows), strict=True))

        def verdict(window: Window) -> AssetCheckResult:
            metadata = metadata_of(materialized.get(window.key))
            if metadata is None or FINGERPRINT not in metadata:
                return missing_materialization(AssetKey(asset_key), window)
            actual, read_back = stored[window.key]
            expected = metadata[FINGERPRINT].value
            written = int(metadata[ROWS_OUT].value)
            return AssetCheckResult(
                passed=expected == actual,
                description=(
                    f"{read_back} rows read back, {written} written: "
                    + ("identical content." if expected == actual else "content differs.")
                ),
                metadata={
                    "rows_written": MetadataValue.int(written),
                    "rows_read_back": MetadataValue.int(read_back),
                    "expected_fingerprint": MetadataValue.text(expected),
                    "actual_fingerprint": MetadataValue.text(actual),
                },
            )

        yield from each_window(context, verdict, materialized)

    return _readback


def inside_window_check(asset_key: str, partitions_def: PartitionsDefinition) -> AssetChecksDefinition:
    """Blocking: the earliest and latest row the stage returned for each window lie inside that window.

    Compares the timestamps reported in the window's metadata (seconds, microsecond resolution); the
    IO manager has already refused, to the nanosecond, any row outside the run's windows.
    """

    @asset_check(
        asset=asset_key,
        name="rows_inside_window",
        blocking=True,
        partitions_def=partitions_def,
        retry_policy=STAGE_RETRY,
        description="No row the stage produced for a window lies outside that window.",
    )
    def _inside(context: AssetCheckExecutionContext) -> CheckOutput:
        materialized = window_materializations(context, AssetKey(asset_key), check_windows(context))

        def verdict(window: Window) -> AssetCheckResult:
            metadata = metadata_of(materialized.get(window.key))
            if metadata is None or ROWS_OUT not in metadata:
                return missing_materialization(AssetKey(asset_key), window)
            rows = int(metadata[ROWS_OUT].value)
            if rows == 0:
                return AssetCheckResult(passed=True, description="no rows", metadata={ROWS_OUT: MetadataValue.int(0)})
            earliest, latest = float(metadata[EARLIEST_ROW].value), float(metadata[LATEST_ROW].value)
            start, end = window.start.timestamp(), window.end.timestamp()
            before, after = max(0.0, start - earliest), max(0.0, latest - end)
            inside = earliest >= start and latest < end
            return AssetCheckResult(
                passed=inside,
                description=f"{rows} rows, first at {pd.Timestamp(earliest, unit='s', tz='UTC').isoformat()}, "
                f"last at {pd.Timestamp(latest, unit='s', tz='UTC').isoformat()}: "
                + ("inside the window." if inside else "outside the window."),
                metadata={
                    ROWS_OUT: MetadataValue.int(rows),
                    "seconds_before_window": MetadataValue.float(round(before, 6)),
                    "seconds_after_window": MetadataValue.float(round(after, 6)),
                },
            )

        yield from each_window(context, verdict, materialized)

    return _inside


def no_nan_check(
    asset_key: str, measurement: str, fields: Sequence[str], partitions_def: PartitionsDefinition
) -> AssetChecksDefinition:
    """Blocking: every stored row of each window has a finite value in each aggregate field."""

    @asset_check(
        asset=asset_key,
        name="no_nan_in_aggregates",
        blocking=True,
        partitions_def=partitions_def,
        retry_policy=STAGE_RETRY,
        description=f"Fields {', '.join(fields)} are present and finite in every stored row of the window.",
    )
    def _no_nan(context: AssetCheckExecutionContext, influxdb: InfluxDBResource) -> CheckOutput:
        stored = read_windows(influxdb, measurement, check_windows(context), context.instance)

        def verdict(window: Window) -> AssetCheckResult:
            rows = stored[window.key]
            bad: dict[str, int] = {}
            for field in fields:
                if field not in rows.columns:
                    bad[field] = len(rows)
                    continue
                values = pd.to_numeric(rows[field], errors="coerce").astype("float64")
                bad[field] = int((~np.isfinite(values.to_numpy())).sum())
            return AssetCheckResult(
                passed=sum(bad.values()) == 0,
                description=f"{len(rows)} rows checked, {sum(bad.values())} non-finite values.",
                metadata={"rows_checked": MetadataValue.int(len(rows))}
                | {f"non_finite_{field}": MetadataValue.int(n) for field, n in bad.items()},
            )

        yield from each_window(context, verdict)

    return _no_nan
