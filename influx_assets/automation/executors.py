"""Which executor runs the steps of every run, chosen by configuration (``INFLUX_ASSETS_EXECUTOR``).

The jobs carry the executor, configured from the environment of the process that runs the run, so
runs launched by backfills, schedules and sensors — which carry no run config — get it too (run
config given at launch still overrides it).

* ``in_process`` (default): every step of a run in the run worker's own process. Chosen because a
  launched single-window run is 21 steps of 0.1-4 s of work each, mostly a chain (validate →
  normalize → 5-minute → sliding, each with small checks beside it): a process per step costs more
  than the work (issue 11 measured 47.8 s multiprocess against 3.0 s in-process for one window).
  Parallelism comes from runs instead (backfills of up to 24 windows per run, several runs at once).
  Writer pools and step retries hold in-process as in any executor.
* ``multiprocess``: a process per step, started from a ``forkserver`` that has preloaded the code
  location (a fork of a warm interpreter instead of a fresh one), at most
  ``INFLUX_ASSETS_MAX_CONCURRENT`` steps at once (default: the number of CPUs).
* ``celery``: each step a Celery task on the workers of a broker (``influx-assets[celery]``, workers
  started with ``dagster-celery worker start -A dagster_celery.app -y deploy/celery-worker.yaml``).
  ``CELERY_BROKER_URL`` and ``CELERY_RESULT_BACKEND`` are both required (e.g. ``redis://host:6379/0``
  and ``redis://host:6379/1``), with the same values here and on every worker: a worker without
  ``CELERY_RESULT_BACKEND`` stores step results with ``rpc://``, which no run reads. The URLs are read from
  the environment when the run starts (``env`` config), never copied into run config, so a password
  in them does not reach the UI. Steps of one run then execute on several machines: the archive must
  be on shared storage (:mod:`influx_assets.telemetry.archive`) and every worker needs the same
  variables as the code location and the same Dagster instance (PostgreSQL).
"""

import os
from collections.abc import Mapping

from dagster import ExecutorDefinition, in_process_executor, multiprocess_executor

from influx_assets.influxdb import InfluxDBConfigError
from influx_assets.telemetry.archive import ColdStorage

EXECUTOR_VARIABLE = "INFLUX_ASSETS_EXECUTOR"
MAX_CONCURRENT_VARIABLE = "INFLUX_ASSETS_MAX_CONCURRENT"
BROKER_VARIABLE = "CELERY_BROKER_URL"
BACKEND_VARIABLE = "CELERY_RESULT_BACKEND"
EXECUTORS = ("in_process", "multiprocess", "celery")
#: executors whose steps of one run may execute on different machines
DISTRIBUTED = frozenset({"celery"})
DEFAULT_EXECUTOR = "in_process"
#: what a forkserver preloads: the code location, so each step's process starts warm
PRELOAD = ["influx_assets.definitions"]


def executor_name(environ: Mapping[str, str] = os.environ) -> str:
    """The executor ``INFLUX_ASSETS_EXECUTOR`` names (default ``in_process``).

    Raises:
        InfluxDBConfigError: an unknown name.
    """
    name = (environ.get(EXECUTOR_VARIABLE) or "").strip().lower().replace("-", "_") or DEFAULT_EXECUTOR
    if name not in EXECUTORS:
        raise InfluxDBConfigError(f"{EXECUTOR_VARIABLE} must be one of {', '.join(EXECUTORS)}; got {name!r}")
    return name


def _max_concurrent(environ: Mapping[str, str]) -> int:
    raw = (environ.get(MAX_CONCURRENT_VARIABLE) or "").strip()
    if not raw:
        return 0  # Dagster's default: the number of CPUs
    if not raw.isdigit() or int(raw) < 1:
        raise InfluxDBConfigError(f"{MAX_CONCURRENT_VARIABLE} must be a positive integer; got {raw!r}")
    return int(raw)


def celery_executor_from_env(environ: Mapping[str, str] = os.environ) -> ExecutorDefinition:
    """The Celery executor on the broker of ``CELERY_BROKER_URL`` (read when each run starts).

    Raises:
        InfluxDBConfigError: ``CELERY_BROKER_URL`` or ``CELERY_RESULT_BACKEND`` is not set, or
            dagster-celery is not installed.
    """
    if not (environ.get(BROKER_VARIABLE) or "").strip():
        raise InfluxDBConfigError(
            f"{EXECUTOR_VARIABLE}=celery needs {BROKER_VARIABLE} (e.g. redis://redis:6379/0): without it "
            "Celery would send every step to pyamqp://guest@localhost// and fail"
        )
    if not (environ.get(BACKEND_VARIABLE) or "").strip():
        raise InfluxDBConfigError(
            f"{EXECUTOR_VARIABLE}=celery needs {BACKEND_VARIABLE} too (e.g. redis://redis:6379/1), the same value "
            "here and on every Celery worker: a worker without it stores step results with rpc://, which no run "
            "reads, and every run waits for ever"
        )
    try:
        from dagster_celery import celery_executor
    except ImportError as error:
        raise InfluxDBConfigError(
            f"{EXECUTOR_VARIABLE}=celery needs dagster-celery: pip install 'influx-assets[celery]'"
        ) from error
    return celery_executor.configured(
        {"broker": {"env": BROKER_VARIABLE}, "backend": {"env": BACKEND_VARIABLE}, "include": PRELOAD},
        name="celery_from_env",
    )


def executor_from_env(environ: Mapping[str, str] = os.environ) -> ExecutorDefinition:
    """The executor every job of the code location runs its steps with (see the module docstring)."""
    name = executor_name(environ)
    if name == "in_process":
        return in_process_executor
    if name == "multiprocess":
        return multiprocess_executor.configured(
            {"max_concurrent": _max_concurrent(environ), "start_method": {"forkserver": {"preload_modules": PRELOAD}}},
            name="multiprocess_forkserver",
        )
    return celery_executor_from_env(environ)


def require_shared_archive(executor: str, cold_storage: ColdStorage) -> None:
    """Refuse a plain-path archive under a distributed executor, saying how to fix it.

    With steps on several machines, ``telemetry_archive`` would write a day's file on one worker and
    ``archive_matches_source`` look for it on another (it fails there: the file "does not exist").

    Raises:
        InfluxDBConfigError: ``executor`` is distributed and the archive base is a plain path.
    """
    if executor in DISTRIBUTED and cold_storage.is_local_path():
        raise InfluxDBConfigError(
            f"{EXECUTOR_VARIABLE}={executor} runs the steps of a run on several machines, but the archive is "
            f"the local path {cold_storage.base()!r}: one worker would write a day's Parquet file and another "
            "would not find it. Set ARCHIVE_URL to shared storage: s3://bucket/prefix, gs://bucket/prefix, or "
            "file:///path for a file system every worker mounts at that path."
        )
