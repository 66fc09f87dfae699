"""Lookback dependents follow their upstream: windows processed out of order end as if in order.

``telemetry_sliding_15m`` of hour H+1 reads ``telemetry_5m`` of hour H. Processing later hours first
(a parallel catch-up, an operator backfilling a later range first) or re-running H after H+1 leaves
H+1's first hops computed from the wrong rows. The ``lookback_is_current`` check flags such a window,
``lookback_sensor`` requests it again, and the final data equals an in-order run of the same points
(compared window by window through the independent InfluxQL oracle).
"""

import pandas as pd
import pytest
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    AssetRecordsFilter,
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    RunRequest,
    SensorResult,
    build_sensor_context,
)

from influx_assets.automation.lookback import lookback_sensor
from influx_assets.devtools.feed import write_simulation
from influx_assets.devtools.simulate import Simulation
from influx_assets.influxdb import InfluxDBResource
from influx_assets.resources import resources_for
from influx_assets.telemetry import ColdStorage, hourly_assets
from influx_assets.telemetry.partitions import hourly_windows
from influx_assets.telemetry.lookback import lookback_matches, lookback_verdict, next_hour_key, previous_hour_key
from influx_assets.telemetry.windows import windows_for
from influx_assets.telemetry.sliding import telemetry_sliding_15m
from influx_assets_tests.influxql_oracle import InfluxQLOracle
from influx_assets_tests.pipeline_harness import (
    clean_reference,
    hour_keys,
    hour_start,
    run_stages,
    small_simulation,
    window_contents,
)

SLIDING = AssetKey("telemetry_sliding_15m")
FIVE_MINUTE = AssetKey("telemetry_5m")


@pytest.fixture(scope="module")
def simulation() -> Simulation:
    return small_simulation(hours=4)


TwoHours = tuple[list[str], dict, DagsterInstance]


@pytest.fixture
def two_hours_in_order(influxdb: InfluxDBResource, simulation: Simulation, tmp_path) -> TwoHours:
    """The first two hours of the simulation processed in order, one run each: keys, resources, instance."""
    keys = hour_keys(simulation)[:2]
    write_simulation(simulation, influxdb)
    resources = resources_for(influxdb, ColdStorage(base_url=str(tmp_path)))
    instance = DagsterInstance.ephemeral()
    for key in keys:
        assert run_stages(hourly_assets, resources, instance, partition_key=key).success
    return keys, resources, instance


def lookback_verdicts(result: object) -> dict[str, tuple[bool, AssetCheckSeverity]]:
    """``partition -> (passed, severity)`` of every ``lookback_is_current`` evaluation of a run."""
    return {
        e.partition: (e.passed, e.severity)
        for e in result.get_asset_check_evaluations()  # type: ignore[attr-defined]
        if e.asset_check_key.name == "lookback_is_current"
    }


def write_late_point(influxdb: InfluxDBResource, at: pd.Timestamp, sensor: str) -> None:
    """One valid temperature reading at ``at``, received 40 minutes later (after its hour was processed)."""
    late = pd.DataFrame({
        "time": [at], "site": ["site-late"], "sensor_id": [sensor], "kind": ["temperature"], "gateway": ["gw-9"],
        "value": [21.5], "unit": ["C"], "received_ns": [(at + pd.Timedelta(minutes=40)).value],
    })
    influxdb.write_frame(late, "sensor_raw", ["site", "sensor_id", "kind", "gateway"])


def tick(instance: DagsterInstance, cursor: str | None) -> SensorResult:
    with build_sensor_context(instance=instance, cursor=cursor) as context:
        return lookback_sensor(context)


def run_request(request: RunRequest, resources: dict, instance: DagsterInstance) -> object:
    """Execute what a lookback request selects (its asset, with its checks) for its window."""
    assert request.job_name == "hourly_pipeline" and request.asset_selection == [SLIDING]
    result = run_stages([telemetry_sliding_15m], resources, instance, partition_key=request.partition_key)
    assert result.success
    return result


def test_neighbouring_hours_are_named_across_a_day_and_the_first_window_has_none() -> None:
    assert previous_hour_key("2025-03-02-00:00") == "2025-03-01-23:00"
    assert next_hour_key("2025-03-01-23:00") == "2025-03-02-00:00"
    assert previous_hour_key("2024-01-01-00:00") is None  # the pipeline's first window (INFLUX_ASSETS_START)


def test_hours_processed_out_of_order_end_with_the_same_data_as_in_order(
    influx_url: str, influxdb: InfluxDBResource, oracle: InfluxQLOracle, simulation: Simulation, tmp_path
) -> None:
    keys = hour_keys(simulation)
    reference = clean_reference(influx_url, simulation)
    write_simulation(simulation, influxdb)
    resources = resources_for(influxdb, ColdStorage(base_url=str(tmp_path)))
    instance = DagsterInstance.ephemeral()

    later = run_stages(hourly_assets, resources, instance, partition_range=(keys[2], keys[3]))
    assert later.success
    # the later range's first window was computed without its previous hour: flagged, and wrong
    assert lookback_verdicts(later) == {keys[2]: (False, AssetCheckSeverity.WARN), keys[3]: (True, AssetCheckSeverity.ERROR)}
    wrong = window_contents(oracle, [keys[2]], ["telemetry_sliding_15m"])[("telemetry_sliding_15m", keys[2])]
    assert wrong.points == reference[("telemetry_sliding_15m", keys[2])].points  # same hops, fewer points in them
    assert wrong != reference[("telemetry_sliding_15m", keys[2])]

    first = tick(instance, None)
    assert first.run_requests == []  # hour keys[1] is not processed yet: nothing to recompute against

    earlier = run_stages(hourly_assets, resources, instance, partition_range=(keys[0], keys[1]))
    assert earlier.success
    second = tick(instance, first.cursor)
    assert [(r.partition_key, r.tags["influx_assets/trigger"]) for r in second.run_requests] == [(keys[2], "lookback")]
    assert tick(instance, first.cursor).run_requests[0].run_key == second.run_requests[0].run_key  # one state, one key

    rerun = run_request(second.run_requests[0], resources, instance)
    assert lookback_verdicts(rerun) == {keys[2]: (True, AssetCheckSeverity.ERROR)}
    assert tick(instance, second.cursor).run_requests == []  # the re-run matches: no loop
    assert window_contents(oracle, keys) == reference


def test_a_rerun_hour_makes_the_next_sliding_window_stale_until_it_is_recomputed(
    influxdb: InfluxDBResource, oracle: InfluxQLOracle, two_hours_in_order: TwoHours
) -> None:
    keys, resources, instance = two_hours_in_order
    settled = tick(instance, None)
    assert settled.run_requests == []  # processed in order: every sliding window read its previous hour

    write_late_point(influxdb, at=hour_start(keys[0]) + pd.Timedelta(minutes=58), sensor="late-1")
    # the late-data sensor's re-run of the changed hour (its sliding window included: it is the hourly job)
    assert run_stages(hourly_assets, resources, instance, partition_key=keys[0]).success
    requests = tick(instance, settled.cursor).run_requests
    assert [r.partition_key for r in requests] == [keys[1]]
    before = oracle.count("telemetry_sliding_15m", "mean", f"WHERE \"sensor_id\" = 'late-1' AND time >= {hour_start(keys[1]).value}")
    assert before == 0  # the next hour's first hops do not yet see the late point

    rerun = run_request(requests[0], resources, instance)
    assert lookback_verdicts(rerun) == {keys[1]: (True, AssetCheckSeverity.ERROR)}
    # 10:58 lies in the 10:55 5-minute window, which the hops at 11:00 and 11:05 of the next hour read
    after = oracle.rows(
        f"SELECT \"count\" FROM \"telemetry_sliding_15m\" WHERE \"sensor_id\" = 'late-1' AND time >= {hour_start(keys[1]).value}"
    )
    assert len(after) == 2 and all(r["count"] == 1 for r in after)


def test_the_check_judges_a_window_whose_previous_hour_changed_after_it_was_computed_an_error(
    influxdb: InfluxDBResource, two_hours_in_order: TwoHours
) -> None:
    keys, resources, instance = two_hours_in_order
    write_late_point(influxdb, at=hour_start(keys[0]) + pd.Timedelta(minutes=57), sensor="late-2")
    assert run_stages(hourly_assets, resources, instance, partition_key=keys[0]).success
    # the stale window judged as the check judges it, from the instance's latest records of both windows
    sliding = instance.fetch_materializations(AssetRecordsFilter(SLIDING, asset_partitions=[keys[1]]), limit=1).records
    previous = instance.fetch_materializations(AssetRecordsFilter(FIVE_MINUTE, asset_partitions=[keys[0]]), limit=1).records
    verdict = lookback_verdict(windows_for(hourly_windows, [keys[1]])[0], {keys[1]: sliding[0]}, {keys[0]: previous[0]})
    assert (verdict.passed, verdict.severity) == (False, AssetCheckSeverity.ERROR)
    assert "changed after this window was computed" in str(verdict.description)
    assert lookback_matches(sliding[0], previous[0]) is False


def set_status(instance: DagsterInstance, run_id: str, event_type: DagsterEventType) -> None:
    """Move a run's status as its worker's RUN_START / RUN_SUCCESS event would."""
    run = instance.get_run_by_id(run_id)
    assert run is not None
    instance.run_storage.handle_run_event(run_id, DagsterEvent(event_type.value, job_name=run.job_name))


def test_the_sensor_waits_for_the_run_that_rewrote_the_hour_to_finish(
    influxdb: InfluxDBResource, two_hours_in_order: TwoHours
) -> None:
    keys, resources, instance = two_hours_in_order
    settled = tick(instance, None)
    write_late_point(influxdb, at=hour_start(keys[0]) + pd.Timedelta(minutes=59), sensor="late-3")
    rerun = run_stages(hourly_assets, resources, instance, partition_key=keys[0])
    set_status(instance, rerun.run_id, DagsterEventType.RUN_START)  # as if its worker were still writing
    waiting = tick(instance, settled.cursor)
    assert waiting.run_requests == [] and waiting.cursor == settled.cursor  # nothing skipped, nothing read half-done
    set_status(instance, rerun.run_id, DagsterEventType.RUN_SUCCESS)
    assert [r.partition_key for r in tick(instance, settled.cursor).run_requests] == [keys[1]]
