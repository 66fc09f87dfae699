"""The whole pipeline against the real server, asserted against the simulator's manifest.

Two hours x 50 sensors with every defect kind are simulated and written like a real feed (on-time
points first, late arrivals after the windows were processed). Every stage is materialized per window
(and the daily stages for the day) through Dagster; the counts per window, per reason and per stage
are read back with the independent InfluxQL oracle and compared with the manifest, which the simulator
derives from its own bookkeeping.
"""

from collections.abc import Iterable

import pandas as pd
import pytest
from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    AssetSelection,
    DagsterEventType,
    DagsterInstance,
    ExecuteInProcessResult,
    materialize,
)
from dagster._core.definitions.observe import observe  # no public in-process observe in 1.13

from influx_assets.devtools.feed import write_simulation
from influx_assets.influxdb import InfluxDBIOManager
from influx_assets.influxdb import LEDGER_MEASUREMENT
from influx_assets.devtools.manifest import build_manifest
from influx_assets.telemetry import (
    REASON_CODES,
    ColdStorage,
    daily_assets,
    hourly_assets,
    pipeline_assets,
    pipeline_checks,
    raw_telemetry,
)
from influx_assets.telemetry import validate as validate_module
from influx_assets.telemetry.partitions import hourly_windows
from influx_assets.telemetry.archive import archive_path
from influx_assets.telemetry.raw import observe_window, window_changed
from influx_assets.resources import resources_for
from influx_assets.devtools.simulate import SimulationConfig, simulate
from influx_assets_tests.pipeline_harness import (
    check_outcomes,
    keys_of,
    materialization_metadata,
    rows,
    window_clause,
)

pytestmark = pytest.mark.slow

HOURS = ("2025-03-01-10:00", "2025-03-01-11:00")
DAY = "2025-03-01"
MEASUREMENTS = (
    "sensor_raw",
    "validated_telemetry",
    "quarantined_telemetry",
    "normalized_telemetry",
    "telemetry_5m",
    "telemetry_sliding_15m",
    "telemetry_1h",
    "sensor_features",
)


def run(key: str, assets: Iterable, resources: dict, instance: DagsterInstance) -> ExecuteInProcessResult:
    return materialize(
        [*pipeline_assets, *pipeline_checks],
        selection=AssetSelection.assets(*keys_of(assets)),
        partition_key=key,
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )


def observed_fingerprints(resources: dict, instance: DagsterInstance) -> dict[str, str]:
    found = {}
    for key in HOURS:
        result = observe([raw_telemetry], instance=instance, resources=resources, partition_key=key)
        for event in result.all_events:
            if event.event_type == DagsterEventType.ASSET_OBSERVATION:
                observation = event.event_specific_data.asset_observation
                found[observation.partition] = observation.metadata["fingerprint"].value
    return found


def snapshot(oracle, archive_file) -> dict:
    state = {m: sorted(map(repr, rows(oracle, m))) for m in MEASUREMENTS}
    state["archive"] = archive_file.read_bytes()
    return state


@pytest.fixture
def simulation():
    config = SimulationConfig(
        start=pd.Timestamp("2025-03-01T10:00:00Z"),
        end=pd.Timestamp("2025-03-01T12:00:00Z"),
        sensors=50,
        seed=7,
    )
    return simulate(config)


def assert_windows_match(oracle, manifest: dict, late_written: bool) -> None:
    for key in HOURS:
        expected, where = manifest["windows"][key], window_clause(key)
        pending = 0 if late_written else expected["late"]  # late points are all valid readings
        assert len(rows(oracle, "sensor_raw", where)) == expected["raw"] - pending, key
        assert len(rows(oracle, "validated_telemetry", where)) == expected["validated"] - pending, key
        reasons = pd.Series([r["reason"] for r in rows(oracle, "quarantined_telemetry", where)], dtype="str")
        assert {code: int((reasons == code).sum()) for code in REASON_CODES} == expected["quarantined"], key
        assert len(rows(oracle, "normalized_telemetry", where)) == expected["normalized"] - pending, key


def test_every_stage_matches_the_manifest_per_window_reason_and_stage(influxdb, oracle, tmp_path, simulation):
    manifest = build_manifest(simulation)
    assert all(n > 0 for n in manifest["totals"]["defects_injected"].values())
    resources = resources_for(influxdb, ColdStorage(base_url=str(tmp_path / "cold")))
    instance = DagsterInstance.ephemeral()

    # 1. on-time points, observed and processed
    write_simulation(simulation, influxdb, "on_time")
    before = observed_fingerprints(resources, instance)
    processed = {}
    for key in HOURS:
        result = run(key, hourly_assets, resources, instance)
        assert result.success, key
        metadata = materialization_metadata(result, "validated_telemetry")
        processed[key] = metadata["raw_fingerprint"]
        assert metadata["raw_fingerprint"] == before[key]
        reasons = materialization_metadata(result, "quarantined_telemetry")
        assert {c: reasons[f"quarantined_{c}"] for c in REASON_CODES} == manifest["windows"][key]["quarantined"]
    assert_windows_match(oracle, manifest, late_written=False)

    # 2. late arrivals change exactly the windows they belong to; re-processing picks them up
    late = simulation.raw_points("late")
    first_window_late = late[late["time"] < pd.Timestamp("2025-03-01T11:00:00Z")]
    influxdb.write_frame(first_window_late, "sensor_raw", ["site", "sensor_id", "kind", "gateway"])
    now = observed_fingerprints(resources, instance)
    assert [window_changed(now[k], processed[k]) for k in HOURS] == [True, False]
    write_simulation(simulation, influxdb, "late")
    now = observed_fingerprints(resources, instance)
    assert [window_changed(now[k], processed[k]) for k in HOURS] == [
        k["late"] > 0 for k in manifest["windows"].values()
    ]
    results = [run(key, hourly_assets, resources, instance) for key in HOURS]
    results.append(run(DAY, daily_assets, resources, instance))
    assert all(r.success for r in results)

    # 3. exact counts per window, reason and stage
    assert_windows_match(oracle, manifest, late_written=True)
    for key, result in zip(HOURS, results, strict=False):
        expected, where = manifest["windows"][key], window_clause(key)
        five = rows(oracle, "telemetry_5m", where)
        assert len(five) == expected["buckets_5m"] and sum(r["count"] for r in five) == expected["normalized"]
        sliding = rows(oracle, "telemetry_sliding_15m", where)
        assert (
            len(sliding) == expected["sliding_rows"]
            and sum(r["count"] for r in sliding) == expected["sliding_count"]
        )
        outcomes = check_outcomes(result)
        completeness = outcomes.pop("normalized_telemetry:window_completeness")
        assert completeness.severity == AssetCheckSeverity.WARN
        assert completeness.passed == (expected["incomplete_series"] == 0)
        assert completeness.metadata["incomplete_series"].value == expected["incomplete_series"]
        lookback = outcomes.pop("telemetry_sliding_15m:lookback_is_current")
        # the first hour processed has no processed hour before it (WARN); the next one read it
        first = key == HOURS[0]
        assert (lookback.passed, lookback.severity) == (not first, AssetCheckSeverity.WARN if first else AssetCheckSeverity.ERROR)
        assert len(outcomes) == 16 and all(o.passed for o in outcomes.values()), key
    day = manifest["days"][DAY]
    hourly = rows(oracle, "telemetry_1h")
    assert len(hourly) == day["rows_1h"] and sum(r["count"] for r in hourly) == day["normalized"]
    assert len(rows(oracle, "sensor_features")) == day["series"]
    daily = check_outcomes(results[-1])
    partial = {name: daily.pop(name) for name in list(daily) if name.endswith(":built_from_every_hour")}
    assert all(o.passed for o in daily.values()) and len(daily) == 8
    # the day was built from the 2 processed hours of 24: each daily stage warns, saying so
    assert sorted(partial) == [f"{a}:built_from_every_hour" for a in ("sensor_features", "telemetry_1h", "telemetry_archive")]
    for outcome in partial.values():
        assert not outcome.passed and outcome.severity == AssetCheckSeverity.WARN
        assert outcome.metadata["hourly_windows_materialized"].value == len(HOURS)
        assert outcome.description.startswith(f"built from {len(HOURS)} of 24 hourly windows")

    # the archive holds exactly the day's normalized points
    archive_file = tmp_path / "cold" / archive_path("", pd.Timestamp(DAY, tz="UTC")).lstrip("/")
    archived = pd.read_parquet(archive_file)
    source = pd.DataFrame(rows(oracle, "normalized_telemetry"))
    assert len(archived) == day["normalized"] == len(source)
    assert sorted(archived["time"].astype("int64")) == sorted(source["time"])
    assert sorted(archived["value"]) == sorted(source["value"])
    archive_metadata = materialization_metadata(results[-1], "telemetry_archive")
    assert archive_metadata["dagster/row_count"] == day["normalized"]

    # 4. materializing everything again changes nothing
    state = snapshot(oracle, archive_file)
    again = [run(key, hourly_assets, resources, instance) for key in HOURS] + [
        run(DAY, daily_assets, resources, instance)
    ]
    assert all(r.success for r in again)
    assert snapshot(oracle, archive_file) == state
    assert materialization_metadata(again[-1], "telemetry_archive")["sha256"] == archive_metadata["sha256"]


class CorruptingIOManager(InfluxDBIOManager):
    """Changes one value of one asset's window on its way to the server: a silent write corruption."""

    corrupt_asset: str
    corrupt_partition: str

    def handle_output(self, context, obj):
        if (
            context.asset_key.to_user_string() == self.corrupt_asset
            and context.asset_partition_key == self.corrupt_partition
        ):
            obj = obj.copy()
            obj.loc[obj.index[0], "value"] += 1.0
        super().handle_output(context, obj)


def test_a_failed_gate_stops_downstream_of_that_window_only(influxdb, oracle, tmp_path):
    simulation = simulate(
        SimulationConfig(
            start=pd.Timestamp("2025-03-01T10:00:00Z"),
            end=pd.Timestamp("2025-03-01T12:00:00Z"),
            sensors=8,
            seed=2,
        )
    )
    write_simulation(simulation, influxdb)
    resources = resources_for(influxdb, ColdStorage(base_url=str(tmp_path)))
    resources["influxdb_io_manager"] = CorruptingIOManager(
        influxdb=influxdb, corrupt_asset="normalized_telemetry", corrupt_partition=HOURS[0]
    )
    instance = DagsterInstance.ephemeral()
    failed, succeeded = (run(key, hourly_assets, resources, instance) for key in HOURS)

    assert not failed.success and succeeded.success
    readback = check_outcomes(failed)["normalized_telemetry:readback_matches_output"]
    assert not readback.passed
    assert readback.metadata["expected_fingerprint"].value != readback.metadata["actual_fingerprint"].value
    started = {e.step_key for e in failed.all_events if e.event_type == DagsterEventType.STEP_START}
    assert not {"telemetry_5m", "telemetry_sliding_15m"} & started
    materialized = {
        e.event_specific_data.materialization.asset_key.to_user_string()
        for e in failed.all_events
        if e.event_type == DagsterEventType.ASSET_MATERIALIZATION
    }
    assert materialized == {"validated_telemetry", "quarantined_telemetry", "normalized_telemetry"}
    assert rows(oracle, "telemetry_5m", window_clause(HOURS[0])) == []
    assert len(rows(oracle, "telemetry_5m", window_clause(HOURS[1]))) > 0
    assert len(rows(oracle, "telemetry_sliding_15m", window_clause(HOURS[1]))) > 0

    # with the corruption gone, the failed window recovers
    recovered = run(
        HOURS[0], hourly_assets, resources_for(influxdb, ColdStorage(base_url=str(tmp_path))), instance
    )
    assert recovered.success
    assert len(rows(oracle, "telemetry_5m", window_clause(HOURS[0]))) > 0


def test_a_single_run_backfill_writes_the_same_windows_as_one_run_per_window(influxdb, oracle, tmp_path):
    simulation = simulate(
        SimulationConfig(
            start=pd.Timestamp("2025-03-01T10:00:00Z"),
            end=pd.Timestamp("2025-03-01T12:00:00Z"),
            sensors=10,
            seed=4,
        )
    )
    write_simulation(simulation, influxdb)
    resources = resources_for(influxdb, ColdStorage(base_url=str(tmp_path)))
    instance = DagsterInstance.ephemeral()
    backfill = materialize(
        [*pipeline_assets, *pipeline_checks],
        selection=AssetSelection.assets(*keys_of(hourly_assets)),
        resources=resources,
        instance=instance,
        raise_on_error=False,
        tags={"dagster/asset_partition_range_start": HOURS[0], "dagster/asset_partition_range_end": HOURS[1]},
    )
    assert backfill.success
    # every check reports every window of the range on that window's own partition
    evaluations = backfill.get_asset_check_evaluations()
    checks = {e.asset_check_key for e in evaluations}
    assert sorted((e.asset_check_key.to_user_string(), e.partition) for e in evaluations) == sorted(
        (key.to_user_string(), hour) for key in checks for hour in HOURS
    )
    first_lookback = ("lookback_is_current", HOURS[0])  # no processed hour before the range: WARN
    assert all(e.passed for e in evaluations
               if e.asset_check_key.name != "window_completeness" and (e.asset_check_key.name, e.partition) != first_lookback)
    # each partition's metadata is its window's own; what is the range's is named range_*
    normalized = {
        e.partition: {k: v.value for k, v in e.materialization.metadata.items()}
        for e in backfill.get_asset_materialization_events() if e.asset_key == AssetKey("normalized_telemetry")
    }
    for key in HOURS:
        start = pd.Timestamp(hourly_windows.time_window_for_partition_key(key).start)
        own = normalized[key]
        assert (own["window_start"], own["window_end"]) == (start.timestamp(), start.timestamp() + 3600)
        assert own["rows_out"] == own["dagster/row_count"] == len(rows(oracle, "normalized_telemetry", window_clause(key)))
        assert start.timestamp() <= own["earliest_row"] <= own["latest_row"] < start.timestamp() + 3600
        assert own["range_windows"] == 2
        assert own["range_rows_out"] == sum(normalized[k]["rows_out"] for k in HOURS)
        assert "window_hours" not in own and "rows_in" in own
    # each partition of the range run records its own raw window, as a single-window run would
    per_partition = {
        e.partition: (e.materialization.metadata["raw_fingerprint"].value, e.materialization.metadata["raw_points"].value)
        for e in backfill.get_asset_materialization_events() if e.asset_key == AssetKey("validated_telemetry")
    }
    observed = {key: observe_window(influxdb, key) for key in HOURS}
    assert per_partition == {key: (o.fingerprint, o.points) for key, o in observed.items()}
    derived = [m for m in MEASUREMENTS if m not in ("sensor_raw", "telemetry_1h", "sensor_features")]
    state = {m: sorted(map(repr, rows(oracle, m))) for m in derived}
    for key in HOURS:
        assert run(key, hourly_assets, resources, instance).success
    assert {m: sorted(map(repr, rows(oracle, m))) for m in derived} == state


def test_a_window_without_raw_points_materializes_empty_stages(influxdb, oracle, tmp_path):
    resources = resources_for(influxdb, ColdStorage(base_url=str(tmp_path)))
    instance = DagsterInstance.ephemeral()
    results = [run(HOURS[0], hourly_assets, resources, instance), run(DAY, daily_assets, resources, instance)]
    assert all(r.success for r in results)
    assert all(o.passed for r in results for o in check_outcomes(r).values() if o.severity == AssetCheckSeverity.ERROR)
    assert materialization_metadata(results[0], "validated_telemetry")["rows_out"] == 0
    assert [m for m in oracle.measurements() if m not in ("sensor_raw", "pipeline_metrics", "pipeline_edges", LEDGER_MEASUREMENT)] == []
    # ...but every stage's empty window is recorded as committed with zero rows
    ledger = oracle.query(f'SELECT "state", "rows" FROM "{LEDGER_MEASUREMENT}" GROUP BY "target"')
    committed = {s["tags"]["target"]: s["values"] for s in ledger}
    assert set(committed) >= {"validated_telemetry", "normalized_telemetry", "telemetry_5m", "telemetry_1h"}
    assert all(values == [[values[0][0], "committed", 0]] for values in committed.values())


def test_a_point_validation_loses_fails_the_raw_count_and_stops_that_window(influxdb, oracle, tmp_path, monkeypatch):
    # a validation bug: one raw point reaches neither output. Both outputs are stored exactly as
    # returned (their read-back checks pass); only the reconciliation with the raw count sees the loss.
    simulation = simulate(
        SimulationConfig(start=pd.Timestamp("2025-03-01T10:00:00Z"), end=pd.Timestamp("2025-03-01T11:00:00Z"), sensors=4, seed=5)
    )
    write_simulation(simulation, influxdb)
    validate_window = validate_module.validate_window

    def losing_one(raw, rules):  # noqa: ANN001, ANN202
        validated, quarantined = validate_window(raw, rules)
        return validated.iloc[:-1], quarantined

    monkeypatch.setattr(validate_module, "validate_window", losing_one)
    result = run(HOURS[0], hourly_assets, resources_for(influxdb, ColdStorage(base_url=str(tmp_path))), DagsterInstance.ephemeral())

    outcomes = check_outcomes(result)
    reconciles = outcomes["validated_telemetry:raw_count_reconciles"]
    assert not reconciles.passed and reconciles.metadata["unaccounted"].value == 1
    assert reconciles.metadata["raw_points"].value == len(rows(oracle, "sensor_raw", window_clause(HOURS[0])))
    assert outcomes["validated_telemetry:readback_matches_output"].passed
    assert not result.success


def test_an_archive_file_that_differs_from_the_normalized_day_fails_its_check(influxdb, tmp_path):
    simulation = simulate(
        SimulationConfig(start=pd.Timestamp("2025-03-01T10:00:00Z"), end=pd.Timestamp("2025-03-01T12:00:00Z"), sensors=3, seed=6)
    )
    write_simulation(simulation, influxdb)
    resources = resources_for(influxdb, ColdStorage(base_url=str(tmp_path / "cold")))
    instance = DagsterInstance.ephemeral()
    assert all(run(key, hourly_assets, resources, instance).success for key in HOURS)
    assert run(DAY, daily_assets, resources, instance).success
    archive_file = tmp_path / "cold" / archive_path("", pd.Timestamp(DAY, tz="UTC")).lstrip("/")
    archived = pd.read_parquet(archive_file)
    archived.loc[archived.index[-1], "value"] += 0.5  # one value of the day's last hour
    archived.to_parquet(archive_file)

    check = AssetCheckKey(AssetKey("telemetry_archive"), "archive_matches_source")
    result = materialize(
        [*pipeline_assets, *pipeline_checks], selection=AssetSelection.checks(check), tags={"dagster/partition": DAY},
        resources=resources, instance=instance, raise_on_error=False,
    )

    outcome = check_outcomes(result)["telemetry_archive:archive_matches_source"]
    assert not outcome.passed
    assert outcome.metadata["content_matches"].value is False and outcome.metadata["sha256_matches"].value is False
    assert outcome.metadata["archived_rows"].value == outcome.metadata["source_rows"].value == len(archived)
