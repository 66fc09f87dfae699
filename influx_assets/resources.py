"""Resources configured once, from the environment, read when a run or sensor starts (not at import)."""

from __future__ import annotations

from dagster import InitResourceContext, ResourceDefinition, resource

from influx_assets.influxdb import InfluxDBResource
from influx_assets.observability.pipeline_meter import MeteredInfluxDBIOManager
from influx_assets.telemetry.archive import ColdStorage

#: Every variable the code location's InfluxDB resource reads; only ``INFLUXDB_URL`` is required
#: (defaults: influx_assets.influxdb.client.environment).
INFLUXDB_ENV_VARS = (
    "INFLUXDB_URL", "INFLUXDB_DATABASE", "INFLUXDB_TOKEN", "INFLUXDB_ORG",
    "INFLUXDB_USERNAME", "INFLUXDB_PASSWORD", "INFLUXDB_API",
)


@resource(
    description="InfluxDB configured from INFLUXDB_URL (required) and the optional INFLUXDB_DATABASE "
    "(default telemetry), INFLUXDB_API (auto|v1|v2, default auto), INFLUXDB_TOKEN, INFLUXDB_ORG, "
    "INFLUXDB_USERNAME, INFLUXDB_PASSWORD, read when a run or sensor starts. Secrets are never shown."
)
def influxdb_from_env(_context: InitResourceContext) -> InfluxDBResource:
    """The resource wired to the ``INFLUXDB_*`` variables, with defaults for unset ones.

    Dagster's ``EnvVar`` fails on a variable that is not set at all, so the variables are read here,
    at resource initialization; a missing or malformed ``INFLUXDB_URL`` or an unknown
    ``INFLUXDB_API`` fails the run at once with a sentence naming the variable.

    A plain function, not a generator: Dagster cannot nest a generator resource inside the IO manager.
    Its pooled connections close with the step's process.
    """
    return InfluxDBResource.from_env()


def resources_for(
    influxdb: InfluxDBResource | ResourceDefinition, cold_storage: ColdStorage | None = None
) -> dict[str, object]:
    """The resource dictionary every job of this code location needs.

    ``influxdb`` is a configured resource, or ``influxdb_from_env`` (the code location's default).
    ``cold_storage`` (where ``telemetry_archive`` writes) defaults to ``ColdStorage()``: ``$ARCHIVE_URL``
    or ``<project>/archive``, resolved when the archive runs.
    """
    return {
        "influxdb": influxdb,
        "influxdb_io_manager": MeteredInfluxDBIOManager(influxdb=influxdb),
        "cold_storage": cold_storage or ColdStorage(),
    }
