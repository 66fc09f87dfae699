"""The frame fingerprint: equal for the same points however they are ordered or typed, different otherwise."""

import numpy as np
import pandas as pd

from influx_assets.fingerprint import frame_fingerprint


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
