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
