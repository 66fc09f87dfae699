"""Resources configured once, from the environment, through ``EnvVar`` (read at run time, not import)."""

from __future__ import annotations

from dagster import EnvVar

from .influxdb import InfluxDBResource
from .influxdb.io_manager import InfluxDBIOManager

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


def resources_for(influxdb: InfluxDBResource) -> dict[str, object]:
    """The resource dictionary every job of this code location needs."""
    return {"influxdb": influxdb, "influxdb_io_manager": InfluxDBIOManager(influxdb=influxdb)}
