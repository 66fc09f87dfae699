"""``raw_telemetry`` observed automatically: its windows' point counts and data versions in the UI.

``raw_telemetry`` is external (devices write ``sensor_raw``); Dagster learns what it holds only by
observing it. ``raw_telemetry_observer`` does that every :data:`OBSERVE_INTERVAL_SECONDS`: it observes
the current hourly window and the :data:`OBSERVED_WINDOWS` closed ones before it (point count and
content fingerprint, :func:`influx_assets.telemetry.raw.observe_window`) and records an observation
for each window whose data version differs from the one it last recorded (kept in the sensor's
cursor), so the asset shows as observed, each window carries its count and version, and a late point
shows up as a new version of exactly its window. It launches nothing: re-running changed windows is
the late-data sensor's job.
"""

import json
from collections.abc import Sequence

import pandas as pd
from dagster import (
    AssetObservation,
    DefaultSensorStatus,
    MetadataValue,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from influx_assets.influxdb import InfluxDBResource
from influx_assets.telemetry.keys import FINGERPRINT, RAW_TELEMETRY
from influx_assets.telemetry.partitions import hourly_windows
from influx_assets.telemetry.raw import DATA_VERSION_TAG, WindowObservation, observe_window

#: Closed hourly windows observed on each tick (besides the current one).
OBSERVED_WINDOWS = 24
OBSERVE_INTERVAL_SECONDS = 300


def recent_windows(now: pd.Timestamp, closed: int = OBSERVED_WINDOWS) -> list[str]:
    """The hourly partition keys of the ``closed`` windows ended by ``now`` and the one open at ``now``."""
    keys = hourly_windows.get_partition_keys(current_time=(now + pd.Timedelta(hours=1)).to_pydatetime())
    return list(keys[-(closed + 1):])


def observation(seen: WindowObservation) -> AssetObservation:
    """The observation event of one raw window (count, fingerprint, data version)."""
    return AssetObservation(
        asset_key=RAW_TELEMETRY,
        partition=seen.partition_key,
        metadata={"points": MetadataValue.int(seen.points), FINGERPRINT: MetadataValue.text(seen.fingerprint)},
        tags={DATA_VERSION_TAG: seen.data_version},
    )


def changed_observations(
    seen: Sequence[WindowObservation], recorded: dict[str, str]
) -> tuple[list[AssetObservation], dict[str, str]]:
    """Observations of the windows whose data version differs from ``recorded``, and the new record.

    The record keeps only the windows just observed (bounded by :data:`OBSERVED_WINDOWS` + 1).
    """
    events = [observation(s) for s in seen if recorded.get(s.partition_key) != s.data_version]
    return events, {s.partition_key: s.data_version for s in seen}


@sensor(
    name="raw_telemetry_observer",
    minimum_interval_seconds=OBSERVE_INTERVAL_SECONDS,
    default_status=DefaultSensorStatus.RUNNING,
    description="Observes raw_telemetry's recent hourly windows (points, data version); launches nothing.",
)
def raw_telemetry_observer(context: SensorEvaluationContext, influxdb: InfluxDBResource) -> SensorResult:
    """Record an observation for each recent raw window whose content changed since the last tick."""
    recorded = json.loads(context.cursor) if context.cursor else {}
    seen = [observe_window(influxdb, key) for key in recent_windows(pd.Timestamp.now(tz="UTC"))]
    events, record = changed_observations(seen, recorded)
    changed = ", ".join(f"{e.partition} ({e.metadata['points'].value} points)" for e in events)
    context.log.info(
        f"observed {len(seen)} raw windows; {len(events)} new or changed" + (f": {changed}" if events else "")
    )
    return SensorResult(asset_events=events, cursor=json.dumps(record, sort_keys=True))
