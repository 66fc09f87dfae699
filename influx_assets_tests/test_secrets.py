"""Credentials: a wrong password fails clearly, a right one works, and no secret ever leaks.

A module-scoped ``influxd`` runs with ``auth-enabled = true``; its admin user is created through
``/query`` (InfluxDB 1.x allows ``CREATE USER ... WITH ALL PRIVILEGES`` without credentials while no
user exists). The leak tests run real Dagster materializations against it and search every place a
secret could surface: the event log, the run record, raised exceptions and their causes,
materialization metadata, Python logging and the console.
"""

import base64
import json
import logging
import traceback
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pandas as pd
import pytest
from dagster import EnvVar, HourlyPartitionsDefinition, asset, instance_for_test, materialize
from dagster._serdes import serialize_value

from influx_assets.influxdb import (
    AuthenticationError,
    InfluxDBIOManager,
    InfluxDBResource,
    ServerUnreachableError,
)
from influx_assets.devtools.local_server import LocalInfluxd, free_port
from influx_assets_tests.influxql_oracle import InfluxQLOracle

USER = "admin"
RIGHT = "Ri9ht-pa55-7c1e0b"
WRONG = "Wr0ng-pa55-93d2aa"
TOKEN = "t0ken-5ecret-c0ffee"


def leaked_forms(secret: str) -> list[str]:
    """The secret itself and the Basic-auth header value that carries it."""
    return [secret, base64.b64encode(f"{USER}:{secret}".encode()).decode()]


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        for form in leaked_forms(secret):
            assert form not in text, f"secret leaked: ...{text[max(0, text.find(form) - 200):][:400]}"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInfluxd]:
    server = LocalInfluxd(tmp_path_factory.mktemp("influxd-auth"), auth_enabled=True).start()
    statement = f"CREATE USER \"{USER}\" WITH PASSWORD '{RIGHT}' WITH ALL PRIVILEGES"
    data = urllib.parse.urlencode({"q": statement}).encode()
    request = urllib.request.Request(f"{server.url}/query", data=data)
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert "error" not in json.load(reply)["results"][0]
    yield server
    server.stop()


@pytest.fixture
def auth_oracle(
    auth_server: LocalInfluxd, database_name: str, monkeypatch: pytest.MonkeyPatch
) -> InfluxQLOracle:
    """The independent oracle, logged in as the admin (it reads credentials from the environment)."""
    monkeypatch.setenv("INFLUXDB_TOKEN", "")
    monkeypatch.setenv("INFLUXDB_USERNAME", USER)
    monkeypatch.setenv("INFLUXDB_PASSWORD", RIGHT)
    oracle = InfluxQLOracle(auth_server.url, database_name)
    oracle.query(f'CREATE DATABASE "{database_name}"')
    return oracle


def resource(server: LocalInfluxd, database: str, password: object) -> InfluxDBResource:
    return InfluxDBResource(
        url=server.url, database=database, username=USER, password=password,  # type: ignore[arg-type]
        max_attempts=3, initial_backoff_seconds=0.05, timeout_seconds=5,
    )


def frame(start: str = "2024-05-01T00:00:00Z", n: int = 6) -> pd.DataFrame:
    return pd.DataFrame({
        "time": pd.date_range(pd.Timestamp(start).as_unit("ns"), periods=n, freq="5min"),
        "sensor_id": [f"s{i % 2}" for i in range(n)],
        "value": [float(i) / 4 for i in range(n)],
    })


# --- authentication ------------------------------------------------------------------------------


def test_a_wrong_password_fails_clearly_without_showing_any_password(
    auth_server: LocalInfluxd, auth_oracle: InfluxQLOracle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = resource(auth_server, auth_oracle.database, WRONG)
    attempts = [
        lambda: wrong.write_frame(frame(), "readings", ["sensor_id"]),
        lambda: wrong.read_window(wrong.slice("readings")),
        lambda: wrong.ensure_database(),
    ]
    for attempt in attempts:
        with pytest.raises(AuthenticationError) as raised:
            attempt()
        message = str(raised.value)
        assert f"InfluxDB at {auth_server.url} rejected the credentials (HTTP 401)" in message
        assert "INFLUXDB_USERNAME/INFLUXDB_PASSWORD" in message and "permissions" in message
        assert_no_secret("".join(traceback.format_exception(raised.value)), WRONG, RIGHT)
    assert wrong.retries_observed == []  # a 401 is terminal: no retry
    assert_no_secret(caplog.text, WRONG, RIGHT)
    assert auth_oracle.count("readings") == 0


def test_the_right_password_writes_and_reads(auth_server: LocalInfluxd, auth_oracle: InfluxQLOracle) -> None:
    right = resource(auth_server, auth_oracle.database, RIGHT)
    written = frame()

    right.write_frame(written, "readings", ["sensor_id"])
    got = right.read_window(right.slice("readings"))

    pd.testing.assert_frame_equal(got[["time", "sensor_id", "value"]], written)
    assert auth_oracle.count("readings") == len(written)


def test_the_resource_repr_hides_password_and_token() -> None:
    configured = InfluxDBResource(username=USER, password=RIGHT, token=TOKEN)
    assert_no_secret(repr(configured) + str(configured), RIGHT, TOKEN)
    assert configured.password == RIGHT and configured.token == TOKEN


def test_credentials_in_the_url_are_not_printed_when_the_server_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()
    down = InfluxDBResource(
        url=f"http://{USER}:{RIGHT}@127.0.0.1:{port}", token=TOKEN, max_attempts=2,
        initial_backoff_seconds=0.05,
    )

    with pytest.raises(ServerUnreachableError) as raised:
        down.ping()

    message = str(raised.value)
    assert message.startswith(f"cannot reach InfluxDB at http://127.0.0.1:{port} — is it running?")
    assert_no_secret("".join(traceback.format_exception(raised.value)) + caplog.text, RIGHT, TOKEN)


# --- Dagster: event log, run record, exceptions, metadata, logging -----------------------------

hours = HourlyPartitionsDefinition(start_date="2024-05-01-00:00", timezone="UTC")
TAGS = {"influxdb/measurement": "guarded", "influxdb/tags": ["sensor_id"]}


@asset(partitions_def=hours, metadata=TAGS, io_manager_key="influxdb_io_manager")
def guarded(context) -> pd.DataFrame:
    return frame(context.partition_time_window.start.isoformat(), n=12)


@asset(partitions_def=hours)
def guarded_summary(guarded: pd.DataFrame) -> int:
    return len(guarded)


@pytest.mark.parametrize("via_env", [True, False], ids=["EnvVar", "literal"])
@pytest.mark.parametrize("password", [RIGHT, WRONG], ids=["right", "wrong"])
def test_no_secret_reaches_dagster_records_exceptions_metadata_or_logs(
    password: str, via_env: bool, auth_server: LocalInfluxd, auth_oracle: InfluxQLOracle,
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("GUARDED_PASSWORD", password)
    secret = EnvVar("GUARDED_PASSWORD") if via_env else password
    configured = resource(auth_server, auth_oracle.database, secret)
    failed_with: list[BaseException] = []

    with instance_for_test() as instance:
        try:
            result = materialize(
                [guarded, guarded_summary], instance=instance, partition_key="2024-05-01-03:00",
                resources={"influxdb_io_manager": InfluxDBIOManager(influxdb=configured)},
            )
            run_id = result.run_id
        except Exception as error:  # noqa: BLE001 - the wrong password must fail; inspected below
            failed_with.append(error)
            run_id = instance.get_runs()[0].run_id
        records = instance.all_logs(run_id)
        run = instance.get_run_by_id(run_id)
        everything = [r.asset_materialization for r in records if r.asset_materialization]
        materializations = [m for m in everything if m.asset_key.path == ["guarded"]]

        texts = [serialize_value(record) for record in records] + [str(r) for r in records]
        texts += [serialize_value(run), json.dumps(run.run_config, default=str), str(run.tags)]
        texts += [str(m.metadata) for m in everything]
        texts += ["".join(traceback.format_exception(e)) for e in failed_with]
        texts += [caplog.text, *capfd.readouterr()]

    if password == RIGHT:
        assert not failed_with and len(materializations) == 1
        assert materializations[0].metadata["influxdb/url"].value == auth_server.url
        assert auth_oracle.count("guarded") == 12
    else:
        assert failed_with and not materializations
        assert any("rejected the credentials" in t for t in texts)  # the failure is visible...
        assert auth_oracle.count("guarded") == 0
    for text in texts:
        assert_no_secret(text, WRONG, RIGHT)  # ...and no password is, anywhere
