"""Aggregations: 5-minute windows, the 15-minute sliding mean, the hourly downsample, daily features.

Each is compared with a direct computation from the points, written independently here.
"""

import numpy as np
import pandas as pd
import pytest

from influx_assets.telemetry.aggregate import aggregate_5m
from influx_assets.telemetry.downsample import downsample_1h
from influx_assets.telemetry.features import features_by_sensor
from influx_assets.telemetry.sliding import sliding_15m
from influx_assets.influxdb.client.pandas_versions import as_text

H0 = pd.Timestamp("2025-03-01T10:00:00Z")
SERIES = ["site", "sensor_id", "kind"]


def points(seed: int = 1, hours: int = 2, sensors: int = 3) -> pd.DataFrame:
    """Irregular points (uneven counts per window) for a few sensors."""
    rng = np.random.default_rng(seed)
    rows = []
    for sensor in range(sensors):
        seconds = np.sort(rng.choice(hours * 3600, size=150 * hours, replace=False))
        for second, value in zip(seconds, rng.normal(20, 3, len(seconds)).round(3), strict=True):
            rows.append(
                {
                    "time": H0 + pd.Timedelta(seconds=int(second)),
                    "site": "a b,c",
                    "sensor_id": f"s{sensor}",
                    "kind": "temperature",
                    "value": float(value),
                }
            )
    frame = pd.DataFrame(rows)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame.assign(**{c: as_text(frame[c]) for c in SERIES})


def direct(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Mean/min/max/count/first/last per series of the points in ``[start, end)``."""
    inside = frame[(frame["time"] >= start) & (frame["time"] < end)].sort_values("time")
    return inside.groupby("sensor_id")["value"].agg(["mean", "min", "max", "count", "first", "last"])


def test_five_minute_windows_match_a_direct_computation():
    frame = points()
    result = aggregate_5m(frame.sample(frac=1.0, random_state=3))
    assert result["time"].dt.minute.isin(range(0, 60, 5)).all()
    assert int(result["count"].sum()) == len(frame)
    for _, row in result.sample(20, random_state=1).iterrows():
        expected = direct(frame, row["time"], row["time"] + pd.Timedelta(minutes=5)).loc[row["sensor_id"]]
        assert row["count"] == expected["count"]
        assert (
            row[["min", "max", "first", "last"]].tolist()
            == expected[["min", "max", "first", "last"]].tolist()
        )
        assert row["mean"] == pytest.approx(expected["mean"], rel=1e-12)


def test_sliding_mean_covers_fifteen_minutes_and_uses_the_previous_hour():
    frame = points()
    hour = H0 + pd.Timedelta(hours=1)
    five_minute = aggregate_5m(frame)  # both hours: what the lookback mapping loads
    result = sliding_15m(five_minute, hour, hour + pd.Timedelta(hours=1))
    assert result["time"].min() == hour and result["time"].max() == hour + pd.Timedelta(minutes=55)
    for _, row in result.iterrows():
        expected = direct(
            frame, row["time"] - pd.Timedelta(minutes=10), row["time"] + pd.Timedelta(minutes=5)
        )
        assert row["count"] == expected.loc[row["sensor_id"], "count"]
        assert row["mean"] == pytest.approx(expected.loc[row["sensor_id"], "mean"], rel=1e-12)
    first_hop = result[result["time"] == hour]
    assert (first_hop["windows"] == 3).all()  # two of them from the previous hour


def test_sliding_without_the_previous_hour_only_counts_this_hour():
    frame = points()
    hour = H0 + pd.Timedelta(hours=1)
    this_hour_only = aggregate_5m(frame[frame["time"] >= hour])
    result = sliding_15m(this_hour_only, hour, hour + pd.Timedelta(hours=1))
    first_hop = result[result["time"] == hour].set_index("sensor_id")
    expected = direct(frame, hour, hour + pd.Timedelta(minutes=5))
    assert first_hop["count"].to_dict() == expected["count"].to_dict()


def test_hourly_downsample_from_five_minute_aggregates_equals_the_points():
    frame = points(hours=3)
    result = downsample_1h(aggregate_5m(frame)).set_index(["time", "sensor_id"])
    for hour in (H0, H0 + pd.Timedelta(hours=1), H0 + pd.Timedelta(hours=2)):
        expected = direct(frame, hour, hour + pd.Timedelta(hours=1))
        for sensor, row in expected.iterrows():
            got = result.loc[(hour, sensor)]
            assert got["count"] == row["count"]
            assert (
                got[["min", "max", "first", "last"]].tolist() == row[["min", "max", "first", "last"]].tolist()
            )
            assert got["mean"] == pytest.approx(row["mean"], rel=1e-12)  # not the mean of means


def test_count_weighted_mean_differs_from_the_mean_of_means():
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime(
                [H0, H0 + pd.Timedelta(minutes=5), H0 + pd.Timedelta(minutes=6)], utc=True
            ),
            "site": "a",
            "sensor_id": "s",
            "kind": "voltage",
            "value": [0.0, 3.0, 3.0],
        }
    )
    hourly = downsample_1h(aggregate_5m(frame))
    assert hourly["mean"].iloc[0] == pytest.approx(2.0)  # the mean of the 5-minute means would be 1.5
    assert hourly["count"].iloc[0] == 3


def test_aggregates_of_nothing_are_empty_frames_with_typed_columns():
    empty = points().iloc[:0]
    for result in (
        aggregate_5m(empty),
        downsample_1h(aggregate_5m(empty)),
        sliding_15m(aggregate_5m(empty), H0, H0),
    ):
        assert result.empty and "count" in result.columns


def test_daily_features_of_a_known_series():
    day = pd.Timestamp("2025-03-01T00:00:00Z")
    minutes = [m for m in range(0, 1440) if not 600 <= m < 660]  # one hour-long gap
    values = np.array([10.0 + m / 60.0 for m in minutes])  # +1 per hour
    values[5] = 500.0  # one anomaly
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime([day + pd.Timedelta(minutes=m) for m in minutes], utc=True),
            "site": "a",
            "sensor_id": "s",
            "kind": "temperature",
            "value": values,
        }
    )
    features = features_by_sensor(frame, day, day + pd.Timedelta(days=1))
    row = features.iloc[0]
    assert len(features) == 1 and row["time"] == day
    assert row["count"] == len(minutes) and row["gap_count"] == 1 and row["anomaly_count"] == 1
    assert row["cadence_s"] == 60.0
    assert row["completeness"] == pytest.approx(len(minutes) / 1440)
    hours = np.array(minutes) / 60.0
    assert row["trend_slope"] == pytest.approx(np.polyfit(hours, values, 1)[0], rel=1e-9)
    clean = np.delete(values, 5)
    assert np.polyfit(np.delete(hours, 5), clean, 1)[0] == pytest.approx(1.0)  # the series' own trend
    assert row["p95"] == pytest.approx(np.percentile(values, 95))
    assert row["std"] == pytest.approx(values.std())
    assert not features[["mean", "std", "p95", "trend_slope", "completeness"]].isna().any().any()


def test_a_single_point_has_finite_features():
    day = pd.Timestamp("2025-03-01T00:00:00Z")
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime([day], utc=True),
            "site": "a",
            "sensor_id": "s",
            "kind": "humidity",
            "value": [40.0],
        }
    )
    features = features_by_sensor(frame, day, day + pd.Timedelta(days=1))
    assert features[["std", "trend_slope", "gap_count", "anomaly_count"]].iloc[0].tolist() == [0.0, 0.0, 0, 0]
    assert np.isfinite(features.select_dtypes("number").to_numpy(dtype="float64")).all()
