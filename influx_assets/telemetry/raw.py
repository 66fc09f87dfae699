"""``raw_telemetry``: the external raw measurement ``sensor_raw``, observed per hourly window.

Devices, Telegraf or ``influx-assets simulate`` write it; Dagster never does. Each observation reads a
window and records its point count and content fingerprint (see :mod:`influx_assets.telemetry.fingerprint`) as
observation metadata, and ``points-<count>-<fingerprint prefix>`` as the window's data version. A
window that changed after it was processed (late arrivals, a re-sent batch) is detected by comparing
the observed fingerprint with ``raw_fingerprint`` in the latest ``validated_telemetry``
materialization of that partition (:func:`window_changed`); Dagster also marks the downstream
partition stale when the data version moves.

``validated_telemetry`` loads the window through the InfluxDB IO manager: the source asset carries the
IO manager key and the ``influxdb/measurement`` metadata, so ``load_input`` reads ``sensor_raw``.

Which windows an observation covers: the run's partition (or partition range) when it has one, else
the last :data:`RECENT_WINDOWS` complete hours.
"""

from dataclasses import dataclass

import pandas as pd
from dagster import (
    AssetObservation,
    DataVersionsByPartition,
    MetadataValue,
    OpExecutionContext,
    observable_source_asset,
)

from influx_assets.telemetry.fingerprint import frame_fingerprint
from influx_assets.influxdb import InfluxDBResource
from influx_assets.telemetry.partitions import hourly_windows
from influx_assets.telemetry.contract import RAW_MEASUREMENT, RAW_TAGS
from influx_assets.telemetry.stage import GROUP, IO_MANAGER_KEY, KINDS_TAGS, influx_storage
from influx_assets.telemetry.keys import FINGERPRINT

#: Complete hourly windows observed by a run that names no partition.
RECENT_WINDOWS = 24

# Dagster's tag for an observation's data version (what DataVersionsByPartition writes). Setting it on
# our own observation event keeps count, fingerprint and version in one event per window.
DATA_VERSION_TAG = "dagster/data_version"


@dataclass(frozen=True)
class WindowObservation:
    """What one raw window holds right now."""

    partition_key: str
    points: int
    fingerprint: str

    @property
    def data_version(self) -> str:
        """Short, stable identifier of the window's content."""
        return f"points-{self.points}-{self.fingerprint.removeprefix('sha256:')[:16]}"


def observe_window(
    influxdb: InfluxDBResource, partition_key: str, measurement: str = RAW_MEASUREMENT
) -> WindowObservation:
    """Read one hourly window of the raw measurement and fingerprint it."""
    window = hourly_windows.time_window_for_partition_key(partition_key)
    frame = influxdb.read_window(influxdb.slice(measurement, window.start, window.end))
    return WindowObservation(partition_key, len(frame), frame_fingerprint(frame))


def window_changed(observed_fingerprint: str, processed_fingerprint: str | None) -> bool:
    """True when a raw window no longer holds what ``validated_telemetry`` processed."""
    return processed_fingerprint is None or observed_fingerprint != processed_fingerprint


def windows_to_observe(context: OpExecutionContext) -> list[str]:
    """The run's partition key(s), or the most recent complete hourly windows."""
    if context.has_partition_key_range:
        return list(context.partition_keys)
    if context.has_partition_key:
        return [context.partition_key]
    keys = hourly_windows.get_partition_keys(current_time=pd.Timestamp.now(tz="UTC").to_pydatetime())
    return list(keys[-RECENT_WINDOWS:])


@observable_source_asset(
    partitions_def=hourly_windows,
    io_manager_key=IO_MANAGER_KEY,
    metadata=influx_storage(RAW_MEASUREMENT, RAW_TAGS),
    group_name=GROUP,
    tags={f"dagster/kind/{kind}": "" for kind in KINDS_TAGS},
    description="Raw sensor telemetry (measurement sensor_raw) written by devices and gateways.",
)
def raw_telemetry(context: OpExecutionContext, influxdb: InfluxDBResource) -> DataVersionsByPartition:
    """Point count and content fingerprint of each observed raw window."""
    for key in windows_to_observe(context):
        seen = observe_window(influxdb, key)
        context.log_event(
            AssetObservation(
                asset_key=context.asset_key,
                partition=key,
                metadata={
                    "points": MetadataValue.int(seen.points),
                    FINGERPRINT: MetadataValue.text(seen.fingerprint),
                },
                tags={DATA_VERSION_TAG: seen.data_version},
            )
        )
    return DataVersionsByPartition({})
