"""Names the telemetry modules share, spelled once: asset keys, and the metadata keys stages and checks exchange.

A stage reports these in its materialization metadata (:func:`influx_assets.telemetry.stage.report_stage`);
the quality gates (:mod:`.checks`, :mod:`.reconciliation`) and the late-data sensor read them back.
"""

from dagster import AssetKey

from influx_assets.telemetry.contract import (
    FEATURES_MEASUREMENT,
    FIVE_MINUTE_MEASUREMENT,
    HOURLY_MEASUREMENT,
    NORMALIZED_MEASUREMENT,
    QUARANTINED_MEASUREMENT,
    SLIDING_MEASUREMENT,
    VALIDATED_MEASUREMENT,
)

# --- asset keys (each stage's asset is named after its measurement) ------------------------------
RAW_TELEMETRY = AssetKey("raw_telemetry")
VALIDATED_TELEMETRY = AssetKey(VALIDATED_MEASUREMENT)
QUARANTINED_TELEMETRY = AssetKey(QUARANTINED_MEASUREMENT)
NORMALIZED_TELEMETRY = AssetKey(NORMALIZED_MEASUREMENT)
TELEMETRY_5M = AssetKey(FIVE_MINUTE_MEASUREMENT)
TELEMETRY_SLIDING_15M = AssetKey(SLIDING_MEASUREMENT)
TELEMETRY_1H = AssetKey(HOURLY_MEASUREMENT)
TELEMETRY_ARCHIVE = AssetKey("telemetry_archive")
SENSOR_FEATURES = AssetKey(FEATURES_MEASUREMENT)

# --- metadata keys ----------------------------------------------------------------------------------
#: content fingerprint of the frame a stage returned (the read-back check compares the stored window)
FINGERPRINT = "fingerprint"
ROWS_IN = "rows_in"
ROWS_OUT = "rows_out"
#: first and last row of the window (timestamp metadata, seconds)
EARLIEST_ROW = "earliest_row"
LATEST_ROW = "latest_row"
#: daily stages: hourly windows of the day whose input held data
HOURLY_WINDOWS_USED = "hourly_windows_used"
#: the window the IO manager wrote (set by InfluxDBIOManager)
WINDOW_START = "window_start"
WINDOW_END = "window_end"
#: per raw window, on validated_telemetry: what the stage read (the late-data sensor compares them)
RAW_FINGERPRINT = "raw_fingerprint"
#: per day, on telemetry_archive: sha256 of the day's Parquet file
SHA256 = "sha256"
RAW_POINTS = "raw_points"
#: per window, on telemetry_sliding_15m: the previous hour's telemetry_5m rows its first hops were
#: computed from (their count and content fingerprint; the lookback check compares them with what
#: telemetry_5m holds for that hour now)
LOOKBACK_ROWS = "lookback_rows"
LOOKBACK_FINGERPRINT = "lookback_fingerprint"
