"""A window is processed exactly once in effect, whatever the server does: pipeline-level fault proofs.

Every test runs the real hourly stages (validate, normalize, 5-minute and sliding aggregates, with their
checks) through Dagster against a real ``influxd``, puts faults in the way (a SIGKILLed server, a server
gone for longer than every retry, a field whose type changes between shards, a DST day), and compares
what every stage stored per window — point count and content fingerprint, read through the independent InfluxQL
oracle — with a fault-free run of the same raw points into another database.
"""

import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    ExecuteInProcessResult,
    TimeWindowPartitionMapping,
    instance_for_test,
)

from influx_assets.devtools.feed import write_simulation
from influx_assets.influxdb import InfluxDBResource
from influx_assets.devtools.local_server import LocalInfluxd
from influx_assets.telemetry.partitions import daily_windows, hourly_windows
from influx_assets.telemetry import hourly_assets, telemetry_1h
from influx_assets.telemetry.contract import RAW_MEASUREMENT, RAW_TAGS
from influx_assets.resources import resources_for
from influx_assets.devtools.simulate import Simulation, SimulationConfig, simulate
from influx_assets_tests.fault_proxy import Fault, FaultProxy, SeenRequest
from influx_assets_tests.influxql_oracle import InfluxQLOracle
from influx_assets_tests.pipeline_harness import (
    HOUR,
    HOURLY_MEASUREMENTS,
    WindowContent,
    clean_reference,
    deleting,
    probing,
    hour_keys,
    hour_start,
    keys_of,
    rows,
    run_stages,
    small_simulation,
    window_clause,
    window_contents,
    writes_to,
)


@pytest.fixture(scope="module")
def simulation() -> Simulation:
    """Four hourly windows of ten sensors, every defect kind present."""
    return small_simulation()


@pytest.fixture
def reference(influx_url: str, simulation: Simulation) -> dict[tuple[str, str], WindowContent]:
    """What a fault-free run of the hourly stages stores for ``simulation``, per window."""
    return clean_reference(influx_url, simulation)


def step_events(result: ExecuteInProcessResult, event_type: DagsterEventType) -> list[str]:
    """Step keys of a run's events of one type, in order."""
    return [e.step_key for e in result.all_events if e.event_type == event_type]


# --- 1. influxd SIGKILLed in the middle of a single-run backfill ---------------------------------


class NthWriteAfterProbe:
    """Proxy predicate: the ``n``-th ``/write`` after the IO manager probed ``measurement``'s window.

    (The proxy picks a fault before reading the body, so the probe query marks where the writes of
    that measurement begin; a first write of a window sends no ``DELETE``.)
    """

    def __init__(self, measurement: str, n: int) -> None:
        self.is_probe, self.n, self.armed, self.writes = probing(measurement), n, False, 0

    def __call__(self, request: SeenRequest) -> bool:
        if self.is_probe(request):
            self.armed = True
        elif self.armed and request.path == "/write":
            self.writes += 1
            return self.writes == self.n
        return False


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[LocalInfluxd]:
    """A server of this test alone, which it may kill and restart on the same data dir and port."""
    server = LocalInfluxd(tmp_path / "influxd").start()
    yield server
    server.stop()


@pytest.mark.parametrize("healed_by", ["resource_backoff", "stage_retry_policy"])
def test_influxd_killed_mid_backfill_leaves_every_window_as_a_clean_run_would(
    healed_by: str, own_server: LocalInfluxd, simulation: Simulation, reference: dict
) -> None:
    keys = hour_keys(simulation)
    database = "backfill"
    write_simulation(simulation, InfluxDBResource(url=own_server.url, api="v1", database=database))
    restarted = threading.Timer(1.0, own_server.start)

    def kill_then_restart() -> None:
        own_server.kill()
        restarted.start()

    with FaultProxy(own_server.url) as proxy:
        if healed_by == "resource_backoff":
            # The server applied the 2nd normalized batch, then died before answering: the resource
            # retries that batch until the restarted server takes it, and the step never fails.
            budget = {"max_attempts": 40, "initial_backoff_seconds": 0.05, "max_backoff_seconds": 0.5}
            fault = Fault.close_before_response(forward=True, after_forward=kill_then_restart)
            where = NthWriteAfterProbe("normalized_telemetry", 2)
        else:
            # The server stored the 1st normalized batch, answered, then died: the window is half
            # written, the resource does not retry, the step fails and its RetryPolicy runs it again,
            # which finds points in the window, deletes them and writes the window whole.
            budget = {"max_attempts": 1}
            fault = Fault.pass_through(after_forward=kill_then_restart)
            where = NthWriteAfterProbe("normalized_telemetry", 1)
        proxy.inject(fault, where=where)
        resource = InfluxDBResource(
            url=proxy.url, api="v1", database=database, write_batch_size=500, timeout_seconds=10, **budget
        )
        result = run_stages(
            hourly_assets, resources_for(resource), DagsterInstance.ephemeral(), partition_range=(keys[0], keys[-1])
        )
        restarted.join(timeout=60)
        seen = proxy.requests()

    assert result.success
    assert proxy.pending() == 0 and restarted.finished.is_set(), "the server was never killed"
    assert any(r.upstream_error for r in seen), "no request found the server dead"
    retried = step_events(result, DagsterEventType.STEP_UP_FOR_RETRY)
    if healed_by == "resource_backoff":
        killed = [r for r in seen if r.fault == "close"]
        assert killed[0].upstream_status == 204 and writes_to(killed[0], "normalized_telemetry")
        assert retried == []
    else:
        killed = [r for r in seen if writes_to(r, "normalized_telemetry")]
        assert killed[0].upstream_status == 204  # a batch was stored, then the server died
        assert retried and set(retried) == {"normalized_telemetry"}
        assert any(deleting("normalized_telemetry")(r) for r in seen)  # the retry replaced the window
    oracle = InfluxQLOracle(own_server.url, database)
    assert window_contents(oracle, keys) == reference
    assert oracle.count("sensor_raw") == len(simulation.points)


# --- 2. a server gone for longer than every retry -------------------------------------------------


class Outage:
    """A proxy rule set that, once started, fails every request like a dead server (RST)."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.down = threading.Event()
        proxy.inject(*[Fault.close_before_response(forward=False)] * 10_000, where=lambda _r: self.down.is_set())


@pytest.mark.parametrize(
    ("outage_starts", "failed_stage", "stored_before_outage"),
    [
        ("before_the_run", "validate_telemetry", set()),
        ("after_validate_stored", "normalized_telemetry", {"validated_telemetry", "quarantined_telemetry"}),
    ],
    ids=["outage_before_the_run", "outage_after_validate_stored"],
)
def test_an_outage_longer_than_every_retry_fails_the_window_by_name_and_a_rerun_heals_it(
    outage_starts: str, failed_stage: str, stored_before_outage: set[str], influx_url: str,
    influxdb: InfluxDBResource, oracle: InfluxQLOracle, simulation: Simulation, reference: dict,
) -> None:
    keys = hour_keys(simulation)
    failing = keys[-1]
    write_simulation(simulation, influxdb)
    with FaultProxy(influx_url) as proxy, instance_for_test() as instance:
        resource = InfluxDBResource(
            url=proxy.url, api="v1", database=influxdb.database, max_attempts=2, initial_backoff_seconds=0.05
        )
        resources = resources_for(resource)
        assert run_stages(hourly_assets, resources, instance, partition_range=(keys[0], keys[-2])).success

        # From its start on, the outage outlasts the resource's 2 attempts and the stage's 3 retries.
        outage = Outage(proxy)
        if outage_starts == "before_the_run":
            outage.down.set()  # every request meets a dead server
        else:  # once the IO manager has probed the normalized window, before it writes (validate has stored)
            proxy.inject(Fault.pass_through(after_forward=outage.down.set), where=probing("normalized_telemetry"))
        failed = run_stages(hourly_assets, resources, instance, partition_key=failing)

        assert not failed.success
        materialized = {
            e.asset_key.to_user_string() for e in failed.all_events
            if e.event_type == DagsterEventType.ASSET_MATERIALIZATION
        }
        assert materialized == stored_before_outage
        for key in keys_of(hourly_assets):
            done = instance.get_materialized_partitions(key)
            assert failing in done if key.to_user_string() in stored_before_outage else failing not in done, key
        assert_failure_names_stage_and_window(instance, failed.run_id, failed_stage, failing)
        assert step_events(failed, DagsterEventType.STEP_UP_FOR_RETRY) == [failed_stage] * 3
        # the failed stage's window holds nothing (its write never got through), not half of it; the stages
        # downstream of it never ran for that window
        for measurement in set(HOURLY_MEASUREMENTS) - stored_before_outage:
            assert oracle.count(measurement, where=window_clause(failing)) == 0, measurement

        outage.down.clear()
        healed = run_stages(hourly_assets, resources, instance, partition_key=failing)

    assert healed.success
    assert window_contents(oracle, keys) == reference


def assert_failure_names_stage_and_window(instance: DagsterInstance, run_id: str, stage: str, window: str) -> None:
    """The run's event log says which stage failed, for which window, and why."""
    logs = instance.all_logs(run_id)
    failures = [e.dagster_event for e in logs if e.dagster_event and e.dagster_event.is_step_failure]
    assert [f.step_key for f in failures] == [stage]
    text = failures[0].step_failure_data.error.to_string()
    assert f"window [{hour_start(window).isoformat()}, " in text and f"(partition {window})" in text, text
    assert "cannot reach InfluxDB" in text and "is it running?" in text and "gave up after 2 attempts" in text


# --- 5. bad input at pipeline level: a field type that changes between shards; a DST day ----------


def field_types(oracle: InfluxQLOracle, measurement: str, field: str) -> set[str]:
    return {r["fieldType"] for r in oracle.rows(f'SHOW FIELD KEYS FROM "{measurement}"') if r["fieldKey"] == field}


def test_a_field_written_as_integer_in_a_later_shard_is_processed_like_the_float_it_means(
    influx_url: str, influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    # Sunday 22:00 to Monday 02:00 UTC: two windows in each of two 1.x shard groups (Monday-aligned weeks)
    simulation = small_simulation(start="2024-03-10T22:00:00Z", hours=4, sensors=10, seed=5)
    keys = hour_keys(simulation)
    frame = simulation.raw_points()
    monday = frame["time"] >= pd.Timestamp("2024-03-11T00:00:00Z")
    # battery: fractional floats on Sunday; on Monday whole numbers, written as integers (and, in the
    # clean database, as the floats they mean)
    frame.loc[monday, "battery"] = frame.loc[monday, "battery"].round(0)
    tags = list(RAW_TAGS)
    influxdb.write_frame(frame[~monday], RAW_MEASUREMENT, tags)  # battery: float
    influxdb.write_frame(frame[monday].astype({"battery": "Int64"}), RAW_MEASUREMENT, tags)  # integer
    assert field_types(oracle, RAW_MEASUREMENT, "battery") == {"float", "integer"}

    clean = InfluxDBResource(url=influx_url, api="v1", database=f"{influxdb.database}_float")
    clean_oracle = InfluxQLOracle(influx_url, clean.database)
    try:
        clean.ensure_database()
        clean.write_frame(frame, RAW_MEASUREMENT, tags)
        assert field_types(clean_oracle, RAW_MEASUREMENT, "battery") == {"float"}
        for target in (influxdb, clean):  # one range run across the shard boundary
            result = run_stages(
                hourly_assets, resources_for(target), DagsterInstance.ephemeral(), partition_range=(keys[0], keys[-1])
            )
            assert result.success
        expected = window_contents(clean_oracle, keys)
    finally:
        clean_oracle.drop_database()

    assert window_contents(oracle, keys) == expected
    assert oracle.count("normalized_telemetry", "battery", window_clause(keys[-1])) > 0
    for measurement in ("validated_telemetry", "normalized_telemetry"):
        assert field_types(oracle, measurement, "battery") == {"float"}


def test_the_utc_day_of_a_dst_change_holds_24_hourly_windows_and_its_daily_stage_reads_exactly_them(
    influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    day = "2024-03-31"  # Europe/Berlin springs forward at 02:00 local: its local day has 23 hours
    window = daily_windows.time_window_for_partition_key(day)
    start, end = pd.Timestamp(window.start), pd.Timestamp(window.end)
    assert (start.isoformat(), end - start) == ("2024-03-31T00:00:00+00:00", pd.Timedelta(hours=24))
    mapped = TimeWindowPartitionMapping().get_upstream_mapped_partitions_result_for_partitions(
        daily_windows.subset_with_partition_keys([day]), daily_windows, hourly_windows
    )
    hours = sorted(mapped.partitions_subset.get_partition_keys())
    assert hours == [f"{day}-{h:02d}:00" for h in range(24)]

    # two hours of margin on each side, so that reading too much or too little shows in the counts
    simulation = simulate(
        SimulationConfig(
            start=start - 2 * HOUR, end=end + 2 * HOUR, sensors=4, cadence_seconds=300, seed=3
        )
    )
    write_simulation(simulation, influxdb)
    keys = hour_keys(simulation)
    instance = DagsterInstance.ephemeral()
    resources = resources_for(influxdb)
    assert run_stages(hourly_assets, resources, instance, partition_range=(keys[0], keys[-1])).success
    assert run_stages([telemetry_1h], resources, instance, partition_key=day).success

    utc_day = f"WHERE time >= {start.value} AND time < {end.value}"
    berlin, berlin_next = pd.Timestamp(day, tz="Europe/Berlin"), pd.Timestamp("2024-04-01", tz="Europe/Berlin")
    assert berlin_next - berlin == 23 * HOUR
    local_day = f"WHERE time >= {berlin.value} AND time < {berlin_next.value}"
    normalized = oracle.count("normalized_telemetry", "value", utc_day)
    assert normalized != oracle.count("normalized_telemetry", "value", local_day)
    hourly = rows(oracle, "telemetry_1h")
    assert sorted({r["time"] for r in hourly}) == [(start + h * HOUR).value for h in range(24)]
    assert sum(r["count"] for r in hourly) == normalized
    assert sum(r["count"] for r in rows(oracle, "telemetry_5m", utc_day)) == normalized
