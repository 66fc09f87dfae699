"""The one ``Definitions`` object of the influx_assets code location."""

from dagster import Definitions

from influx_assets.examples import example_readings, example_readings_summary
from influx_assets.automation.executors import executor_from_env, executor_name, require_shared_archive
from influx_assets.automation.late_data import late_data_sensor
from influx_assets.automation.lookback import lookback_sensor
from influx_assets.automation.raw_observation import raw_telemetry_observer
from influx_assets.telemetry import ColdStorage, pipeline_assets, pipeline_checks
from influx_assets.resources import influxdb_from_env, resources_for
from influx_assets.automation.schedules import daily_pipeline_job, hourly_pipeline_job, pipeline_schedules
from influx_assets.automation.sensors import sensors as failure_sensors

require_shared_archive(executor_name(), ColdStorage())  # before anything runs: refuse what cannot work

defs = Definitions(
    assets=[example_readings, example_readings_summary, *pipeline_assets],
    asset_checks=pipeline_checks,
    jobs=[hourly_pipeline_job, daily_pipeline_job],
    schedules=pipeline_schedules(),
    sensors=[late_data_sensor, lookback_sensor, raw_telemetry_observer, *failure_sensors],
    resources=resources_for(influxdb_from_env),
    # every job's executor (the implicit asset job of backfills too), from INFLUX_ASSETS_EXECUTOR
    executor=executor_from_env(),
)
