"""Configuration without the scripts: unset variables take their documented defaults, bad ones fail at once."""

import os
import subprocess
import sys

import pytest
from dagster import EnvVar

from influx_assets.influxdb import InfluxDBResource
from influx_assets.influxdb.client.environment import InfluxDBConfigError, settings_from_env
from influx_assets.telemetry.partitions import pipeline_start


def test_unset_and_empty_variables_take_the_documented_defaults() -> None:
    for environ in ({"INFLUXDB_URL": "http://db:8086"},
                    {"INFLUXDB_URL": "http://db:8086", "INFLUXDB_DATABASE": "", "INFLUXDB_API": "",
                     "INFLUXDB_TOKEN": "", "INFLUXDB_ORG": " ", "INFLUXDB_PASSWORD": ""}):
        settings = settings_from_env(environ)
        assert settings == {
            "url": "http://db:8086", "database": "telemetry", "api": "auto", "token": None, "org": None,
            "username": None, "password": None,
        }


def test_set_variables_win_and_api_is_case_insensitive() -> None:
    resource = InfluxDBResource.from_env(
        {"INFLUXDB_URL": "https://cloud:443", "INFLUXDB_DATABASE": "b", "INFLUXDB_API": "V2",
         "INFLUXDB_TOKEN": "s3cret", "INFLUXDB_ORG": "acme"},
        max_attempts=2,
    )
    assert (resource.url, resource.database, resource.api, resource.token, resource.org) == (
        "https://cloud:443", "b", "v2", "s3cret", "acme")
    assert resource.max_attempts == 2
    assert "s3cret" not in repr(resource)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "INFLUXDB_URL is not set"),
        ({"INFLUXDB_URL": "   "}, "INFLUXDB_URL is not set"),
        ({"INFLUXDB_URL": "127.0.0.1:8086"}, "INFLUXDB_URL is '127.0.0.1:8086', which is not an http"),
        ({"INFLUXDB_URL": "ftp://db"}, "INFLUXDB_URL is 'ftp://db'"),
        ({"INFLUXDB_URL": "http://db:port"}, "INFLUXDB_URL is 'http://db:port'"),
        ({"INFLUXDB_URL": "http://db:8086", "INFLUXDB_API": "3"}, "INFLUXDB_API is '3'; accepted values are 'auto'"),
    ],
)
def test_a_missing_or_malformed_variable_is_named_in_one_sentence(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(InfluxDBConfigError) as raised:
        settings_from_env(environ)
    assert str(raised.value).startswith(expected)
    assert "\n" not in str(raised.value)


def test_a_malformed_url_with_credentials_is_not_repeated() -> None:
    with pytest.raises(InfluxDBConfigError) as raised:
        settings_from_env({"INFLUXDB_URL": "ftp://admin:hunter2@db"})
    assert "hunter2" not in str(raised.value) and "INFLUXDB_URL" in str(raised.value)


def test_api_is_validated_when_the_resource_is_configured_not_at_first_use() -> None:
    with pytest.raises(ValueError, match="accepted values are 'auto'"):
        InfluxDBResource(url="http://db:8086", api="v3")
    with pytest.raises(ValueError, match="not an http"):
        InfluxDBResource(url="db:8086")
    assert InfluxDBResource(url="http://db:8086", api="V1").api == "v1"
    # EnvVar values are checked once Dagster resolves them, not at definition time
    assert InfluxDBResource(url=EnvVar("SOME_URL"), api=EnvVar("SOME_API")) is not None


def test_a_secret_read_from_a_file_loses_its_line_break_and_a_bad_one_is_refused_unseen() -> None:
    settings = settings_from_env({"INFLUXDB_URL": "http://db:8086", "INFLUXDB_TOKEN": "s3cret\n"})
    assert settings["token"] == "s3cret"
    with pytest.raises(InfluxDBConfigError) as raised:
        settings_from_env({"INFLUXDB_URL": "http://db:8086", "INFLUXDB_PASSWORD": "pa\nss"})
    assert "INFLUXDB_PASSWORD" in str(raised.value) and "pa\nss" not in str(raised.value)
    with pytest.raises(ValueError) as raised:
        InfluxDBResource(url="http://db:8086", token="to\rken")
    assert "to\rken" not in str(raised.value)


@pytest.mark.parametrize(
    ("value", "expected"), [(None, "2024-01-01"), ("", "2024-01-01"), (" 2026-11-30 ", "2026-11-30")]
)
def test_the_pipeline_start_is_configuration_with_a_default(value: str | None, expected: str) -> None:
    environ = {} if value is None else {"INFLUX_ASSETS_START": value}
    assert pipeline_start(environ) == expected


@pytest.mark.parametrize("value", ["2026-13-01", "01.12.2026", "2026-12-01T05:00", "yesterday"])
def test_a_malformed_pipeline_start_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(InfluxDBConfigError, match=r"INFLUX_ASSETS_START must be a UTC date as YYYY-MM-DD"):
        pipeline_start({"INFLUX_ASSETS_START": value})


def test_the_code_location_partitions_start_at_the_configured_day() -> None:
    probe = (
        "from influx_assets.definitions import defs\n"
        "graph = defs.resolve_asset_graph()\n"
        "starts = {str(graph.get(k).partitions_def.start) for k in graph.materializable_asset_keys"
        " if graph.get(k).partitions_def is not None and graph.get(k).group_name == 'telemetry'}\n"
        "print(sorted(starts))\n"
    )
    env = {**os.environ, "INFLUX_ASSETS_START": "2026-11-30"}
    shown = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "['2026-11-30 00:00:00+00:00']"
