"""The executor comes from configuration (``INFLUX_ASSETS_EXECUTOR``), for every run, run config or not.

Runs launched by backfills, schedules and sensors carry no run config: the executor therefore lives
on the code location's jobs, built from the environment. Here: the names and refusals, what the
loaded code location's jobs carry, and real runs of one window (``dagster job execute``, no run
config) on the default in-process executor and on the forkserver multiprocess executor, each ending
with the window a clean run stores.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance
from dagster._core.instance.ref import InstanceRef

from influx_assets.automation.executors import executor_from_env, executor_name, require_shared_archive
from influx_assets.telemetry.archive import ColdStorage
from influx_assets.telemetry.stage import DAYS_PER_RUN_VARIABLE, HOURS_PER_RUN_VARIABLE, windows_per_run
from influx_assets.devtools.feed import write_simulation
from influx_assets.devtools.simulate import Simulation
from influx_assets.influxdb import InfluxDBConfigError, InfluxDBResource
from influx_assets_tests.influxql_oracle import InfluxQLOracle
from influx_assets_tests.pipeline_harness import clean_window_reference, hour_keys, small_simulation, window_contents

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    ("value", "name"),
    [(None, "in_process"), ("", "in_process"), ("in_process", "in_process"), ("Multiprocess", "multiprocess"),
     ("in-process", "in_process"), ("celery", "celery")],
)
def test_the_executor_is_named_by_the_environment(value: str | None, name: str) -> None:
    assert executor_name({} if value is None else {"INFLUX_ASSETS_EXECUTOR": value}) == name


def test_an_unknown_executor_is_refused_naming_the_variable_and_the_choices() -> None:
    with pytest.raises(InfluxDBConfigError, match="INFLUX_ASSETS_EXECUTOR must be one of in_process, multiprocess, celery"):
        executor_name({"INFLUX_ASSETS_EXECUTOR": "k8s"})


def test_celery_without_a_broker_is_refused_before_any_step_goes_to_localhost() -> None:
    with pytest.raises(InfluxDBConfigError, match="needs CELERY_BROKER_URL"):
        executor_from_env({"INFLUX_ASSETS_EXECUTOR": "celery"})


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_a_bad_step_limit_is_refused(value: str) -> None:
    with pytest.raises(InfluxDBConfigError, match="INFLUX_ASSETS_MAX_CONCURRENT must be a positive integer"):
        executor_from_env({"INFLUX_ASSETS_EXECUTOR": "multiprocess", "INFLUX_ASSETS_MAX_CONCURRENT": value})


def test_the_celery_broker_url_is_read_from_the_environment_at_run_time_never_copied() -> None:
    environ = {"INFLUX_ASSETS_EXECUTOR": "celery", "CELERY_BROKER_URL": "redis://:secret@h:6379/0",
               "CELERY_RESULT_BACKEND": "redis://:secret@h:6379/1"}
    configured = executor_from_env(environ).config_schema._config_fn({})  # what Dagster resolves per run
    assert configured["broker"] == {"env": "CELERY_BROKER_URL"}
    assert configured["backend"] == {"env": "CELERY_RESULT_BACKEND"}
    assert "secret" not in repr(configured)


def test_celery_without_a_result_backend_is_refused_as_runs_would_wait_for_ever() -> None:
    with pytest.raises(InfluxDBConfigError, match="needs CELERY_RESULT_BACKEND too"):
        executor_from_env({"INFLUX_ASSETS_EXECUTOR": "celery", "CELERY_BROKER_URL": "redis://h:6379/0"})


def loaded_executors(environ: dict[str, str]) -> dict[str, str]:
    """The executor of each job of the code location as a fresh process loads it with ``environ``."""
    probe = (
        "from influx_assets.definitions import defs\n"
        "jobs = {j: defs.resolve_job_def(j).executor_def.name for j in ('hourly_pipeline', 'daily_pipeline')}\n"
        "jobs['backfills'] = defs.resolve_implicit_global_asset_job_def().executor_def.name\n"
        "print(jobs)\n"
    )
    env = {**os.environ, **environ}
    shown = subprocess.run([sys.executable, "-W", "ignore", "-c", probe], env=env, capture_output=True, text=True, check=True)
    return ast.literal_eval(shown.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "in_process"),
        ({"INFLUX_ASSETS_EXECUTOR": "multiprocess"}, "multiprocess_forkserver"),
        ({"INFLUX_ASSETS_EXECUTOR": "celery", "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
          "CELERY_RESULT_BACKEND": "redis://127.0.0.1:1/1", "ARCHIVE_URL": "file:///mnt/shared/archive"},
         "celery_from_env"),
    ],
)
def test_every_job_of_the_code_location_backfills_included_gets_the_configured_executor(
    environ: dict[str, str], expected: str
) -> None:
    assert loaded_executors(environ) == {"hourly_pipeline": expected, "daily_pipeline": expected, "backfills": expected}


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_a_local_archive_path_is_fine_when_every_step_runs_on_one_machine(executor: str) -> None:
    require_shared_archive(executor, ColdStorage(base_url="/var/lib/archive"))


@pytest.mark.parametrize("base", ["s3://telemetry/archive", "file:///mnt/nfs/archive"])
def test_a_distributed_executor_takes_an_archive_url(base: str) -> None:
    require_shared_archive("celery", ColdStorage(base_url=base))


def test_a_distributed_executor_with_a_local_archive_path_is_refused_with_the_fix() -> None:
    with pytest.raises(InfluxDBConfigError, match=r"archive is the local path '/var/lib/archive'.*Set ARCHIVE_URL to shared storage"):
        require_shared_archive("celery", ColdStorage(base_url="/var/lib/archive"))


def test_the_code_location_does_not_load_with_celery_and_the_default_local_archive(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ARCHIVE_URL"}
    env |= {"INFLUX_ASSETS_EXECUTOR": "celery", "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
            "CELERY_RESULT_BACKEND": "redis://127.0.0.1:1/1", "DAGSTER_HOME": str(tmp_path)}
    loaded = subprocess.run([sys.executable, "-W", "ignore", "-c", "import influx_assets.definitions"],
                            env=env, capture_output=True, text=True, check=False)
    assert loaded.returncode != 0
    assert f"archive is the local path '{tmp_path}/archive'" in loaded.stderr and "Set ARCHIVE_URL" in loaded.stderr


@pytest.fixture(scope="module")
def simulation() -> Simulation:
    return small_simulation(hours=1, sensors=5)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("executor", "engine_says"),
    [("in_process", "Executing steps in process"), ("multiprocess", "Executing steps using multiprocess executor")],
)
def test_a_run_without_run_config_executes_on_the_configured_executor_to_a_correct_window(
    executor: str, engine_says: str, influx_url: str, influxdb: InfluxDBResource, oracle: InfluxQLOracle,
    simulation: Simulation, tmp_path: Path,
) -> None:
    key = hour_keys(simulation)[0]
    reference = clean_window_reference(influx_url, simulation, key)
    write_simulation(simulation, influxdb)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ, "DAGSTER_HOME": str(home), "INFLUXDB_URL": influx_url, "INFLUXDB_DATABASE": influxdb.database,
        "INFLUXDB_API": "v1", "INFLUX_ASSETS_EXECUTOR": executor, "INFLUX_ASSETS_MAX_CONCURRENT": "2",
        "ARCHIVE_URL": str(tmp_path / "archive"), "PYTHONPATH": str(REPO_ROOT),
    }
    done = subprocess.run(
        [str(BIN / "dagster"), "job", "execute", "-m", "influx_assets.definitions", "-j", "hourly_pipeline",
         "--tags", f'{{"dagster/partition": "{key}"}}'],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        (run,) = instance.get_runs()
        assert run.status.value == "SUCCESS" and run.run_config == {}  # launched with no run config
        engine = [e.message for e in instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT)]
        assert any(m.startswith(engine_says) for m in engine), engine
    assert window_contents(oracle, [key]) == reference


@pytest.mark.parametrize(("environ", "expected"), [({}, 24), ({"INFLUX_ASSETS_HOURS_PER_RUN": " 6 "}, 6)])
def test_windows_per_backfill_run_come_from_the_environment(environ: dict[str, str], expected: int) -> None:
    assert windows_per_run(HOURS_PER_RUN_VARIABLE, 24, environ) == expected


@pytest.mark.parametrize("value", ["0", "-3", "six", "2.5"])
def test_a_bad_windows_per_run_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(InfluxDBConfigError, match=f"{DAYS_PER_RUN_VARIABLE} must be a positive integer"):
        windows_per_run(DAYS_PER_RUN_VARIABLE, 7, {DAYS_PER_RUN_VARIABLE: value})


def test_the_code_location_cuts_backfills_as_the_environment_says() -> None:
    probe = (
        "from influx_assets.definitions import defs\n"
        "print(*(defs.resolve_assets_def(k).backfill_policy.max_partitions_per_run\n"
        "        for k in ('validated_telemetry', 'telemetry_1h')))"
    )
    environ = {**os.environ, HOURS_PER_RUN_VARIABLE: "6", DAYS_PER_RUN_VARIABLE: "1"}
    out = subprocess.run([sys.executable, "-c", probe], env=environ, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["6", "1"]
