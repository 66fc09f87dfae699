"""Which slices of a measurement a run's partitions own: every kind of Dagster partition → slices.

- **time windows** (hourly, daily, any ``TimeWindowPartitionsDefinition``): one slice, the run's window
  ``[start, end)``; a range run covers the whole range.
- **static and dynamic** partitions: the key is a tag value; the slice is that tag value's series over
  all time. Definition metadata ``influxdb/partition_expr`` names the tag column (a string).
- **multi-partitions** (e.g. hour x site): the time dimension is the point time, every other dimension a
  tag named by ``influxdb/partition_expr`` as ``{dimension name: tag column}``. A run's keys are grouped
  by their non-time values; each group's contiguous time windows form one slice, so re-running
  ``(13:00, north)`` replaces exactly north's series in that hour.
- **unpartitioned**: the whole measurement.

Like Dagster's ``TableSlice.partition_dimensions``: one code path serves a single key, a key range and
a multi-partition mapping on load.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from dagster import (
    InputContext,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    OutputContext,
    PartitionsDefinition,
    TimeWindowPartitionsDefinition,
)

from influx_assets.influxdb.client.errors import InvalidFrameError, UnsupportedPartitionsError
from influx_assets.influxdb.client.pandas_versions import as_text
from influx_assets.influxdb.client.slice import MAX_TIME_NS, MIN_TIME_NS, MeasurementSlice, to_epoch_ns
from influx_assets.influxdb.client.ledger import WHOLE_MEASUREMENT_NS

#: Definition metadata naming the tag column(s) that hold non-time partition keys.
PARTITION_EXPR_KEY = "influxdb/partition_expr"


@dataclass(frozen=True)
class PartitionSlice:
    """One slice a run owns, with the partition keys it covers and the ledger time of each.

    Attributes:
        where: the points (window and tag filters).
        keys: the partition keys inside it, in time order ([] for an unpartitioned asset).
        starts_ns: the ledger entry time of each key (its window start; :data:`WHOLE_MEASUREMENT_NS`
            for a key without a time dimension), aligned with ``keys``.
    """

    where: MeasurementSlice
    keys: tuple[str, ...]
    starts_ns: tuple[int, ...]

    @property
    def tag_values(self) -> dict[str, str]:
        """The tag columns this slice fixes, and their value."""
        return dict(self.where.tag_filters)


def partition_tags(partitions_def: PartitionsDefinition, partition_expr: object, asset: str) -> dict[str, str]:
    """``{dimension name: tag column}`` of a static, dynamic or multi-partitioned asset's non-time dimensions.

    A single static or dynamic dimension has the name ``""``.
    """
    if isinstance(partitions_def, MultiPartitionsDefinition):
        time_dim = _time_dimension_name(partitions_def)
        others = [d.name for d in partitions_def.partitions_defs if d.name != time_dim]
        if not isinstance(partition_expr, Mapping) or set(others) - set(partition_expr):
            raise UnsupportedPartitionsError(
                f"{asset} is partitioned by {', '.join(d.name for d in partitions_def.partitions_defs)}: set "
                f"definition metadata {PARTITION_EXPR_KEY!r} to a dict naming the tag column of each non-time "
                f"dimension, e.g. {{{', '.join(repr(o) + ': ' + repr(o) for o in others)}}}. Nothing was written."
            )
        return {name: str(partition_expr[name]) for name in others}
    if not isinstance(partition_expr, str) or not partition_expr:
        raise UnsupportedPartitionsError(
            f"{asset} is partitioned by {type(partitions_def).__name__}: set definition metadata "
            f"{PARTITION_EXPR_KEY!r} to the tag column that holds the partition key, e.g. "
            f"metadata={{{PARTITION_EXPR_KEY!r}: 'site'}}. Nothing was written."
        )
    return {"": partition_expr}


def _time_dimension_name(partitions_def: MultiPartitionsDefinition) -> str | None:
    for dimension in partitions_def.partitions_defs:
        if isinstance(dimension.partitions_def, TimeWindowPartitionsDefinition):
            return dimension.name
    return None


def slices_for(
    context: OutputContext | InputContext, database: str, measurement: str, partition_expr: object,
    columns: tuple[str, ...] | None = None,
) -> list[PartitionSlice]:
    """The slices of ``measurement`` that the context's partitions cover (see the module docstring)."""
    asset = context.asset_key.to_user_string()
    if not context.has_asset_partitions:
        return [PartitionSlice(MeasurementSlice(database, measurement, columns=columns), (), (WHOLE_MEASUREMENT_NS,))]
    partitions_def = context.asset_partitions_def
    keys = list(dict.fromkeys(context.asset_partition_keys))  # a key twice would be replaced twice
    if not keys:
        return []
    if isinstance(partitions_def, TimeWindowPartitionsDefinition):
        window = context.asset_partitions_time_window
        starts = tuple(to_epoch_ns(partitions_def.time_window_for_partition_key(k).start) for k in keys)
        where = MeasurementSlice(database, measurement, to_epoch_ns(window.start), to_epoch_ns(window.end),
                                 columns=columns)
        return [PartitionSlice(where, tuple(keys), starts)]
    tags = partition_tags(partitions_def, partition_expr, asset)
    if not isinstance(partitions_def, MultiPartitionsDefinition):
        column = tags[""]
        return [
            PartitionSlice(MeasurementSlice(database, measurement, tag_filters=((column, key),), columns=columns),
                           (key,), (WHOLE_MEASUREMENT_NS,))
            for key in keys
        ]
    return _multi_slices(partitions_def, keys, tags, database, measurement, columns)


def _multi_slices(
    partitions_def: MultiPartitionsDefinition, keys: Sequence[str], tags: Mapping[str, str], database: str,
    measurement: str, columns: tuple[str, ...] | None,
) -> list[PartitionSlice]:
    time_dim = _time_dimension_name(partitions_def)
    time_def = partitions_def.get_partitions_def_for_dimension(time_dim) if time_dim else None
    groups: dict[tuple[tuple[str, str], ...], list[tuple[int, int, str]]] = {}
    for key in keys:
        by_dim = (key if isinstance(key, MultiPartitionKey) else partitions_def.get_partition_key_from_str(key)).keys_by_dimension
        filters = tuple(sorted((tags[name], by_dim[name]) for name in tags))
        if time_def is None:
            span = (MIN_TIME_NS, MAX_TIME_NS)
        else:
            window = time_def.time_window_for_partition_key(by_dim[time_dim])  # type: ignore[union-attr]
            span = (to_epoch_ns(window.start), to_epoch_ns(window.end))
        groups.setdefault(filters, []).append((*span, str(key)))
    slices = []
    for filters, spans in groups.items():
        spans.sort()
        run: list[tuple[int, int, str]] = []
        for span in [*spans, None]:
            if run and (span is None or span[0] != run[-1][1]):
                where = MeasurementSlice(database, measurement, run[0][0], run[-1][1], tag_filters=filters,
                                         columns=columns)
                starts = tuple(s if time_def is not None else WHOLE_MEASUREMENT_NS for s, _, _ in run)
                slices.append(PartitionSlice(where, tuple(k for _, _, k in run), starts))
                run = []
            if span is not None:
                run.append(span)
    return slices


def fill_partition_columns(frame: pd.DataFrame, slices: list[PartitionSlice], columns: list[str]) -> pd.DataFrame:
    """Fill a missing partition tag column with the run's key (only when the run has one value for it)."""
    missing = [c for c in columns if c not in frame.columns]
    if not missing:
        return frame
    values = {c: {s.tag_values[c] for s in slices} for c in missing}
    ambiguous = [c for c, found in values.items() if len(found) != 1]
    if ambiguous:
        raise InvalidFrameError(
            f"the frame has no partition tag column(s) {ambiguous} and the run covers several keys; add the "
            "column so each row says which partition it belongs to. Nothing was written."
        )
    return frame.assign(**{c: next(iter(values[c])) for c in missing})


def owning_slice(frame: pd.DataFrame, times: np.ndarray, slices: list[PartitionSlice]) -> np.ndarray:
    """For each row, the index of the slice that owns it (inside its window, its tag values), or -1."""
    owner = np.full(len(frame), -1, dtype="int64")
    for index, owned in enumerate(slices):
        inside = (times >= owned.where.start_ns) & (times < owned.where.end_ns)
        for column, value in owned.where.tag_filters:  # compared as the text the encoder stores
            inside &= (as_text(frame[column]) == value).to_numpy(dtype=bool, na_value=False)
        owner[inside & (owner < 0)] = index
    return owner
