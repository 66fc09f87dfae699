"""A Celery deployment of the code location on this machine: workers, a daemon, runs and who ran their steps.

Shared by ``test_celery_executor.py`` and ``bench/backfill_celery.py``:

* :class:`CeleryWorkers` starts workers as a deployment does, each
  ``dagster-celery worker start -A dagster_celery.app -y CONFIG --name NAME -- --concurrency=1`` (one
  step at a time, so two workers are two places a step can run; ``CONFIG`` is
  ``deploy/celery-worker.yaml`` unless a caller gives its own), in its own process group, its log in a
  file;
* :func:`celery_deployment` runs those workers and a ``dagster-daemon`` on ``influx_assets.definitions``;
* :func:`launch_run` launches a run as backfills, schedules and sensors do: no run config;
* :func:`step_workers` says which worker executed each step, from what Dagster recorded.

The environment is the deployment's: ``INFLUX_ASSETS_EXECUTOR=celery``, ``CELERY_BROKER_URL`` and
``CELERY_RESULT_BACKEND`` (Celery reads both itself), the ``INFLUXDB_*`` variables, ``ARCHIVE_URL``,
``DAGSTER_HOME``, and a ``PATH`` on which ``celery`` is found (``dagster-celery`` starts it by name).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance

from influx_assets_tests.pipeline_harness import Daemon, wait_for

BIN = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parent.parent
#: The workers' settings a deployment uses (acknowledge late, visibility timeout).
WORKER_CONFIG = REPO_ROOT / "deploy" / "celery-worker.yaml"
LOCATION = ("-m", "influx_assets.definitions")
WORKERS = ("alpha", "beta")


class CeleryWorkers:
    """One ``dagster-celery`` worker per name, one task at a time each.

    Examples:
        >>> workers = CeleryWorkers(("alpha", "beta"), env, logs=tmp_path)  # doctest: +SKIP
        >>> workers.wait_ready()  # doctest: +SKIP
        >>> workers.stop()  # doctest: +SKIP
    """

    def __init__(
        self, names: tuple[str, ...], env: Mapping[str, str], logs: Path, config: Path = WORKER_CONFIG
    ) -> None:
        self.logs = {name: logs / f"worker-{name}.log" for name in names}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        for name, log_path in self.logs.items():
            with log_path.open("wb") as log:
                command = [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                           "-y", str(config), "--name", name, "--loglevel", "INFO", "--", "--concurrency=1"]
                self.processes[name] = subprocess.Popen(
                    command, cwd=REPO_ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

    def wait_ready(self, timeout: float = 90) -> None:
        """Until every worker's log says it is ready (connected to the broker, consuming)."""
        for name, log in self.logs.items():
            wait_for(lambda log=log: " ready." in log.read_text(errors="replace"),
                     timeout, f"worker {name}", 0.5)

    def owner_of(self, pid: int) -> str | None:
        """The worker whose process group ``pid`` belongs to (its pool processes included), else ``None``."""
        try:
            group = os.getpgid(pid)
        except ProcessLookupError:
            return None
        return next((name for name, p in self.processes.items() if p.pid == group), None)

    def kill(self, name: str) -> None:
        """SIGKILL the whole worker (its process group: CLI, Celery main process, pool), as a lost machine."""
        os.killpg(self.processes[name].pid, signal.SIGKILL)
        self.processes[name].wait(timeout=10)

    def tails(self, chars: int = 1500) -> str:
        """The end of every worker's log (for failure messages)."""
        return "\n".join(f"--- {name} ---\n{log.read_text(errors='replace')[-chars:]}"
                         for name, log in self.logs.items())

    def stop(self) -> None:
        """TERM every worker's process group (a warm shutdown), KILL what is left after 20 s."""
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@contextmanager
def celery_deployment(
    env: Mapping[str, str], names: tuple[str, ...] = WORKERS, config: Path = WORKER_CONFIG
) -> Iterator[tuple[CeleryWorkers, Daemon]]:
    """Workers ``names`` and a ``dagster-daemon`` on the code location, logs in ``$DAGSTER_HOME``.

    An error inside the block is re-raised with the daemon's and the workers' logs.
    """
    home = Path(env["DAGSTER_HOME"])
    workers = CeleryWorkers(names, env, home, config)
    daemon = Daemon(home, env, LOCATION)
    try:
        workers.wait_ready()
        yield workers, daemon
    except Exception as error:
        raise AssertionError(f"{error}\n--- daemon ---\n{daemon.tail()}\n{workers.tails()}") from error
    finally:
        daemon.stop()
        workers.stop()


def launch_run(env: Mapping[str, str], job: str, tags: Mapping[str, str]) -> str:
    """``dagster job launch`` a run of ``job`` with ``tags`` and no run config; return its run id."""
    run_id = str(uuid.uuid4())
    done = subprocess.run(
        [str(BIN / "dagster"), "job", "launch", *LOCATION, "-j", job, "--run-id", run_id,
         "--tags", json.dumps(tags)],
        cwd=REPO_ROOT, env=dict(env), capture_output=True, text=True, timeout=120, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"dagster job launch failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return run_id


def step_workers(instance: DagsterInstance, run_id: str) -> dict[str, set[str]]:
    """Step key → names of the Celery workers that executed it, as Dagster recorded them.

    The Celery task of each step reports "Executing steps <key> in celery worker" with the worker's
    node name (``alpha@host``) as metadata ``Celery worker``.
    """
    workers: dict[str, set[str]] = {}
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        metadata = entry.dagster_event.event_specific_data.metadata or {}
        if "Celery worker" in metadata and entry.step_key:
            workers.setdefault(entry.step_key, set()).add(str(metadata["Celery worker"].value).split("@")[0])
    return workers
