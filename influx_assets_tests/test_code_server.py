"""The container path: the image's gRPC code server, loaded over gRPC, and the Helm values that deploy it.

No image is built here. What runs is the command the image runs: the Dockerfile's ``CMD`` (JSON exec
form) is parsed and started from this virtualenv's ``bin`` directory, with only its host and port
replaced by a free loopback port, in an empty working directory (as the image's ``WORKDIR``: the code
comes from the installed package) and with the environment the Helm values give the user deployment
(only the InfluxDB URL, database and archive replaced by the test's). A ``dagster-webserver`` and a
``dagster-daemon run`` load it through a workspace generated from ``deploy/workspace.grpc.yaml`` and
share one instance: the repository's ``dagster.yaml`` with its ``QueuedRunCoordinator``, so a launched
run is dequeued by the daemon and executed by the code server (``DefaultRunLauncher``), as the chart's
daemon does with its ``K8sRunLauncher``. The webserver and daemon get no ``INFLUXDB_*`` variables: as
in the chart, only the code server (and the runs it starts) has them.

The Helm values (their keys were checked against the chart's sources cited in their header; no chart
can be rendered here) are checked structurally: their command is the Dockerfile's, they set only
variables the code reads, the token comes from a Secret, and the instance they configure (PostgreSQL,
queued runs, pools, run retries, run monitoring) is the repository's ``dagster.yaml``.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._grpc.client import DagsterGrpcClient  # the client the chart's readiness probe uses

from influx_assets.devtools.local_server import free_port
from influx_assets.telemetry.partitions import pipeline_start
from influx_assets_tests.influxql_oracle import InfluxQLOracle
from influx_assets_tests.real_servers import missing_under_ci
from influx_assets_tests.test_run_recovery import FAST_DAEMON, dagster_home
from influx_assets_tests.ui_driver import DagsterDaemon, DagsterWebserver, stop_process_group, wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DOCKERFILE = REPO_ROOT / "Dockerfile"
HELM_VALUES = REPO_ROOT / "deploy" / "helm" / "values.yaml"
GRPC_WORKSPACE = REPO_ROOT / "deploy" / "workspace.grpc.yaml"
#: What the chart runs for a deployment with ``codeServerArgs`` (dagster-user-deployments'
#: templates/deployment-user.yaml): these words, then the deployment's codeServerArgs.
CHART_CODE_SERVER = ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "{port}"]
#: Variables of ours a test process inherits from the session (conftest's influx_env); the webserver and
#: daemon must run without them.
OWN_VARIABLES = re.compile(r"^(INFLUXDB_|INFLUX_ASSETS_|ARCHIVE_URL$)")
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$")
SECRET_WORD = re.compile(r"token|password|secret|credential", re.IGNORECASE)
SECRET_ASSIGNMENT = re.compile(r"(TOKEN|PASSWORD|SECRET)=\S", re.IGNORECASE)


def required_binary(name: str) -> Path:
    """``name`` from this virtualenv's bin directory; a missing one fails under ``CI=true``, else skips."""
    path = BIN / name
    if not path.exists():
        missing_under_ci(f"{path} is missing: run scripts/setup.sh")
    return path


# --- the Dockerfile ------------------------------------------------------------------------------


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def image_command() -> list[str]:
    """The image's ``CMD`` (the last one), which must be JSON exec form: no shell between it and signals."""
    commands = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "CMD"]
    assert commands, "the Dockerfile has no CMD"
    try:
        command = json.loads(commands[-1])
    except json.JSONDecodeError:
        command = None
    assert isinstance(command, list) and all(isinstance(word, str) for word in command), (
        f"CMD {commands[-1]!r} is not JSON exec form: under /bin/sh -c the server would not get SIGTERM"
    )
    return command


def option_value(command: list[str], *names: str) -> str:
    """The value after the first of ``names`` in ``command``."""
    for index, word in enumerate(command[:-1]):
        if word in names:
            return command[index + 1]
    raise AssertionError(f"{' / '.join(names)} not in {shlex.join(command)}")


def with_address(command: list[str], host: str, port: int) -> list[str]:
    """``command`` with the values of its host and port options replaced (nothing else changes)."""
    replaced = list(command)
    for names, value in ((("-h", "--host"), host), (("-p", "--port"), str(port))):
        index = next((i for i, word in enumerate(command[:-1]) if word in names), None)
        assert index is not None, f"{' / '.join(names)} not in {shlex.join(command)}"
        replaced[index + 1] = value
    return replaced


def test_the_image_runs_a_non_root_code_server_for_the_definitions_module_on_its_exposed_port() -> None:
    instructions = dockerfile_instructions()
    command = image_command()
    assert command[:3] == ["dagster", "code-server", "start"]
    assert option_value(command, "-m", "--module-name") == "influx_assets.definitions"
    assert option_value(command, "-a", "--attribute") == "defs"
    assert option_value(command, "-h", "--host") == "0.0.0.0"  # reachable from other pods
    port = option_value(command, "-p", "--port")
    assert ("EXPOSE", port) in instructions
    base = next(arguments for keyword, arguments in instructions if keyword == "FROM")
    assert re.fullmatch(r"python:3\.11-slim\S*", base), base
    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0"), users
    installs = " ".join(arguments for keyword, arguments in instructions if keyword == "RUN")
    assert "[postgres,celery]" in installs and "dagster-k8s" in installs  # what run Jobs and Celery workers load


# --- the Helm values -----------------------------------------------------------------------------


def helm_values() -> dict[str, Any]:
    values = yaml.safe_load(HELM_VALUES.read_text())
    assert isinstance(values, dict), HELM_VALUES
    return values


def user_deployment(values: Mapping[str, Any]) -> dict[str, Any]:
    """The ``influx-assets`` entry of ``dagster-user-deployments.deployments``."""
    section = values["dagster-user-deployments"]
    assert section["enabled"] is True
    (deployment,) = [d for d in section["deployments"] if d["name"] == "influx-assets"]
    return deployment


def variables_the_code_reads() -> set[str]:
    """Environment variable names spelled out in the code location's source (devtools excluded).

    Every variable the code reads is a string constant somewhere (``"ARCHIVE_URL"``,
    ``AUTOMATION_VARIABLE = "INFLUX_ASSETS_AUTOMATION"``, ``resources.INFLUXDB_ENV_VARS``, the
    ``OTEL_*`` names), so a name set in the values that is not among them is read by nobody.
    """
    names: set[str] = set()
    for path in (REPO_ROOT / "influx_assets").rglob("*.py"):
        if "devtools" in path.relative_to(REPO_ROOT).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and ENV_NAME.match(node.value):
                names.add(node.value)
    return names


def test_the_helm_user_deployment_runs_the_images_command_on_its_port() -> None:
    deployment = user_deployment(helm_values())
    assert "dagsterApiGrpcArgs" not in deployment  # the chart would prefer it over codeServerArgs
    chart_command = [w.format(port=deployment["port"]) for w in CHART_CODE_SERVER] + deployment["codeServerArgs"]
    assert chart_command == image_command()
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True  # run Jobs get env and secrets
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert deployment["image"]["tag"] == version  # one image tag per release, never "latest"
    assert deployment["image"]["repository"]


def test_the_helm_values_set_only_variables_the_code_reads_and_the_required_ones() -> None:
    deployment = user_deployment(helm_values())
    env = deployment["env"]
    assert isinstance(env, dict)  # the chart writes a map into the deployment's ConfigMap
    unknown = set(env) - variables_the_code_reads()
    assert not unknown, f"set in {HELM_VALUES.name} but read by no code: {sorted(unknown)}"
    assert {"INFLUXDB_URL", "INFLUXDB_DATABASE", "INFLUX_ASSETS_AUTOMATION", "ARCHIVE_URL"} <= set(env)
    assert env["INFLUX_ASSETS_AUTOMATION"] in ("running", "stopped")
    assert re.match(r"^(s3|gs|gcs|abfs|az)://", env["ARCHIVE_URL"]), "runs on many pods need shared storage"


def secret_literals(node: Any, path: str = "") -> list[str]:
    """Paths of every literal secret: a key naming one (token, password, ...) with a value, a list-form
    ``{name: INFLUXDB_TOKEN, value: ...}`` entry, or a ``...TOKEN=value`` assignment inside a string."""
    found: list[str] = []
    if isinstance(node, str) and SECRET_ASSIGNMENT.search(node):
        found.append(path)
    if isinstance(node, dict):
        if SECRET_WORD.search(str(node.get("name", ""))) and "value" in node:
            found.append(f"{path}[name={node['name']}]")
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            names_a_secret_object = str(key).endswith(("SecretName", "secretName")) or key == "envSecrets"
            literal = isinstance(value, (str, int, float)) and not isinstance(value, bool)
            if SECRET_WORD.search(str(key)) and not names_a_secret_object and literal:
                found.append(where)
            found.extend(secret_literals(value, where))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found.extend(secret_literals(item, f"{path}[{index}]"))
    return found


def test_the_influxdb_token_comes_only_from_a_secret() -> None:
    values = helm_values()
    deployment = user_deployment(values)
    assert secret_literals(values) == []
    assert not [name for name in deployment["env"] if SECRET_WORD.search(name)]
    assert [s["name"] for s in deployment["envSecrets"]] and all(s["name"] for s in deployment["envSecrets"])
    # the PostgreSQL password too: a Secret the operator creates, exposed as DAGSTER_PG_PASSWORD
    assert values["global"]["postgresqlSecretName"] and values["generatePostgresqlPasswordSecret"] is False
    assert "postgresqlPassword" not in values["postgresql"]


def snake_keys(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """``mapping`` with its own keys (not nested ones) turned from camelCase into snake_case."""
    return {re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower(): value for key, value in mapping.items()}


def test_the_helm_instance_is_postgres_queued_and_mirrors_the_repositorys_dagster_yaml() -> None:
    values = helm_values()
    instance = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    assert values["postgresql"]["enabled"] is False and values["postgresql"]["postgresqlHost"]
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"  # see DESIGN.md
    daemon = values["dagsterDaemon"]
    coordinator = daemon["runCoordinator"]
    assert (coordinator["enabled"], coordinator["type"]) == (True, "QueuedRunCoordinator")
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"
    queued = coordinator["config"]["queuedRunCoordinator"]
    assert snake_keys(queued) == instance["run_coordinator"]["config"]
    assert snake_keys(daemon["runRetries"]) == instance["run_retries"]
    assert snake_keys(daemon["runMonitoring"]) == instance["run_monitoring"]
    concurrency = values["concurrency"]
    assert concurrency["enabled"] is True
    assert snake_keys(concurrency["pools"]) == instance["concurrency"]["pools"]
    assert snake_keys(concurrency["runs"]) == instance["concurrency"]["runs"]
    assert values["telemetry"] == instance["telemetry"]


# --- the code server, loaded over gRPC by a webserver and a daemon --------------------------------


class WorkspaceWebserver(DagsterWebserver):
    """``dagster-webserver -w <workspace.yaml>`` on a ``DAGSTER_HOME`` prepared by the caller."""

    def __init__(self, workspace: Path, env: Mapping[str, str], home: Path) -> None:
        super().__init__(module="", env=env, home=home)  # no module: the workspace names the location
        self.workspace = workspace

    def start(self, timeout: float = 90.0) -> WorkspaceWebserver:
        env = {**self.env, "DAGSTER_HOME": str(self.home)}
        command = [str(required_binary("dagster-webserver")), "-w", str(self.workspace),
                   "-h", "127.0.0.1", "-p", str(self.port)]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=self.home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_until(self._answers, timeout, f"dagster-webserver on {self.url} (log: {self.log_path})")
        return self


class WorkspaceDaemon(DagsterDaemon):
    """``dagster-daemon run -w <workspace.yaml>`` on a :class:`WorkspaceWebserver`'s instance."""

    def start(self) -> WorkspaceDaemon:
        webserver = self.webserver
        assert isinstance(webserver, WorkspaceWebserver)
        env = {**webserver.env, "DAGSTER_HOME": str(webserver.home)}
        command = [str(required_binary("dagster-daemon")), "run", "-w", str(webserver.workspace)]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=webserver.home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self


@dataclass
class CodeServer:
    """The image's command, started from the virtualenv's bin directory on a loopback port."""

    command: list[str]
    env: dict[str, str]
    workdir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir.parent / "code-server.log"

    def start(self, timeout: float = 120.0) -> CodeServer:
        """Start it and wait until it answers the gRPC health check (the chart's readiness probe)."""
        executable = required_binary(self.command[0])
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(executable), *self.command[1:]], cwd=self.workdir, env=self.env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        client = DagsterGrpcClient(port=self.port, host="127.0.0.1")
        wait_until(lambda: self._serving(client), timeout, f"the code server on port {self.port}")
        return self

    def _serving(self, client: DagsterGrpcClient) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"the code server exited with {self.process.returncode}: {self.log_tail()}")
        try:  # the health query prints every refused connection: ask only once the port is open
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return client.health_check_query() == "SERVING"

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self) -> None:
        stop_process_group(self.process)


@dataclass
class Deployment:
    """A code server and the webserver and daemon that load it through a ``grpc_server`` workspace."""

    code_server: CodeServer
    webserver: WorkspaceWebserver
    daemon: WorkspaceDaemon
    location: str
    database: str

    def logs(self) -> str:
        return (f"\n--- code server ---\n{self.code_server.log_tail()}\n--- daemon ---\n{self.daemon.log_tail()}"
                f"\n--- webserver ---\n{self.webserver.log_tail()}")


def grpc_workspace(path: Path, port: int) -> tuple[Path, str]:
    """``deploy/workspace.grpc.yaml`` with its one gRPC server's host and port set to the test's."""
    workspace = yaml.safe_load(GRPC_WORKSPACE.read_text())
    (entry,) = workspace["load_from"]
    server = entry["grpc_server"]
    server.update(host="127.0.0.1", port=port)
    path.write_text(yaml.safe_dump(workspace))
    return path, server["location_name"]


def code_server_env(home: Path, influx_url: str, database: str, archive: Path) -> dict[str, str]:
    """The Helm deployment's env, with the test's server, database and archive and automation stopped."""
    env = {k: v for k, v in os.environ.items() if not OWN_VARIABLES.match(k)}
    env.update({k: str(v) for k, v in user_deployment(helm_values())["env"].items()})
    env.update({
        "INFLUXDB_URL": influx_url, "INFLUXDB_DATABASE": database, "ARCHIVE_URL": str(archive),
        "INFLUX_ASSETS_AUTOMATION": "stopped", "DAGSTER_HOME": str(home),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # `dagster` on PATH, as in the image
    })
    for secret in ("INFLUXDB_TOKEN", "INFLUXDB_USERNAME", "INFLUXDB_PASSWORD", "INFLUXDB_ORG"):
        if os.environ.get(secret):  # in Kubernetes: the deployment's envSecrets
            env[secret] = os.environ[secret]
    return env


@pytest.fixture(scope="module")
def location_database(influx_url: str) -> Iterator[str]:
    """A database of this module alone (the IO manager creates it on first write)."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield name
    InfluxQLOracle(influx_url, name).drop_database()


@pytest.fixture(scope="module")
def deployment(
    influx_url: str, location_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("code_server")
    home = dagster_home(root / "dagster_home", FAST_DAEMON)
    port = free_port()
    code_server = CodeServer(
        command=with_address(image_command(), "127.0.0.1", port),
        env=code_server_env(home, influx_url, location_database, root / "archive"),
        workdir=root / "app", port=port,
    )
    workspace, location = grpc_workspace(root / "workspace.yaml", port)
    plain_env = {k: v for k, v in os.environ.items() if not OWN_VARIABLES.match(k)}
    webserver = WorkspaceWebserver(workspace, plain_env, home)
    daemon = WorkspaceDaemon(webserver)
    started = Deployment(code_server, webserver, daemon, location, location_database)
    try:
        code_server.start()
        daemon.start()
        webserver.start()
        yield started
    except Exception as error:
        raise AssertionError(f"{error}{started.logs()}") from error
    finally:
        webserver.stop()
        daemon.stop()
        code_server.stop()


LOCATION_QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        displayMetadata { key value }
        locationOrLoadError {
          __typename
          ... on PythonError { message stack }
          ... on RepositoryLocation {
            repositories {
              name
              pipelines { name }
              schedules { name scheduleState { status } }
              sensors { name sensorState { status } }
            }
          }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""


def loaded_repository(deployment: Deployment) -> dict[str, Any]:
    """The location's one repository as the webserver shows it; fails with the load error if any."""
    workspace = deployment.webserver.graphql(LOCATION_QUERY)["workspaceOrError"]
    assert workspace["__typename"] == "Workspace", workspace
    (entry,) = [e for e in workspace["locationEntries"] if e["name"] == deployment.location]
    location = entry["locationOrLoadError"]
    assert location and location["__typename"] == "RepositoryLocation", f"{location}{deployment.logs()}"
    (repository,) = location["repositories"]
    return {**repository, "displayMetadata": {m["key"]: m["value"] for m in entry["displayMetadata"]}}


def test_the_webserver_loads_the_location_with_its_jobs_schedules_and_sensors_from_the_code_server(
    deployment: Deployment,
) -> None:
    repository = loaded_repository(deployment)
    # loaded from the gRPC server the image command started, not by importing the module
    assert repository["displayMetadata"]["host"] == "127.0.0.1"
    assert repository["displayMetadata"]["port"] == str(deployment.code_server.port)
    assert {"hourly_pipeline", "daily_pipeline"} <= {p["name"] for p in repository["pipelines"]}
    assert {s["name"] for s in repository["schedules"]} == {"hourly_pipeline_schedule", "daily_pipeline_schedule"}
    assert {"late_data_sensor", "raw_telemetry_observer", "pipeline_failure_sensor"} <= {
        s["name"] for s in repository["sensors"]
    }


def test_influx_assets_automation_stopped_in_the_code_servers_env_stops_schedules_and_late_data_sensor(
    deployment: Deployment,
) -> None:
    repository = loaded_repository(deployment)
    schedules = {s["name"]: s["scheduleState"]["status"] for s in repository["schedules"]}
    sensors = {s["name"]: s["sensorState"]["status"] for s in repository["sensors"]}
    assert schedules == {"hourly_pipeline_schedule": "STOPPED", "daily_pipeline_schedule": "STOPPED"}
    assert sensors["late_data_sensor"] == "STOPPED"
    assert sensors["raw_telemetry_observer"] == "RUNNING"  # always on: the variable stopped only automation


LAUNCH_RUN = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on Error { message }
  }
}
"""
RUN_STATUS = """
query RunStatus($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status }
  }
}
"""
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def test_a_run_launched_through_graphql_is_dequeued_by_the_daemon_and_run_by_the_code_server(
    deployment: Deployment, influx_url: str
) -> None:
    key = f"{pipeline_start(deployment.code_server.env)}-05:00"
    params = {
        "selector": {
            "repositoryLocationName": deployment.location, "repositoryName": "__repository__",
            "pipelineName": "__ASSET_JOB",
            "assetSelection": [{"path": ["example_readings"]}, {"path": ["example_readings_summary"]}],
        },
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": key}]},
    }
    launched = deployment.webserver.graphql(LAUNCH_RUN, {"executionParams": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    assert launched["run"]["status"] == "QUEUED"  # the daemon, not the webserver, starts it

    def finished() -> str | None:
        status = deployment.webserver.graphql(RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
        return status if status in FINISHED else None

    try:
        status = wait_until(finished, 120, f"run {run_id} to finish", interval=0.5)
    except TimeoutError as error:
        raise AssertionError(f"{error}{deployment.logs()}") from error
    assert status == "SUCCESS", deployment.logs()
    # the run worker was the code server's child (its events are in the code server's output)
    assert f"{run_id} - " in deployment.code_server.log_tail(chars=10**7)
    oracle = InfluxQLOracle(influx_url, deployment.database)
    day = key[:10]
    window = f"WHERE time >= '{day}T05:00:00Z' AND time < '{day}T06:00:00Z'"
    assert oracle.count("example_readings", "value", window) == 180
    summary = oracle.rows(f'SELECT * FROM "example_readings_summary" {window}')
    assert sorted(r["sensor_id"] for r in summary) == ["s-1", "s-2", "s-3"]
