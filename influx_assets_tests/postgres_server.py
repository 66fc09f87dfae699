"""A private PostgreSQL cluster for the tests, and the Dagster instances that store into it.

:class:`LocalPostgres` runs ``initdb`` into a temporary directory and starts ``postgres`` on a free
loopback port with its unix socket inside that directory and trust authentication (loopback only);
:meth:`LocalPostgres.stop` shuts it down and removes the directory. PostgreSQL refuses to run as
root, so as root (here and in CI) the cluster belongs to Debian's ``postgres`` user (else
``nobody``), started through ``runuser``. The binaries are Debian's, ``/usr/lib/postgresql/<N>/bin``
(not on ``PATH``; ``scripts/setup.sh`` installs the package for the tests).

Registered as a pytest plugin by the modules that use it (``pytest_plugins``): the session fixture
:func:`postgres_server` (under ``CI=true`` a missing server fails the tests instead of skipping, as
``conftest.py`` does for ``influxd``) and :func:`postgres_home`, which gives a test a fresh database
and a ``DAGSTER_HOME`` whose ``dagster.yaml`` is ``deploy/dagster.postgres.yaml`` with the test's
overrides merged in, the ``DAGSTER_PG_*`` variables it reads set for the test and its subprocesses.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from influx_assets_tests.pipeline_harness import POSTGRES_CONFIG, write_dagster_home
from influx_assets_tests.real_servers import start_or_fail_in_ci

#: The cluster's superuser role (trust authentication: no password).
SUPERUSER = "postgres"
#: A throwaway cluster need not survive a crash: no fsync makes Dagster's many small commits cheap.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class PostgresNotInstalledError(RuntimeError):
    """No PostgreSQL server binaries (``initdb``, ``pg_ctl``) on this machine."""


def postgres_bindir() -> Path:
    """The directory of the newest installed server binaries (Debian's, else ``initdb`` on ``PATH``)."""
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    found = debian[-1] if debian else (Path(on_path) if (on_path := shutil.which("initdb")) else None)
    if found is None or not (found.resolve().parent / "pg_ctl").exists():
        raise PostgresNotInstalledError(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb, no initdb on PATH); "
            "run `INFLUX_ASSETS_FOR_TESTS=1 bash scripts/setup.sh` or `apt-get install postgresql`"
        )
    return found.resolve().parent


def server_account() -> str | None:
    """The unprivileged account the server runs as when we are root (``None``: as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise PostgresNotInstalledError("running as root and neither a 'postgres' nor a 'nobody' account exists")


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalPostgres:
    """A PostgreSQL cluster of its own in a temporary directory, on a free loopback port.

    Examples:
        >>> server = LocalPostgres().start()
        >>> database = server.create_database()
        >>> server.environment(database)["DAGSTER_PG_PORT"] == str(server.port)
        True
        >>> server.stop()
    """

    def __init__(self, settings: Mapping[str, str] = FAST_SETTINGS) -> None:
        self.bindir = postgres_bindir()
        self.account = server_account()
        self.settings = dict(settings)
        self.host = "127.0.0.1"
        self.port = 0
        self.root: Path | None = None

    @property
    def data(self) -> Path:
        assert self.root is not None, "the server was not started"
        return self.root / "data"

    @property
    def log(self) -> Path:
        assert self.root is not None, "the server was not started"
        return self.root / "server.log"

    def _as_server(self, *command: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", self.account, "--"] if self.account else []
        return subprocess.run([*prefix, *command], cwd=self.root, capture_output=True, text=True, timeout=120,
                              check=False)

    def start(self, attempts: int = 3) -> LocalPostgres:
        """``initdb`` (trust auth, superuser ``postgres``) and start; retries on a port taken meanwhile."""
        self.root = Path(tempfile.mkdtemp(prefix="influx-assets-pg-"))
        if self.account:
            shutil.chown(self.root, self.account)
        done = self._as_server(str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                               "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
        if done.returncode != 0:
            self._remove()
            raise RuntimeError(f"initdb failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        for _ in range(attempts):
            self.port = free_port()
            options = [f"-c listen_addresses={self.host}", f"-p {self.port}", f"-k {self.root}"]
            options += [f"-c {name}={value}" for name, value in self.settings.items()]
            done = self._as_server(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                                   "-w", "-t", "60", "-o", " ".join(options), "start")
            if done.returncode == 0:
                return self
        log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        self._remove()
        raise RuntimeError(f"postgres did not start: {done.stdout[-1000:]}{done.stderr[-1000:]}\n{log}")

    def stop(self) -> None:
        """Shut the server down (fast: open sessions are ended) and remove its directory."""
        if self.root is None:
            return
        done = self._as_server(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        if done.returncode != 0 and (self.data / "postmaster.pid").exists():
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            try:
                os.kill(pid, 9)  # the postmaster's children end with it
            except ProcessLookupError:
                pass
        self._remove()

    def _remove(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement through ``psql`` (not the driver under test); return its unaligned output."""
        done = subprocess.run(
            [str(self.bindir / "psql"), "-h", self.host, "-p", str(self.port), "-U", SUPERUSER,
             "-d", database, "-v", "ON_ERROR_STOP=1", "-Atc", statement],
            capture_output=True, text=True, timeout=60, check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql {statement!r} on {database}: {done.stderr.strip()}")
        return done.stdout

    def create_database(self) -> str:
        """A new, empty database; returns its name."""
        name = f"dagster_{uuid.uuid4().hex[:12]}"
        self.sql(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, ending the sessions still connected to it (a stopped daemon may leave some)."""
        if not re.fullmatch(r"\w+", name):
            raise ValueError(f"not a database this server created: {name!r}")
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def environment(self, database: str) -> dict[str, str]:
        """The ``DAGSTER_PG_*`` variables ``deploy/dagster.postgres.yaml`` reads, for ``database``."""
        return {
            "DAGSTER_PG_HOST": self.host, "DAGSTER_PG_PORT": str(self.port), "DAGSTER_PG_USER": SUPERUSER,
            "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": database,
        }


# --- pytest plugin ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    """The session's own PostgreSQL cluster."""
    server = start_or_fail_in_ci(lambda: LocalPostgres().start(), PostgresNotInstalledError)
    yield server
    server.stop()


PostgresHome = Callable[..., Path]


@pytest.fixture
def postgres_home(
    postgres_server: LocalPostgres, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[PostgresHome]:
    """``make(root=tmp_path/"home", overrides=None)``: a ``DAGSTER_HOME`` on a fresh PostgreSQL database.

    Sets the ``DAGSTER_PG_*`` variables in this process for the test (so instances opened here and
    the subprocesses given ``os.environ`` find the database); drops the database afterwards.
    """
    databases: list[str] = []

    def make(root: Path | None = None, overrides: Mapping[str, object] | None = None) -> Path:
        database = postgres_server.create_database()
        databases.append(database)
        for name, value in postgres_server.environment(database).items():
            monkeypatch.setenv(name, value)
        return write_dagster_home(root or tmp_path / "home", POSTGRES_CONFIG, overrides)

    yield make
    for database in databases:
        postgres_server.drop_database(database)
