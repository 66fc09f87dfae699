"""The frame fingerprint: equal for the same points however they are ordered or typed, different otherwise."""

import numpy as np
import pandas as pd
import pytest

from influx_assets.telemetry.fingerprint import chunked_fingerprint, frame_fingerprint, window_fingerprints
from influx_assets.influxdb import InfluxDBResource
from influx_assets.telemetry.windows import Window, fingerprints_by_window, split_by_window


def window() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time": pd.to_datetime(
                [1_700_000_000_000_000_001, 1_700_000_000_000_000_002, 1_700_000_000_000_000_002], utc=True
            ),
            "site": pd.Series(['Hall "B", Floor 2', "Zürich", "Zürich"], dtype="str"),
            "value": [21.5, 40.0, 40.0],
            "count": np.array([3, 4, 4], dtype="int64"),
            "battery": [np.nan, np.nan, np.nan],
        }
    )


def test_order_dtype_width_and_all_null_columns_do_not_matter():
    frame = window()
    shuffled = frame.iloc[[2, 0, 1]][["value", "count", "site", "time"]].astype({"count": "int32"})
    assert frame_fingerprint(frame) == frame_fingerprint(shuffled.reset_index(drop=True))
    as_read_back = frame.drop(columns="battery").astype({"count": "Int64"})
    assert frame_fingerprint(frame) == frame_fingerprint(as_read_back)


def test_a_changed_value_time_or_row_changes_the_fingerprint():
    frame = window()
    reference = frame_fingerprint(frame)
    changed_value = frame.assign(value=[21.5, 40.0, 40.000001])
    changed_time = frame.assign(time=frame["time"] + pd.Timedelta(1, "ns"))
    one_row_less = frame.iloc[:2]  # the duplicate row counts: a multiset, not a set
    assert len({reference, *map(frame_fingerprint, [changed_value, changed_time, one_row_less])}) == 4


def test_an_integer_is_not_the_same_as_a_float():
    frame = window()
    assert frame_fingerprint(frame) != frame_fingerprint(frame.astype({"count": "float64"}))


def test_an_empty_string_is_null_as_influxdb_stores_it_and_a_bool_is_not_an_integer():
    frame = window().assign(note=["", "x", None])
    assert frame_fingerprint(frame) == frame_fingerprint(frame.assign(note=[None, "x", ""]))
    assert frame_fingerprint(frame) != frame_fingerprint(frame.assign(note=[None, "y", ""]))
    all_empty = window().assign(note=["", "", None])
    assert frame_fingerprint(all_empty) == frame_fingerprint(window())
    flags = window().assign(flag=[True, False, True])
    assert frame_fingerprint(flags) != frame_fingerprint(flags.assign(flag=[1, 0, 1]))


def test_two_columns_swapping_values_change_the_fingerprint():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    assert frame_fingerprint(frame) != frame_fingerprint(frame.rename(columns={"a": "b", "b": "a"}))
    assert frame_fingerprint(frame) != frame_fingerprint(pd.DataFrame({"a": [1.0, 4.0], "b": [3.0, 2.0]}))


def test_window_fingerprints_equal_fingerprinting_each_window_alone():
    rng = np.random.default_rng(5)
    n = 500
    times = pd.to_datetime(rng.integers(0, 4 * 3600, n) * 10**9 + 1_700_000_000 * 10**9, utc=True)
    frame = pd.DataFrame({
        "time": times,
        "sensor_id": pd.Series(rng.choice(["a", "b", ""], n), dtype="str"),
        "value": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
        # only ever set in the first hour: absent from the other windows' fingerprints
        "battery": np.where(times < pd.Timestamp(1_700_003_600, unit="s", tz="UTC"), 3.3, np.nan),
    })
    start = 1_700_000_000 * 10**9
    bounds = [start + h * 3600 * 10**9 for h in range(5)]
    by_window = window_fingerprints(frame, times.as_unit("ns").asi8, bounds)
    for (fingerprint, rows), lo, hi in zip(by_window, bounds, bounds[1:], strict=False):
        alone = frame[(times.as_unit("ns").asi8 >= lo) & (times.as_unit("ns").asi8 < hi)]
        assert (fingerprint, rows) == (frame_fingerprint(alone), len(alone))
    assert sum(rows for _, rows in by_window) == n
    assert len({f for f, _ in by_window}) == 4


def test_fingerprints_by_window_equal_each_split_window_including_empty_ones():
    rng = np.random.default_rng(8)
    first = pd.Timestamp("2025-03-03T00:00:00Z")
    windows = [Window(f"h{h}", first + pd.Timedelta(hours=h), first + pd.Timedelta(hours=h + 1)) for h in range(4)]
    times = first + pd.to_timedelta(rng.integers(0, 3600, 300), unit="s")  # hour 0 only; then hour 2
    times = times.append(first + pd.Timedelta(hours=2) + pd.to_timedelta(rng.integers(0, 3600, 200), unit="s"))
    frame = pd.DataFrame({"time": times, "sensor_id": rng.choice(["a", "b"], 500),
                          "value": np.where(rng.random(500) < 0.1, np.nan, rng.normal(size=500))})
    expected = [(frame_fingerprint(part), len(part)) for part in split_by_window(frame, windows)]
    assert fingerprints_by_window(frame, windows) == expected
    assert [rows for _, rows in expected] == [300, 0, 200, 0]
    assert fingerprints_by_window(frame.iloc[0:0], windows) == [(frame_fingerprint(frame.iloc[0:0]), 0)] * 4


@pytest.mark.parametrize(
    ("name", "frame", "tags"),
    [
        ("integer tag, stored as text", pd.DataFrame({"sensor": [7, 8, 9], "v": [1.0, 2.0, 3.0]}), ["sensor"]),
        ("object column of integers", pd.DataFrame({"n": pd.Series([1, None, 3], dtype=object), "v": 1.0}), []),
        ("object column of floats", pd.DataFrame({"x": pd.Series([1.5, 2.5, None], dtype=object), "v": 1.0}), []),
    ],
)
def test_what_influxdb_reads_back_has_the_fingerprint_of_what_was_written(
    name: str, frame: pd.DataFrame, tags: list[str], influxdb: InfluxDBResource
) -> None:
    frame = frame.assign(time=pd.date_range("2024-05-01", periods=3, freq="1s", tz="UTC"))
    influxdb.write_frame(frame, "round_trip", tags)
    back = influxdb.read_window(influxdb.slice("round_trip"))
    assert frame_fingerprint(back) == frame_fingerprint(frame), name


def test_a_fingerprint_taken_chunk_by_chunk_equals_the_whole_frames():
    rng = np.random.default_rng(9)
    frame = pd.DataFrame({
        "time": pd.date_range("2025-03-03", periods=900, freq="10s", tz="UTC"),
        "sensor_id": pd.Series(rng.choice(["a", "b"], 900), dtype="str"),
        "value": rng.normal(size=900),
        # only the last third has batteries: chunks without any still make the same column set
        "battery": np.where(np.arange(900) >= 600, 3.3, np.nan),
    })
    chunks = [frame.iloc[i:i + 250] for i in range(0, 900, 250)]
    assert chunked_fingerprint(chunks) == (frame_fingerprint(frame), 900)
    assert chunked_fingerprint([]) == (frame_fingerprint(frame.iloc[0:0]), 0)
    changed = frame.copy()
    changed.loc[899, "value"] += 1e-9
    assert chunked_fingerprint(changed.iloc[i:i + 250] for i in range(0, 900, 250))[0] != frame_fingerprint(frame)
