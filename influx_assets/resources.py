"""Resources configured once, from the environment, through ``EnvVar`` (read at run time, not import)."""

from __future__ import annotations

from dagster import EnvVar

from .influxdb import InfluxDBResource
from .influxdb.io_manager import InfluxDBIOManager
from .pipeline.archive import ColdStorage

#: Every variable the resource reads. The scripts export all of them (empty when unused), because
#: ``EnvVar`` fails on a variable that is not set at all.
INFLUXDB_ENV_VARS = (
    "INFLUXDB_URL", "INFLUXDB_DATABASE", "INFLUXDB_TOKEN", "INFLUXDB_ORG",
    "INFLUXDB_USERNAME", "INFLUXDB_PASSWORD", "INFLUXDB_API",
)


def influxdb_from_env() -> InfluxDBResource:
    """The resource wired to the ``INFLUXDB_*`` variables."""
    return InfluxDBResource(
        url=EnvVar("INFLUXDB_URL"),
        database=EnvVar("INFLUXDB_DATABASE"),
        token=EnvVar("INFLUXDB_TOKEN"),
        org=EnvVar("INFLUXDB_ORG"),
        username=EnvVar("INFLUXDB_USERNAME"),
        password=EnvVar("INFLUXDB_PASSWORD"),
        api=EnvVar("INFLUXDB_API"),
    )


def resources_for(influxdb: InfluxDBResource, cold_storage: ColdStorage | None = None) -> dict[str, object]:
    """The resource dictionary every job of this code location needs.

    ``cold_storage`` (where ``telemetry_archive`` writes) defaults to ``ColdStorage()``: ``$ARCHIVE_URL``
    or ``<project>/archive``, resolved when the archive runs.
    """
    return {
        "influxdb": influxdb,
        "influxdb_io_manager": InfluxDBIOManager(influxdb=influxdb),
        "cold_storage": cold_storage or ColdStorage(),
    }
