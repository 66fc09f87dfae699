"""The one ``Definitions`` object of the influx_assets code location."""

from __future__ import annotations

from dagster import Definitions

from .examples import example_readings, example_readings_summary
from .pipeline import pipeline_assets, pipeline_checks
from .resources import influxdb_from_env, resources_for

defs = Definitions(
    assets=[example_readings, example_readings_summary, *pipeline_assets],
    asset_checks=pipeline_checks,
    resources=resources_for(influxdb_from_env()),
)
