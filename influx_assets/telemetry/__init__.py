"""The telemetry pipeline: every stage a time-partitioned asset stored in InfluxDB, gated by checks.

```
raw_telemetry (external sensor_raw, observed per hourly window)
  └► validated_telemetry + quarantined_telemetry (hourly)
       └► normalized_telemetry (hourly) ─┬► telemetry_5m (hourly) ─┬► telemetry_sliding_15m (hourly,
                                         │                         │   reads the previous hour too)
                                         │                         └► telemetry_1h (daily)
                                         ├► telemetry_archive (daily, Parquet)
                                         └► sensor_features (daily)
```
"""

from influx_assets.telemetry.partitions import daily_windows, hourly_windows
from influx_assets.telemetry.aggregate import AGGREGATE_FIELDS, telemetry_5m
from influx_assets.telemetry.archive import ColdStorage, telemetry_archive
from influx_assets.telemetry.checks import inside_window_check, no_nan_check, readback_check
from influx_assets.telemetry.contract import (
    FEATURES_MEASUREMENT,
    FIVE_MINUTE_MEASUREMENT,
    HOURLY_MEASUREMENT,
    NORMALIZED_MEASUREMENT,
    QUARANTINED_MEASUREMENT,
    REASON_CODES,
    REASONS,
    SLIDING_MEASUREMENT,
    VALIDATED_MEASUREMENT,
)
from influx_assets.telemetry.downsample import telemetry_1h
from influx_assets.telemetry.keys import NORMALIZED_TELEMETRY, SENSOR_FEATURES, TELEMETRY_1H, TELEMETRY_5M, TELEMETRY_ARCHIVE
from influx_assets.telemetry.features import FEATURE_FIELDS, sensor_features
from influx_assets.telemetry.lookback import lookback_is_current
from influx_assets.telemetry.normalize import normalized_telemetry
from influx_assets.telemetry.raw import raw_telemetry
from influx_assets.telemetry.reconciliation import (
    archive_matches_source,
    counts_match_5m,
    counts_match_normalized,
    hourly_inputs_check,
    no_invented_points,
    raw_count_reconciles,
    reasons_documented,
    window_completeness,
)
from influx_assets.telemetry.sliding import SLIDING_FIELDS, telemetry_sliding_15m
from influx_assets.telemetry.validate import validate_telemetry

#: Hourly stages (run per hourly partition) and daily stages (run per day), in dependency order.
hourly_assets = [validate_telemetry, normalized_telemetry, telemetry_5m, telemetry_sliding_15m]
daily_assets = [telemetry_1h, telemetry_archive, sensor_features]
pipeline_assets = [raw_telemetry, *hourly_assets, *daily_assets]

_STORED = [
    ("validated_telemetry", VALIDATED_MEASUREMENT, hourly_windows, ()),
    ("quarantined_telemetry", QUARANTINED_MEASUREMENT, hourly_windows, ()),
    ("normalized_telemetry", NORMALIZED_MEASUREMENT, hourly_windows, ()),
    ("telemetry_5m", FIVE_MINUTE_MEASUREMENT, hourly_windows, AGGREGATE_FIELDS),
    ("telemetry_sliding_15m", SLIDING_MEASUREMENT, hourly_windows, SLIDING_FIELDS),
    ("telemetry_1h", HOURLY_MEASUREMENT, daily_windows, AGGREGATE_FIELDS),
    ("sensor_features", FEATURES_MEASUREMENT, daily_windows, FEATURE_FIELDS),
]

pipeline_checks = [
    *(readback_check(key, measurement, partitions) for key, measurement, partitions, _ in _STORED),
    *(inside_window_check(key, partitions) for key, _, partitions, _ in _STORED),
    *(no_nan_check(key, m, fields, partitions) for key, m, partitions, fields in _STORED if fields),
    raw_count_reconciles,
    reasons_documented,
    no_invented_points,
    window_completeness,
    counts_match_normalized,
    counts_match_5m,
    archive_matches_source,
    lookback_is_current,
    hourly_inputs_check(TELEMETRY_1H, TELEMETRY_5M),
    hourly_inputs_check(TELEMETRY_ARCHIVE, NORMALIZED_TELEMETRY),
    hourly_inputs_check(SENSOR_FEATURES, NORMALIZED_TELEMETRY),
]

__all__ = [
    "REASONS",
    "REASON_CODES",
    "ColdStorage",
    "daily_assets",
    "hourly_assets",
    "pipeline_assets",
    "pipeline_checks",
]
