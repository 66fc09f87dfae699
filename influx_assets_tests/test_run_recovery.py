"""Runs that race, and runs whose worker dies: a window still ends up processed exactly once in effect.

* Two runs of the same window (two ``dagster asset materialize`` processes on one instance configured
  by the repository's ``dagster.yaml``), the second launched while the first writes: the writer pools
  make the second run's writer wait for the first, and the window holds one correct copy.
* The same race with no pool at all (two in-process runs on separate instances), forced into lockstep
  so both delete and rewrite every stage's window at the same moment: still one correct copy.
* A run worker SIGKILLed in the middle of a step, under a real ``dagster-daemon``: the run is marked
  failed, the daemon's run retry re-executes it, and the window equals a fault-free run.

Stored content is compared per window (point count + fingerprint, read through the independent
InfluxQL oracle) with a fault-free run of the same raw points into another database.

The Dagster-instance scenarios run on both instance storages (``instance_home``): the repository's
``dagster.yaml`` (SQLite) and ``deploy/dagster.postgres.yaml`` on a private PostgreSQL cluster
(:mod:`influx_assets_tests.postgres_server`); what is PostgreSQL's alone is in
``test_postgres_instance.py``.
"""

import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, DagsterRun

from influx_assets.devtools.feed import write_simulation
from influx_assets.influxdb import InfluxDBResource
from influx_assets.telemetry import hourly_assets, pipeline_assets
from influx_assets.telemetry.stage import IO_MANAGER_KEY, writer_pool
from influx_assets.automation.pools import initialize_writer_pools, writer_pools
from influx_assets.resources import resources_for
from influx_assets.devtools.simulate import Simulation
from influx_assets_tests.fault_proxy import Fault, FaultProxy
from influx_assets_tests.influxql_oracle import InfluxQLOracle
from influx_assets_tests.pipeline_harness import (
    BIN,
    HARNESS_LOCATION,
    HOURLY_MEASUREMENTS,
    REPO_CONFIG,
    REPO_ROOT,
    Daemon,
    clean_window_reference,
    deleting,
    engine_messages,
    finished_run,
    hour_keys,
    keys_of,
    location_env,
    open_instance,
    probing,
    run_stages,
    small_simulation,
    wait_for,
    window_contents,
    write_dagster_home,
)

STAGES = ",".join(key.to_user_string() for key in keys_of(hourly_assets))
VALIDATE_POOL = writer_pool("validate_telemetry")
#: Run config executing every step in the run's own process (a subprocess per step costs seconds each),
#: for the harness location's default executor (influx_assets.definitions' comes from INFLUX_ASSETS_EXECUTOR).
IN_PROCESS = '{"execution": {"config": {"in_process": {}}}}'

pytest_plugins = ["influx_assets_tests.postgres_server"]


@pytest.fixture(scope="module")
def simulation() -> Simulation:
    return small_simulation()


def dagster_home(root: Path, overrides: Mapping[str, object] | None = None) -> Path:
    """A ``DAGSTER_HOME`` whose ``dagster.yaml`` is the repository's, with ``overrides`` merged in."""
    return write_dagster_home(root, REPO_CONFIG, overrides)


InstanceHome = Callable[..., Path]


@pytest.fixture(params=["sqlite", "postgres"])
def instance_home(request: pytest.FixtureRequest, tmp_path: Path) -> InstanceHome:
    """``make(root, overrides=None)``: the test's ``DAGSTER_HOME`` on each instance storage.

    ``sqlite``: the repository's ``dagster.yaml``; ``postgres``: ``deploy/dagster.postgres.yaml`` on a
    fresh database of the session's PostgreSQL cluster (started only when a test asks for it).
    """
    if request.param == "postgres":
        return request.getfixturevalue("postgres_home")
    return lambda root=None, overrides=None: dagster_home(root or tmp_path / "home", overrides)


# --- 3. two runs of one window at once ---------------------------------------------------------


def test_every_writer_stage_declares_a_pool_and_dagster_yaml_limits_pools_to_one_step(tmp_path: Path) -> None:
    writers = [a for a in pipeline_assets if getattr(a, "op", None) is not None and IO_MANAGER_KEY in {
        out.io_manager_key for out in a.op.outs.values()
    }]
    assert {key.to_user_string() for a in writers for key in a.keys} >= {
        "validated_telemetry", "quarantined_telemetry", "normalized_telemetry", "telemetry_5m",
        "telemetry_sliding_15m", "telemetry_1h", "sensor_features",
    }
    pools = [stage.op.pool for stage in writers]
    assert all(pools) and len(set(pools)) == len(pools)  # every writer stage has a pool of its own
    instance = open_instance(dagster_home(tmp_path / "home"))
    config = instance.get_concurrency_config().pool_config
    assert config.default_pool_limit == 1
    assert config.pool_granularity.value == "op"
    # a run whose worker died must give its slots back, or its stage is blocked for good (see the
    # daemon test below: without this setting its run retry waits forever)
    assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0
    assert instance.run_retries_enabled and instance.run_retries_max_retries >= 1


def test_writer_pools_are_created_up_front_once_and_an_operators_limit_stays(instance_home: InstanceHome) -> None:
    instance = open_instance(instance_home())
    storage = instance.event_log_storage
    created = initialize_writer_pools(instance)
    assert created == writer_pools() and VALIDATE_POOL in created
    assert {pool: storage.get_concurrency_info(pool).slot_count for pool in created} == dict.fromkeys(created, 1)
    storage.set_concurrency_slots(VALIDATE_POOL, 3)
    assert initialize_writer_pools(instance) == []
    assert storage.get_concurrency_info(VALIDATE_POOL).slot_count == 3


class FirstWriterHold:
    """Holds whichever run starts replacing the validated window first, until the other run is seen waiting.

    Wired as ``after_forward`` of the IO manager's window probe (which precedes its ``DELETE`` and
    writes) on each run's own proxy: the first caller keeps its step (and so its pool slot) busy until
    the other run's event log says its validate step is "blocked by limit for pool", or until the
    other run's probe arrives anyway (no serialization).
    """

    def __init__(self, instance: DagsterInstance, timeout: float = 90.0) -> None:
        self.instance, self.timeout = instance, timeout
        self.lock = threading.Lock()
        self.first: str | None = None
        self.second_arrived = threading.Event()
        self.saw_other_blocked = False
        self.released_at = 0.0

    def other_blocked(self) -> bool:
        return any(
            m.startswith(f"Step blocked by limit for pool {VALIDATE_POOL}")
            for run in self.instance.get_runs() for m in engine_messages(self.instance, run.run_id)
        )

    def __call__(self, run: str) -> Callable[[], None]:
        def hold() -> None:
            with self.lock:
                is_first = self.first is None
                self.first = self.first or run
            if not is_first:
                self.second_arrived.set()
                return
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline and not self.second_arrived.is_set():
                if self.other_blocked():
                    self.saw_other_blocked = True
                    break
                time.sleep(0.2)
            self.released_at = time.monotonic()

        return hold


def test_a_run_launched_while_another_writes_its_window_waits_for_the_pool_and_one_copy_remains(
    influx_url: str, influxdb: InfluxDBResource, oracle: InfluxQLOracle, simulation: Simulation,
    instance_home: InstanceHome,
) -> None:
    key = hour_keys(simulation)[0]
    reference = clean_window_reference(influx_url, simulation, key)
    write_simulation(simulation, influxdb)
    home = instance_home()
    instance = open_instance(home)
    # as scripts/demo.sh does: create the pools before two runs can race to create them (on SQLite,
    # Dagster's lazy creation can give a limit-1 pool two slots when both arrive at the same instant)
    init = subprocess.run([str(BIN / "influx-assets"), "init-pools"], env=location_env(home, influx_url, influxdb.database),
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert init.returncode == 0 and f"{len(writer_pools())} created" in init.stdout, init.stdout + init.stderr
    hold = FirstWriterHold(instance)
    with FaultProxy(influx_url) as proxy_a, FaultProxy(influx_url) as proxy_b:
        proxies = {"a": proxy_a, "b": proxy_b}
        for run, proxy in proxies.items():
            proxy.inject(Fault.pass_through(after_forward=hold(run)), where=probing("validated_telemetry"))
        command = [str(BIN / "dagster"), "asset", "materialize", "-m", "influx_assets.definitions",
                   "--select", STAGES, "--partition", key]

        def launch(run: str) -> subprocess.Popen[bytes]:
            env = location_env(home, proxies[run].url, influxdb.database, INFLUX_ASSETS_EXECUTOR="in_process")
            return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

        # The second run starts once the first holds its validate step's slot. Launched at the same
        # instant, both claims can succeed (seen on SQLite): Dagster's claim is a SELECT of a free slot and
        # then an UPDATE that does not re-check it (`SqlEventLogStorage._claim_concurrency_slot`;
        # measured: 2 double claims in 20 same-instant pairs). The ledger keeps that case correct
        # too (the lockstep test below).
        processes = {"a": launch("a")}
        wait_for(lambda: hold.first, timeout=120, what="the first run to start replacing its validated window")
        processes["b"] = launch("b")
        outputs = {run: p.communicate(timeout=180)[0].decode(errors="replace") for run, p in processes.items()}
        assert all(p.returncode == 0 for p in processes.values()), {r: o[-3000:] for r, o in outputs.items()}
        second = next(r for r in proxies if r != hold.first)
        (second_delete,) = proxies[second].requests(deleting("validated_telemetry"))

    # the second run really ran at the same time, and its writer waited for the first one's pool slot
    assert hold.saw_other_blocked, "the second run's validate step was never blocked by the pool"
    assert second_delete.arrived > hold.released_at, "the second run deleted the window while the first wrote it"
    materializations = instance.fetch_materializations(AssetKey("validated_telemetry"), limit=10).records
    assert [m.partition_key for m in materializations] == [key, key]
    assert window_contents(oracle, [key]) == reference


class Lockstep:
    """Makes two runs replace each stage's window together: each window probe waits for the other's."""

    def __init__(self, measurements: tuple[str, ...], timeout: float = 60.0) -> None:
        self.barriers = {m: threading.Barrier(2, timeout=timeout) for m in measurements}
        self.met: list[str] = []

    def wire(self, proxy: FaultProxy) -> None:
        for measurement in self.barriers:
            proxy.inject(Fault.pass_through(after_forward=self._meet(measurement)), where=probing(measurement))

    def _meet(self, measurement: str) -> Callable[[], None]:
        def meet() -> None:
            try:
                if self.barriers[measurement].wait() == 0:
                    self.met.append(measurement)
            except threading.BrokenBarrierError:
                pass  # the other run never came: `met` says so

        return meet


def test_two_unpooled_runs_rewriting_every_stage_window_in_lockstep_leave_one_correct_copy(
    influx_url: str, influxdb: InfluxDBResource, oracle: InfluxQLOracle, simulation: Simulation
) -> None:
    key = hour_keys(simulation)[0]
    reference = clean_window_reference(influx_url, simulation, key)
    write_simulation(simulation, influxdb)
    lockstep = Lockstep(HOURLY_MEASUREMENTS)
    results = {}
    with FaultProxy(influx_url) as proxy_a, FaultProxy(influx_url) as proxy_b:

        def run(name: str, proxy: FaultProxy) -> None:
            resource = InfluxDBResource(url=proxy.url, api="v1", database=influxdb.database)
            # separate ephemeral instances: no pool, nothing serializes the two runs (each instance is
            # disposed in the thread that made it: its SQLite connections belong to that thread)
            with DagsterInstance.ephemeral() as instance:
                results[name] = run_stages(hourly_assets, resources_for(resource), instance, key)

        threads = []
        for name, proxy in (("a", proxy_a), ("b", proxy_b)):
            lockstep.wire(proxy)
            threads.append(threading.Thread(target=run, args=(name, proxy)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

    assert all(r.success for r in results.values()) and len(results) == 2
    assert sorted(lockstep.met) == sorted(HOURLY_MEASUREMENTS)  # both deleted every window at once
    assert window_contents(oracle, [key]) == reference


# --- 4. a run worker SIGKILLed in the middle of a step, under dagster-daemon ----------------------

#: Merged into the instance config (dagster.yaml or deploy/dagster.postgres.yaml): monitor, free a dead
#: run's pool slots and dequeue every second (the config's other settings are kept, ``run_retries``
#: with ``retry_on_asset_or_op_failure: false`` included).
FAST_DAEMON = {
    "run_monitoring": {"poll_interval_seconds": 1, "free_slots_after_run_end_seconds": 1},
    "run_coordinator": {
        "module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator",
        "config": {"dequeue_interval_seconds": 1},
    },
}


def run_worker_pid(instance: DagsterInstance, run_id: str) -> int | None:
    """The pid the run worker reported ("Started process for run (pid: N).")."""
    for message in engine_messages(instance, run_id):
        if message.startswith("Started process for run (pid: "):
            return int(message.split("pid: ")[1].rstrip(")."))
    return None


def test_a_run_worker_killed_mid_step_is_failed_and_retried_by_the_daemon_to_a_correct_window(
    influx_url: str, influxdb: InfluxDBResource, oracle: InfluxQLOracle, simulation: Simulation,
    instance_home: InstanceHome,
) -> None:
    key = hour_keys(simulation)[0]
    reference = clean_window_reference(influx_url, simulation, key)
    write_simulation(simulation, influxdb)
    home = instance_home(overrides=FAST_DAEMON)
    instance = open_instance(home)
    run_id = str(uuid.uuid4())
    with FaultProxy(influx_url) as proxy:
        # the validate step deletes its window and then waits for an answer that comes too late
        proxy.inject(Fault.delay(120), where=probing("validated_telemetry"))
        env = location_env(home, proxy.url, influxdb.database)
        daemon = Daemon(home, env)
        try:
            launch = subprocess.run(
                [str(BIN / "dagster"), "job", "launch", *HARNESS_LOCATION, "-j", "hourly_pipeline",
                 "--run-id", run_id, "--tags", f'{{"dagster/partition": "{key}"}}', "--config-json", IN_PROCESS],
                check=False, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
            )
            assert launch.returncode == 0, launch.stdout[-2000:] + launch.stderr[-2000:]
            wait_for(lambda: proxy.requests(probing("validated_telemetry")), 120, "the validate step's window probe")
            pid = run_worker_pid(instance, run_id)
            events = _event_types(instance, run_id)
            assert pid is not None and "STEP_START" in events and "STEP_SUCCESS" not in events  # mid-step
            os.kill(pid, 9)

            failed = wait_for(lambda: finished_run(instance, run_id), 60, f"run {run_id} to be marked failed")
            retry = wait_for(lambda: _child_run(instance, run_id), 90, "the daemon's retry run")
            done = wait_for(lambda: finished_run(instance, retry.run_id), 90, "the retry run to finish")
        except Exception as error:
            raise AssertionError(f"{error}\n--- daemon log ---\n{daemon.tail()}") from error
        finally:
            daemon.stop()

    assert failed.status.value == "FAILURE"
    # the code server that ran the worker noticed it die and failed the run (DefaultRunLauncher has no
    # worker health check for the monitoring daemon to use)
    crash = f"[DagsterApiServer] Run execution process for {run_id} was terminated by signal 9 (SIGKILL)."
    assert any(m.startswith(crash) for m in engine_messages(instance, run_id))
    assert done.status.value == "SUCCESS", daemon.tail()
    assert done.tags["dagster/retry_number"] == "1" and done.tags["dagster/partition"] == key
    assert len(proxy.requests(probing("validated_telemetry"))) == 2  # the retry rewrote the window
    assert window_contents(oracle, [key]) == reference


def _event_types(instance: DagsterInstance, run_id: str) -> set[str]:
    return {e.dagster_event.event_type_value for e in instance.all_logs(run_id) if e.dagster_event}


def _child_run(instance: DagsterInstance, run_id: str) -> DagsterRun | None:
    children = [r for r in instance.get_runs() if r.tags.get("dagster/parent_run_id") == run_id]
    return children[0] if children else None
