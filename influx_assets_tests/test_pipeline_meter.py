"""Edge success rate and server query cost, measured against the real test influxd."""

import pandas as pd
from dagster import AssetSelection, DagsterInstance, materialize

from influx_assets.devtools.feed import write_simulation
from influx_assets.devtools.simulate import SimulationConfig, simulate
from influx_assets.influxdb import OWN_QUERIES, InfluxDBResource
from influx_assets.resources import resources_for
from influx_assets.telemetry import ColdStorage, hourly_assets, pipeline_assets, pipeline_checks
from influx_assets.telemetry.contract import RAW_MEASUREMENT
from influx_assets_tests.influxql_oracle import InfluxQLOracle
from influx_assets_tests.pipeline_harness import keys_of, run_stages

HOURS = ("2025-03-01-10:00", "2025-03-01-11:00")


def test_the_server_counters_see_exactly_the_queries_and_points_of_a_workload(influxdb: InfluxDBResource) -> None:
    connection = influxdb.connection
    influxdb.prepare_database()
    frame = pd.DataFrame({"time": pd.date_range("2025-03-01", periods=25, freq="1s", tz="UTC"), "v": 1.0})
    before = connection.server_counters()
    influxdb.write_frame(frame, "probe", [])
    for _ in range(3):
        connection.field_types("probe")  # one SHOW FIELD KEYS each
    cost = connection.server_counters().since(before, own_queries=OWN_QUERIES)
    assert (cost.queries, cost.points_written) == (3, 25)
    assert cost.query_seconds > 0 and cost.response_bytes and cost.response_bytes > 0


def simulate_two_hours(influxdb: InfluxDBResource) -> None:
    config = SimulationConfig(start=pd.Timestamp("2025-03-01T10:00Z"), end=pd.Timestamp("2025-03-01T12:00Z"), sensors=6, seed=11)
    write_simulation(simulate(config), influxdb, "on_time")


def edges(oracle: InfluxQLOracle) -> dict[tuple[str, str, str], list[int]]:
    found: dict[tuple[str, str, str], list[int]] = {}
    for row in oracle.rows('SELECT "ready", "upstream", "downstream", "window" FROM "pipeline_edges"'):
        found.setdefault((row["upstream"], row["downstream"], row["window"]), []).append(row["ready"])
    return found


def test_every_hand_off_records_whether_its_upstream_window_was_committed_and_checked(
    influxdb: InfluxDBResource, oracle: InfluxQLOracle, tmp_path
) -> None:
    simulate_two_hours(influxdb)
    resources = resources_for(influxdb, ColdStorage(base_url=str(tmp_path)))
    instance = DagsterInstance.ephemeral()
    assert run_stages(hourly_assets, resources, instance, partition_key=HOURS[0]).success
    first = edges(oracle)
    # each edge of the hourly stages, for the window; validate reads the external raw source: no edge
    assert first == {
        ("validated_telemetry", "normalized_telemetry", HOURS[0]): [1],
        ("normalized_telemetry", "telemetry_5m", HOURS[0]): [1],
        # the sliding window also reads the previous hour, never materialized or checked: not ready
        ("telemetry_5m", "telemetry_sliding_15m", HOURS[0]): [0],
    }

    # the second hour's normalized window materialized without its checks: its hand-off is not ready
    unchecked = materialize(
        [*pipeline_assets, *pipeline_checks],
        selection=AssetSelection.assets(*keys_of(hourly_assets[:2])).without_checks(),
        partition_key=HOURS[1], resources=dict(resources), instance=instance,
    )
    assert unchecked.success
    five_minute = [a for a in hourly_assets if [k.to_user_string() for k in a.keys] == ["telemetry_5m"]]
    assert run_stages(five_minute, resources, instance, partition_key=HOURS[1]).success
    assert edges(oracle)[("normalized_telemetry", "telemetry_5m", HOURS[1])] == [0]

    # once both hours are checked, the sliding window of the second hour finds both ready
    assert run_stages(hourly_assets, resources, instance, partition_key=HOURS[1]).success
    assert edges(oracle)[("telemetry_5m", "telemetry_sliding_15m", HOURS[1])][-1] == 1


def test_each_stage_run_records_what_it_cost_the_server(
    influxdb: InfluxDBResource, oracle: InfluxQLOracle, tmp_path
) -> None:
    simulate_two_hours(influxdb)
    resources = resources_for(influxdb, ColdStorage(base_url=str(tmp_path)))
    result = run_stages(hourly_assets, resources, DagsterInstance.ephemeral(), partition_range=HOURS)
    assert result.success
    written = {
        (e.asset_key.to_user_string(), e.partition): e.materialization.metadata["dagster/row_count"].value
        for e in result.get_asset_materialization_events()
    }
    costs = {
        row["stage"]: row
        for row in oracle.rows(
            'SELECT "server_queries", "server_query_seconds", "server_points_written", "stage" '
            'FROM "pipeline_metrics" WHERE "server_queries" >= 0'
        )
    }
    assert set(costs) == {key.to_user_string() for key in keys_of(hourly_assets)}
    for stage, cost in costs.items():
        rows_written = sum(n for (s, _), n in written.items() if s == stage)
        # the stage's own points, plus its ledger entries and metric points
        assert cost["server_points_written"] >= rows_written, stage
        assert cost["server_queries"] >= 1 and cost["server_query_seconds"] > 0, stage
    raw_points = oracle.count(RAW_MEASUREMENT, "value")
    assert costs["quarantined_telemetry"]["server_points_written"] < raw_points  # the second output: only its own work
