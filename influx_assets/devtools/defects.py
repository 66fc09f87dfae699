"""The defects the simulator injects, and how each looks on the wire (all accepted by InfluxDB 1.x).

Rates are per reading, except ``odd_tag`` and ``outage`` (per sensor). The raw schema is in
:mod:`influx_assets.telemetry.contract`.

======================  =====================================================================
rate key                what the point looks like                                 expected
======================  =====================================================================
``missing_tag``         site, sensor_id or kind omitted                           quarantined
``unknown_kind``        kind ``vibration``, ``co2``, ``temprature``, ``light``     quarantined
``missing_value``       no ``value``, no ``value_raw`` (unit, battery only)        quarantined
``non_numeric_value``   ``value_raw`` = ``ERR``, ``n/a``, ``21,5`` ...             quarantined
``non_finite_value``    ``value_raw`` = ``NaN``, ``inf``, ``-inf``, ``Infinity``   quarantined
``unknown_unit``        unit ``lux``, ``ppm``, ``Pa``, ``bar``, ``degrees``        quarantined
``unit_kind_mismatch``  a known unit of another kind (temperature in ``hPa``)      quarantined
``out_of_range``        e.g. 500 C, 140 %, 5000 hPa, -50 V (in the sensor's unit)  quarantined
``future_timestamp``    ``received_ns`` before the timestamp by over 5 min        quarantined
``stale_timestamp``     ``received_ns`` after the timestamp by over 24 h          quarantined
``duplicate``           an extra identical copy via gateway ``gw-b``, received    the copy quarantined
                        later
``resend``              an extra corrected copy (other value) via ``gw-b``,       both valid; the copy
                        received later                                            wins in normalize
``integer_value``       ``value_raw`` = the reading as an integer (``"21"``)       valid
``late``                received and written after its window closed (second      valid
                        write pass)
``odd_tag`` (sensors)   site/sensor_id with spaces, commas, quotes, decomposed    valid; canonical
                        Unicode; kind spelled ``Temperature`` / `` HUMIDITY``      spelling after normalize
``outage`` (sensors)    the sensor is silent for 20 minutes                       completeness warning
======================  =====================================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from influx_assets.telemetry.contract import KINDS

if TYPE_CHECKING:
    from influx_assets.devtools.simulate import SimulationConfig

QUARANTINE_DEFECTS = (
    "missing_tag",
    "unknown_kind",
    "missing_value",
    "non_numeric_value",
    "non_finite_value",
    "unknown_unit",
    "unit_kind_mismatch",
    "out_of_range",
    "future_timestamp",
    "stale_timestamp",
)
READING_VARIANTS = ("late", "duplicate", "resend", "integer_value")
SENSOR_DEFECTS = ("odd_tag", "outage")
DEFECT_KINDS = (*QUARANTINE_DEFECTS, *READING_VARIANTS, *SENSOR_DEFECTS)

DEFAULT_RATES: dict[str, float] = {
    **{kind: 0.005 for kind in QUARANTINE_DEFECTS},
    "late": 0.02,
    "duplicate": 0.01,
    "resend": 0.005,
    "integer_value": 0.02,
    "odd_tag": 0.1,
    "outage": 0.04,
}

DECIMALS = {"C": 2, "F": 2, "K": 2, "%": 1, "hPa": 2, "kPa": 3, "V": 3, "mV": 0}
_UNKNOWN_KINDS = ("vibration", "co2", "temprature", "light")
_NON_NUMERIC = ("ERR", "n/a", "--", "21,5", "null", "sensor fault", "0x1F")
_NON_FINITE = ("NaN", "nan", "inf", "-inf", "Infinity")
_UNKNOWN_UNITS = ("lux", "ppm", "Pa", "bar", "degrees")
_WRONG_UNITS = {
    "temperature": ("%", "hPa", "V"),
    "humidity": ("C", "kPa", "mV"),
    "pressure": ("F", "%", "V"),
    "voltage": ("K", "%", "hPa"),
}
_OUT_OF_RANGE = {
    "temperature": (500.0, -150.0),
    "humidity": (140.0, -20.0),
    "pressure": (5000.0, 50.0),
    "voltage": (-50.0, 5000.0),
}


def in_unit(canonical: np.ndarray, kinds: pd.Series, units: pd.Series) -> np.ndarray:
    """Canonical values in each reading's unit, rounded like a device would send them."""
    out = np.full(len(canonical), np.nan)
    for kind, spec in KINDS.items():
        for unit, convert in spec.from_canonical.items():
            rows = ((kinds == kind) & (units == unit)).to_numpy()
            out[rows] = np.round(convert(canonical[rows]), DECIMALS[unit])
    return out


def _pick(rng: np.random.Generator, choices: tuple[str, ...], n: int) -> np.ndarray:
    return np.array(choices, dtype=object)[rng.integers(0, len(choices), n)]


def assign(rng: np.random.Generator, n: int, kinds: tuple[str, ...], config: SimulationConfig) -> np.ndarray:
    """Each reading gets at most one of ``kinds`` (or None), with the configured rates."""
    edges = np.cumsum([config.rate(k) for k in kinds])
    draw = rng.random(n)
    slot = np.searchsorted(edges, draw, side="right")
    return np.array([*kinds, None], dtype=object)[slot]


def inject_defects(frame: pd.DataFrame, config: SimulationConfig, rng: np.random.Generator) -> pd.DataFrame:
    """Give each reading at most one quarantine defect (column ``defect``: the expected reason)."""
    defect = assign(rng, len(frame), QUARANTINE_DEFECTS, config)
    frame["defect"] = defect
    rows = {k: np.flatnonzero(defect == k) for k in QUARANTINE_DEFECTS}
    idx = frame.index
    tag = rng.integers(0, 3, len(rows["missing_tag"]))
    for column, code in (("site", 0), ("sensor_id", 1), ("kind", 2)):
        frame.loc[idx[rows["missing_tag"][tag == code]], column] = None
    frame.loc[idx[rows["unknown_kind"]], "kind"] = _pick(rng, _UNKNOWN_KINDS, len(rows["unknown_kind"]))
    frame.loc[idx[rows["missing_value"]], "value"] = np.nan
    for kind, texts in (("non_numeric_value", _NON_NUMERIC), ("non_finite_value", _NON_FINITE)):
        frame.loc[idx[rows[kind]], "value"] = np.nan
        frame.loc[idx[rows[kind]], "value_raw"] = _pick(rng, texts, len(rows[kind]))
    frame.loc[idx[rows["unknown_unit"]], "unit"] = _pick(rng, _UNKNOWN_UNITS, len(rows["unknown_unit"]))
    wrong = rows["unit_kind_mismatch"]
    frame.loc[idx[wrong], "unit"] = [
        _WRONG_UNITS[k][rng.integers(3)] for k in frame["kind_canonical"].iloc[wrong]
    ]
    far = rows["out_of_range"]
    kinds = frame["kind_canonical"].iloc[far]
    canonical = np.array([_OUT_OF_RANGE[k][rng.integers(2)] for k in kinds], dtype="float64")
    frame.loc[idx[far], "value"] = in_unit(
        canonical, kinds.reset_index(drop=True), frame["unit"].iloc[far].reset_index(drop=True)
    )
    times = frame["time"].astype("int64").to_numpy()
    minutes = 60_000_000_000
    ahead = rows["future_timestamp"]
    frame.loc[idx[ahead], "received_ns"] = (
        times[ahead] - config.rules.future_tolerance.value - rng.integers(1, 60, len(ahead)) * minutes
    )
    behind = rows["stale_timestamp"]
    frame.loc[idx[behind], "received_ns"] = (
        times[behind] + config.rules.max_lateness.value + rng.integers(60, 2880, len(behind)) * minutes
    )
    return frame


def inject_variants(frame: pd.DataFrame, config: SimulationConfig, rng: np.random.Generator) -> pd.DataFrame:
    """Give clean readings at most one valid variant (column ``variant``) and append the copies."""
    clean = np.flatnonzero(frame["defect"].isna().to_numpy())
    variant = np.full(len(frame), None, dtype=object)
    variant[clean] = assign(rng, len(clean), READING_VARIANTS, config)
    frame["variant"] = variant
    times = frame["time"].astype("int64").to_numpy()
    minutes = 60_000_000_000
    late = np.flatnonzero(variant == "late")
    window_end = (times[late] // 3_600_000_000_000 + 1) * 3_600_000_000_000
    frame.loc[frame.index[late], "received_ns"] = window_end + rng.integers(5, 90, len(late)) * minutes
    integer = np.flatnonzero(variant == "integer_value")
    frame.loc[frame.index[integer], "value_raw"] = [str(int(round(v))) for v in frame["value"].iloc[integer]]
    frame.loc[frame.index[integer], "value"] = np.nan
    copies = []
    for kind, delay in (("duplicate", (1, 120)), ("resend", (30, 300))):
        chosen = frame.iloc[np.flatnonzero(variant == kind)].copy()
        chosen["gateway"] = "gw-b"
        chosen["received_ns"] = chosen["received_ns"] + rng.integers(*delay, len(chosen)) * 1_000_000_000
        if kind == "resend":
            step = 10.0 ** -chosen["unit"].map(DECIMALS).to_numpy()
            chosen["value"] = np.round(chosen["value"] + step * rng.integers(1, 6, len(chosen)), 3)
        chosen["defect"] = "duplicate" if kind == "duplicate" else None
        chosen["variant"] = f"{kind}_copy"
        copies.append(chosen)
    return pd.concat([frame, *copies], ignore_index=True)
