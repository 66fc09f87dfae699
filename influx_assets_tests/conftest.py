"""Session fixtures: a real InfluxDB server, a fresh database per test, an independent query path.

Without ``INFLUXDB_URL`` the session starts Debian's ``influxd`` on a free loopback port with a
temporary data directory. With ``INFLUXDB_URL`` (plus ``INFLUXDB_TOKEN``/``INFLUXDB_ORG``/
``INFLUXDB_USERNAME``/``INFLUXDB_PASSWORD``/``INFLUXDB_API``) the same tests run against that server.
Under ``CI=true`` a missing ``influxd`` fails the session instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from influx_assets.influxdb import InfluxDBResource
from influx_assets.devtools.local_server import InfluxdNotInstalledError, LocalInfluxd
from influx_assets_tests.influxql_oracle import InfluxQLOracle
from influx_assets_tests.real_servers import start_or_fail_in_ci


@pytest.fixture(scope="session")
def influx_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInfluxd | None]:
    """The session's own ``influxd`` (None when ``INFLUXDB_URL`` points at an external server)."""
    if os.environ.get("INFLUXDB_URL"):
        yield None
        return
    server = start_or_fail_in_ci(lambda: LocalInfluxd(tmp_path_factory.mktemp("influxd")).start(), InfluxdNotInstalledError)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def influx_url(influx_server: LocalInfluxd | None) -> str:
    """Base URL of the server under test."""
    return influx_server.url if influx_server is not None else os.environ["INFLUXDB_URL"]


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[LocalInfluxd]:
    """An ``influxd`` of this test alone, which it stops and starts again on the same port and data."""
    server = LocalInfluxd(tmp_path / "influxd").start()
    yield server
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def influx_env(influx_url: str) -> Iterator[None]:
    """Export the ``INFLUXDB_*`` variables the code location's ``EnvVar`` config reads."""
    saved = dict(os.environ)
    os.environ["INFLUXDB_URL"] = influx_url
    for name, default in [
        ("INFLUXDB_DATABASE", "telemetry"), ("INFLUXDB_TOKEN", ""), ("INFLUXDB_ORG", ""),
        ("INFLUXDB_USERNAME", ""), ("INFLUXDB_PASSWORD", ""), ("INFLUXDB_API", "auto"),
    ]:
        os.environ.setdefault(name, default)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def database_name() -> str:
    """A database no other test uses."""
    return f"test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def influxdb(influx_url: str, database_name: str) -> Iterator[InfluxDBResource]:
    """A resource on a fresh database of the server under test (created, dropped afterwards)."""
    resource = InfluxDBResource(
        url=influx_url,
        database=database_name,
        token=os.environ.get("INFLUXDB_TOKEN") or None,
        org=os.environ.get("INFLUXDB_ORG") or None,
        username=os.environ.get("INFLUXDB_USERNAME") or None,
        password=os.environ.get("INFLUXDB_PASSWORD") or None,
        api=os.environ.get("INFLUXDB_API") or "auto",
        max_attempts=2,
        initial_backoff_seconds=0.05,
    )
    resource.ensure_database()
    yield resource
    oracle = InfluxQLOracle(influx_url, database_name)
    oracle.drop_database()


@pytest.fixture
def oracle(influx_url: str, database_name: str, influxdb: InfluxDBResource) -> InfluxQLOracle:
    """Independent InfluxQL access to the test's database (stdlib HTTP, not the code under test)."""
    return InfluxQLOracle(influx_url, database_name)


@pytest.fixture
def artifacts_dir() -> Path:
    """Where tests leave artifacts (screenshots) for humans: ``test-artifacts/`` in the repo."""
    path = Path(__file__).resolve().parent.parent / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
