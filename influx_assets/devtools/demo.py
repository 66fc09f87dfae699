"""The demo's data and its first job: the demo telemetry, and a backfill of the hourly stages over it.

``scripts/demo.sh`` calls ``influx-assets demo-data`` (:func:`load_demo_data`), then, once the Dagster
webserver answers, ``influx-assets demo-backfill`` (:func:`launch_hourly_backfill`); the daemon runs
the backfill (one run per day of windows, the stages' backfill policy) and the operator watches it in
the UI under *Overview → Backfills*. The backfill and its runs carry :data:`DEMO_TAGS`.

Restarting the demo must leave processed windows alone: the late-data sensor re-runs any processed
window whose raw points changed. So the demo data is

* **deterministic by window**: a window's points are a slice of the simulation of its UTC day, seeded
  from the demo seed and that day (:func:`demo_day_seed`), never from "now" or from the run — loading
  a window twice writes the same points (same series, timestamps and values, so InfluxDB keeps them);
* **written only into absent windows**: a window that already holds raw points (an earlier load, the
  live feed, real devices) is not written at all — the deterministic slice would still add points to a
  window the live feed filled.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import numpy as np
import pandas as pd

from influx_assets.automation.schedules import HOURLY_STAGES
from influx_assets.devtools.feed import write_simulation
from influx_assets.devtools.simulate import Simulation, SimulationConfig, simulate
from influx_assets.influxdb import InfluxDBResource
from influx_assets.telemetry.contract import RAW_MEASUREMENT
from influx_assets.telemetry.partitions import hourly_windows
from influx_assets.telemetry.windows import split_by_window, windows_for

#: Tags of the demo backfill; Dagster copies a backfill's tags to every run it launches, so the
#: operator can filter the demo's runs in the UI (*Runs* → filter ``influx_assets/launched_by=demo``).
DEMO_TAGS = {"influx_assets/launched_by": "demo"}

LAUNCH_BACKFILL = """
mutation LaunchBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}
"""


def recent_windows(hours: int, now: pd.Timestamp | None = None) -> list[str]:
    """Partition keys of the last ``hours`` closed hourly windows."""
    now = now or pd.Timestamp.now(tz="UTC")
    return list(hourly_windows.get_partition_keys(current_time=now.to_pydatetime())[-hours:])


def graphql(webserver: str, query: str, variables: dict, timeout: float = 30.0) -> dict:
    """POST one GraphQL request to a Dagster webserver and return its ``data``."""
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(
        f"{webserver.rstrip('/')}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload = json.load(response)
    if payload.get("errors"):
        raise RuntimeError(f"GraphQL errors: {payload['errors']}")
    return payload["data"]


def wait_for_webserver(webserver: str, timeout: float = 180.0) -> None:
    """Block until ``/server_info`` answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{webserver.rstrip('/')}/server_info", timeout=5):
                return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def launch_hourly_backfill(webserver: str, partitions: list[str]) -> str:
    """Ask the webserver for an asset backfill of the hourly stages over ``partitions``; return its id.

    The backfill is tagged with :data:`DEMO_TAGS` (and so are the runs it launches).
    """
    from influx_assets.definitions import defs

    keys = HOURLY_STAGES.resolve(defs.resolve_asset_graph())
    params = {
        "assetSelection": [{"path": key.path} for key in sorted(keys, key=lambda k: k.path)],
        "partitionNames": partitions,
        "fromFailure": False,
        "tags": [{"key": key, "value": value} for key, value in DEMO_TAGS.items()],
    }
    result = graphql(webserver, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise RuntimeError(f"backfill not launched: {result}")
    return str(result["backfillId"])


@dataclass(frozen=True)
class DemoLoad:
    """What :func:`load_demo_data` did: windows loaded now, windows left alone, and the points sent."""

    loaded: list[str]
    already_present: list[str]
    simulation: Simulation | None
    points_written: int


def demo_day_seed(seed: int, day: pd.Timestamp) -> int:
    """The simulation seed of one UTC day: a function of the demo seed and the day only."""
    days_since_epoch = int(day.value // pd.Timedelta(days=1).value)
    return int(np.random.SeedSequence([seed, days_since_epoch]).generate_state(1)[0])


def demo_simulation(windows: list[str], sensors: int, cadence_seconds: float, seed: int) -> Simulation:
    """The demo points of ``windows`` (hourly partition keys): each window sliced from its day's simulation.

    ``config`` of the result spans the first to the last window with the demo ``seed``; ``sensors``
    is the first day's sensor table.
    """
    starts = {window.start for window in windows_for(hourly_windows, windows)}
    days = sorted({start.floor("1D") for start in starts})
    parts: list[Simulation] = []
    for day in days:
        config = SimulationConfig(
            start=day, end=day + pd.Timedelta(days=1), sensors=sensors, cadence_seconds=cadence_seconds,
            seed=demo_day_seed(seed, day),
        )
        parts.append(simulate(config))
    points = pd.concat([part.points for part in parts], ignore_index=True)
    keep = points["time"].dt.floor("1h").isin(starts)
    config = SimulationConfig(
        start=min(starts), end=max(starts) + pd.Timedelta(hours=1), sensors=sensors,
        cadence_seconds=cadence_seconds, seed=seed,
    )
    return Simulation(config, points[keep].reset_index(drop=True), parts[0].sensors)


def windows_with_points(influxdb: InfluxDBResource, windows: list[str], measurement: str = RAW_MEASUREMENT) -> list[str]:
    """The hourly windows (partition keys) in which ``measurement`` holds at least one point now."""
    if not windows:
        return []
    spans = windows_for(hourly_windows, windows)
    frame = influxdb.read_window(influxdb.slice(measurement, spans[0].start, spans[-1].end))
    return [window.key for window, rows in zip(spans, split_by_window(frame, spans), strict=True) if len(rows)]


def load_demo_data(
    influxdb: InfluxDBResource, hours: int = 6, sensors: int = 20, cadence_seconds: float = 60.0, seed: int = 0,
    now: pd.Timestamp | None = None, progress: bool = False,
) -> DemoLoad:
    """Write the demo telemetry of the last ``hours`` closed hourly windows that hold no raw points yet.

    Windows already holding points are left untouched (see the module docstring); the rest get their
    deterministic points, on-time first, then the late arrivals (as :func:`write_simulation` does).
    """
    windows = recent_windows(hours, now)
    influxdb.prepare_database()
    present = windows_with_points(influxdb, windows)
    absent = [key for key in windows if key not in present]
    if not absent:
        return DemoLoad([], present, None, 0)
    simulation = demo_simulation(absent, sensors, cadence_seconds, seed)
    written = write_simulation(simulation, influxdb, "on_time", progress=progress).points_written
    written += write_simulation(simulation, influxdb, "late", progress=progress).points_written
    return DemoLoad(absent, present, simulation, written)
