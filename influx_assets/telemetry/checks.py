"""Quality gates shared by every stage: stored = returned, rows inside the window, no NaN.

Each factory builds one partitioned ``@asset_check`` for a stage. They compare what the server holds
*now* with what the stage reported in its materialization metadata (``fingerprint``, ``rows_out``,
``earliest_row_ns``/``latest_row_ns``, ``window_start``/``window_end``) of the partition's latest
materialization (in a pipeline run, the run's own). Blocking checks stop
downstream stages of the run when they fail; the failed partition is the only one affected.
"""

from collections.abc import Sequence

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    MetadataValue,
    PartitionsDefinition,
    asset_check,
)

from influx_assets.telemetry.fingerprint import frame_fingerprint
from influx_assets.influxdb import InfluxDBResource
from influx_assets.telemetry.stage import STAGE_RETRY
from influx_assets.telemetry.keys import EARLIEST_ROW_NS, FINGERPRINT, LATEST_ROW_NS, ROWS_OUT, WINDOW_END, WINDOW_START


def latest_metadata(context: AssetCheckExecutionContext, asset_key: AssetKey) -> dict | None:
    """Metadata of the latest materialization of the check's (first) partition of the asset.

    In a run that materialized the asset that is this run's materialization — unless another run
    materialized the partition since, whose claim is then the one the stored window must match. One
    indexed lookup: reading the run's whole event log instead costs seconds in range runs (Dagster
    writes one materialization per partition, each with the range's metadata).
    """
    keys = list(context.partition_keys) if context.has_partition_key_range else [context.partition_key]
    found = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key, asset_partitions=keys[:1]), limit=1
    ).records
    return dict(found[0].asset_materialization.metadata) if found else None


def reported_window(metadata: dict, context: AssetCheckExecutionContext) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The window the materialization covered (the IO manager's ``window_start``/``window_end``).

    A range run's materialization covers the whole range; without those keys, the check's own window.
    """
    if WINDOW_START not in metadata or WINDOW_END not in metadata:
        return check_window(context)
    return (
        pd.Timestamp(metadata[WINDOW_START].value, unit="s", tz="UTC"),
        pd.Timestamp(metadata[WINDOW_END].value, unit="s", tz="UTC"),
    )


def check_window(context: AssetCheckExecutionContext) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The check run's own partition window."""
    window = context.partition_time_window
    return pd.Timestamp(window.start).tz_convert("UTC"), pd.Timestamp(window.end).tz_convert("UTC")


def read_measurement(
    influxdb: InfluxDBResource, measurement: str, start: pd.Timestamp, end: pd.Timestamp,
    instance: DagsterInstance | None = None,
) -> pd.DataFrame:
    """The measurement's points in ``[start, end)``, once no run is replacing them (the window ledger).

    With ``instance``, a window left unfinished by a run that has ended fails at once.
    """
    return influxdb.window_store(instance).read(influxdb.slice(measurement, start, end))


def _missing(asset_key: AssetKey) -> AssetCheckResult:
    return AssetCheckResult(
        passed=False, description=f"no materialization of {asset_key.to_user_string()} to compare"
    )


def readback_check(
    asset_key: str, measurement: str, partitions_def: PartitionsDefinition
) -> AssetChecksDefinition:
    """Blocking: the fingerprint of the window read back equals the fingerprint of what was returned."""

    @asset_check(
        asset=asset_key,
        name="readback_matches_output",
        blocking=True,
        partitions_def=partitions_def,
        retry_policy=STAGE_RETRY,
        description="What reads back from InfluxDB for the window is exactly what the stage returned.",
    )
    def _readback(context: AssetCheckExecutionContext, influxdb: InfluxDBResource) -> AssetCheckResult:
        metadata = latest_metadata(context, AssetKey(asset_key))
        if metadata is None:
            return _missing(AssetKey(asset_key))
        stored = read_measurement(influxdb, measurement, *reported_window(metadata, context), context.instance)
        expected, actual = metadata[FINGERPRINT].value, frame_fingerprint(stored)
        return AssetCheckResult(
            passed=expected == actual,
            metadata={
                "rows_written": MetadataValue.int(int(metadata[ROWS_OUT].value)),
                "rows_read_back": MetadataValue.int(len(stored)),
                "expected_fingerprint": MetadataValue.text(expected),
                "actual_fingerprint": MetadataValue.text(actual),
            },
        )

    return _readback


def inside_window_check(asset_key: str, partitions_def: PartitionsDefinition) -> AssetChecksDefinition:
    """Blocking: the earliest and latest row the stage returned lie inside its window."""

    @asset_check(
        asset=asset_key,
        name="rows_inside_window",
        blocking=True,
        partitions_def=partitions_def,
        retry_policy=STAGE_RETRY,
        description="No row the stage produced lies outside its window.",
    )
    def _inside(context: AssetCheckExecutionContext) -> AssetCheckResult:
        metadata = latest_metadata(context, AssetKey(asset_key))
        if metadata is None:
            return _missing(AssetKey(asset_key))
        start, end = reported_window(metadata, context)
        rows = int(metadata[ROWS_OUT].value)
        earliest, latest = int(metadata[EARLIEST_ROW_NS].value), int(metadata[LATEST_ROW_NS].value)
        inside = rows == 0 or (start.value <= earliest and latest < end.value)
        return AssetCheckResult(
            passed=inside,
            metadata={
                ROWS_OUT: MetadataValue.int(rows),
                "seconds_before_window": MetadataValue.float(
                    max(0.0, (start.value - earliest) / 1e9) if rows else 0.0
                ),
                "seconds_after_window": MetadataValue.float(
                    max(0.0, (latest - end.value + 1) / 1e9) if rows else 0.0
                ),
            },
        )

    return _inside


def no_nan_check(
    asset_key: str, measurement: str, fields: Sequence[str], partitions_def: PartitionsDefinition
) -> AssetChecksDefinition:
    """Blocking: every stored row of the window has a finite value in each aggregate field."""

    @asset_check(
        asset=asset_key,
        name="no_nan_in_aggregates",
        blocking=True,
        partitions_def=partitions_def,
        retry_policy=STAGE_RETRY,
        description=f"Fields {', '.join(fields)} are present and finite in every row.",
    )
    def _no_nan(context: AssetCheckExecutionContext, influxdb: InfluxDBResource) -> AssetCheckResult:
        stored = read_measurement(influxdb, measurement, *check_window(context), context.instance)
        bad: dict[str, int] = {}
        for field in fields:
            if field not in stored.columns:
                bad[field] = len(stored)
                continue
            values = pd.to_numeric(stored[field], errors="coerce").astype("float64")
            bad[field] = int((~np.isfinite(values.to_numpy())).sum())
        return AssetCheckResult(
            passed=sum(bad.values()) == 0,
            metadata={"rows_checked": MetadataValue.int(len(stored))}
            | {f"non_finite_{field}": MetadataValue.int(n) for field, n in bad.items()},
        )

    return _no_nan
