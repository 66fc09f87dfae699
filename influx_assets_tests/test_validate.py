"""Validation: every raw point goes to exactly one of validated/quarantined, with the right reason."""

import numpy as np
import pandas as pd
import pytest

from influx_assets.telemetry.contract import REASON_CODES
from influx_assets.telemetry.validate import ValidationRules, reason_counts, validate_window
from influx_assets.influxdb.client.pandas_versions import as_text

T0 = pd.Timestamp("2025-03-01T10:00:00Z")


def point(second: int, **overrides: object) -> dict:
    """One valid raw point at ``T0 + second``; overrides replace or (with None) remove columns."""
    row = {
        "time": T0 + pd.Timedelta(seconds=second),
        "site": "site-01",
        "sensor_id": f"s-{second}",
        "kind": "temperature",
        "gateway": "gw-a",
        "value": 21.5,
        "value_raw": None,
        "unit": "C",
        "battery": 90.0,
        "received_ns": (T0 + pd.Timedelta(seconds=second + 1)).value,
    }
    row.update(overrides)
    return row


def frame(rows: list[dict]) -> pd.DataFrame:
    raw = pd.DataFrame(rows)
    # from the Python ints: through float64 (pandas' default for a column with None) ns lose precision
    raw["received_ns"] = pd.array([row["received_ns"] for row in rows], dtype="Int64")
    raw["time"] = pd.to_datetime(raw["time"], utc=True)
    for column in ("site", "sensor_id", "kind", "gateway", "value_raw", "unit"):
        raw[column] = as_text(raw[column])
    return raw.astype({"value": "float64", "battery": "float64", "received_ns": "Int64"})


ONE_PER_REASON = [
    ("missing_tag", {"site": None}),
    ("unknown_kind", {"kind": "vibration"}),
    ("missing_value", {"value": np.nan}),
    ("non_numeric_value", {"value": np.nan, "value_raw": "21,5"}),
    ("non_finite_value", {"value": np.nan, "value_raw": "-Infinity"}),
    ("non_finite_value", {"value": np.nan, "value_raw": "1e400"}),  # overflows a float
    ("unknown_unit", {"unit": "lux"}),
    ("unit_kind_mismatch", {"unit": "hPa"}),
    ("out_of_range", {"value": 932.0, "unit": "F"}),  # 500 C
    ("future_timestamp", {"received_ns": (T0 - pd.Timedelta(minutes=6)).value}),
    ("stale_timestamp", {"received_ns": (T0 + pd.Timedelta(hours=25)).value}),
]


def test_each_defect_gets_its_reason_code():
    rows = [point(i, **overrides) for i, (_, overrides) in enumerate(ONE_PER_REASON)]
    validated, quarantined = validate_window(frame(rows))
    assert validated.empty
    assert quarantined["reason"].tolist() == [reason for reason, _ in ONE_PER_REASON]


def test_valid_variants_pass_and_integers_become_floats():
    rows = [
        point(0, value=np.nan, value_raw="21"),  # an integer payload
        point(1, value=np.nan, value_raw=" 1.5e1 "),
        point(2, site='Hall "B", Floor 2', sensor_id="sensor,0002", kind=" Temperature"),
        point(3, kind="voltage", value=3300.0, unit="mV"),
        point(4, kind="humidity", value=100.0, unit="%"),  # the range is inclusive
        point(5, received_ns=None),  # no receive time: no timestamp test
        point(
            6, received_ns=(T0 + pd.Timedelta(seconds=6) - pd.Timedelta(minutes=4)).value
        ),  # within tolerance
    ]
    validated, quarantined = validate_window(frame(rows))
    assert quarantined.empty
    assert validated["value"].tolist() == [21.0, 15.0, 21.5, 3300.0, 100.0, 21.5, 21.5]
    assert "value_raw" not in validated.columns
    assert validated.loc[2, "site"] == 'Hall "B", Floor 2'  # spelling is normalize's job


def test_the_first_applicable_reason_wins():
    both = point(0, site=None, unit="lux", value=np.nan, value_raw="ERR")
    unit_and_range = point(1, unit="hPa", value=9999.0)
    _, quarantined = validate_window(frame([both, unit_and_range]))
    assert quarantined["reason"].tolist() == ["missing_tag", "unit_kind_mismatch"]


def test_exact_duplicates_keep_the_first_received_copy():
    original = point(0, gateway="gw-b", received_ns=T0.value + 5)
    earlier_copy = point(0, gateway="gw-a", received_ns=T0.value + 9)
    first_received = point(0, gateway="gw-c", received_ns=T0.value + 2)
    corrected = point(0, gateway="gw-d", received_ns=T0.value + 7, value=21.6)
    validated, quarantined = validate_window(frame([original, earlier_copy, first_received, corrected]))
    assert sorted(validated["gateway"]) == ["gw-c", "gw-d"]  # first received + the differing re-send
    assert sorted(quarantined["gateway"]) == ["gw-a", "gw-b"]
    assert set(quarantined["reason"]) == {"duplicate"}


def test_a_defective_point_is_not_also_a_duplicate():
    bad = point(0, unit="lux")
    _, quarantined = validate_window(
        frame([bad, {**bad, "gateway": "gw-b", "received_ns": bad["received_ns"] + 1}])
    )
    assert quarantined["reason"].tolist() == ["unknown_unit", "unknown_unit"]


def test_every_point_lands_in_exactly_one_output_with_its_payload_kept():
    rows = [point(i, **o) for i, (_, o) in enumerate(ONE_PER_REASON)] + [point(100), point(101)]
    raw = frame(rows)
    validated, quarantined = validate_window(raw)
    assert len(validated) + len(quarantined) == len(raw)
    keys = pd.concat([validated[["time", "sensor_id"]], quarantined[["time", "sensor_id"]]])
    assert not keys.duplicated().any()
    kept = quarantined.drop(columns="reason").sort_values("time").reset_index(drop=True)
    expected = raw[raw["time"].isin(kept["time"])].sort_values("time").reset_index(drop=True)
    pd.testing.assert_frame_equal(kept[expected.columns], expected)


def test_reason_counts_list_every_code():
    _, quarantined = validate_window(frame([point(0, unit="lux"), point(1, unit="lux")]))
    counts = reason_counts(quarantined)
    assert list(counts) == list(REASON_CODES)
    assert counts["unknown_unit"] == 2 and sum(counts.values()) == 2


def test_windows_without_optional_columns_validate():
    raw = frame([point(0), point(1)]).drop(columns=["value_raw", "battery", "received_ns", "gateway"])
    validated, quarantined = validate_window(raw)
    assert len(validated) == 2 and quarantined.empty


def test_an_empty_window_gives_two_empty_outputs():
    validated, quarantined = validate_window(frame([point(0)]).iloc[:0])
    assert validated.empty and quarantined.empty


@pytest.mark.parametrize("minutes, reason", [(4, None), (6, "future_timestamp")])
def test_future_tolerance_is_configurable(minutes, reason):
    rows = [point(0, received_ns=(T0 - pd.Timedelta(minutes=minutes)).value)]
    _, quarantined = validate_window(frame(rows), ValidationRules(future_tolerance=pd.Timedelta(minutes=5)))
    assert quarantined["reason"].tolist() == ([reason] if reason else [])
