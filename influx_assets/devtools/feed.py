"""Write simulated telemetry into the raw measurement: in batches (:func:`write_simulation`), or live.

A simulation is written in two passes, like a real feed: first the points that arrived on time, then
(``which="late"``) the late arrivals — after their windows may already have been processed, which is
what the raw observation and the late-data sensor detect.

The live feed (:func:`run_live_feed`, the demo's ``influx-assets live-feed``) writes each passing
interval's readings and rides out an InfluxDB outage the way a buffering gateway does: it keeps the
unsent interval, retries with capped exponential backoff, and when the server answers again writes
everything since the last successful write (at most ``max_backlog_seconds``) in one go.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
from tqdm import tqdm

from influx_assets.influxdb import InfluxDBResource, RetrySettings, TransientInfluxError
from influx_assets.telemetry.contract import RAW_MEASUREMENT, RAW_TAGS
from influx_assets.devtools.simulate import Simulation, SimulationConfig, simulate


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


@dataclass(frozen=True)
class LiveFeedSettings:
    """What the live feed writes, how often, and how it waits out an outage.

    Args:
        sensors: simulated sensors.
        interval_seconds: one write per interval, covering the interval just ended.
        cadence_seconds: seconds between two readings of a sensor.
        seed: simulation seed.
        iterations: stop after this many successful writes (0: until stopped).
        first_backoff_seconds: wait after the first failed write (doubles per failure)...
        max_backoff_seconds: ...up to this.
        max_backlog_seconds: after an outage, write at most this much of the past (older readings are
            dropped, and the log says so).
    """

    sensors: int = 20
    interval_seconds: float = 60.0
    cadence_seconds: float = 30.0
    seed: int = 1000
    iterations: int = 0
    first_backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0
    max_backlog_seconds: float = 3600.0

    def backoff(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failed writes (the client's schedule, no jitter)."""
        schedule = RetrySettings(initial_delay=self.first_backoff_seconds, max_delay=self.max_backoff_seconds, jitter=0.0)
        return schedule.delay(max(failures - 1, 0), None, random.Random())


def _say(message: str) -> None:
    print(f"live-feed: {message}", flush=True)


def run_live_feed(
    influxdb: InfluxDBResource, settings: LiveFeedSettings, keep_running: Callable[[], bool] = lambda: True,
    log: Callable[[str], None] = _say,
) -> int:
    """Write each interval's readings until ``keep_running()`` is false; return the successful writes.

    A write that fails with a transient error (server down, 5xx, 429 — after the resource's own
    retries) is logged and retried after :meth:`LiveFeedSettings.backoff`; the unsent readings are
    kept, so the first write after the outage covers it. Terminal errors (authentication, bad
    requests) end the feed with the error.
    """
    step = pd.Timedelta(seconds=settings.interval_seconds)
    backlog = pd.Timedelta(seconds=settings.max_backlog_seconds)
    last = pd.Timestamp.now(tz="UTC").floor(step)
    writes = failures = 0
    while keep_running() and (settings.iterations == 0 or writes < settings.iterations):
        wait = settings.backoff(failures) if failures else (last + step - pd.Timestamp.now(tz="UTC")).total_seconds()
        time.sleep(max(0.0, wait))
        now = pd.Timestamp.now(tz="UTC").floor(step)
        if now <= last:
            continue
        if now - last > backlog:
            log(f"dropping readings of [{last.isoformat()}, {(now - backlog).isoformat()}): older than the backlog")
            last = now - backlog
        config = SimulationConfig(
            start=last, end=now, sensors=settings.sensors, cadence_seconds=settings.cadence_seconds,
            seed=settings.seed, rates={},
        )
        try:
            written = write_simulation(simulate(config), influxdb, "all").points_written
        except TransientInfluxError as error:
            failures += 1
            log(
                f"InfluxDB at {influxdb.public_url} unavailable ({type(error).__name__}: {error}); "
                f"write {failures} failed, keeping [{last.isoformat()}, {now.isoformat()}), "
                f"retrying in {settings.backoff(failures):.1f} s"
            )
            continue
        if failures:
            log(
                f"InfluxDB at {influxdb.public_url} is back after {failures} failed write(s); resumed writing, "
                f"from the end of the last write ({last.isoformat()})"
            )
            failures = 0
        log(f"{written} points for [{last.isoformat()}, {now.isoformat()})")
        last, writes = now, writes + 1
    return writes
