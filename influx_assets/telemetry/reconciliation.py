"""Quality gates that reconcile one stage with another, plus the completeness warning.

* ``raw_count_reconciles`` (validated, blocking): raw points validation read for the window = validated +
  quarantined points stored.
* ``no_invented_points`` (normalized, blocking): normalized rows = distinct canonical readings of the
  validated window (duplicates collapse, nothing is added).
* ``window_completeness`` (normalized, WARN): a series has fewer points than its cadence implies.
* ``counts_match_normalized`` (telemetry_5m, blocking): 5-minute counts sum to the normalized count.
* ``counts_match_5m`` (telemetry_1h, blocking): hourly counts sum to the day's 5-minute counts.
* ``reasons_documented`` (quarantined): every reason tag is a documented code.
* ``archive_matches_source`` (telemetry_archive, blocking): the Parquet files read back are exactly
  the normalized window, byte-hashes as reported.
* ``built_from_every_hour`` (each daily stage, WARN): every hourly window of its upstream was
  materialized when the day was built.

Each gives one result per window of its run (:func:`influx_assets.telemetry.checks.window_results`),
with a one-sentence description of what it found.
"""

from collections.abc import Iterator

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetChecksDefinition,
    AssetKey,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from influx_assets.telemetry.fingerprint import chunked_fingerprint
from influx_assets.influxdb import InfluxDBResource
from influx_assets.telemetry.partitions import daily_windows, hourly_windows
from influx_assets.telemetry.archive import ColdStorage, archive_path, day_chunks
from influx_assets.telemetry.checks import (
    CheckOutput,
    check_windows,
    each_window,
    metadata_of,
    missing_materialization,
    read_measurement,
    read_windows,
    window_materializations,
)
from influx_assets.telemetry.contract import (
    FIVE_MINUTE_MEASUREMENT,
    HOURLY_MEASUREMENT,
    NORMALIZED_MEASUREMENT,
    QUARANTINED_MEASUREMENT,
    REASON_CODES,
    SERIES_TAGS,
    VALIDATED_MEASUREMENT,
)
from influx_assets.telemetry.normalize import canonical_tag
from influx_assets.telemetry.stage import STAGE_RETRY
from influx_assets.influxdb import as_text
from influx_assets.telemetry.windows import Window
from influx_assets.telemetry.keys import SHA256, NORMALIZED_TELEMETRY, QUARANTINED_TELEMETRY, RAW_POINTS, TELEMETRY_1H, TELEMETRY_5M, TELEMETRY_ARCHIVE, VALIDATED_TELEMETRY

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
    description="Raw points validation read for the window (its raw_points) = validated + quarantined points "
    "stored: validation drops nothing silently.",
)
def raw_count_reconciles(context: AssetCheckExecutionContext, influxdb: InfluxDBResource) -> CheckOutput:
    """Raw points of each window, as the stage counted them when it read them, against what is stored.

    The raw count is the ``raw_points`` the validation run recorded for the window (counted in the frame
    it validated), not a second read of ``sensor_raw``: the check is about what validation did with
    its input, and raw points that arrive later are the late-data sensor's (which re-runs the window).
    Validated and quarantined points are what the server holds now.
    """
    windows = check_windows(context)
    materialized = window_materializations(context, VALIDATED_TELEMETRY, windows)
    validated, quarantined = (
        read_windows(influxdb, m, windows, context.instance) for m in (VALIDATED_MEASUREMENT, QUARANTINED_MEASUREMENT)
    )

    def verdict(window: Window) -> AssetCheckResult:
        metadata = metadata_of(materialized.get(window.key))
        if metadata is None or RAW_POINTS not in metadata:
            return missing_materialization(VALIDATED_TELEMETRY, window)
        counts = int(metadata[RAW_POINTS].value), len(validated[window.key]), len(quarantined[window.key])
        unaccounted = counts[0] - counts[1] - counts[2]
        return AssetCheckResult(
            passed=unaccounted == 0,
            description=f"{counts[0]} raw = {counts[1]} validated + {counts[2]} quarantined"
            + ("." if unaccounted == 0 else f" + {unaccounted} unaccounted."),
            metadata={
                RAW_POINTS: MetadataValue.int(counts[0]),
                "validated": MetadataValue.int(counts[1]),
                "quarantined": MetadataValue.int(counts[2]),
                "unaccounted": MetadataValue.int(unaccounted),
            },
        )

    yield from each_window(context, verdict, materialized)


@asset_check(
    asset=QUARANTINED_TELEMETRY,
    partitions_def=hourly_windows,
    retry_policy=STAGE_RETRY,
    description="Every quarantined point of the window carries a documented reason code.",
)
def reasons_documented(context: AssetCheckExecutionContext, influxdb: InfluxDBResource) -> CheckOutput:
    stored = read_windows(influxdb, QUARANTINED_MEASUREMENT, check_windows(context), context.instance)

    def verdict(window: Window) -> AssetCheckResult:
        rows = stored[window.key]
        reasons = rows["reason"] if "reason" in rows.columns else pd.Series([], dtype="str")
        unknown = sorted(set(reasons.fillna("<none>")) - set(REASON_CODES))
        return AssetCheckResult(
            passed=not unknown,
            description=f"{len(rows)} quarantined points, "
            + ("every reason documented." if not unknown else f"undocumented reasons: {', '.join(unknown)}."),
            metadata={"quarantined": MetadataValue.int(len(rows)), "unknown_reasons": MetadataValue.json(unknown)},
        )

    yield from each_window(context, verdict)


@asset_check(
    asset=NORMALIZED_TELEMETRY,
    blocking=True,
    partitions_def=hourly_windows,
    retry_policy=STAGE_RETRY,
    description="Normalized rows = distinct canonical (site, sensor_id, kind, time) of validated points: "
    "duplicates collapse, nothing is invented.",
)
def no_invented_points(context: AssetCheckExecutionContext, influxdb: InfluxDBResource) -> CheckOutput:
    windows = check_windows(context)
    validated = read_windows(influxdb, VALIDATED_MEASUREMENT, windows, context.instance)
    normalized = read_windows(influxdb, NORMALIZED_MEASUREMENT, windows, context.instance)

    def verdict(window: Window) -> AssetCheckResult:
        points, stored = validated[window.key], len(normalized[window.key])
        readings = 0
        if len(points):
            keys = pd.DataFrame(
                {
                    "time": points["time"],
                    "site": canonical_tag(points["site"]),
                    "sensor_id": canonical_tag(points["sensor_id"]),
                    "kind": as_text(points["kind"]).str.strip().str.lower(),
                }
            )
            readings = len(keys.drop_duplicates())
        return AssetCheckResult(
            passed=stored == readings,
            description=f"{stored} normalized rows for {readings} distinct readings of {len(points)} validated points.",
            metadata={
                "validated": MetadataValue.int(len(points)),
                "distinct_readings": MetadataValue.int(readings),
                "normalized": MetadataValue.int(stored),
            },
        )

    yield from each_window(context, verdict)


def _incomplete_table(incomplete: pd.DataFrame, limit: int = 20) -> MetadataValue:
    """The least complete series as a Markdown table (at most ``limit`` rows)."""
    if incomplete.empty:
        return MetadataValue.md("*every series complete*")
    lines = ["| site | sensor_id | kind | points | expected | completeness |", "|---|---|---|---|---|---|"]
    for row in incomplete.sort_values("ratio").head(limit).itertuples(index=False):
        lines.append(
            f"| {row.site} | {row.sensor_id} | {row.kind} | {row.points} | {row.expected:.0f} | {row.ratio:.0%} |"
        )
    return MetadataValue.md("\n".join(lines))


@asset_check(
    asset=NORMALIZED_TELEMETRY,
    partitions_def=hourly_windows,
    retry_policy=STAGE_RETRY,
    description=(
        f"WARN (never blocks): a series of the window has under {MIN_COMPLETENESS:.0%} of the points its "
        "cadence implies — a sensor or gateway went quiet, or data is still arriving late."
    ),
)
def window_completeness(context: AssetCheckExecutionContext, influxdb: InfluxDBResource) -> CheckOutput:
    stored = read_windows(influxdb, NORMALIZED_MEASUREMENT, check_windows(context), context.instance)

    def verdict(window: Window) -> AssetCheckResult:
        stats = series_completeness(stored[window.key], window.start, window.end)
        incomplete = stats[stats["ratio"] < MIN_COMPLETENESS]
        lowest = float(stats["ratio"].min()) if len(stats) else 1.0
        return AssetCheckResult(
            passed=incomplete.empty,
            severity=AssetCheckSeverity.WARN,
            description=(
                f"all {len(stats)} series complete (lowest {lowest:.0%})."
                if incomplete.empty
                else f"{len(incomplete)} of {len(stats)} series under {MIN_COMPLETENESS:.0%} of their cadence "
                f"(lowest {lowest:.0%}); see the table."
            ),
            metadata={
                "series": MetadataValue.int(len(stats)),
                "incomplete_series": MetadataValue.int(len(incomplete)),
                "lowest_completeness": MetadataValue.float(round(lowest, 4)),
                "points_missing": MetadataValue.int(
                    int(np.ceil((incomplete["expected"] - incomplete["points"]).sum()))
                ),
                "incomplete": _incomplete_table(incomplete),
            },
        )

    yield from each_window(context, verdict)


@asset_check(
    asset=TELEMETRY_5M,
    blocking=True,
    partitions_def=hourly_windows,
    retry_policy=STAGE_RETRY,
    description="5-minute counts of the window sum to its normalized point count: every point aggregated once.",
)
def counts_match_normalized(context: AssetCheckExecutionContext, influxdb: InfluxDBResource) -> CheckOutput:
    windows = check_windows(context)
    aggregated = read_windows(influxdb, FIVE_MINUTE_MEASUREMENT, windows, context.instance)
    normalized = read_windows(influxdb, NORMALIZED_MEASUREMENT, windows, context.instance)

    def verdict(window: Window) -> AssetCheckResult:
        total, points = _count(aggregated[window.key]), len(normalized[window.key])
        return AssetCheckResult(
            passed=total == points,
            description=f"5-minute counts sum to {total}; {points} normalized points.",
            metadata={"sum_of_counts": MetadataValue.int(total), "normalized": MetadataValue.int(points)},
        )

    yield from each_window(context, verdict)


@asset_check(
    asset=TELEMETRY_1H,
    blocking=True,
    partitions_def=daily_windows,
    retry_policy=STAGE_RETRY,
    description="Hourly counts of the day sum to the day's 5-minute counts: the downsample loses nothing.",
)
def counts_match_5m(context: AssetCheckExecutionContext, influxdb: InfluxDBResource) -> CheckOutput:
    windows = check_windows(context)
    hourly = read_windows(influxdb, HOURLY_MEASUREMENT, windows, context.instance)
    five_minute = read_windows(influxdb, FIVE_MINUTE_MEASUREMENT, windows, context.instance)

    def verdict(window: Window) -> AssetCheckResult:
        day, parts = _count(hourly[window.key]), _count(five_minute[window.key])
        return AssetCheckResult(
            passed=day == parts,
            description=f"hourly counts sum to {day}; 5-minute counts to {parts}.",
            metadata={"sum_of_hourly_counts": MetadataValue.int(day), "sum_of_5m_counts": MetadataValue.int(parts)},
        )

    yield from each_window(context, verdict)


def hourly_inputs_check(asset_key: AssetKey, upstream: AssetKey) -> AssetChecksDefinition:
    """WARN: how many of the day's hourly windows of ``upstream`` were materialized when the day was built."""

    @asset_check(
        asset=asset_key,
        name="built_from_every_hour",
        partitions_def=daily_windows,
        retry_policy=STAGE_RETRY,
        description=(
            f"WARN (never blocks): the day was built while some hourly windows of {upstream.to_user_string()} "
            "were never materialized — re-run the day once they are."
        ),
    )
    def _every_hour(context: AssetCheckExecutionContext) -> CheckOutput:
        done = context.instance.get_materialized_partitions(upstream)

        def verdict(window: Window) -> AssetCheckResult:
            hours = [
                hour.strftime(hourly_windows.fmt)
                for hour in pd.date_range(window.start, window.end, freq="1h", inclusive="left")
            ]
            missing = [h for h in hours if h not in done]
            return AssetCheckResult(
                passed=not missing,
                severity=AssetCheckSeverity.WARN,
                description=f"built from {len(hours) - len(missing)} of {len(hours)} hourly windows of "
                f"{upstream.to_user_string()}" + (f"; missing {_spans(missing)}." if missing else "."),
                metadata={
                    "hourly_windows_materialized": MetadataValue.int(len(hours) - len(missing)),
                    "hourly_windows_expected": MetadataValue.int(len(hours)),
                },
            )

        yield from each_window(context, verdict)

    return _every_hour


def _spans(keys: list[str]) -> str:
    """``first…last`` of a sorted list of hourly keys (or the single key)."""
    return keys[0] if len(keys) == 1 else f"{keys[0]} … {keys[-1]} ({len(keys)} hours)"


@asset_check(
    asset=TELEMETRY_ARCHIVE,
    blocking=True,
    partitions_def=daily_windows,
    retry_policy=STAGE_RETRY,
    description="The archived Parquet file of the day reads back as exactly the normalized day, sha256 as reported.",
)
def archive_matches_source(
    context: AssetCheckExecutionContext, influxdb: InfluxDBResource, cold_storage: ColdStorage
) -> CheckOutput:
    windows = check_windows(context)
    filesystem, base = cold_storage.location()
    materialized = window_materializations(context, TELEMETRY_ARCHIVE, windows)

    def source_hours(window: Window) -> Iterator[pd.DataFrame]:
        # hour by hour: a day of a big fleet does not fit in memory twice (it is read from the cache
        # where the hourly runs left it there)
        for hour in pd.date_range(window.start, window.end, freq="1h", inclusive="left"):
            yield read_measurement(influxdb, NORMALIZED_MEASUREMENT, hour, hour + pd.Timedelta(hours=1), context.instance)

    def verdict(window: Window) -> AssetCheckResult:
        path = archive_path(base, window.start)
        try:
            chunks, digest = day_chunks(filesystem, path)
        except FileNotFoundError:
            return AssetCheckResult(passed=False, description=f"{path} does not exist")
        reported = (metadata_of(materialized.get(window.key)) or {}).get(SHA256)
        hash_matches = reported is not None and reported.value == digest
        (archived, archived_rows), (source, source_rows) = chunked_fingerprint(chunks), chunked_fingerprint(source_hours(window))
        same = archived == source
        return AssetCheckResult(
            passed=same and hash_matches,
            description=f"{archived_rows} archived rows, {source_rows} in the source: "
            + ("identical content" if same else "content differs")
            + (", sha256 as reported." if hash_matches else ", sha256 not as reported."),
            metadata={
                "archived_rows": MetadataValue.int(archived_rows),
                "source_rows": MetadataValue.int(source_rows),
                "content_matches": MetadataValue.bool(same),
                "sha256_matches": MetadataValue.bool(bool(hash_matches)),
            },
        )

    yield from each_window(context, verdict, materialized)
