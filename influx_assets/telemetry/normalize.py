"""Stage 2: ``normalized_telemetry`` — canonical units, canonical tag spelling, one point per reading.

* Units: temperature in C (from F, K), humidity in %, pressure in hPa (from kPa), voltage in V (from
  mV); ``unit`` holds the canonical unit.
* Tag spelling: ``kind`` stripped and lower-cased; ``site`` and ``sensor_id`` Unicode NFC-normalized
  and stripped of surrounding whitespace. Inner spaces, commas, quotes and non-ASCII letters stay:
  they are valid data. ``gateway`` (delivery metadata) is dropped.
* Duplicates: points with the same canonical ``(site, sensor_id, kind, time)`` collapse to one —
  the **last received** wins: rows are ordered by ``received_ns``, then ``gateway``, then ``value``
  (ascending; a missing ``received_ns`` or ``gateway`` sorts first) and the last is kept. So a
  corrected re-send replaces the reading it corrects, and the result does not depend on read order.
* No invented points: every output row is one input row, transformed.
"""

import time
import unicodedata

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, MetadataValue

from influx_assets.telemetry.partitions import hourly_windows
from influx_assets.telemetry.contract import KINDS, NORMALIZED_MEASUREMENT, SERIES_TAGS
from influx_assets.telemetry.stage import (
    influx_stage,
    report_stage,
)
from influx_assets.influxdb import as_text

NORMALIZED_COLUMNS = ("time", "site", "sensor_id", "kind", "value", "unit", "battery")


def canonical_tag(values: pd.Series) -> pd.Series:
    """NFC-normalize and strip surrounding whitespace (the canonical spelling of site/sensor_id)."""
    return as_text(values).map(lambda v: unicodedata.normalize("NFC", v).strip(), na_action="ignore")


def to_canonical_units(kinds: pd.Series, units: pd.Series, values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Values converted to each kind's canonical unit, and that unit. Invalid pairs raise."""
    converted = pd.Series(np.nan, index=values.index, dtype="float64")
    canonical_unit = pd.Series([None] * len(values), index=values.index, dtype="object")
    for kind, spec in KINDS.items():
        for unit, convert in spec.to_canonical.items():
            rows = (kinds == kind) & (units == unit)
            if rows.any():
                converted[rows] = convert(values[rows].to_numpy(dtype="float64"))
                canonical_unit[rows] = spec.canonical_unit
    if canonical_unit.isna().any():
        bad = pd.DataFrame({"kind": kinds, "unit": units})[canonical_unit.isna()].drop_duplicates().head(5)
        raise ValueError(
            f"validated points with kind/unit pairs outside the contract: {bad.to_dict('records')}"
        )
    return converted, as_text(canonical_unit)


def normalize_window(validated: pd.DataFrame) -> pd.DataFrame:
    """Canonicalize validated points and collapse duplicates (see the module docstring)."""
    if validated.empty:
        return pd.DataFrame({c: pd.Series([], dtype="str") for c in NORMALIZED_COLUMNS}).astype(
            {"time": "datetime64[ns, UTC]", "value": "float64", "battery": "float64"}
        )
    frame = validated.copy()
    frame["kind"] = as_text(frame["kind"]).str.strip().str.lower()
    frame["site"] = canonical_tag(frame["site"])
    frame["sensor_id"] = canonical_tag(frame["sensor_id"])
    units = as_text(frame["unit"]).str.strip()
    frame["value"], frame["unit"] = to_canonical_units(frame["kind"], units, frame["value"])
    if "battery" not in frame.columns:
        frame["battery"] = np.nan
    for column, dtype in (("received_ns", "Int64"), ("gateway", "str")):
        frame[column] = (
            frame[column].astype(dtype)
            if column in frame.columns
            else pd.Series([None] * len(frame), index=frame.index, dtype=dtype)
        )
    # Int64, not float: ns since the epoch do not fit a float's 53-bit mantissa
    ordered = frame.sort_values(["received_ns", "gateway", "value"], kind="stable", na_position="first")
    kept = ordered.drop_duplicates(subset=["time", *SERIES_TAGS], keep="last")
    result = kept[list(NORMALIZED_COLUMNS)].sort_values(["time", *SERIES_TAGS], kind="stable")
    result = result.astype({"value": "float64", "battery": "float64"})
    return result.reset_index(drop=True)


@influx_stage(NORMALIZED_MEASUREMENT, hourly_windows)
def normalized_telemetry(context: AssetExecutionContext, validated_telemetry: pd.DataFrame) -> pd.DataFrame:
    """Validated points in canonical units and tag spelling, one point per sensor reading."""
    started = time.perf_counter()
    normalized = normalize_window(validated_telemetry)
    context.add_output_metadata(
        report_stage(
            context,
            normalized,
            validated_telemetry,
            started,
            window_facts=lambda _window, out, rows_in: {
                "duplicates_collapsed": MetadataValue.int(len(rows_in) - len(out)),
                "series": MetadataValue.int(int(out[list(SERIES_TAGS)].drop_duplicates().shape[0])),
            },
        )
    )
    return normalized
