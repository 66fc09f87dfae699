"""Stage metrics: latency, rows, retries and queue depth per stage and window.

A stage records its metrics once its frame is computed, before returning it (the pipeline's stages do
it through ``influx_assets.telemetry.stage.report_stage``)::

    frame = ...
    record_stage_metrics(context, rows=len(frame))  # side effects: event-log scan, OpenTelemetry, InfluxDB
    return frame

It measures, from the Dagster instance's event log:

- **latency**: from the newest upstream event (materialization, else observation) of the windows this
  run reads, to now (the stage body finishing its window; the IO manager's write comes after);
  absent for a stage without upstream assets;
- **retries**: ``context.retry_number`` (step retries within this run);
- **queue depth**: windows of this stage, other than the ones this run computes, whose upstream
  window has data newer than the stage's own latest materialization of it (never materialized, or
  stale). It looks at the :data:`QUEUE_SCAN_WINDOWS` most recently updated windows of each upstream,
  one indexed query per asset, so it stays cheap on long histories and saturates there;

and sends them to OpenTelemetry (:mod:`influx_assets.observability.export`, off unless ``OTEL_*`` says otherwise) and as
one point to the InfluxDB measurement ``pipeline_metrics`` (tags ``stage``, ``window``; fields
``latency_seconds``, ``rows``, ``retries``, ``queue_depth``, ``run_id``) through the ``influxdb``
resource, so Grafana can plot them. Metrics never fail a stage: every error is logged and swallowed.
"""

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    IdentityPartitionMapping,
    MetadataValue,
    PartitionMapping,
    PartitionsDefinition,
    TimeWindowPartitionMapping,
)

from influx_assets.influxdb import InfluxDBResource
from influx_assets.observability.export import stage_instruments

log = logging.getLogger("influx_assets.observability.stage_metrics")

METRICS_MEASUREMENT = "pipeline_metrics"
#: Upstream windows (most recently updated first) the queue depth looks at, per upstream asset.
QUEUE_SCAN_WINDOWS = 500


@dataclass(frozen=True)
class StageSample:
    """What one stage run measured for its window(s)."""

    stage: str
    window: str
    rows: int | None
    retries: int
    latency_seconds: float | None
    queue_depth: int | None
    run_id: str
    recorded_at: float

    def as_metadata(self) -> dict[str, MetadataValue]:
        """The measured values as materialization metadata (keys ``pipeline/...``, latency to the ms)."""
        metadata: dict[str, MetadataValue] = {}
        if self.latency_seconds is not None:
            metadata["pipeline/latency_seconds"] = MetadataValue.float(round(self.latency_seconds, 3))
        if self.queue_depth is not None:
            metadata["pipeline/queue_depth"] = MetadataValue.int(self.queue_depth)
        return metadata


def window_label(partition_keys: Sequence[str]) -> str:
    """``key`` for one window, ``first...last`` for a range run, ``""`` without partitions."""
    if not partition_keys:
        return ""
    return partition_keys[0] if len(partition_keys) == 1 else f"{partition_keys[0]}...{partition_keys[-1]}"


def latest_event_ids(
    instance: DagsterInstance, key: AssetKey, partitions: set[str] | None = None
) -> tuple[Mapping[str, int], DagsterEventType]:
    """Latest event storage id per partition: materializations, else observations (external assets)."""
    for event_type in (DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_OBSERVATION):
        ids = instance.get_latest_storage_id_by_partition(key, event_type, partitions)
        if ids:
            return ids, event_type
    return {}, DagsterEventType.ASSET_MATERIALIZATION


def _event_timestamp(
    instance: DagsterInstance, key: AssetKey, storage_id: int, event_type: DagsterEventType
) -> float | None:
    records_filter = AssetRecordsFilter(asset_key=key, storage_ids=[storage_id])
    fetch = (
        instance.fetch_observations
        if event_type == DagsterEventType.ASSET_OBSERVATION
        else instance.fetch_materializations
    )
    records = fetch(records_filter, limit=1).records
    return records[0].timestamp if records else None


def _unpartitioned_timestamp(instance: DagsterInstance, key: AssetKey) -> float | None:
    for fetch in (instance.fetch_materializations, instance.fetch_observations):
        records = fetch(key, limit=1).records
        if records:
            return records[0].timestamp
    return None


def _is_one_to_one(
    mapping: PartitionMapping, upstream: PartitionsDefinition, own: PartitionsDefinition
) -> bool:
    if upstream != own:
        return False
    if isinstance(mapping, IdentityPartitionMapping):
        return True
    return isinstance(mapping, TimeWindowPartitionMapping) and mapping.start_offset == mapping.end_offset == 0


def upstream_ready_at(
    instance: DagsterInstance,
    asset_graph: object,
    key: AssetKey,
    partition_keys: Sequence[str],
) -> float | None:
    """Epoch seconds of the newest upstream event among the windows ``partition_keys`` read."""
    node = asset_graph.get(key)  # type: ignore[attr-defined]
    own_def = node.partitions_def
    newest: float | None = None
    for parent in sorted(node.parent_keys, key=lambda k: k.to_user_string()):
        parent_def = asset_graph.get(parent).partitions_def  # type: ignore[attr-defined]
        if parent_def is None or own_def is None or not partition_keys:
            stamp = _unpartitioned_timestamp(instance, parent)
        else:
            mapping = asset_graph.get_partition_mapping(key, parent)  # type: ignore[attr-defined]
            own_subset = own_def.subset_with_partition_keys(partition_keys)
            upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(
                own_subset, own_def, parent_def, dynamic_partitions_store=instance
            ).partitions_subset.get_partition_keys()
            ids, event_type = latest_event_ids(instance, parent, set(upstream))
            stamp = _event_timestamp(instance, parent, max(ids.values()), event_type) if ids else None
        if stamp is not None:
            newest = stamp if newest is None else max(newest, stamp)
    return newest


def queue_depth(
    instance: DagsterInstance,
    asset_graph: object,
    key: AssetKey,
    in_progress: Sequence[str] = (),
    scan_windows: int = QUEUE_SCAN_WINDOWS,
) -> int | None:
    """Windows of ``key`` waiting for it: upstream data newer than its own (or none of its own).

    None for an unpartitioned stage or one without partitioned upstream assets. ``in_progress``
    windows (this run's) are not counted.
    """
    node = asset_graph.get(key)  # type: ignore[attr-defined]
    own_def = node.partitions_def
    parents = [p for p in node.parent_keys if asset_graph.get(p).partitions_def is not None]  # type: ignore[attr-defined]
    if own_def is None or not parents:
        return None
    own, _ = latest_event_ids(instance, key)
    skip = set(in_progress)
    waiting: set[str] = set()
    for parent in parents:
        parent_def = asset_graph.get(parent).partitions_def  # type: ignore[attr-defined]
        mapping = asset_graph.get_partition_mapping(key, parent)  # type: ignore[attr-defined]
        upstream_ids, _ = latest_event_ids(instance, parent)
        scanned = dict(sorted(upstream_ids.items(), key=lambda item: item[1], reverse=True)[:scan_windows])
        if _is_one_to_one(mapping, parent_def, own_def):
            waiting.update(w for w, storage_id in scanned.items() if own.get(w, -1) < storage_id)
            continue
        # Map the scanned upstream windows down once, then each materialized candidate back up.
        candidates = mapping.get_downstream_partitions_for_partitions(
            parent_def.subset_with_partition_keys(list(scanned)), parent_def, own_def,
            dynamic_partitions_store=instance,
        ).get_partition_keys()
        for window in set(candidates) - skip - waiting:
            if window not in own:
                waiting.add(window)
                continue
            upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(
                own_def.subset_with_partition_keys([window]), own_def, parent_def,
                dynamic_partitions_store=instance,
            ).partitions_subset.get_partition_keys()
            if max((upstream_ids.get(u, -1) for u in upstream), default=-1) > own[window]:
                waiting.add(window)
    return len(waiting - skip)


def stage_sample(
    context: AssetExecutionContext, rows: int | None = None, asset_key: AssetKey | None = None
) -> StageSample:
    """Measure the running stage (see the module docstring for what each value means)."""
    key = asset_key or context.asset_key
    instance = context.instance
    asset_graph = context.job_def.asset_layer.asset_graph
    partitioned = asset_graph.get(key).partitions_def is not None
    run_partitioned = context.has_partition_key or context.has_partition_key_range
    partition_keys = list(context.partition_keys) if partitioned and run_partitioned else []
    now = time.time()
    ready = upstream_ready_at(instance, asset_graph, key, partition_keys)
    return StageSample(
        stage=key.to_user_string(),
        window=window_label(partition_keys),
        rows=None if rows is None else int(rows),
        retries=int(context.retry_number),
        latency_seconds=None if ready is None else max(0.0, now - ready),
        queue_depth=queue_depth(instance, asset_graph, key, in_progress=partition_keys),
        run_id=context.run_id,
        recorded_at=now,
    )


def metrics_frame(samples: Sequence[StageSample]) -> pd.DataFrame:
    """Samples as rows for ``pipeline_metrics`` (nullable ints, NaN latency: absent fields)."""
    return pd.DataFrame({
        "time": pd.to_datetime([s.recorded_at for s in samples], unit="s", utc=True),
        "stage": [s.stage for s in samples],
        "window": [s.window for s in samples],
        "latency_seconds": pd.array([s.latency_seconds for s in samples], dtype="float64"),
        "rows": pd.array([s.rows for s in samples], dtype="Int64"),
        "retries": pd.array([s.retries for s in samples], dtype="Int64"),
        "queue_depth": pd.array([s.queue_depth for s in samples], dtype="Int64"),
        "run_id": pd.array([s.run_id for s in samples], dtype="str"),
    })


def write_stage_metrics(
    influxdb: InfluxDBResource, samples: Sequence[StageSample], database: str | None = None
) -> int:
    """Write samples to ``pipeline_metrics``; returns the points written."""
    influxdb.prepare_database(database)
    frame = metrics_frame(samples)
    result = influxdb.write_frame(frame, METRICS_MEASUREMENT, ["stage", "window"], database=database)
    return result.points_written


def influxdb_of(context: AssetExecutionContext) -> InfluxDBResource | None:
    """The stage's ``influxdb`` resource (stages require it), or None where a stage has none."""
    found = getattr(context.resources, "influxdb", None)
    return found if isinstance(found, InfluxDBResource) else None


def _warn(context: AssetExecutionContext, message: str) -> None:
    """To the run's log (shown in the UI), else to this module's logger."""
    try:
        context.log.warning(message)
    except Exception:  # noqa: BLE001
        log.warning(message)


def record_stage_metrics(
    context: AssetExecutionContext,
    rows: int | None = None,
    influxdb: InfluxDBResource | None = None,
    database: str | None = None,
    asset_key: AssetKey | None = None,
    attach: bool = True,
) -> StageSample | None:
    """Measure the running stage and export it (OpenTelemetry + ``pipeline_metrics``); never raises.

    Args:
        context: the asset's execution context.
        rows: rows the stage produced (range runs: the total of the range).
        influxdb: where to write the point; default the stage's ``influxdb`` resource, else the one
            of its InfluxDB IO manager. Without one only OpenTelemetry gets the values.
        database: database for ``pipeline_metrics``; default the resource's.
        asset_key: which asset of a multi-asset this is; default ``context.asset_key``.
        attach: add the sample to the output metadata (callers building their own metadata say False).

    Returns:
        The sample, or None if it could not be measured (logged).
    """
    try:
        sample = stage_sample(context, rows, asset_key)
    except Exception as error:  # noqa: BLE001 - metrics must never fail a stage
        _warn(context, f"could not measure stage metrics: {type(error).__name__}: {error}")
        return None
    try:
        instruments = stage_instruments()
        if instruments is not None:
            instruments.record(
                sample.stage, sample.window, sample.latency_seconds, sample.rows, sample.retries,
                sample.queue_depth,
            )
    except Exception as error:  # noqa: BLE001
        _warn(context, f"could not export stage metrics to OpenTelemetry: {type(error).__name__}: {error}")
    try:
        target = influxdb or influxdb_of(context)
        if target is not None:
            write_stage_metrics(target, [sample], database)
    except Exception as error:  # noqa: BLE001 - our errors carry no secrets
        reason = f"{type(error).__name__}: {error}"
        _warn(context, f"could not write {METRICS_MEASUREMENT} for {sample.stage}: {reason}")
    if not attach:
        return sample
    try:
        context.add_output_metadata(sample.as_metadata())
    except Exception:  # noqa: BLE001 - e.g. a multi-asset without output name
        log.debug("stage metrics not attached as metadata", exc_info=True)
    return sample
