"""The simulator: deterministic, every defect kind, a manifest that adds up, and a working CLI."""

import json

import pandas as pd
import pytest

from influx_assets.devtools.cli import main
from influx_assets.devtools.manifest import build_manifest
from influx_assets.telemetry.contract import RAW_TAGS, REASON_CODES
from influx_assets.devtools.simulate import DEFECT_KINDS, SimulationConfig, simulate

START = pd.Timestamp("2025-03-01T10:00:00Z")


def config(**overrides) -> SimulationConfig:
    values = {"start": START, "end": START + pd.Timedelta(hours=2), "sensors": 50, "seed": 11}
    return SimulationConfig(**(values | overrides))


def test_the_same_seed_gives_the_same_points_and_another_seed_does_not():
    first, again, other = simulate(config()), simulate(config()), simulate(config(seed=12))
    pd.testing.assert_frame_equal(first.raw_points(), again.raw_points())
    assert not first.raw_points()["value"].equals(other.raw_points()["value"])


def test_every_defect_kind_is_injected_at_default_rates():
    injected = build_manifest(simulate(config()))["totals"]["defects_injected"]
    assert set(injected) == set(DEFECT_KINDS)
    assert all(count > 0 for count in injected.values()), injected


def test_a_zero_rate_disables_a_defect_kind():
    manifest = build_manifest(simulate(config(rates={"missing_tag": 0.0, "duplicate": 0.0})))
    assert manifest["totals"]["quarantined"]["missing_tag"] == 0
    assert manifest["totals"]["quarantined"]["duplicate"] == 0


def test_unknown_defect_kinds_are_refused():
    with pytest.raises(ValueError, match="unknown defect kinds"):
        config(rates={"gremlins": 0.1})


def test_no_two_points_would_collapse_on_write():
    raw = simulate(config()).raw_points()
    series_and_time = raw[["time", *RAW_TAGS]].astype("str").fillna("<absent>")
    assert not series_and_time.duplicated().any()


def test_the_manifest_adds_up_per_window():
    manifest = build_manifest(simulate(config()))
    assert list(manifest["windows"]) == ["2025-03-01-10:00", "2025-03-01-11:00"]
    for window in manifest["windows"].values():
        assert list(window["quarantined"]) == list(REASON_CODES)
        assert window["raw"] == window["validated"] + sum(window["quarantined"].values())
        assert window["normalized"] <= window["validated"]
    assert sum(w["raw"] for w in manifest["windows"].values()) == manifest["totals"]["raw"]
    assert manifest["days"]["2025-03-01"]["normalized"] == manifest["totals"]["normalized"]


def test_late_points_arrive_after_their_window():
    simulation = simulate(config())
    late = simulation.raw_points("late")
    window_end = late["time"].dt.floor("1h") + pd.Timedelta(hours=1)
    assert len(late) > 0 and (late["received_ns"] > window_end.astype("int64")).all()
    assert len(late) + len(simulation.raw_points("on_time")) == len(simulation.raw_points())


def test_the_cli_writes_what_its_manifest_says(influx_url, database_name, oracle, tmp_path):
    manifest_path = tmp_path / "manifest.json"
    status = main(
        [
            "simulate",
            "--url",
            influx_url,
            "--database",
            database_name,
            "--sensors",
            "8",
            "--start",
            "2025-03-01T10:00:00Z",
            "--end",
            "2025-03-01T11:00:00Z",
            "--seed",
            "5",
            "--rate",
            "duplicate=0.05",
            "--manifest",
            str(manifest_path),
            "--no-progress",
        ]
    )
    manifest = json.loads(manifest_path.read_text())
    assert status == 0
    assert manifest["config"]["rates"]["duplicate"] == 0.05
    assert len(oracle.rows("SELECT * FROM sensor_raw")) == manifest["windows"]["2025-03-01-10:00"]["raw"]


def test_the_pure_stages_reproduce_the_manifest():
    from influx_assets.telemetry.aggregate import aggregate_5m
    from influx_assets.telemetry.normalize import normalize_window
    from influx_assets.telemetry.validate import reason_counts, validate_window

    simulation = simulate(config(seed=3))
    manifest = build_manifest(simulation)
    raw = simulation.raw_points()
    for key, expected in manifest["windows"].items():
        start = pd.to_datetime(key, format="%Y-%m-%d-%H:%M", utc=True)
        window = raw[(raw["time"] >= start) & (raw["time"] < start + pd.Timedelta(hours=1))]
        validated, quarantined = validate_window(window)
        normalized = normalize_window(validated)
        assert (len(window), len(validated), len(normalized)) == (
            expected["raw"],
            expected["validated"],
            expected["normalized"],
        )
        assert reason_counts(quarantined) == expected["quarantined"]
        assert len(aggregate_5m(normalized)) == expected["buckets_5m"]
