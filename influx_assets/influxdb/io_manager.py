"""``InfluxDBIOManager``: each partition of an asset is exactly its slice of one measurement.

Where an asset is stored (precedence: the asset's definition metadata, then the resource):

===========================  ================================================  =========================
metadata key                 meaning                                           default
===========================  ================================================  =========================
``influxdb/measurement``     measurement name                                  last part of asset key
``influxdb/database``        database (1.x/3.x) or bucket (2.x)                ``resource.database``
``influxdb/tags``            list of columns stored as tags                    none (all are fields)
``influxdb/time_column``     tz-aware datetime column giving each point's time ``"time"``
``influxdb/partition_expr``  tag column of a static/dynamic key (a string), or  none (time windows need
                             ``{dimension: tag column}`` for multi-partitions    none: the point time)
``influxdb/columns``         (on an ``AssetIn``) only load these fields        all fields
===========================  ================================================  =========================

Which points a partition owns (:mod:`.partition_slices`): a time window's points; a static or dynamic
key's tag value's series; a multi-partition key's tag values' series inside its time window; all of
an unpartitioned asset's measurement.

Output: every row must belong to one of the run's slices (inside its window; partition tag columns
equal to the key — a missing partition tag column is filled with the key) — otherwise nothing is
written and the error names the offending rows. Then each slice is replaced through the window store
(ledger, delete, write, commit), so a re-run replaces its slice instead of adding to it; an empty frame
clears it. Points of other slices and other measurements are never touched.

Input: exactly the upstream slice(s) the partition mapping gives (24 hourly windows for a daily
partition, the previous window too for a lookback mapping, every site of an hour), typed by the
server's schema, as a pandas or polars DataFrame following the input's annotation.
"""


from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
from dagster import (
    ConfigurableIOManager,
    DagsterInvariantViolationError,
    InputContext,
    MetadataValue,
    OutputContext,
    ResourceDependency,
    TableColumn,
    TableSchema,
    TimeWindowPartitionsDefinition,
)
from pydantic import PrivateAttr

from influx_assets.influxdb.client.errors import InfluxAssetsError, InvalidFrameError
from influx_assets.influxdb.client.line_protocol import encode_frame, time_column_to_ns
from influx_assets.influxdb.client.schema import empty_frame
from influx_assets.influxdb.client.window_store import Replacement, WindowStore
from influx_assets.influxdb.partition_slices import (
    PARTITION_EXPR_KEY,
    PartitionSlice,
    fill_partition_columns,
    owning_slice,
    slices_for,
)
from influx_assets.influxdb.resource import InfluxDBResource
from influx_assets.influxdb.type_handlers import handler_for_input, handler_for_output

MEASUREMENT_KEY = "influxdb/measurement"
DATABASE_KEY = "influxdb/database"
TAGS_KEY = "influxdb/tags"
TIME_COLUMN_KEY = "influxdb/time_column"
COLUMNS_KEY = "influxdb/columns"


def _run_id(context: OutputContext) -> str:
    """The Dagster run writing the output ("" when the context has no run, e.g. in unit tests)."""
    try:
        return str(context.run_id)
    except DagsterInvariantViolationError:  # build_output_context() without a run_id
        return ""


def _store(influxdb: InfluxDBResource, context: OutputContext | InputContext) -> WindowStore:
    """The window store; a reader's is told about ended runs when its context has an instance."""
    instance = None
    if isinstance(context, InputContext):
        try:
            instance = context.instance
        except DagsterInvariantViolationError:  # build_input_context() without an instance
            instance = None
    return influxdb.window_store(instance)


def _per_partition_metadata(context: OutputContext, replaced: list[tuple[PartitionSlice, Replacement]]) -> bool:
    """Give each partition of a multi-partition run its own ``dagster/row_count`` and window.

    Per-partition metadata overrides the run-wide value on each partition's event (a few small
    entries each, not a dict of every partition copied to every event): a time partition shows its
    own ``window``, ``window_start`` and ``window_end``. Needs the step's context, which
    ``build_output_context`` does not provide: returns False there (the run-wide values stay).
    """
    try:
        step = context.step_context
    except DagsterInvariantViolationError:
        return False
    partitions_def = context.asset_partitions_def
    for owned, replacement in replaced:
        for key, start in zip(owned.keys, owned.starts_ns, strict=True):
            metadata: dict[str, MetadataValue] = {
                "dagster/row_count": MetadataValue.int(replacement.rows_per_window.get(start, 0)),
            }
            if isinstance(partitions_def, TimeWindowPartitionsDefinition):
                span = partitions_def.time_window_for_partition_key(key)
                metadata["window"] = MetadataValue.text(
                    f"[{span.start.isoformat()}, {span.end.isoformat()})" + _describe_tags(owned)
                )
                metadata["window_start"] = MetadataValue.timestamp(span.start.timestamp())
                metadata["window_end"] = MetadataValue.timestamp(span.end.timestamp())
            step.add_asset_metadata(metadata, asset_key=context.asset_key, partition_key=key)
    return True


def _column_schema(frame: pd.DataFrame, tags: Sequence[str], time_column: str) -> TableSchema:
    columns = []
    for name, dtype in frame.dtypes.items():
        role = "time" if name == time_column else "tag" if name in tags else "field"
        columns.append(TableColumn(name=str(name), type=str(dtype), description=role))
    return TableSchema(columns=columns)


def _name_rows(frame: pd.DataFrame, times: np.ndarray, rows: np.ndarray) -> str:
    positions = np.flatnonzero(rows)[:5]
    shown = ", ".join(
        f"row {frame.index[p]!r} at {pd.Timestamp(int(times[p]), unit='ns', tz='UTC').isoformat()}" for p in positions
    )
    more = "" if rows.sum() <= 5 else f" and {int(rows.sum()) - 5} more"
    return shown + more


@contextmanager
def _naming_window(action: str, context: OutputContext | InputContext, where: PartitionSlice) -> Iterator[None]:
    """Prefix an InfluxDB error raised inside with the asset, window and partition keys (type kept).

    Without it a failed step says only "cannot reach InfluxDB"; with it the event log says which
    stage's window, e.g. ``storing normalized_telemetry window [...) (partition 2025-03-01-13:00): ...``.
    """
    try:
        yield
    except InfluxAssetsError as error:
        keys = list(where.keys)
        span = "" if not keys else f" (partition {keys[0]}" + (f"...{keys[-1]})" if len(keys) > 1 else ")")
        detail = error.args[0] if error.args else str(error)
        error.args = (
            f"{action} {context.asset_key.to_user_string()} window {where.where.describe_window()}{span}: {detail}",
            *error.args[1:],
        )
        raise


class InfluxDBIOManager(ConfigurableIOManager):
    """Stores pandas or polars DataFrames in InfluxDB, one slice per partition. See the module docstring.

    Examples:
        .. code-block:: python

            from dagster import Definitions, HourlyPartitionsDefinition, asset
            from influx_assets.influxdb import InfluxDBIOManager, InfluxDBResource

            @asset(
                partitions_def=HourlyPartitionsDefinition("2024-01-01-00:00", timezone="UTC"),
                io_manager_key="influxdb_io_manager",
                metadata={"influxdb/tags": ["site", "sensor_id"]},
                kinds={"influxdb", "pandas"},
            )
            def readings(context) -> pd.DataFrame: ...

            influxdb = InfluxDBResource(url=EnvVar("INFLUXDB_URL"))
            defs = Definitions(
                assets=[readings],
                resources={"influxdb_io_manager": InfluxDBIOManager(influxdb=influxdb)},
            )
    """

    influxdb: ResourceDependency[InfluxDBResource]

    _warned: set[str] = PrivateAttr(default_factory=set)

    # --- where -----------------------------------------------------------------------------------
    def _target(self, context: OutputContext) -> tuple[str, str, list[str], str, object]:
        meta = dict(context.definition_metadata or {})
        measurement = str(meta.get(MEASUREMENT_KEY) or context.asset_key.path[-1])
        database = str(meta.get(DATABASE_KEY) or self.influxdb.database)
        tags = [str(t) for t in meta.get(TAGS_KEY) or []]
        time_column = str(meta.get(TIME_COLUMN_KEY) or "time")
        return database, measurement, tags, time_column, meta.get(PARTITION_EXPR_KEY)

    # --- output ----------------------------------------------------------------------------------
    def handle_output(self, context: OutputContext, obj: object) -> None:
        """Replace the run's slices of the asset's measurement with ``obj``."""
        if obj is None:
            context.log.info("asset returned None; nothing stored in InfluxDB")
            return
        handler = handler_for_output(obj)
        frame = handler.to_pandas(obj)
        asset = context.asset_key.to_user_string()
        database, measurement, tags, time_column, partition_expr = self._target(context)
        slices = slices_for(context, database, measurement, partition_expr)
        partition_columns = list(dict.fromkeys(column for s in slices for column, _ in s.where.tag_filters))
        frame = fill_partition_columns(frame, slices, partition_columns)
        tags = [*tags, *(c for c in partition_columns if c not in tags)]
        whole = encode_frame(frame, measurement, tags, time_column)  # validates every row before anything is sent
        times = time_column_to_ns(frame[time_column], time_column) if len(frame) else np.empty(0, "int64")
        owner = owning_slice(frame, times, slices)
        if (owner < 0).any():
            raise InvalidFrameError(
                f"{int((owner < 0).sum())} of {len(frame)} rows of {asset} lie outside the window of the run's "
                f"partitions ({'; '.join(s.where.describe_window() + _describe_tags(s) for s in slices)}): "
                f"{_name_rows(frame, times, owner < 0)}. Nothing was written."
            )
        store = _store(self.influxdb, context)
        replaced: list[tuple[PartitionSlice, Replacement]] = []
        for index, owned in enumerate(slices):
            rows = owner == index
            with _naming_window("storing", context, owned):
                encoded = encode_frame(frame[rows], measurement, tags, time_column) if len(slices) > 1 else whole
                replaced.append((owned, store.replace(owned.where, encoded, times[rows], owned.starts_ns, _run_id(context))))
        self._warn(context, replaced, measurement)
        context.add_output_metadata(self._metadata(context, frame, tags, time_column, database, measurement, replaced))

    def _warn(self, context: OutputContext, replaced: list[tuple[PartitionSlice, Replacement]], measurement: str) -> None:
        caveat = self.influxdb.connection.delete_caveat() if any(r.deleted for _, r in replaced) else None
        if caveat and caveat not in self._warned:
            self._warned.add(caveat)  # once per step: every later DELETE on that server has the same risk
            context.log.warning(caveat)
        taken = sum(len(r.taken) for _, r in replaced)
        if taken:
            context.log.warning(
                f"another writer began replacing {taken} window(s) of {measurement} while this run wrote "
                "them (writers of one window should be serialized, e.g. by a pool); the window now holds "
                "what both wrote — if the two frames differed, materialize the partition again"
            )
        dropped = sum(r.rows_without_fields for _, r in replaced)
        if dropped:
            context.log.warning(f"{dropped} rows have only null fields and could not be stored")

    def _metadata(
        self, context: OutputContext, frame: pd.DataFrame, tags: list[str], time_column: str, database: str,
        measurement: str, replaced: list[tuple[PartitionSlice, Replacement]],
    ) -> dict[str, object]:
        points = sum(r.points_written for _, r in replaced)
        metadata: dict[str, object] = {
            "dagster/row_count": MetadataValue.int(points),
            "dagster/column_schema": _column_schema(frame, tags, time_column),
            "influxdb/database": database,
            "influxdb/measurement": measurement,
            "influxdb/url": MetadataValue.url(self.influxdb.public_url),
            "window": "; ".join(s.where.describe_window() + _describe_tags(s) for s, _ in replaced),
            "points_dropped": MetadataValue.int(sum(r.rows_without_fields for _, r in replaced)),
            "empty_tag_values": MetadataValue.int(sum(r.empty_tag_values for _, r in replaced)),
            "write_seconds": MetadataValue.float(round(sum(r.seconds for _, r in replaced), 4)),
            "window_replaced": any(r.deleted for _, r in replaced),
        }
        bounded = [s.where for s, _ in replaced if not s.where.is_unbounded]
        if bounded:
            metadata["window_start"] = MetadataValue.timestamp(min(w.start_ns for w in bounded) / 1e9)
            metadata["window_end"] = MetadataValue.timestamp(max(w.end_ns for w in bounded) / 1e9)
        keys = [k for s, _ in replaced for k in s.keys]
        if len(keys) > 1 and _per_partition_metadata(context, replaced):
            # Dagster copies a run's metadata to every partition's event: each partition has its own
            # count and window now, and what is the whole run's is named range_*.
            ranged = ("window", "window_start", "window_end", "points_dropped", "empty_tag_values", "write_seconds")
            metadata = {(f"range_{k}" if k in ranged else k): v for k, v in metadata.items()}
            metadata["range_row_count"] = MetadataValue.int(points)
        return metadata

    # --- input -----------------------------------------------------------------------------------
    def load_input(self, context: InputContext) -> object:
        """Load exactly the mapped upstream slice(s), typed by the server's schema."""
        upstream = context.upstream_output
        assert upstream is not None
        handler = handler_for_input(_annotation(context))
        database, measurement, _tags, _, partition_expr = self._target(upstream)
        columns = (context.definition_metadata or {}).get(COLUMNS_KEY)
        columns = [columns] if isinstance(columns, str) else columns
        slices = slices_for(context, database, measurement, partition_expr, tuple(columns) if columns else None)
        if not slices:
            return handler.from_pandas(empty_frame([], {}))
        store = _store(self.influxdb, context)
        frames = []
        for owned in slices:
            with _naming_window("loading", context, owned):
                frames.append(store.read(owned.where))
        frame = frames[0] if len(frames) == 1 else _concat(frames)
        context.log.debug(f"loaded {len(frame)} rows of {measurement} from {len(slices)} slice(s)")
        return handler.from_pandas(frame)


def _annotation(context: InputContext) -> object:
    """The input's type annotation (None where the context has no Dagster type, e.g. build_input_context)."""
    try:
        return context.dagster_type.typing_type
    except DagsterInvariantViolationError:
        return None


def _describe_tags(owned: PartitionSlice) -> str:
    return "".join(f" {k}={v}" for k, v in owned.where.tag_filters)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Frames of several slices as one, in time order (columns: the union, in the usual order)."""
    non_empty = [f for f in frames if len(f)] or frames[:1]
    joined = pd.concat(non_empty, ignore_index=True, sort=False)
    return joined.sort_values("time", kind="stable").reset_index(drop=True)
