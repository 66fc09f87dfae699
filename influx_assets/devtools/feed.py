"""Write simulated telemetry into the raw measurement, in batches, with a progress bar.

A simulation is written in two passes, like a real feed: first the points that arrived on time, then
(``which="late"``) the late arrivals — after their windows may already have been processed, which is
what the raw observation and the late-data sensor detect.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from tqdm import tqdm

from influx_assets.influxdb import InfluxDBResource
from influx_assets.telemetry.contract import RAW_MEASUREMENT, RAW_TAGS
from influx_assets.devtools.simulate import Simulation


@dataclass(frozen=True)
class FeedResult:
    """Points sent and points the encoder could not represent (always 0 for simulated data)."""

    points_written: int
    rows_without_fields: int


def write_simulation(
    simulation: Simulation,
    influxdb: InfluxDBResource,
    which: str = "all",
    measurement: str = RAW_MEASUREMENT,
    database: str | None = None,
    batch_size: int = 5_000,
    progress: bool = False,
) -> FeedResult:
    """Write ``simulation.raw_points(which)`` to ``measurement``.

    Args:
        simulation: what :func:`influx_assets.devtools.simulate.simulate` built.
        influxdb: the target server.
        which: ``"all"``, ``"on_time"`` or ``"late"``.
        measurement: raw measurement name.
        database: target database (default: the resource's).
        batch_size: points per write request.
        progress: show a progress bar on stderr.
    """
    frame = simulation.raw_points(which)
    influxdb.prepare_database(database)
    written = dropped = 0
    with tqdm(
        total=len(frame), unit="pt", desc=f"sensor_raw ({which})", disable=not progress, file=sys.stderr
    ) as bar:
        for offset in range(0, len(frame), batch_size):
            batch = frame.iloc[offset : offset + batch_size]
            result = influxdb.write_frame(batch, measurement, list(RAW_TAGS), database=database)
            written += result.points_written
            dropped += result.rows_without_fields
            bar.update(len(batch))
    return FeedResult(written, dropped)
