"""Quality gates that reconcile one stage with another, plus the completeness warning.

* ``raw_count_reconciles`` (validated, blocking): raw points of the window = validated + quarantined.
* ``no_invented_points`` (normalized, blocking): normalized rows = distinct canonical readings of the
  validated window (duplicates collapse, nothing is added).
* ``window_completeness`` (normalized, WARN): a series has fewer points than its cadence implies.
* ``counts_match_normalized`` (telemetry_5m, blocking): 5-minute counts sum to the normalized count.
* ``counts_match_5m`` (telemetry_1h, blocking): hourly counts sum to the day's 5-minute counts.
* ``reasons_documented`` (quarantined): every reason tag is a documented code.
* ``archive_matches_source`` (telemetry_archive, blocking): the Parquet files read back are exactly
  the normalized window, byte-hashes as reported.
"""

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from influx_assets.telemetry.fingerprint import frame_fingerprint
from influx_assets.influxdb import InfluxDBResource
from influx_assets.telemetry.partitions import daily_windows, hourly_windows
from influx_assets.telemetry.archive import ColdStorage, archive_path, days_of, read_day
from influx_assets.telemetry.checks import check_window, latest_metadata, read_measurement
from influx_assets.telemetry.contract import (
    FIVE_MINUTE_MEASUREMENT,
    HOURLY_MEASUREMENT,
    NORMALIZED_MEASUREMENT,
    QUARANTINED_MEASUREMENT,
    RAW_MEASUREMENT,
    REASON_CODES,
    SERIES_TAGS,
    VALIDATED_MEASUREMENT,
)
from influx_assets.telemetry.normalize import canonical_tag
from influx_assets.telemetry.stage import STAGE_RETRY
from influx_assets.influxdb import as_text
from influx_assets.telemetry.keys import NORMALIZED_TELEMETRY, QUARANTINED_TELEMETRY, RAW_POINTS, TELEMETRY_1H, TELEMETRY_5M, TELEMETRY_ARCHIVE, VALIDATED_TELEMETRY

#: A series is complete when it has at least this share of the points its cadence implies.
MIN_COMPLETENESS = 0.9


def series_completeness(points: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Per series: points, cadence (median spacing, s), expected points and their ratio.

    Series with fewer than two points have no cadence and are left out.
    """
    rows = []
    if not points.empty:
        seconds = (end - start).total_seconds()
        for series, group in points.sort_values("time").groupby(list(SERIES_TAGS), sort=True):
            stamps = group["time"].dt.as_unit("ns").astype("int64").to_numpy()
            if len(stamps) < 2 or np.median(np.diff(stamps)) <= 0:
                continue
            cadence = float(np.median(np.diff(stamps))) / 1e9
            expected = seconds / cadence
            rows.append((*series, len(stamps), cadence, expected, len(stamps) / expected))
    return pd.DataFrame(rows, columns=[*SERIES_TAGS, "points", "cadence_s", "expected", "ratio"])


def _count(frame: pd.DataFrame, column: str = "count") -> int:
    return int(frame[column].sum()) if column in frame.columns and len(frame) else 0


@asset_check(
    asset=VALIDATED_TELEMETRY,
    blocking=True,
    partitions_def=hourly_windows,
    retry_policy=STAGE_RETRY,
    description="Raw points of the window = validated + quarantined points.",
)
def raw_count_reconciles(context: AssetCheckExecutionContext, influxdb: InfluxDBResource) -> AssetCheckResult:
    start, end = check_window(context)
    raw = len(read_measurement(influxdb, RAW_MEASUREMENT, start, end, context.instance))
    validated = len(read_measurement(influxdb, VALIDATED_MEASUREMENT, start, end, context.instance))
    quarantined = len(read_measurement(influxdb, QUARANTINED_MEASUREMENT, start, end, context.instance))
    return AssetCheckResult(
        passed=raw == validated + quarantined,
        metadata={
            RAW_POINTS: MetadataValue.int(raw),
            "validated": MetadataValue.int(validated),
            "quarantined": MetadataValue.int(quarantined),
            "unaccounted": MetadataValue.int(raw - validated - quarantined),
        },
    )


@asset_check(
    asset=QUARANTINED_TELEMETRY,
    partitions_def=hourly_windows,
    retry_policy=STAGE_RETRY,
    description="Every quarantined point carries a documented reason code.",
)
def reasons_documented(context: AssetCheckExecutionContext, influxdb: InfluxDBResource) -> AssetCheckResult:
    stored = read_measurement(influxdb, QUARANTINED_MEASUREMENT, *check_window(context), context.instance)
    reasons = stored["reason"] if "reason" in stored.columns else pd.Series([], dtype="str")
    unknown = sorted(set(reasons.fillna("<none>")) - set(REASON_CODES))
    return AssetCheckResult(
        passed=not unknown,
        metadata={
            "quarantined": MetadataValue.int(len(stored)),
            "unknown_reasons": MetadataValue.json(unknown),
        },
    )


@asset_check(
    asset=NORMALIZED_TELEMETRY,
    blocking=True,
    partitions_def=hourly_windows,
    retry_policy=STAGE_RETRY,
    description="Normalized rows = distinct canonical (site, sensor_id, kind, time) of validated points.",
)
def no_invented_points(context: AssetCheckExecutionContext, influxdb: InfluxDBResource) -> AssetCheckResult:
    start, end = check_window(context)
    validated = read_measurement(influxdb, VALIDATED_MEASUREMENT, start, end, context.instance)
    normalized = read_measurement(influxdb, NORMALIZED_MEASUREMENT, start, end, context.instance)
    readings = 0
    if len(validated):
        keys = pd.DataFrame(
            {
                "time": validated["time"],
                "site": canonical_tag(validated["site"]),
                "sensor_id": canonical_tag(validated["sensor_id"]),
                "kind": as_text(validated["kind"]).str.strip().str.lower(),
            }
        )
        readings = len(keys.drop_duplicates())
    return AssetCheckResult(
        passed=len(normalized) == readings,
        metadata={
            "validated": MetadataValue.int(len(validated)),
            "distinct_readings": MetadataValue.int(readings),
            "normalized": MetadataValue.int(len(normalized)),
        },
    )


@asset_check(
    asset=NORMALIZED_TELEMETRY,
    partitions_def=hourly_windows,
    retry_policy=STAGE_RETRY,
    description=f"Warns when a series has under {MIN_COMPLETENESS:.0%} of the points its cadence implies.",
)
def window_completeness(context: AssetCheckExecutionContext, influxdb: InfluxDBResource) -> AssetCheckResult:
    start, end = check_window(context)
    stats = series_completeness(read_measurement(influxdb, NORMALIZED_MEASUREMENT, start, end, context.instance), start, end)
    incomplete = stats[stats["ratio"] < MIN_COMPLETENESS]
    return AssetCheckResult(
        passed=incomplete.empty,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "series": MetadataValue.int(len(stats)),
            "incomplete_series": MetadataValue.int(len(incomplete)),
            "lowest_completeness": MetadataValue.float(float(stats["ratio"].min()) if len(stats) else 1.0),
            "points_missing": MetadataValue.int(
                int(np.ceil((incomplete["expected"] - incomplete["points"]).sum()))
            ),
            "incomplete": MetadataValue.json(incomplete.head(20).to_dict("records")),
        },
    )


@asset_check(
    asset=TELEMETRY_5M,
    blocking=True,
    partitions_def=hourly_windows,
    retry_policy=STAGE_RETRY,
    description="5-minute counts of the window sum to its normalized point count.",
)
def counts_match_normalized(
    context: AssetCheckExecutionContext, influxdb: InfluxDBResource
) -> AssetCheckResult:
    start, end = check_window(context)
    aggregated = _count(read_measurement(influxdb, FIVE_MINUTE_MEASUREMENT, start, end, context.instance))
    normalized = len(read_measurement(influxdb, NORMALIZED_MEASUREMENT, start, end, context.instance))
    return AssetCheckResult(
        passed=aggregated == normalized,
        metadata={
            "sum_of_counts": MetadataValue.int(aggregated),
            "normalized": MetadataValue.int(normalized),
        },
    )


@asset_check(
    asset=TELEMETRY_1H,
    blocking=True,
    partitions_def=daily_windows,
    retry_policy=STAGE_RETRY,
    description="Hourly counts of the day sum to the day's 5-minute counts.",
)
def counts_match_5m(context: AssetCheckExecutionContext, influxdb: InfluxDBResource) -> AssetCheckResult:
    start, end = check_window(context)
    hourly = _count(read_measurement(influxdb, HOURLY_MEASUREMENT, start, end, context.instance))
    five_minute = _count(read_measurement(influxdb, FIVE_MINUTE_MEASUREMENT, start, end, context.instance))
    return AssetCheckResult(
        passed=hourly == five_minute,
        metadata={
            "sum_of_hourly_counts": MetadataValue.int(hourly),
            "sum_of_5m_counts": MetadataValue.int(five_minute),
        },
    )


@asset_check(
    asset=TELEMETRY_ARCHIVE,
    blocking=True,
    partitions_def=daily_windows,
    retry_policy=STAGE_RETRY,
    description="The archived Parquet files read back are exactly the normalized window.",
)
def archive_matches_source(
    context: AssetCheckExecutionContext, influxdb: InfluxDBResource, cold_storage: ColdStorage
) -> AssetCheckResult:
    start, end = check_window(context)
    filesystem, base = cold_storage.location()
    metadata = latest_metadata(context, TELEMETRY_ARCHIVE) or {}
    reported = metadata["sha256_by_day"].value if "sha256_by_day" in metadata else {}
    frames, hashes_match = [], True
    for day in days_of(start, end):
        try:
            frame, digest = read_day(filesystem, archive_path(base, day))
        except FileNotFoundError:
            return AssetCheckResult(passed=False, description=f"{archive_path(base, day)} does not exist")
        frames.append(frame)
        hashes_match &= reported.get(f"{day:%Y-%m-%d}") == digest
    archived = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    source = read_measurement(influxdb, NORMALIZED_MEASUREMENT, start, end, context.instance)
    same = frame_fingerprint(archived) == frame_fingerprint(source)
    return AssetCheckResult(
        passed=same and hashes_match,
        metadata={
            "archived_rows": MetadataValue.int(len(archived)),
            "source_rows": MetadataValue.int(len(source)),
            "content_matches": MetadataValue.bool(same),
            "sha256_matches": MetadataValue.bool(bool(hashes_match)),
        },
    )
