"""The telemetry contract: raw schema, kinds, units, physical ranges, measurements and reason codes.

Raw points (database ``telemetry``, measurement ``sensor_raw``, ns timestamps = the device's reading
time):

=================  =====  ==========================================================================
name               role   meaning
=================  =====  ==========================================================================
``site``           tag    where the sensor is (required; any Unicode, spaces, commas, quotes)
``sensor_id``      tag    the device (required)
``kind``           tag    ``temperature``, ``humidity``, ``pressure`` or ``voltage`` (required;
                          case and surrounding spaces are tolerated and canonicalized)
``gateway``        tag    the gateway that delivered the point (optional). A re-sent payload
                          arrives through another gateway, so it is a second point, not an
                          overwrite (InfluxDB keeps one point per series and timestamp)
``value``          float  the reading, when the device sent a float
``value_raw``      str    the payload verbatim when it was not a float: an integer (``"21"``,
                          accepted), ``"NaN"``/``"inf"`` (non-finite) or text (``"ERR"``).
                          InfluxDB 1.x fixes a field's type per shard, so an integer or string
                          cannot share the float field ``value``; gateways put it here instead
``unit``           str    C, F, K, %, hPa, kPa, V, mV
``battery``        float  battery level in percent (optional)
``received_ns``    int    gateway receive time, ns since the epoch (optional); the reference for
                          the timestamp checks
=================  =====  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

RAW_MEASUREMENT = "sensor_raw"
RAW_TAGS = ("site", "sensor_id", "kind", "gateway")
REQUIRED_TAGS = ("site", "sensor_id", "kind")
SERIES_TAGS = ("site", "sensor_id", "kind")

VALIDATED_MEASUREMENT = "validated_telemetry"
QUARANTINED_MEASUREMENT = "quarantined_telemetry"
NORMALIZED_MEASUREMENT = "normalized_telemetry"
FIVE_MINUTE_MEASUREMENT = "telemetry_5m"
SLIDING_MEASUREMENT = "telemetry_sliding_15m"
HOURLY_MEASUREMENT = "telemetry_1h"
FEATURES_MEASUREMENT = "sensor_features"

Converter = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class KindSpec:
    """One measured quantity: its canonical unit, accepted units and physical range (canonical)."""

    canonical_unit: str
    to_canonical: dict[str, Converter]
    from_canonical: dict[str, Converter]
    low: float
    high: float


def _same(values: np.ndarray) -> np.ndarray:
    return values


#: Physical ranges are inclusive and in the canonical unit. They bound what a sensor of that kind can
#: report on Earth (record air temperatures, 0-100 % RH, barometric pressure from high altitude to a
#: deep mine, mains-or-below voltage); a reading outside is a device fault.
KINDS: dict[str, KindSpec] = {
    "temperature": KindSpec(
        "C",
        {"C": _same, "F": lambda v: (v - 32.0) * 5.0 / 9.0, "K": lambda v: v - 273.15},
        {"C": _same, "F": lambda c: c * 9.0 / 5.0 + 32.0, "K": lambda c: c + 273.15},
        -90.0,
        150.0,
    ),
    "humidity": KindSpec("%", {"%": _same}, {"%": _same}, 0.0, 100.0),
    "pressure": KindSpec(
        "hPa",
        {"hPa": _same, "kPa": lambda v: v * 10.0},
        {"hPa": _same, "kPa": lambda h: h / 10.0},
        300.0,
        1100.0,
    ),
    "voltage": KindSpec(
        "V",
        {"V": _same, "mV": lambda v: v / 1000.0},
        {"V": _same, "mV": lambda v: v * 1000.0},
        0.0,
        1000.0,
    ),
}

#: Every unit some kind accepts.
KNOWN_UNITS = frozenset(unit for spec in KINDS.values() for unit in spec.to_canonical)

#: Quarantine reason codes, in the order validation tests them: a point gets the first that applies.
REASONS: dict[str, str] = {
    "missing_tag": "site, sensor_id or kind is absent or blank",
    "unknown_kind": "kind is not temperature, humidity, pressure or voltage",
    "missing_value": "neither value nor value_raw is present",
    "non_numeric_value": "value_raw is not a decimal number (e.g. 'ERR', '21,5')",
    "non_finite_value": "value_raw is NaN or infinite ('NaN', 'inf', '-Infinity'), or value is",
    "unknown_unit": "unit is absent or not one of C, F, K, %, hPa, kPa, V, mV",
    "unit_kind_mismatch": "unit is known but not valid for the kind (e.g. temperature in hPa)",
    "out_of_range": "value, converted to the canonical unit, is outside the kind's physical range",
    "future_timestamp": "timestamp is later than received_ns plus the future tolerance",
    "stale_timestamp": "timestamp is before the acceptance window: earlier than received_ns minus "
    "the maximum lateness",
    "duplicate": "an exact duplicate (same tags except gateway, same time and payload) of a point "
    "received earlier",
}
REASON_CODES = tuple(REASONS)
