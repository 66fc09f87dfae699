"""Normalization: canonical units and tag spelling, deterministic duplicate collapse, no invented points."""

import numpy as np
import pandas as pd
import pytest

from influx_assets.telemetry.normalize import normalize_window
from influx_assets.telemetry.reconciliation import series_completeness
from influx_assets.influxdb.client.pandas_versions import as_text

T0 = pd.Timestamp("2025-03-01T10:00:00Z")


def validated(rows: list[dict]) -> pd.DataFrame:
    base = {
        "site": "site-01",
        "sensor_id": "s-1",
        "kind": "temperature",
        "gateway": "gw-a",
        "unit": "C",
        "battery": np.nan,
        "received_ns": T0.value,
    }
    rows = [{**base, **row} for row in rows]
    frame = pd.DataFrame(rows)
    # built from the Python ints: through float64 (pandas' default for a column with None) ns lose precision
    frame["received_ns"] = pd.array([row["received_ns"] for row in rows], dtype="Int64")
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    for column in ("site", "sensor_id", "kind", "gateway", "unit"):
        frame[column] = as_text(frame[column])
    return frame.astype({"value": "float64", "battery": "float64", "received_ns": "Int64"})


@pytest.mark.parametrize(
    "kind, unit, value, expected, canonical_unit",
    [
        ("temperature", "F", 212.0, 100.0, "C"),
        ("temperature", "F", 32.0, 0.0, "C"),
        ("temperature", "K", 273.15, 0.0, "C"),
        ("temperature", "C", -12.5, -12.5, "C"),
        ("humidity", "%", 45.5, 45.5, "%"),
        ("pressure", "kPa", 101.325, 1013.25, "hPa"),
        ("pressure", "hPa", 1013.0, 1013.0, "hPa"),
        ("voltage", "mV", 3300.0, 3.3, "V"),
        ("voltage", "V", 230.0, 230.0, "V"),
    ],
)
def test_values_are_converted_to_the_canonical_unit(kind, unit, value, expected, canonical_unit):
    result = normalize_window(validated([{"time": T0, "kind": kind, "unit": unit, "value": value}]))
    assert result["value"].iloc[0] == pytest.approx(expected, abs=1e-9)
    assert result["unit"].iloc[0] == canonical_unit


def test_tags_get_their_canonical_spelling_and_odd_characters_stay():
    rows = [
        {
            "time": T0,
            "site": " Zu\u0308rich Lab ",
            "sensor_id": "capteur-1-e\u0301",
            "kind": " TEMPERATURE",
            "value": 1.0,
        },
        {
            "time": T0,
            "site": 'Hall "B", Floor 2',
            "sensor_id": "sensor,0002",
            "kind": "Humidity",
            "unit": "%",
            "value": 2.0,
        },
    ]
    result = normalize_window(validated(rows)).sort_values("value")
    assert result["site"].tolist() == ["Zürich Lab", 'Hall "B", Floor 2']
    assert result["sensor_id"].tolist() == ["capteur-1-é", "sensor,0002"]
    assert result["kind"].tolist() == ["temperature", "humidity"]
    assert "gateway" not in result.columns


def test_the_last_received_reading_wins_whatever_the_input_order():
    rows = [
        {"time": T0, "gateway": "gw-a", "received_ns": T0.value + 1, "value": 20.0},
        {"time": T0, "gateway": "gw-b", "received_ns": T0.value + 3, "value": 20.4},  # corrected, last
        {"time": T0, "gateway": "gw-c", "received_ns": T0.value + 2, "value": 20.2},
        {
            "time": T0,
            "sensor_id": " s-1",
            "gateway": "gw-d",
            "received_ns": None,
            "value": 19.0,
        },  # same reading
        {"time": T0 + pd.Timedelta(seconds=60), "value": 21.0},
    ]
    frame = validated(rows)
    for seed in range(5):
        shuffled = frame.sample(frac=1.0, random_state=seed)
        result = normalize_window(shuffled)
        assert result["value"].tolist() == [20.4, 21.0]


def test_same_instant_in_different_units_collapses_to_one_point():
    rows = [
        {"time": T0, "unit": "C", "value": 20.0, "received_ns": T0.value + 1},
        {"time": T0, "unit": "F", "value": 68.0, "gateway": "gw-b", "received_ns": T0.value + 2},
    ]
    result = normalize_window(validated(rows))
    assert len(result) == 1 and result["value"].iloc[0] == pytest.approx(20.0)


def test_no_point_is_invented():
    rows = [
        {"time": T0 + pd.Timedelta(seconds=i), "sensor_id": f"s-{i % 3}", "value": float(i)}
        for i in range(30)
    ]
    frame = validated(rows)
    result = normalize_window(frame)
    assert len(result) == len(frame)
    assert sorted(result["value"]) == sorted(frame["value"])


def test_an_empty_window_normalizes_to_an_empty_frame_with_columns():
    result = normalize_window(validated([{"time": T0, "value": 1.0}]).iloc[:0])
    assert result.empty
    assert list(result.columns) == ["time", "site", "sensor_id", "kind", "value", "unit", "battery"]


def test_completeness_counts_series_below_ninety_percent_of_their_cadence():
    minute = pd.Timedelta(seconds=60)
    full = [{"time": T0 + minute * i, "sensor_id": "full", "value": 1.0} for i in range(60)]
    thin = [
        {"time": T0 + minute * i, "sensor_id": "thin", "value": 1.0} for i in range(60) if not 10 <= i < 20
    ]
    single = [{"time": T0, "sensor_id": "single", "value": 1.0}]
    points = normalize_window(validated(full + thin + single))
    stats = series_completeness(points, T0, T0 + pd.Timedelta(hours=1)).set_index("sensor_id")
    assert stats.loc["full", "ratio"] == pytest.approx(1.0)
    assert stats.loc["thin", "ratio"] == pytest.approx(50 / 60)
    assert "single" not in stats.index  # no cadence from one point
