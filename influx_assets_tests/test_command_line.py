"""The code location from the command line: ``dg check defs`` and ``dg launch`` of the example assets."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from influx_assets_tests.influxql_oracle import InfluxQLOracle

REPO = Path(__file__).resolve().parent.parent
DG = str(Path(sys.executable).with_name("dg"))


@pytest.fixture
def cli_env(tmp_path: Path, database_name: str, influxdb: object) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    return {**os.environ, "DAGSTER_HOME": str(home), "INFLUXDB_DATABASE": database_name}


def test_dg_check_defs_accepts_the_code_location(cli_env: dict[str, str]) -> None:
    done = subprocess.run([DG, "check", "defs"], cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dg_launch_materializes_both_example_assets_into_influxdb(
    cli_env: dict[str, str], oracle: InfluxQLOracle
) -> None:
    done = subprocess.run(
        [DG, "launch", "--assets", "example_readings,example_readings_summary", "--partition", "2024-01-01-05:00"],
        cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    window = "WHERE time >= '2024-01-01T05:00:00Z' AND time < '2024-01-01T06:00:00Z'"
    assert oracle.count("example_readings", "value", window) == 180
    summary = oracle.rows(f'SELECT * FROM "example_readings_summary" {window}')
    assert sorted(r["sensor_id"] for r in summary) == ["s-1", "s-2", "s-3"]
    assert all(r["count"] == 60 for r in summary)
    assert oracle.count("example_readings", "value", "WHERE time >= 0") == 180


WINDOW_0700 = "WHERE time >= '2024-01-03T07:00:00Z' AND time < '2024-01-03T08:00:00Z'"


def _only(tmp_path: Path, **variables: str) -> dict[str, str]:
    """An environment with nothing of ours but ``variables`` (no scripts/env.sh, no DAGSTER_HOME)."""
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8", **variables}


def test_an_asset_materializes_with_only_influxdb_url_set(
    tmp_path: Path, influx_url: str, influx_server: object
) -> None:
    oracle = InfluxQLOracle(influx_url, "telemetry")  # the documented default database
    done = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "asset", "materialize", "-m", "influx_assets.definitions",
         "--select", "example_readings", "--partition", "2024-01-03-07:00"],
        cwd=tmp_path, env=_only(tmp_path, INFLUXDB_URL=influx_url), capture_output=True, text=True, timeout=300,
    )
    try:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert oracle.count("example_readings", "value", WINDOW_0700) == 180
    finally:
        if done.returncode == 0:
            oracle.query(f'DELETE FROM "example_readings" {WINDOW_0700}')


def test_without_influxdb_url_the_run_fails_at_once_with_one_sentence_naming_it(tmp_path: Path) -> None:
    # the other malformed values are covered without a subprocess in test_environment.py
    done = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "asset", "materialize", "-m", "influx_assets.definitions",
         "--select", "example_readings", "--partition", "2024-01-03-06:00"],
        cwd=tmp_path, env=_only(tmp_path), capture_output=True, text=True, timeout=300,
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "INFLUXDB_URL is not set; set it to the base URL of your InfluxDB" in output, output[-3000:]


def test_the_scripts_never_overwrite_an_operators_instance_config(tmp_path: Path) -> None:
    own, stale = tmp_path / "operator", tmp_path / "stale"
    own.mkdir(), stale.mkdir()
    (own / "dagster.yaml").write_text("storage:\n  postgres: {}\n")
    (stale / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text().splitlines()[0] + "\nold: copy\n")
    for home in (own, stale):
        subprocess.run(["bash", "-c", "source scripts/env.sh"], cwd=REPO, env={**os.environ, "DAGSTER_HOME": str(home)},
                       check=True, timeout=60)
    assert (own / "dagster.yaml").read_text() == "storage:\n  postgres: {}\n"
    assert (stale / "dagster.yaml").read_text() == (REPO / "dagster.yaml").read_text()
