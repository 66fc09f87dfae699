"""Running the pipeline's stages in tests, and judging what they stored per window.

Shared by the end-to-end, pipeline-fault and run-recovery tests:

* :func:`run_stages` materializes stages (with their checks) for one window or a window range;
* :func:`window_contents` reads every stage's window back through the independent InfluxQL oracle
  and reduces it to a point count and a content fingerprint (:mod:`influx_assets.telemetry.fingerprint`);
* :func:`clean_reference` is what a run without any fault stores for a simulation: the same raw
  points processed into a fresh database. Fault tests compare against it window by window;
* :func:`write_dagster_home` writes a ``DAGSTER_HOME`` from one of the repository's instance configs
  (``dagster.yaml``, ``deploy/dagster.postgres.yaml``) with a test's overrides merged in;
  :func:`open_instance`, :func:`location_env` and :class:`Daemon` open its instance, give a subprocess
  the code location's environment, and run ``dagster-daemon`` on it.

The module also holds ``harness_defs``, a code location for subprocess tests (``dagster-daemon``,
``dagster job launch``): the pipeline's assets, checks, hourly job and resources, without the
schedules and sensors of ``influx_assets.definitions``, which would launch runs of their own; and
``daemon_defs``, the same plus the late-data sensor, executing every step in its run's process
(runs launched by a backfill or a sensor get no run config to ask for that).
"""

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml
from dagster import (
    AssetSelection,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    Definitions,
    ExecuteInProcessResult,
    in_process_executor,
    materialize,
)
from dagster._core.instance.ref import InstanceRef  # the public way to open an instance from a dir

from influx_assets.devtools.feed import write_simulation
from influx_assets.telemetry.fingerprint import frame_fingerprint
from influx_assets.influxdb import InfluxDBResource
from influx_assets.telemetry import ColdStorage, hourly_assets, pipeline_assets, pipeline_checks
from influx_assets.resources import influxdb_from_env, resources_for
from influx_assets.automation.late_data import late_data_sensor
from influx_assets.automation.schedules import daily_pipeline_job, hourly_pipeline_job
from influx_assets.devtools.simulate import Simulation, SimulationConfig, simulate
from influx_assets_tests.fault_proxy import SeenRequest
from influx_assets_tests.influxql_oracle import InfluxQLOracle

#: Measurements the hourly stages write, in pipeline order.
HOURLY_MEASUREMENTS = (
    "validated_telemetry",
    "quarantined_telemetry",
    "normalized_telemetry",
    "telemetry_5m",
    "telemetry_sliding_15m",
)
HOUR = pd.Timedelta(hours=1)
REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
#: The repository's instance configs: SQLite (the scripts' default) and PostgreSQL.
REPO_CONFIG = REPO_ROOT / "dagster.yaml"
POSTGRES_CONFIG = REPO_ROOT / "deploy" / "dagster.postgres.yaml"

harness_defs = Definitions(
    assets=pipeline_assets,
    asset_checks=pipeline_checks,
    jobs=[hourly_pipeline_job],
    resources=resources_for(influxdb_from_env, ColdStorage()),
)
daemon_defs = Definitions(
    assets=pipeline_assets,
    asset_checks=pipeline_checks,
    jobs=[hourly_pipeline_job, daily_pipeline_job],
    sensors=[late_data_sensor],
    resources=resources_for(influxdb_from_env, ColdStorage()),
    executor=in_process_executor,
)


def write_dagster_home(root: Path, base_config: Path, overrides: Mapping[str, object] | None = None) -> Path:
    """A ``DAGSTER_HOME`` at ``root`` whose ``dagster.yaml`` is ``base_config`` with ``overrides`` merged in.

    A mapping override updates the base's section key by key (``{"run_monitoring": {...}}`` keeps the
    section's other settings); any other value replaces the section.
    """
    config = yaml.safe_load(base_config.read_text())
    for key, value in (overrides or {}).items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    root.mkdir(parents=True, exist_ok=True)
    (root / "dagster.yaml").write_text(yaml.safe_dump(config))
    return root


def open_instance(home: Path) -> DagsterInstance:
    """The instance of ``home``, with its storage created (so that subprocesses do not race to do it)."""
    instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    instance.get_runs(limit=1)
    return instance


def location_env(home: Path, url: str, database: str, **extra: str) -> dict[str, str]:
    """Environment of a process serving the code location against ``url``/``database`` (plus ``extra``)."""
    return {
        **os.environ, "DAGSTER_HOME": str(home), "INFLUXDB_URL": url, "INFLUXDB_DATABASE": database,
        "INFLUXDB_API": "v1", "PYTHONPATH": str(REPO_ROOT), **extra,
    }


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.2) -> object:
    """Poll ``predicate`` until it returns something true, and return that; ``TimeoutError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return value


def engine_messages(instance: DagsterInstance, run_id: str) -> list[str]:
    """The engine events' messages of a run, oldest first."""
    return [
        e.user_message or e.dagster_event.message or ""
        for e in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)
    ]


def finished_run(instance: DagsterInstance, run_id: str) -> DagsterRun | None:
    """The run once it has finished (success, failure or canceled), else ``None``."""
    run = instance.get_run_by_id(run_id)
    return run if run is not None and run.is_finished else None


HARNESS_LOCATION = ("-m", "influx_assets_tests.pipeline_harness", "-a", "harness_defs")
DAEMON_LOCATION = ("-m", "influx_assets_tests.pipeline_harness", "-a", "daemon_defs")


class Daemon:
    """``dagster-daemon run`` on a code location (the harness's by default), in its own process group."""

    def __init__(self, home: Path, env: Mapping[str, str], location: Sequence[str] = HARNESS_LOCATION) -> None:
        self.log = home / "daemon.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", *location], cwd=REPO_ROOT, env=dict(env),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def tail(self, chars: int = 4000) -> str:
        """The end of the daemon's log (for failure messages)."""
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """TERM the daemon's process group (KILL after 30 s)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(timeout=10)


def keys_of(assets: Iterable) -> list:
    """Asset keys of asset definitions (a multi-asset has several)."""
    return [key for a in assets for key in a.keys]


def run_stages(
    assets: Iterable,
    resources: Mapping[str, object],
    instance: DagsterInstance,
    partition_key: str | None = None,
    partition_range: tuple[str, str] | None = None,
) -> ExecuteInProcessResult:
    """Materialize ``assets`` (and their checks) for one window or, as one run, a window range."""
    tags = (
        {"dagster/asset_partition_range_start": partition_range[0],
         "dagster/asset_partition_range_end": partition_range[1]}
        if partition_range
        else None
    )
    return materialize(
        [*pipeline_assets, *pipeline_checks],
        selection=AssetSelection.assets(*keys_of(assets)),
        partition_key=partition_key,
        resources=dict(resources),
        instance=instance,
        raise_on_error=False,
        tags=tags,
    )


def hour_start(key: str) -> pd.Timestamp:
    """Start of an hourly partition key (``2025-03-01-10:00``) in UTC."""
    return pd.to_datetime(key, format="%Y-%m-%d-%H:%M", utc=True)


def window_clause(key: str, length: pd.Timedelta = HOUR) -> str:
    """InfluxQL ``WHERE`` of an hourly window (or ``length`` from its start), half-open."""
    start = hour_start(key)
    return f"WHERE time >= {start.value} AND time < {(start + length).value}"


def rows(oracle: InfluxQLOracle, measurement: str, where: str = "") -> list[dict]:
    """Every stored point (all tags and fields) of a measurement, through the oracle."""
    return oracle.rows(f'SELECT * FROM "{measurement}" {where}')


def materialization_metadata(result: ExecuteInProcessResult, asset: str) -> dict:
    """Metadata values of the first materialization of ``asset`` in a run."""
    for event in result.all_events:
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.event_specific_data.materialization
            if materialization.asset_key.to_user_string() == asset:
                return {k: v.value for k, v in materialization.metadata.items()}
    raise AssertionError(f"{asset} was not materialized")


def check_outcomes(result: ExecuteInProcessResult) -> dict[str, object]:
    """Asset check evaluations of a run, by ``asset:check``."""
    outcomes = {}
    for event in result.all_events:
        if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            key = evaluation.asset_check_key
            outcomes[f"{key.asset_key.to_user_string()}:{key.name}"] = evaluation
    return outcomes


@dataclass(frozen=True)
class WindowContent:
    """What one measurement holds in one window: number of points and their fingerprint."""

    points: int
    fingerprint: str


def window_contents(
    oracle: InfluxQLOracle, keys: Sequence[str], measurements: Sequence[str] = HOURLY_MEASUREMENTS
) -> dict[tuple[str, str], WindowContent]:
    """``(measurement, window key) -> WindowContent`` read through the oracle (never our transport).

    The fingerprint is order-independent and counts rows as a multiset, so a duplicated, missing or
    changed point anywhere in the window changes it.
    """
    found = {}
    for measurement in measurements:
        for key in keys:
            stored = rows(oracle, measurement, window_clause(key))
            found[(measurement, key)] = WindowContent(len(stored), frame_fingerprint(pd.DataFrame(stored)))
    return found


def small_simulation(start: str = "2025-03-01T10:00:00Z", hours: int = 4, sensors: int = 10, seed: int = 11) -> Simulation:
    """A few hours of a few sensors, with every defect kind at its default rate."""
    begin = pd.Timestamp(start)
    return simulate(SimulationConfig(start=begin, end=begin + hours * HOUR, sensors=sensors, seed=seed))


def hour_keys(simulation: Simulation) -> list[str]:
    """The hourly partition keys a simulation covers."""
    hours = pd.date_range(simulation.config.start, simulation.config.end, freq="h", inclusive="left")
    return [h.strftime("%Y-%m-%d-%H:%M") for h in hours]


_REFERENCES: dict[tuple[str, str], dict[tuple[str, str], WindowContent]] = {}


def clean_reference(url: str, simulation: Simulation) -> dict[tuple[str, str], WindowContent]:
    """What a fault-free single-run backfill of the hourly stages stores for ``simulation``.

    Computed once per server and simulation (cached), in a throwaway database that is dropped after.
    """
    cached = _REFERENCES.get((url, repr(simulation.config)))
    if cached is not None:
        return cached
    database = f"clean_{uuid.uuid4().hex[:12]}"
    influxdb = InfluxDBResource(url=url, api="v1", database=database)
    oracle = InfluxQLOracle(url, database)
    try:
        write_simulation(simulation, influxdb)
        keys = hour_keys(simulation)
        result = run_stages(
            hourly_assets, resources_for(influxdb), DagsterInstance.ephemeral(), partition_range=(keys[0], keys[-1])
        )
        assert result.success, "the clean reference run failed"
        contents = window_contents(oracle, keys)
    finally:
        oracle.drop_database()
    assert all(contents[(m, k)].points > 0 for m in ("validated_telemetry", "normalized_telemetry") for k in keys)
    _REFERENCES[(url, repr(simulation.config))] = contents
    return contents


def clean_window_reference(url: str, simulation: Simulation, key: str) -> dict[tuple[str, str], WindowContent]:
    """:func:`clean_reference` of one window only (``(measurement, key) -> WindowContent``)."""
    return {k: v for k, v in clean_reference(url, simulation).items() if k[1] == key}


def deleting(measurement: str) -> Callable[[SeenRequest], bool]:
    """Fault-proxy predicate: the InfluxQL ``DELETE`` of a window of ``measurement``."""
    marker = f'DELETE FROM "{measurement}"'
    return lambda request: request.statement.startswith(marker)


def probing(measurement: str) -> Callable[[SeenRequest], bool]:
    """Fault-proxy predicate: the IO manager's "does the window hold points?" query of ``measurement``.

    It precedes every write of a window (and the ``DELETE``, sent only when the window holds points).
    """
    marker = f'SELECT * FROM "{measurement}" WHERE'
    return lambda request: request.statement.startswith(marker) and request.statement.endswith("LIMIT 1")


def writes_to(request: SeenRequest, measurement: str) -> bool:
    """Whether a request the proxy saw was a ``/write`` of ``measurement``'s points (its body is read)."""
    return request.path == "/write" and request.body.startswith(f"{measurement},".encode())
