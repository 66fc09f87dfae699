"""The one ``Definitions`` object of the influx_assets code location."""

from dagster import Definitions

from .examples import example_readings, example_readings_summary
from .late_data import late_data_sensor
from .pipeline import pipeline_assets, pipeline_checks
from .resources import influxdb_from_env, resources_for
from .schedules import daily_pipeline_job, hourly_pipeline_job, pipeline_schedules
from .sensors import sensors as failure_sensors

defs = Definitions(
    assets=[example_readings, example_readings_summary, *pipeline_assets],
    asset_checks=pipeline_checks,
    jobs=[hourly_pipeline_job, daily_pipeline_job],
    schedules=pipeline_schedules(),
    sensors=[late_data_sensor, *failure_sensors],
    resources=resources_for(influxdb_from_env),
)
