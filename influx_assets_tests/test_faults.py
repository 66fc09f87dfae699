"""Reliability of the resource under faults: a real ``influxd`` behind a fault-injecting proxy.

Each test puts :class:`FaultProxy` between the resource and the server, injects one kind of fault,
and asserts through the independent InfluxQL oracle (straight to the server, around the proxy) that
the data stored is exactly one clean copy — and through the proxy's record that the resource retried
what a retry can heal and nothing else.
"""

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    HourlyPartitionsDefinition,
    asset,
    instance_for_test,
    materialize,
)

from influx_assets.influxdb import (
    BadRequestError,
    FieldTypeConflictError,
    InfluxDBIOManager,
    InfluxDBResource,
    PartialWriteError,
    ServerBusyError,
    ServerUnreachableError,
)
from influx_assets.devtools.local_server import LocalInfluxd, free_port
from influx_assets_tests.fault_proxy import Fault, FaultProxy
from influx_assets_tests.influxql_oracle import InfluxQLOracle

T0 = pd.Timestamp("2024-03-04T00:00:00Z")  # a Monday: 1.x shard groups are Monday-aligned weeks
INITIAL = 0.05
JITTER = 0.25  # RetrySettings' default jitter


def readings(n: int, start: pd.Timestamp = T0, sensors: int = 4) -> pd.DataFrame:
    """``n`` points, one per second, spread over ``sensors`` series, with distinct values."""
    return pd.DataFrame({
        "time": pd.date_range(start, periods=n, freq="s"),
        "sensor_id": [f"s{i % sensors}" for i in range(n)],
        "value": np.arange(n, dtype="float64") / 8.0,
    })


def stored(oracle: InfluxQLOracle, measurement: str) -> pd.DataFrame:
    """What the server holds, read around the code under test."""
    rows = oracle.rows(f'SELECT "sensor_id", "value" FROM "{measurement}"')
    frame = pd.DataFrame(rows, columns=["time", "sensor_id", "value"])
    frame["time"] = pd.to_datetime(frame["time"].astype("int64"), unit="ns", utc=True)
    return frame.sort_values("time", ignore_index=True)


def assert_one_clean_copy(oracle: InfluxQLOracle, measurement: str, frame: pd.DataFrame) -> None:
    expected = frame.sort_values("time", ignore_index=True)
    pd.testing.assert_frame_equal(stored(oracle, measurement), expected, check_dtype=False)


@pytest.fixture
def proxy(influx_url: str) -> Iterator[FaultProxy]:
    with FaultProxy(influx_url) as running:
        yield running


def through(proxy: FaultProxy, base: InfluxDBResource, **overrides: object) -> InfluxDBResource:
    """A v1 resource on the test's database that talks to the server through ``proxy``."""
    settings: dict[str, object] = {
        "url": proxy.url, "api": "v1", "database": base.database, "token": base.token,
        "username": base.username, "password": base.password, "max_attempts": 4,
        "initial_backoff_seconds": INITIAL, "max_backoff_seconds": 1.0, "timeout_seconds": 5.0,
        "create_database": False,
    }
    return InfluxDBResource(**(settings | overrides))


def arrival_gaps(proxy: FaultProxy, path: str = "/write") -> list[float]:
    times = [r.arrived for r in proxy.requests(path)]
    return [b - a for a, b in zip(times, times[1:], strict=False)]


# --- busy servers: 429 / 503 -------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
def test_busy_answers_are_retried_with_exponential_backoff(
    status: int, proxy: FaultProxy, influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    resource = through(proxy, influxdb)
    proxy.inject(Fault.respond(status), Fault.respond(status), Fault.respond(status))
    frame = readings(40)

    resource.write_frame(frame, "busy", ["sensor_id"])

    assert [r.fault for r in proxy.requests("/write")] == ["respond"] * 3 + ["pass"]
    delays = resource.retries_observed
    assert len(delays) == 3
    for n, delay in enumerate(delays):
        assert INITIAL * 2**n * (1 - JITTER) <= delay <= INITIAL * 2**n * (1 + JITTER)
    # The resource really waited: requests reached the proxy no sooner than the recorded delays.
    assert all(gap >= delay for gap, delay in zip(arrival_gaps(proxy), delays, strict=True))
    assert_one_clean_copy(oracle, "busy", frame)


def _http_date_in(seconds: int) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


@pytest.mark.parametrize(
    ("status", "retry_after", "at_least"),
    [(429, lambda: "1", 1.0), (503, lambda: "1", 1.0), (503, lambda: _http_date_in(3), 1.0)],
    ids=["429-seconds", "503-seconds", "503-http-date"],
)
def test_retry_after_is_a_lower_bound_on_the_wait(
    status: int, retry_after: Callable[[], str], at_least: float, proxy: FaultProxy, influxdb: InfluxDBResource,
    oracle: InfluxQLOracle,
) -> None:
    resource = through(proxy, influxdb)
    proxy.inject(Fault.respond(status, retry_after=retry_after()))
    frame = readings(10)

    resource.write_frame(frame, "throttled", ["sensor_id"])

    (delay,) = resource.retries_observed
    assert delay >= at_least > INITIAL * (1 + JITTER)  # the server's wish, not our own 50 ms backoff
    (gap,) = arrival_gaps(proxy)
    assert gap >= delay
    assert_one_clean_copy(oracle, "throttled", frame)


def test_a_retry_after_longer_than_allowed_fails_at_once_with_the_reason(
    proxy: FaultProxy, influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    resource = through(proxy, influxdb, max_retry_after_seconds=5)
    proxy.inject(Fault.respond(503, retry_after="3600"))

    with pytest.raises(ServerBusyError, match=r"retry after 3600 s, more than the 5 s allowed") as raised:
        resource.write_frame(readings(10), "throttled", ["sensor_id"])

    assert "gave up after 1 attempt" in str(raised.value)
    assert resource.retries_observed == [] and len(proxy.requests("/write")) == 1
    assert oracle.count("throttled") == 0


# --- slow, reset and closed connections ----------------------------------------------------------


def test_response_slower_than_the_timeout_is_retried_and_stored_once(
    proxy: FaultProxy, influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    resource = through(proxy, influxdb, timeout_seconds=0.5, write_batch_size=50)
    frame = readings(200)
    proxy.inject(Fault.pass_through(), Fault.delay(1.5))  # the 2nd batch is applied, its answer is late

    resource.write_frame(frame, "slow", ["sensor_id"])

    writes = proxy.requests("/write")
    assert [w.fault for w in writes] == ["pass", "delay", "pass", "pass", "pass"]
    assert writes[1].upstream_status == 204  # the server stored the late batch: the retry wrote it twice
    assert writes[1].body == writes[2].body
    assert len(resource.retries_observed) == 1
    assert_one_clean_copy(oracle, "slow", frame)


@pytest.mark.parametrize(
    "fault",
    [Fault.reset_request_body(), Fault.reset_response_body(), Fault.close_before_response()],
    ids=lambda f: f.action,
)
def test_broken_connections_during_a_batched_write_are_retried_and_stored_once(
    fault: Fault, proxy: FaultProxy, influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    resource = through(proxy, influxdb, write_batch_size=50)
    frame = readings(200)
    proxy.inject(Fault.pass_through(), fault, fault)

    resource.write_frame(frame, "broken", ["sensor_id"])

    writes = proxy.requests("/write")
    assert [w.fault for w in writes] == ["pass", fault.action, fault.action, "pass", "pass", "pass"]
    applied = [w.upstream_status for w in writes[1:3]]
    assert applied == ([None, None] if fault.action == "reset_request" else [204, 204])
    assert_one_clean_copy(oracle, "broken", frame)


def test_a_read_reset_mid_body_is_retried_and_returns_the_whole_window(
    proxy: FaultProxy, influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    frame = readings(3000)
    influxdb.write_frame(frame, "reread", ["sensor_id"])
    resource = through(proxy, influxdb)
    proxy.inject(Fault.reset_response_body(), where=lambda r: r.statement.startswith("SELECT"))

    got = resource.read_window(resource.slice("reread", T0, T0 + pd.Timedelta(hours=1)))

    selects = proxy.requests(lambda r: r.statement.startswith("SELECT"))
    assert [s.fault for s in selects] == ["reset_response", "pass"]
    expected = frame.sort_values(["time", "sensor_id"], ignore_index=True)
    pd.testing.assert_frame_equal(got[["time", "sensor_id", "value"]], expected, check_dtype=False)
    assert oracle.count("reread") == len(frame)


# --- what is not retried, and giving up ---------------------------------------------------------


def test_a_bad_request_is_not_retried(
    proxy: FaultProxy, influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    resource = through(proxy, influxdb)
    proxy.inject(Fault.respond(400, body=b'{"error":"unable to parse \'x\': missing fields"}'))

    with pytest.raises(BadRequestError, match="missing fields"):
        resource.write_frame(readings(5), "bad", ["sensor_id"])

    assert len(proxy.requests("/write")) == 1
    assert resource.retries_observed == []
    assert oracle.count("bad") == 0


def test_a_real_type_conflict_is_not_retried(
    proxy: FaultProxy, influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    influxdb.write_frame(readings(5), "typed", ["sensor_id"])  # value is float
    resource = through(proxy, influxdb)
    ints = readings(5, start=T0 + pd.Timedelta(minutes=1)).assign(value=np.arange(5))

    with pytest.raises(FieldTypeConflictError):
        resource.write_frame(ints, "typed", ["sensor_id"])

    assert len(proxy.requests("/write")) == 1
    assert oracle.count("typed") == 5


@pytest.mark.parametrize(
    ("fault", "error", "wording"),
    [(Fault.respond(503), ServerBusyError, "busy or failing (HTTP 503)"),
     (Fault.respond(429, retry_after="0"), ServerBusyError, "busy or failing (HTTP 429)"),
     (Fault.close_before_response(forward=False), ServerUnreachableError, "is it running?")],
    ids=["503", "429", "closed"],
)
def test_an_exhausted_retry_budget_names_the_url_and_the_attempts(
    fault: Fault, error: type, wording: str, proxy: FaultProxy, influxdb: InfluxDBResource,
    oracle: InfluxQLOracle,
) -> None:
    resource = through(proxy, influxdb, max_attempts=3)
    proxy.inject(*[fault] * 5)

    with pytest.raises(error) as raised:
        resource.write_frame(readings(5), "given_up", ["sensor_id"])

    message = str(raised.value)
    assert f"InfluxDB at {proxy.url}" in message
    assert wording in message
    assert "gave up after 3 attempts" in message
    assert len(proxy.requests("/write")) == 3
    assert len(resource.retries_observed) == 2
    assert oracle.count("given_up") == 0


def test_a_stopped_server_gets_a_clear_message() -> None:
    port = free_port()  # nothing listens here
    resource = InfluxDBResource(
        url=f"http://127.0.0.1:{port}", max_attempts=2, initial_backoff_seconds=INITIAL
    )

    with pytest.raises(ServerUnreachableError) as raised:
        resource.read_window(resource.slice("anything"))

    message = str(raised.value)
    assert message.startswith(f"cannot reach InfluxDB at http://127.0.0.1:{port} — is it running?")
    assert "gave up after 2 attempts" in message
    assert len(resource.retries_observed) == 1


def test_a_timeout_says_how_long_was_waited(proxy: FaultProxy, influxdb: InfluxDBResource) -> None:
    resource = through(proxy, influxdb, timeout_seconds=0.3, max_attempts=1)
    proxy.inject(Fault.delay(1.0))

    with pytest.raises(ServerUnreachableError, match=r"did not answer within 0\.3 s \(timeout_seconds\)"):
        resource.write_frame(readings(5), "late", ["sensor_id"])


# --- partial writes -----------------------------------------------------------------------------


def test_a_type_conflict_in_one_shard_reports_the_points_dropped(
    influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    influxdb.write_frame(readings(3), "mixed", ["sensor_id"])  # value: float in the week of T0
    week_later = T0 + pd.Timedelta(days=7)  # the next shard group: the field is still untyped there
    ints = pd.concat([readings(4, T0 + pd.Timedelta(hours=1)), readings(6, week_later)], ignore_index=True)
    ints["value"] = np.arange(len(ints))

    with pytest.raises(FieldTypeConflictError) as raised:
        influxdb.write_frame(ints, "mixed", ["sensor_id"])

    error = raised.value
    assert error.points_dropped == 4
    assert "is type integer, already exists as type float" in error.reason
    assert "4 points dropped" in str(error) and '"value"' in str(error)
    # InfluxDB 1.x kept the other shard's lines: a partial write is not atomic, hence the error.
    assert oracle.count("mixed") == 3 + 6


@dataclass(frozen=True)
class RawLines:
    """Hand-written line protocol in the shape the transport sends (our encoder never emits bad lines)."""

    lines: tuple[str, ...]
    rows_without_fields: int = 0
    empty_tag_values: int = 0

    @property
    def points(self) -> int:
        return len(self.lines)

    def batches(self, batch_size: int) -> Iterator[bytes]:
        for offset in range(0, len(self.lines), batch_size):
            yield "\n".join(self.lines[offset : offset + batch_size]).encode()


def test_unparseable_lines_raise_a_partial_write_with_counts(
    influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    raw = RawLines((
        f"raw v=1.5 {T0.value}",
        "raw v=2.5 not-a-time",
        f"raw,t= v=3.5 {T0.value + 1}",
        f"raw v=4.5 {T0.value + 2}",
    ))

    with pytest.raises(PartialWriteError) as raised:
        influxdb.write_encoded(raw)  # type: ignore[arg-type]

    assert raised.value.points_dropped == 2
    assert "bad timestamp" in raised.value.reason and "missing tag value" in raised.value.reason
    assert "2 points dropped" in str(raised.value)
    assert oracle.count("raw") == 2


def test_an_overlong_series_key_is_rejected_with_the_servers_reason(
    influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    frame = readings(2).assign(sensor_id=["s" * 70_000, "short"])

    with pytest.raises(PartialWriteError) as raised:
        influxdb.write_frame(frame, "keys", ["sensor_id"])

    # The echoed 70 kB line is shortened so the reason stays inside the message.
    assert "max key length exceeded" in str(raised.value)
    assert len(str(raised.value)) < 1000
    assert raised.value.points_dropped == 1
    assert oracle.count("keys") == 1


hours = HourlyPartitionsDefinition(start_date="2024-03-04-00:00", timezone="UTC")


def test_a_rejected_write_fails_the_materialization(
    influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    influxdb.write_frame(readings(3, T0 + pd.Timedelta(hours=5)), "conflicted", ["sensor_id"])  # float

    @asset(partitions_def=hours, metadata={"influxdb/tags": ["sensor_id"]})
    def conflicted() -> pd.DataFrame:
        return readings(6).assign(value=np.arange(6))  # integers, same shard: the server refuses

    with instance_for_test() as instance:
        result = materialize(
            [conflicted], instance=instance, partition_key="2024-03-04-00:00", raise_on_error=False,
            resources={"io_manager": InfluxDBIOManager(influxdb=influxdb)},
        )
        assert not result.success
        assert instance.get_latest_materialization_event(AssetKey("conflicted")) is None
        assert instance.get_materialized_partitions(AssetKey("conflicted")) == set()
        assert_failure_mentions(instance, result.run_id, ["field type conflict", "6 points dropped"])
    assert oracle.count("conflicted") == 3  # the neighbouring hour is untouched


def assert_failure_mentions(instance: DagsterInstance, run_id: str, phrases: list[str]) -> None:
    failures = [e for e in instance.all_logs(run_id) if e.dagster_event and e.dagster_event.is_step_failure]
    assert failures, "the step did not fail"
    text = str(failures[0].dagster_event.step_failure_data.error)
    for phrase in phrases:
        assert phrase in text


# --- a server killed mid-write -----------------------------------------------------------------


def test_a_server_killed_during_a_batched_write_recovers_with_one_copy(tmp_path: Path) -> None:
    server = LocalInfluxd(tmp_path / "influxd").start()
    restarted = threading.Timer(1.0, server.start)  # down for a second: several retries find no server

    def kill_then_restart() -> None:
        server.kill()  # SIGKILL right after the server took the 3rd batch, before we see its answer
        restarted.start()

    try:
        oracle = InfluxQLOracle(server.url, "killed")
        oracle.query('CREATE DATABASE "killed"')
        with FaultProxy(server.url) as proxy:
            resource = InfluxDBResource(
                url=proxy.url, api="v1", database="killed", write_batch_size=2000, max_attempts=40,
                initial_backoff_seconds=INITIAL, max_backoff_seconds=0.5, timeout_seconds=10,
            )
            proxy.inject(
                Fault.pass_through(), Fault.pass_through(),
                Fault.close_before_response(forward=True, after_forward=kill_then_restart),
            )
            frame = readings(10_000, sensors=50)

            result = resource.write_frame(frame, "survivor", ["sensor_id"])

            restarted.join(timeout=60)
            writes = proxy.requests("/write")
        assert writes[2].upstream_status == 204 and writes[2].fault == "close"
        assert any(w.upstream_error for w in writes[3:]), "no retry hit the dead server"
        assert result.points_written == 10_000 and result.batches == 5
        assert_one_clean_copy(oracle, "survivor", frame)
    finally:
        if restarted.is_alive():
            restarted.join(timeout=60)
        server.stop()
