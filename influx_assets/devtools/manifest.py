"""What a simulation must yield at each stage, per window and per reason — from the simulator's own
bookkeeping, never from the pipeline's code.

Per hourly window (keys are Dagster partition keys, ``2025-03-01-10:00``):

* ``raw`` points written (``late`` of them in the second, late pass),
* ``quarantined`` per reason code and ``validated`` (the rest),
* ``normalized`` (validated minus the readings a corrected re-send replaced),
* ``buckets_5m`` (rows of ``telemetry_5m``), ``sliding_rows`` and ``sliding_count`` (rows of
  ``telemetry_sliding_15m`` stamped in the window and the sum of their counts; the first hops include
  the previous window's points), ``series`` and ``incomplete_series`` (series under 90 % of the points
  their cadence implies).

Per day (``2025-03-01``): ``normalized``, ``series`` (= ``sensor_features`` rows), ``rows_1h``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from influx_assets.telemetry.contract import REASON_CODES
from influx_assets.devtools.simulate import DEFECT_KINDS, QUARANTINE_DEFECTS, READING_VARIANTS, Simulation

HOUR_NS = 3_600_000_000_000
FIVE_MINUTES_NS = 300_000_000_000
MIN_COMPLETENESS = 0.9


def _hour_key(ns: int) -> str:
    return pd.Timestamp(ns, unit="ns", tz="UTC").strftime("%Y-%m-%d-%H:%M")


def _incomplete_series(readings: pd.DataFrame) -> int:
    """Series with at least two points whose count is under 90 % of what their cadence implies."""
    incomplete = 0
    for _, stamps in readings.groupby("sensor")["ns"]:
        values = np.sort(stamps.to_numpy())
        if len(values) < 2 or np.median(np.diff(values)) <= 0:
            continue
        expected = HOUR_NS / float(np.median(np.diff(values)))
        incomplete += int(len(values) / expected < MIN_COMPLETENESS)
    return incomplete


def build_manifest(simulation: Simulation) -> dict:
    """Expected counts per window, reason, stage and day (see the module docstring)."""
    points = simulation.points.assign(ns=simulation.points["time"].astype("int64"))
    points["hour"] = points["ns"] // HOUR_NS * HOUR_NS
    valid = points[points["defect"].isna()]
    # a resend pair leaves one reading: the copy replaces the original
    readings = valid[valid["variant"] != "resend"]
    hops = pd.concat(
        [
            readings.assign(hop=readings["ns"] // FIVE_MINUTES_NS * FIVE_MINUTES_NS + k * FIVE_MINUTES_NS)
            for k in range(3)
        ]
    )
    hops["hop_hour"] = hops["hop"] // HOUR_NS * HOUR_NS
    windows: dict[str, dict] = {}
    for hour in sorted(points["hour"].unique()):
        here = points[points["hour"] == hour]
        normal = readings[readings["hour"] == hour]
        hopping = hops[hops["hop_hour"] == hour]
        reasons = here["defect"].value_counts()
        windows[_hour_key(int(hour))] = {
            "raw": len(here),
            "late": int((here["variant"] == "late").sum()),
            "validated": int(here["defect"].isna().sum()),
            "quarantined": {code: int(reasons.get(code, 0)) for code in REASON_CODES},
            "normalized": len(normal),
            "buckets_5m": int(
                normal.assign(b=normal["ns"] // FIVE_MINUTES_NS)[["sensor", "b"]].drop_duplicates().shape[0]
            ),
            "sliding_rows": int(hopping[["sensor", "hop"]].drop_duplicates().shape[0]),
            "sliding_count": len(hopping),
            "series": int(normal["sensor"].nunique()),
            "incomplete_series": _incomplete_series(normal),
        }
    days: dict[str, dict] = {}
    readings = readings.assign(day=readings["time"].dt.strftime("%Y-%m-%d"))
    for day, group in readings.groupby("day", sort=True):
        days[str(day)] = {
            "normalized": len(group),
            "series": int(group["sensor"].nunique()),
            "rows_1h": int(group[["sensor", "hour"]].drop_duplicates().shape[0]),
        }
    config = simulation.config
    return {
        "config": {
            "start": config.start.isoformat(),
            "end": config.end.isoformat(),
            "sensors": config.sensors,
            "cadence_seconds": config.cadence_seconds,
            "seed": config.seed,
            "rates": {k: config.rate(k) for k in DEFECT_KINDS},
        },
        "reasons": list(REASON_CODES),
        "totals": {
            "raw": len(points),
            "late": int((points["variant"] == "late").sum()),
            "validated": len(valid),
            "normalized": sum(d["normalized"] for d in days.values()),
            "quarantined": {code: int((points["defect"] == code).sum()) for code in REASON_CODES},
            "defects_injected": _injected(simulation),
        },
        "windows": windows,
        "days": days,
    }


def _injected(simulation: Simulation) -> dict[str, int]:
    """How often each defect kind was injected (readings, copies, or sensors for odd_tag/outage)."""
    points, sensors = simulation.points, simulation.sensors
    original = ~points["variant"].isin(["duplicate_copy", "resend_copy"])
    counts = {k: int(((points["defect"] == k) & original).sum()) for k in QUARANTINE_DEFECTS}
    counts |= {k: int((points["variant"] == k).sum()) for k in READING_VARIANTS}
    return counts | {"odd_tag": int(sensors["odd"].sum()), "outage": int(sensors["outage"].sum())}


def write_manifest(manifest: dict, path: Path) -> None:
    """Write the manifest as indented JSON (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
