"""Stage 1: split each raw window into ``validated_telemetry`` and ``quarantined_telemetry``.

Every raw point of the window lands in exactly one of the two. Quarantined points keep their original
payload (tags and fields as received) plus a ``reason`` tag; the codes, tested in this order (a point
gets the first that applies), are :data:`~influx_assets.telemetry.contract.REASONS`:

``missing_tag``, ``unknown_kind``, ``missing_value``, ``non_numeric_value``, ``non_finite_value``,
``unknown_unit``, ``unit_kind_mismatch``, ``out_of_range``, ``future_timestamp``,
``stale_timestamp``, ``duplicate``.

Timestamps are judged against the gateway's ``received_ns``: later than it by more than the future
tolerance (device clock ahead), or earlier by more than the maximum lateness (before the acceptance
window), is quarantined. Points without ``received_ns`` skip both tests (every point read for a window
lies inside it by construction).

Duplicates: two points are *exact duplicates* when every column except the delivery metadata
(``gateway`` tag, ``received_ns``) is equal — same series, same time, same payload. Among otherwise
valid points the **first received** (smallest ``received_ns``, then ``gateway``; nulls last) is kept
and every other copy is quarantined as ``duplicate``. Copies that differ in payload (a corrected
re-send) are not exact duplicates: both are valid and ``normalized_telemetry`` collapses them.

Validated points keep their tags as received; ``value`` holds the number (an integer sent in
``value_raw`` becomes a float there) and ``value_raw`` is dropped. Rejection happens inside the asset,
before the IO manager writes anything.
"""

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetOut,
    Config,
    MetadataValue,
    Output,
    multi_asset,
)
from pydantic import Field

from influx_assets.telemetry.fingerprint import window_fingerprints
from influx_assets.influxdb import time_column_to_ns
from influx_assets.influxdb import to_epoch_ns
from influx_assets.telemetry.partitions import hourly_windows
from influx_assets.telemetry.contract import (
    KINDS,
    KNOWN_UNITS,
    QUARANTINED_MEASUREMENT,
    RAW_TAGS,
    REASON_CODES,
    REQUIRED_TAGS,
    VALIDATED_MEASUREMENT,
)
from influx_assets.telemetry.stage import (
    GROUP,
    HOURLY_BACKFILL,
    HOURLY_FRESHNESS,
    IO_MANAGER_KEY,
    KINDS_TAGS,
    OWNERS,
    STAGE_RETRY,
    influx_storage,
    report_stage,
    writer_pool,
)
from influx_assets.influxdb import as_text
from influx_assets.telemetry.windows import Window
from influx_assets.telemetry.keys import QUARANTINED_TELEMETRY, RAW_FINGERPRINT, RAW_POINTS, VALIDATED_TELEMETRY

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_NON_FINITE = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
_DELIVERY_COLUMNS = ("gateway", "received_ns")
_TEXT_COLUMNS = ("site", "sensor_id", "kind", "gateway", "value_raw", "unit")


@dataclass(frozen=True)
class ValidationRules:
    """Tolerances of the timestamp tests."""

    future_tolerance: pd.Timedelta = pd.Timedelta(minutes=5)
    max_lateness: pd.Timedelta = pd.Timedelta(hours=24)


def with_contract_columns(raw: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``raw`` that has every contract column (absent ones all-null, typed)."""
    frame = raw.copy()
    for name in _TEXT_COLUMNS:
        if name not in frame.columns:
            frame[name] = pd.Series([None] * len(frame), dtype="str", index=frame.index)
    for name in ("value", "battery"):
        if name not in frame.columns:
            frame[name] = np.nan
        frame[name] = frame[name].astype("float64")
    if "received_ns" not in frame.columns:
        frame["received_ns"] = pd.array([pd.NA] * len(frame), dtype="Int64")
    frame["received_ns"] = frame["received_ns"].astype("Int64")
    return frame


def _blank(column: pd.Series) -> pd.Series:
    return column.isna() | (as_text(column).str.strip() == "")


def _canonical_values(numbers: pd.Series, kinds: pd.Series, units: pd.Series) -> pd.Series:
    """Numbers in their kind's canonical unit; NaN where kind/unit are not a valid pair."""
    out = pd.Series(np.nan, index=numbers.index, dtype="float64")
    for kind, spec in KINDS.items():
        for unit, convert in spec.to_canonical.items():
            rows = (kinds == kind) & (units == unit)
            if rows.any():
                out[rows] = convert(numbers[rows].to_numpy(dtype="float64"))
    return out


def assign_reasons(
    raw: pd.DataFrame, rules: ValidationRules = ValidationRules()
) -> tuple[pd.Series, pd.Series]:
    """The quarantine reason of every row (null for valid rows) and every row's numeric value.

    ``raw`` must already have the contract columns (:func:`with_contract_columns`).
    """
    reason = pd.Series([None] * len(raw), index=raw.index, dtype="object")

    def mark(code: str, rows: pd.Series) -> None:
        reason[reason.isna() & rows.fillna(False).astype(bool)] = code

    mark("missing_tag", pd.concat([_blank(raw[t]) for t in REQUIRED_TAGS], axis=1).any(axis=1))
    kind = as_text(raw["kind"]).str.strip().str.lower()
    mark("unknown_kind", ~kind.isin(list(KINDS)))

    value = raw["value"]
    text = as_text(raw["value_raw"]).str.strip()
    has_value, has_text = value.notna(), text.notna() & (text != "")
    mark("missing_value", ~has_value & ~has_text)
    from_text = ~has_value & has_text
    non_finite_text = from_text & text.str.lower().isin(_NON_FINITE)
    numeric_text = from_text & text.str.fullmatch(_NUMBER).fillna(False).astype(bool)
    mark("non_numeric_value", from_text & ~non_finite_text & ~numeric_text)
    numbers = value.copy()
    numbers[numeric_text] = text[numeric_text].astype("float64")
    # also catches text that overflows a float ("1e400")
    mark("non_finite_value", non_finite_text | ~np.isfinite(numbers.fillna(0.0)))

    unit = as_text(raw["unit"]).str.strip()
    mark("unknown_unit", ~unit.isin(list(KNOWN_UNITS)))
    valid_pair = pd.Series(False, index=raw.index)
    for name, spec in KINDS.items():
        valid_pair |= (kind == name) & unit.isin(list(spec.to_canonical))
    mark("unit_kind_mismatch", ~valid_pair)
    canonical = _canonical_values(numbers, kind, unit)
    low = kind.map({k: s.low for k, s in KINDS.items()}).astype("float64")
    high = kind.map({k: s.high for k, s in KINDS.items()}).astype("float64")
    mark("out_of_range", ~((canonical >= low) & (canonical <= high)))

    times = raw["time"].dt.tz_convert("UTC").dt.as_unit("ns").astype("int64")
    received = raw["received_ns"].astype("Int64")
    mark("future_timestamp", times > received + rules.future_tolerance.value)
    mark("stale_timestamp", times < received - rules.max_lateness.value)

    candidates = raw[reason.isna()]
    if len(candidates):
        # Int64, not float: ns since the epoch do not fit a float's 53-bit mantissa
        ordered = candidates.sort_values(["received_ns", "gateway"], kind="stable", na_position="last")
        payload = [c for c in raw.columns if c not in _DELIVERY_COLUMNS]
        mark(
            "duplicate", ordered.duplicated(subset=payload, keep="first").reindex(raw.index, fill_value=False)
        )
    return reason, numbers


def validate_window(
    raw: pd.DataFrame, rules: ValidationRules = ValidationRules()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split raw points into ``(validated, quarantined)``; see the module docstring for the rules."""
    frame = with_contract_columns(raw)
    reason, numbers = assign_reasons(frame, rules)
    valid = reason.isna()
    validated = frame[valid].assign(value=numbers[valid]).drop(columns=["value_raw"])
    quarantined = frame[~valid].assign(reason=as_text(reason[~valid]))
    return validated.reset_index(drop=True), quarantined.reset_index(drop=True)


def reason_counts(quarantined: pd.DataFrame) -> dict[str, int]:
    """Quarantined points per reason code, every code present (zero when unused)."""
    counts = quarantined["reason"].value_counts() if len(quarantined) else pd.Series(dtype="int64")
    return {code: int(counts.get(code, 0)) for code in REASON_CODES}


def record_raw_windows(context: AssetExecutionContext, raw: pd.DataFrame) -> None:
    """Give each partition of the run its own ``raw_points`` and ``raw_fingerprint``.

    What the late-data sensor compares with a fresh observation of the window. One pass over the
    frame (:func:`window_fingerprints`), attached per partition with ``add_asset_metadata`` — not as
    a dict of every window, which Dagster would copy to each partition's event (quadratic in the
    range's length).
    """
    keys = list(context.partition_keys)
    windows = [hourly_windows.time_window_for_partition_key(key) for key in keys]
    bounds = [to_epoch_ns(w.start) for w in windows] + [to_epoch_ns(windows[-1].end)]
    times = time_column_to_ns(raw["time"], "time")
    for key, (fingerprint, points) in zip(keys, window_fingerprints(raw, times, bounds), strict=True):
        context.add_asset_metadata(
            {RAW_POINTS: MetadataValue.int(points), RAW_FINGERPRINT: MetadataValue.text(fingerprint)},
            asset_key=VALIDATED_TELEMETRY, partition_key=key,
        )


class ValidationConfig(Config):
    """Run configuration of ``validated_telemetry``."""

    future_tolerance_seconds: float = Field(
        default=300.0, description="How far a timestamp may be ahead of received_ns."
    )
    max_lateness_hours: float = Field(
        default=24.0, description="How far a timestamp may be behind received_ns."
    )


@multi_asset(
    outs={
        "validated_telemetry": AssetOut(
            io_manager_key=IO_MANAGER_KEY,
            metadata=influx_storage(VALIDATED_MEASUREMENT, RAW_TAGS),
            kinds=KINDS_TAGS,
            group_name=GROUP,
            owners=OWNERS,
            freshness_policy=HOURLY_FRESHNESS,
            description="Raw points of the window that passed every validation rule.",
        ),
        "quarantined_telemetry": AssetOut(
            io_manager_key=IO_MANAGER_KEY,
            metadata=influx_storage(QUARANTINED_MEASUREMENT, [*RAW_TAGS, "reason"]),
            kinds=KINDS_TAGS,
            group_name=GROUP,
            owners=OWNERS,
            freshness_policy=HOURLY_FRESHNESS,
            description="Rejected raw points, payload as received, with a reason code tag.",
        ),
    },
    ins={"raw": AssetIn("raw_telemetry")},
    partitions_def=hourly_windows,
    retry_policy=STAGE_RETRY,
    backfill_policy=HOURLY_BACKFILL,
    pool=writer_pool("validate_telemetry"),
    required_resource_keys={"influxdb"},  # the stage's metrics point (observability.stage_metrics)
)
def validate_telemetry(context: AssetExecutionContext, config: ValidationConfig, raw: pd.DataFrame):
    """Every raw point of the window goes to exactly one of validated / quarantined."""
    started = time.perf_counter()
    rules = ValidationRules(
        future_tolerance=pd.Timedelta(seconds=config.future_tolerance_seconds),
        max_lateness=pd.Timedelta(hours=config.max_lateness_hours),
    )
    validated, quarantined = validate_window(raw, rules)
    # each partition its own raw_points and raw_fingerprint (on validated_telemetry: the late-data
    # sensor compares them with a fresh observation of the window)
    record_raw_windows(context, raw)
    yield Output(
        validated,
        output_name="validated_telemetry",
        metadata=report_stage(context, validated, raw, started, VALIDATED_TELEMETRY),
    )
    yield Output(
        quarantined,
        output_name="quarantined_telemetry",
        metadata=report_stage(
            context, quarantined, raw, started, QUARANTINED_TELEMETRY, window_facts=_reasons_of_window
        ),
    )


def _reasons_of_window(_window: Window, quarantined: pd.DataFrame, _raw: pd.DataFrame) -> dict[str, MetadataValue]:
    """The window's quarantined points per reason code."""
    return {f"quarantined_{code}": MetadataValue.int(n) for code, n in reason_counts(quarantined).items()}
