"""``InfluxDBIOManager``: each time partition of an asset is exactly its window in one measurement.

Where an asset is stored (precedence: the asset's definition metadata, then the resource):

=========================  ==================================================  =====================
metadata key               meaning                                             default
=========================  ==================================================  =====================
``influxdb/measurement``   measurement name                                    last part of asset key
``influxdb/database``      database (1.x/3.x) or bucket (2.x)                  ``resource.database``
``influxdb/tags``          list of columns stored as tags                      none (all are fields)
``influxdb/time_column``   tz-aware datetime column giving each point's time   ``"time"``
``influxdb/columns``       (on an ``AssetIn``) only load these fields          all fields
=========================  ==================================================  =====================

Output: with partitions (one key, or a key range in a single-run backfill) every row's time must lie
in the run's half-open window ``[start, end)`` — otherwise nothing is written and the error names the
offending rows. Then the measurement's points in that window are deleted and the frame written, so a
re-run replaces the window instead of adding to it; an empty frame clears the window. Points outside
the window and other measurements are never touched. Without partitions the whole measurement is
replaced.

Input: exactly the upstream window(s) the partition mapping gives (24 hourly windows for a daily
partition, the previous window too for a lookback mapping), typed by the server's schema.
"""


import time
from collections.abc import Callable, Iterator, Sequence
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
from pydantic import Field, PrivateAttr

from .errors import InfluxAssetsError, InvalidFrameError, UnsupportedPartitionsError
from .ledger import WHOLE_MEASUREMENT_NS, WindowLedger, dagster_run_ended
from .line_protocol import encode_frame, time_column_to_ns
from .resource import InfluxDBResource
from .schema import empty_frame
from .slice import MeasurementSlice, to_epoch_ns

MEASUREMENT_KEY = "influxdb/measurement"
DATABASE_KEY = "influxdb/database"
TAGS_KEY = "influxdb/tags"
TIME_COLUMN_KEY = "influxdb/time_column"
COLUMNS_KEY = "influxdb/columns"



def _metadata(context: OutputContext) -> dict:
    return dict(context.definition_metadata or {})


def _refuse_unsupported_partitions(context: OutputContext | InputContext, asset: str) -> None:
    """Refuse partitionings whose window replacement would delete points other partitions own.

    Only time-window partitions (hourly, daily, ... any ``TimeWindowPartitionsDefinition``) and
    unpartitioned assets are stored: a ``MultiPartitionsDefinition`` (hour x site) would have its whole
    hour deleted when one site re-runs, and static/dynamic partitions have no window at all.
    """
    if not context.has_asset_partitions:
        return
    partitions_def = context.asset_partitions_def
    if isinstance(partitions_def, TimeWindowPartitionsDefinition):
        return
    raise UnsupportedPartitionsError(
        f"InfluxDBIOManager stores time-window partitioned (TimeWindowPartitionsDefinition: hourly, daily, "
        f"...) and unpartitioned assets; {asset} is partitioned by {type(partitions_def).__name__}, whose "
        "partitions would share one time window, so replacing one would delete the others' points. Nothing "
        "was written or deleted. Store it time-partitioned with the key as a tag column instead."
    )


def _window(context: OutputContext | InputContext) -> tuple[int, int] | None:
    """The run's time window in ns, or None for an unpartitioned asset."""
    if not context.has_asset_partitions:
        return None
    window = context.asset_partitions_time_window
    return to_epoch_ns(window.start), to_epoch_ns(window.end)


def _run_id(context: OutputContext) -> str:
    """The Dagster run writing the output ("" when the context has no run, e.g. in unit tests)."""
    try:
        return str(context.run_id)
    except DagsterInvariantViolationError:  # build_output_context() without a run_id
        return ""


def _writer_ended(context: InputContext) -> Callable[[str], bool] | None:
    """Whether a run has ended, from the run's instance (None without one, e.g. build_input_context)."""
    try:
        return dagster_run_ended(context.instance)
    except DagsterInvariantViolationError:
        return None


def _rows_per_window(starts: list[int], times: np.ndarray) -> dict[int, int]:
    """Points per window, given the sorted window starts and the stored points' times (ns)."""
    if len(starts) == 1:  # one partition, or an unpartitioned asset (whose points may precede 1970)
        return {starts[0]: len(times)}
    owner = np.searchsorted(np.asarray(starts, dtype="int64"), times, side="right") - 1
    counts = np.bincount(owner, minlength=len(starts)) if len(owner) else np.zeros(len(starts), int)
    return {start: int(n) for start, n in zip(starts, counts, strict=True)}


def _per_partition_row_counts(context: OutputContext, counts: dict[str, int]) -> None:
    """Set ``dagster/row_count`` of each partition of a range run to that partition's points.

    Per-partition metadata overrides the run-wide value on each partition's event (one small entry
    each, not a dict of every partition copied to every event). Needs the step's context, which
    ``build_output_context`` does not provide: there the run-wide total stays.
    """
    try:
        step = context.step_context
    except DagsterInvariantViolationError:
        return
    for key, rows in counts.items():
        step.add_asset_metadata({"dagster/row_count": MetadataValue.int(rows)}, asset_key=context.asset_key, partition_key=key)


def _column_schema(frame: pd.DataFrame, tags: Sequence[str], time_column: str) -> TableSchema:
    columns = []
    for name, dtype in frame.dtypes.items():
        role = "time" if name == time_column else "tag" if name in tags else "field"
        columns.append(TableColumn(name=str(name), type=str(dtype), description=role))
    return TableSchema(columns=columns)


def _name_rows_outside(frame: pd.DataFrame, times: np.ndarray, outside: np.ndarray) -> str:
    positions = np.flatnonzero(outside)[:5]
    shown = ", ".join(
        f"row {frame.index[p]!r} at {pd.Timestamp(int(times[p]), unit='ns', tz='UTC').isoformat()}" for p in positions
    )
    more = "" if outside.sum() <= 5 else f" and {int(outside.sum()) - 5} more"
    return shown + more


@contextmanager
def _naming_window(action: str, context: OutputContext | InputContext, where: MeasurementSlice) -> Iterator[None]:
    """Prefix an InfluxDB error raised inside with the asset, window and partition keys (type kept).

    Without it a failed step says only "cannot reach InfluxDB"; with it the event log says which
    stage's window, e.g. ``storing normalized_telemetry window [...) (partition 2025-03-01-13:00): ...``.
    """
    try:
        yield
    except InfluxAssetsError as error:
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else []
        span = "" if not keys else f" (partition {keys[0]}" + (f"...{keys[-1]})" if len(keys) > 1 else ")")
        detail = error.args[0] if error.args else str(error)
        error.args = (
            f"{action} {context.asset_key.to_user_string()} window {where.describe_window()}{span}: {detail}",
            *error.args[1:],
        )
        raise


class InfluxDBIOManager(ConfigurableIOManager):
    """Stores pandas DataFrames in InfluxDB, one time window per partition. See the module docstring.

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
    writer_wait_seconds: float = Field(
        default=120.0,
        description="How long loading a window waits for another run that is replacing it to finish "
        "(see influx_assets.influxdb.ledger) before failing with WindowNotCommittedError.",
    )

    _warned: set[str] = PrivateAttr(default_factory=set)

    # --- where -----------------------------------------------------------------------------------
    def _target(self, context: OutputContext) -> tuple[str, str, list[str], str]:
        meta = _metadata(context)
        measurement = str(meta.get(MEASUREMENT_KEY) or context.asset_key.path[-1])
        database = str(meta.get(DATABASE_KEY) or self.influxdb.database)
        tags = [str(t) for t in meta.get(TAGS_KEY) or []]
        time_column = str(meta.get(TIME_COLUMN_KEY) or "time")
        return database, measurement, tags, time_column

    # --- output ----------------------------------------------------------------------------------
    def handle_output(self, context: OutputContext, obj: pd.DataFrame | None) -> None:
        """Replace the run's window of the asset's measurement with ``obj``."""
        if obj is None:
            context.log.info("asset returned None; nothing stored in InfluxDB")
            return
        if not isinstance(obj, pd.DataFrame):
            raise InvalidFrameError(f"InfluxDBIOManager stores pandas DataFrames, got {type(obj).__name__}")
        _refuse_unsupported_partitions(context, context.asset_key.to_user_string())
        database, measurement, tags, time_column = self._target(context)
        window = _window(context)
        where = MeasurementSlice(database, measurement, *(window or ()))
        encoded = encode_frame(obj, measurement, tags, time_column)  # validates before anything is sent
        times = time_column_to_ns(obj[time_column], time_column) if len(obj) else np.empty(0, "int64")
        if window is not None and len(times):
            outside = (times < window[0]) | (times >= window[1])
            if outside.any():
                raise InvalidFrameError(
                    f"{int(outside.sum())} of {len(obj)} rows of {context.asset_key.to_user_string()} lie "
                    f"outside the window {where.describe_window()}: {_name_rows_outside(obj, times, outside)}. "
                    "Nothing was written."
                )
        starts = self._window_starts(context)
        ledger = self._ledger()
        run_id = _run_id(context)
        started = time.perf_counter()
        with _naming_window("storing", context, where):
            self.influxdb.prepare_database(database)
            write_id = ledger.begin(where, starts, run_id)
            deleted = self.influxdb.delete_window(where)
            result = self.influxdb.write_encoded(encoded, database)
            counts = _rows_per_window(starts, times[encoded.written])
            taken = ledger.commit(where, counts, write_id, run_id)
        caveat = self.influxdb.delete_caveat() if deleted else None
        if caveat and caveat not in self._warned:
            self._warned.add(caveat)  # once per step: every later DELETE on that server has the same risk
            context.log.warning(caveat)
        if taken:
            context.log.warning(
                f"another writer began replacing {len(taken)} window(s) of {measurement} while this run wrote "
                "them (writers of one window should be serialized, e.g. by a pool); the window now holds "
                "what both wrote — if the two frames differed, materialize the partition again"
            )
        seconds = time.perf_counter() - started
        if result.rows_without_fields:
            context.log.warning(
                f"{result.rows_without_fields} rows have only null fields and could not be stored"
            )
        metadata: dict[str, object] = {
            "dagster/row_count": MetadataValue.int(result.points_written),
            "dagster/column_schema": _column_schema(obj, tags, time_column),
            "influxdb/database": database,
            "influxdb/measurement": measurement,
            "influxdb/url": self.influxdb.public_url,
            "window": where.describe_window(),
            "points_dropped": MetadataValue.int(result.rows_without_fields),
            "empty_tag_values": MetadataValue.int(result.empty_tag_values),
            "write_seconds": MetadataValue.float(round(seconds, 4)),
            "window_replaced": deleted,
        }
        if window is not None:
            metadata["window_start"] = MetadataValue.timestamp(window[0] / 1e9)
            metadata["window_end"] = MetadataValue.timestamp(window[1] / 1e9)
            keys = list(context.asset_partition_keys)
            if len(keys) > 1:
                # Dagster copies a range run's metadata to every partition: say plainly it is a total,
                # and give each partition its own true count.
                metadata["range_row_count"] = MetadataValue.int(result.points_written)
                _per_partition_row_counts(context, {key: counts[start] for key, start in zip(keys, starts, strict=True)})
        context.add_output_metadata(metadata)

    def _window_starts(self, context: OutputContext) -> list[int]:
        """Ledger times of the run's windows: each partition's start, or the whole-measurement entry."""
        if not context.has_asset_partitions:
            return [WHOLE_MEASUREMENT_NS]
        partitions_def = context.asset_partitions_def
        return [
            to_epoch_ns(partitions_def.time_window_for_partition_key(key).start)
            for key in context.asset_partition_keys
        ]

    def _ledger(self) -> WindowLedger:
        return WindowLedger(self.influxdb, wait_seconds=self.writer_wait_seconds)

    # --- input -----------------------------------------------------------------------------------
    def load_input(self, context: InputContext) -> pd.DataFrame:
        """Load exactly the mapped upstream window(s), typed by the server's schema."""
        upstream = context.upstream_output
        assert upstream is not None
        _refuse_unsupported_partitions(context, context.asset_key.to_user_string())
        database, measurement, _tags, _ = self._target(upstream)
        columns = (context.definition_metadata or {}).get(COLUMNS_KEY)
        if context.has_asset_partitions and not context.asset_partition_keys:
            return empty_frame([], {})
        window = _window(context)
        where = MeasurementSlice(
            database, measurement, *(window or ()), columns=tuple(columns) if columns else None
        )
        with _naming_window("loading", context, where):
            frame = self._ledger().read(where, _writer_ended(context))
        context.log.debug(f"loaded {len(frame)} rows of {measurement} {where.describe_window()}")
        return frame

