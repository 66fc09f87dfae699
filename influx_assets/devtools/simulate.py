"""A deterministic simulator of raw telemetry, with every defect the pipeline must recognise.

``simulate(config)`` builds the points (same config and seed, same points, bit for bit);
``write_simulation`` writes them to ``sensor_raw`` in batches with a progress bar; the manifest
(:mod:`influx_assets.devtools.manifest`) says what each window must yield at each stage. Console script:
``influx-assets simulate --help``.

How each defect looks on the wire: :mod:`influx_assets.devtools.defects`.

Readings of one sensor are ``cadence`` apart at a per-sensor phase; phases are distinct, so no two
sensors share a timestamp and no defect makes two points collapse on write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from influx_assets.devtools.defects import (  # noqa: F401 - re-exported: the simulator's public vocabulary
    DECIMALS,
    DEFAULT_RATES,
    DEFECT_KINDS,
    QUARANTINE_DEFECTS,
    READING_VARIANTS,
    SENSOR_DEFECTS,
    in_unit,
    inject_defects,
    inject_variants,
)
from influx_assets.telemetry.contract import KINDS
from influx_assets.telemetry.validate import ValidationRules
from influx_assets.influxdb import as_text

OUTAGE = pd.Timedelta(minutes=20)
WRITE_COLUMNS = (
    "time",
    "site",
    "sensor_id",
    "kind",
    "gateway",
    "value",
    "value_raw",
    "unit",
    "battery",
    "received_ns",
)

_UNIT_CHOICES = {
    "temperature": ("C", "C", "F", "K"),
    "humidity": ("%",),
    "pressure": ("hPa", "hPa", "kPa"),
    "voltage": ("V", "V", "mV"),
}
_BASE = {
    "temperature": (18.0, 24.0, 3.0, 0.2),
    "humidity": (35.0, 60.0, 10.0, 1.0),
    "pressure": (1005.0, 1020.0, 4.0, 0.3),
    "voltage": (0.0, 0.0, 0.0, 0.0),
}
_ODD_SITES = ('Hall "B", Floor 2', "Zu\u0308rich Lab", " east wing ", "O'Brien's shed", "Ωmega=1 🌡")
_ODD_IDS = (
    "sensor {i:04d}",
    "sensor,{i:04d}",
    'sensor "{i:04d}"',
    "capteur-{i:04d}-e\u0301",
    " node {i:04d}",
)


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. ``rates`` override :data:`DEFAULT_RATES` per defect kind (0 disables)."""

    start: pd.Timestamp
    end: pd.Timestamp
    sensors: int = 50
    cadence_seconds: float = 60.0
    seed: int = 0
    rates: Mapping[str, float] = field(default_factory=dict)
    rules: ValidationRules = ValidationRules()

    def __post_init__(self) -> None:
        unknown = set(self.rates) - set(DEFECT_KINDS)
        if unknown:
            raise ValueError(f"unknown defect kinds {sorted(unknown)}; known: {', '.join(DEFECT_KINDS)}")
        if (
            self.sensors < 1
            or self.cadence_seconds <= 0
            or pd.Timestamp(self.end) <= pd.Timestamp(self.start)
        ):
            raise ValueError("need sensors >= 1, cadence_seconds > 0 and end after start")
        for name in ("start", "end"):
            stamp = pd.Timestamp(getattr(self, name))
            object.__setattr__(
                self, name, stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
            )
        if (
            sum(self.rate(k) for k in QUARANTINE_DEFECTS) > 1
            or sum(self.rate(k) for k in READING_VARIANTS) > 1
        ):
            raise ValueError("per-reading defect rates must add up to at most 1")

    def rate(self, kind: str) -> float:
        """The rate of one defect kind."""
        return float(self.rates.get(kind, DEFAULT_RATES[kind]))


def _sensor_table(config: SimulationConfig, rng: np.random.Generator) -> pd.DataFrame:
    n = config.sensors
    index = np.arange(n)
    kinds = np.array(list(KINDS))[index % len(KINDS)]
    units = np.array([_UNIT_CHOICES[k][rng.integers(len(_UNIT_CHOICES[k]))] for k in kinds])
    cadence_ns = int(config.cadence_seconds * 1e9)
    phase = (index * cadence_ns) // n + rng.integers(0, max(1, cadence_ns // n), n)
    sensors = pd.DataFrame(
        {
            "kind_canonical": kinds,
            "unit": units,
            "phase_ns": phase,
            "site": [f"site-{i // 10 + 1:02d}" for i in index],
            "sensor_id": [f"sensor-{i:04d}" for i in index],
            "kind": kinds,
            "battery": rng.random(n) < 0.7,
            "odd": rng.random(n) < config.rate("odd_tag"),
            "outage": rng.random(n) < config.rate("outage"),
        }
    )
    for row, i in enumerate(np.flatnonzero(sensors["odd"])):
        sensors.loc[i, "site"] = _ODD_SITES[row % len(_ODD_SITES)]
        sensors.loc[i, "sensor_id"] = _ODD_IDS[row % len(_ODD_IDS)].format(i=i)
        sensors.loc[i, "kind"] = kinds[i].capitalize() if row % 2 == 0 else f" {kinds[i].upper()}"
    span = (config.end - config.start - OUTAGE).value
    sensors["outage_start_ns"] = config.start.value + (rng.random(n) * max(span, 0)).astype("int64")
    voltage_base = rng.choice([3.3, 12.0, 230.0], n)
    low, high, amp, noise = (np.array([_BASE[k][j] for k in kinds]) for j in range(4))
    sensors["base"] = np.where(kinds == "voltage", voltage_base, low + rng.random(n) * (high - low))
    sensors["amplitude"] = np.where(kinds == "voltage", voltage_base * 0.01, amp)
    sensors["noise"] = np.where(kinds == "voltage", voltage_base * 0.005, noise)
    return sensors


def _readings(config: SimulationConfig, sensors: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    cadence_ns = int(config.cadence_seconds * 1e9)
    steps = int(np.ceil((config.end - config.start).value / cadence_ns)) + 1
    times = (
        config.start.value + sensors["phase_ns"].to_numpy()[:, None] + cadence_ns * np.arange(steps)[None, :]
    )
    sensor = np.repeat(np.arange(len(sensors)), steps)
    times = times.ravel()
    keep = times < config.end.value
    in_outage = (
        sensors["outage"].to_numpy()[sensor]
        & (times >= sensors["outage_start_ns"].to_numpy()[sensor])
        & (times < sensors["outage_start_ns"].to_numpy()[sensor] + OUTAGE.value)
    )
    keep &= ~in_outage
    sensor, times = sensor[keep], times[keep]
    s = sensors.iloc[sensor].reset_index(drop=True)
    hours = times / 3.6e12
    canonical = (
        s["base"]
        + s["amplitude"] * np.sin(2 * np.pi * hours / 24.0 + sensor)
        + rng.normal(0, 1, len(s)) * s["noise"]
    )
    spikes = rng.random(len(s)) < 0.003
    canonical = np.where(spikes, canonical + 8 * s["noise"] + 1.0, canonical)
    canonical = np.where(s["kind_canonical"] == "humidity", np.clip(canonical, 1.0, 99.0), canonical)
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime(times, unit="ns", utc=True),
            "site": s["site"],
            "sensor_id": s["sensor_id"],
            "kind": s["kind"],
            "gateway": "gw-a",
            "canonical": canonical,
            "unit": s["unit"],
            "battery": np.where(s["battery"], np.round(100.0 - (sensor % 7) - hours % 24 * 0.05, 1), np.nan),
            "received_ns": times + rng.integers(20_000_000, 3_000_000_000, len(s)),
            "sensor": sensor,
            "kind_canonical": s["kind_canonical"],
        }
    )
    frame["value"] = in_unit(frame["canonical"].to_numpy(), frame["kind_canonical"], frame["unit"])
    frame["value_raw"] = pd.Series([None] * len(frame), dtype="object")
    return frame


@dataclass(frozen=True)
class Simulation:
    """The simulated points and sensors.

    ``points`` has the raw columns plus bookkeeping: ``sensor`` (index into ``sensors``),
    ``kind_canonical``, ``defect`` (the expected quarantine reason, or None) and ``variant``
    (``late``, ``duplicate``, ``resend``, ``integer_value``, ``duplicate_copy``, ``resend_copy`` or
    None). ``sensors`` has one row per sensor (``site``, ``sensor_id``, ``kind`` as sent, ``unit``,
    ``odd``, ``outage``...).
    """

    config: SimulationConfig
    points: pd.DataFrame
    sensors: pd.DataFrame

    def raw_points(self, which: str = "all") -> pd.DataFrame:
        """The frame to write: ``"all"``, ``"on_time"`` (first pass) or ``"late"`` (second pass)."""
        late = (self.points["variant"] == "late").to_numpy()
        chosen = {"all": slice(None), "on_time": ~late, "late": late}[which]
        frame = self.points.loc[chosen, list(WRITE_COLUMNS)].reset_index(drop=True)
        for column in ("site", "sensor_id", "kind", "gateway", "value_raw", "unit"):
            frame[column] = as_text(frame[column])
        return frame.astype({"received_ns": "int64", "value": "float64", "battery": "float64"})


def simulate(config: SimulationConfig) -> Simulation:
    """Build the simulated points of ``config`` (deterministic in ``config.seed``)."""
    rng = np.random.default_rng(config.seed)
    sensors = _sensor_table(config, rng)
    frame = _readings(config, sensors, rng)
    frame = inject_defects(frame, config, rng)
    frame = inject_variants(frame, config, rng)
    frame = frame.sort_values(["time", "sensor", "gateway"], kind="stable").reset_index(drop=True)
    return Simulation(config, frame.drop(columns=["canonical"]), sensors)
