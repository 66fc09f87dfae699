"""The demo as an operator restarts it: demo data that leaves loaded windows alone, a live feed that
survives an InfluxDB outage, scripts that tell the truth about their processes, a tagged backfill.

Everything runs against a real ``influxd`` (the session's, or one of the test's own where it is stopped
and started again) and, for the backfill, a real ``dagster-webserver``; assertions go through InfluxQL.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pandas as pd

from dagster import AssetKey, AssetMaterialization, DagsterEventType, DagsterInstance, DagsterRunStatus
from dagster._core.test_utils import create_run_for_test

from influx_assets.devtools.demo import DEMO_TAGS, load_demo_data
from influx_assets.devtools.orphans import windows_not_processed
from influx_assets.devtools.local_server import LocalInfluxd
from influx_assets.influxdb import InfluxDBResource
from influx_assets.telemetry.contract import RAW_MEASUREMENT
from influx_assets_tests.influxql_oracle import InfluxQLOracle
from influx_assets_tests.ui_driver import DagsterWebserver, wait_until

REPO = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).with_name("influx-assets"))
FIRST_START = pd.Timestamp("2025-03-01T10:20:00Z")  # windows 07:00, 08:00, 09:00 for hours=3


def window_rows(oracle: InfluxQLOracle, start: str) -> list[dict]:
    """Every raw point of the hourly window starting at ``start`` (ISO), all fields and tags, in order.

    Columns a point does not have are left out: ``SELECT *`` shows the measurement's columns as they are
    now, so a new tag or field anywhere in the measurement would otherwise look like a change.
    """
    begin = pd.Timestamp(start)
    where = f"WHERE time >= '{begin.isoformat()}' AND time < '{(begin + pd.Timedelta(hours=1)).isoformat()}'"
    rows = [
        {key: value for key, value in row.items() if value is not None}
        for row in oracle.rows(f'SELECT * FROM "{RAW_MEASUREMENT}" {where}')
    ]
    return sorted(rows, key=lambda row: sorted((k, str(v)) for k, v in row.items()))


def post_lines(url: str, database: str, lines: str) -> None:
    """Write line protocol with the stdlib (not the code under test), as another writer would."""
    request = urllib.request.Request(f"{url}/write?db={database}&precision=ns", data=lines.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 204


# --- 1. demo data: a restart changes no loaded window ---------------------------------------------------


def test_a_restart_leaves_every_loaded_window_exactly_as_it_was(
    influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    first = load_demo_data(influxdb, hours=3, now=FIRST_START)
    assert first.loaded == ["2025-03-01-07:00", "2025-03-01-08:00", "2025-03-01-09:00"]
    before = {hour: window_rows(oracle, f"2025-03-01T{hour}:00:00Z") for hour in ("07", "08", "09")}
    assert all(len(rows) > 1000 for rows in before.values())

    # the restart, two hours later: its last 3 windows are 09:00 (loaded), 10:00 and 11:00 (new)
    second = load_demo_data(influxdb, hours=3, now=FIRST_START + pd.Timedelta(hours=2))

    assert second.already_present == ["2025-03-01-09:00"]
    assert second.loaded == ["2025-03-01-10:00", "2025-03-01-11:00"]
    for hour, rows in before.items():
        assert window_rows(oracle, f"2025-03-01T{hour}:00:00Z") == rows, f"window {hour}:00 changed"
    assert len(window_rows(oracle, "2025-03-01T10:00:00Z")) > 1000
    assert len(window_rows(oracle, "2025-03-01T11:00:00Z")) > 1000


def test_a_window_another_writer_filled_gets_no_demo_points(
    influxdb: InfluxDBResource, oracle: InfluxQLOracle, influx_url: str, database_name: str
) -> None:
    # the live feed (or a device) wrote into 09:00 before the demo restarted
    feed = "".join(
        f"{RAW_MEASUREMENT},site=site-01,sensor_id=live-{i},kind=temperature value={20 + i} "
        f"{pd.Timestamp('2025-03-01T09:30:00Z').value + i * 1_000_000_000}\n"
        for i in range(3)
    )
    post_lines(influx_url, database_name, feed)
    feed_rows = window_rows(oracle, "2025-03-01T09:00:00Z")

    load = load_demo_data(influxdb, hours=3, now=FIRST_START)

    assert load.already_present == ["2025-03-01-09:00"]
    assert window_rows(oracle, "2025-03-01T09:00:00Z") == feed_rows
    assert len(window_rows(oracle, "2025-03-01T08:00:00Z")) > 1000


def test_a_windows_demo_points_do_not_depend_on_when_or_with_what_they_are_loaded(
    influxdb: InfluxDBResource, oracle: InfluxQLOracle, influx_url: str
) -> None:
    load_demo_data(influxdb, hours=1, now=FIRST_START)  # window 09:00 alone
    other_db = f"{influxdb.database}_b"
    other = InfluxDBResource(url=influx_url, database=other_db, api=influxdb.api)
    other_oracle = InfluxQLOracle(influx_url, other_db)
    try:
        # a later start, whose range also spans the previous day
        load_demo_data(other, hours=15, now=FIRST_START + pd.Timedelta(hours=2))  # 21:00 the day before to 11:00
        assert window_rows(other_oracle, "2025-03-01T09:00:00Z") == window_rows(oracle, "2025-03-01T09:00:00Z")
        assert len(window_rows(other_oracle, "2025-02-28T23:00:00Z")) > 1000
    finally:
        other_oracle.drop_database()


def test_running_demo_data_again_writes_nothing_into_the_windows_it_loaded(
    tmp_path: Path, influx_url: str, database_name: str, influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    command = [CLI, "demo-data", "--url", influx_url, "--database", database_name, "--hours", "2",
               "--no-progress", "--manifest", str(tmp_path / "manifest.json")]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    hours = re.search(r"window\(s\) (\S+)\.\.\.(\S+) ", first.stdout)
    assert hours, first.stdout
    starts = [pd.Timestamp(f"{key[:10]}T{key[11:]}:00Z") for key in hours.groups()]
    before = [window_rows(oracle, start.isoformat()) for start in starts]

    second = subprocess.run(command, capture_output=True, text=True, timeout=300)

    assert second.returncode == 0, second.stdout + second.stderr
    assert "window(s) already held raw points and were left alone" in second.stdout
    assert [window_rows(oracle, start.isoformat()) for start in starts] == before


# --- 2. the live feed rides out an outage ---------------------------------------------------------------


def log_lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


WRITE = re.compile(r"live-feed: (\d+) points for \[(\S+), (\S+)\)")


def test_the_live_feed_survives_an_outage_and_writes_the_missed_readings_when_the_server_is_back(
    tmp_path: Path, own_server: LocalInfluxd
) -> None:
    log = tmp_path / "live-feed.log"
    with log.open("wb") as out:
        feed = subprocess.Popen(
            [CLI, "live-feed", "--url", own_server.url, "--database", "feed", "--sensors", "2",
             "--interval", "1", "--cadence", "0.5", "--max-backoff", "2"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: any(WRITE.search(line) for line in log_lines(log)), 120, "a first write")
        own_server.stop()
        wait_until(lambda: any("unavailable" in line for line in log_lines(log)), 180, "the outage in the log")
        before_outage = [WRITE.search(line) for line in log_lines(log) if WRITE.search(line)]
        resumed_from = before_outage[-1].group(3)  # the end of the last write before the outage

        own_server.start()  # InfluxDB is back, on the same port and data directory
        wait_until(lambda: any("is back" in line for line in log_lines(log)), 180, "the feed to resume")
        lines = log_lines(log)
        back = next(i for i, line in enumerate(lines) if "is back" in line)
        wait_until(lambda: len([ln for ln in log_lines(log)[back:] if WRITE.search(ln)]) >= 2, 120, "two writes")

        assert feed.poll() is None, log.read_text()
        after = [WRITE.search(line) for line in log_lines(log)[back:] if WRITE.search(line)]
        assert after[0].group(2) == resumed_from, "the first write after the outage must start where it stopped"
        oracle = InfluxQLOracle(own_server.url, "feed")
        for points, start, end in (m.groups() for m in after[:2]):
            where = f"WHERE time >= '{start}' AND time < '{end}'"
            assert oracle.count(RAW_MEASUREMENT, "received_ns", where) == int(points) > 0  # every point has it
    finally:
        feed.terminate()
        feed.wait(timeout=30)


def zombie() -> subprocess.Popen[bytes]:
    """A child that has ended but is not reaped (its ``Popen`` is kept and never waited on)."""
    child = subprocess.Popen(["true"])
    stat = Path(f"/proc/{child.pid}/stat")
    wait_until(lambda: stat.read_text().rpartition(")")[2].split()[0] == "Z", 60, "the child to become a zombie")
    return child


def test_the_live_feed_stops_when_the_process_it_serves_is_a_zombie(influx_url: str, database_name: str) -> None:
    dead = zombie()
    try:
        done = subprocess.run(
            [CLI, "live-feed", "--url", influx_url, "--database", database_name, "--interval", "1",
             "--while-pid", str(dead.pid)],
            capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"process {dead.pid} ended; stopping" in done.stdout
    finally:
        dead.wait()


# --- 2b. the scripts tell the truth about their pid files -----------------------------------------------


def running_pid(pid_file: Path, pattern: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", 'source scripts/pids.sh && running_pid "$1" "$2"', "-", str(pid_file), pattern],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )


def test_a_pid_file_counts_as_running_only_for_a_live_process_of_ours(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    ours = subprocess.Popen(["bash", "-c", 'exec -a "influx-assets live-feed" sleep 300'])
    dead = subprocess.Popen(["true"])
    dead.wait()
    undead = zombie()
    try:
        pid_file.write_text(f"{ours.pid}\n")
        found = running_pid(pid_file, "influx-assets live-feed")
        assert found.returncode == 0 and found.stdout.strip() == str(ours.pid)
        assert running_pid(pid_file, "-m dagster dev").returncode == 1  # a reused pid: another program
        for pid in (dead.pid, undead.pid):
            pid_file.write_text(f"{pid}\n")
            found = running_pid(pid_file, "")
            assert found.returncode == 1 and found.stdout == "", pid
        assert running_pid(tmp_path / "missing.pid", "").returncode == 1
    finally:
        ours.kill(), ours.wait(), undead.wait()


def test_stop_sh_reports_processes_that_had_ended_as_not_running_and_stops_a_live_one(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / ".run").mkdir()
    for name in ("stop.sh", "pids.sh"):
        shutil.copy(REPO / "scripts" / name, tmp_path / "scripts" / name)
    undead = zombie()
    (tmp_path / ".run" / "live-feed.pid").write_text(f"{undead.pid}\n")
    (tmp_path / ".run" / "dagster.pid").write_text(f"{os.getpid()}\n")  # a live pid, but not Dagster
    try:
        done = subprocess.run(["bash", "scripts/stop.sh"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.stdout.splitlines() == ["live feed was not running", "Dagster was not running"], done.stdout
    finally:
        undead.wait()

    feed = subprocess.Popen(["bash", "-c", 'exec -a "influx-assets live-feed" sleep 300'])
    (tmp_path / ".run" / "live-feed.pid").write_text(f"{feed.pid}\n")
    done = subprocess.run(["bash", "scripts/stop.sh"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert f"stopped live feed (pid {feed.pid})" in done.stdout
    assert feed.wait(timeout=30) != 0  # ended by the signal
    assert not (tmp_path / ".run" / "live-feed.pid").exists()


# --- 3. the demo backfill is tagged ---------------------------------------------------------------------

BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { tags { key value } partitionNames }
    ... on PythonError { message }
  }
}
"""


def test_the_demo_backfill_carries_the_demo_tags(
    tmp_path: Path, influxdb: InfluxDBResource, database_name: str
) -> None:
    env = {**os.environ, "INFLUXDB_DATABASE": database_name, "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    server = DagsterWebserver("influx_assets.definitions", env, tmp_path / "dagster_home").start()
    try:
        done = subprocess.run(
            [CLI, "demo-backfill", "--webserver", server.url, "--hours", "2"],
            env=env, capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        backfill_id = re.search(r"backfill (\S+) of the hourly stages", done.stdout).group(1)
        backfill = server.graphql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        # a restart while that backfill is in progress (no daemon here: it stays requested) adds none
        again = subprocess.run(
            [CLI, "demo-backfill", "--webserver", server.url, "--hours", "2"],
            env=env, capture_output=True, text=True, timeout=300,
        )
        assert again.returncode == 0, again.stdout + again.stderr
        assert f"the demo backfill {backfill_id} of an earlier start is still in progress" in again.stdout
        assert len(server.graphql("{ partitionBackfillsOrError { ... on PartitionBackfills { results { id } } } }")
                   ["partitionBackfillsOrError"]["results"]) == 1
    finally:
        server.stop()
    assert backfill["__typename"] == "PartitionBackfill", backfill
    assert len(backfill["partitionNames"]) == 2
    assert DEMO_TAGS == {"influx_assets/launched_by": "demo"}
    tags = {tag["key"]: tag["value"] for tag in backfill["tags"]}
    assert tags["influx_assets/launched_by"] == "demo", tags


# --- 4. a restart neither waits on the runs the stopped Dagster left behind nor redoes finished windows ---


def started_run(instance: DagsterInstance, worker: int | None) -> str:
    """A run recorded as executing, whose worker reported ``worker`` as its pid (or nothing)."""
    run = create_run_for_test(instance, job_name="hourly_pipeline", status=DagsterRunStatus.STARTED)
    if worker is not None:
        instance.report_engine_event(f"Started process for run (pid: {worker}).", run)
    return run.run_id


def test_runs_left_in_progress_by_a_stopped_dagster_are_failed_to_free_their_slots(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    living = subprocess.Popen(["bash", "-c", 'exec -a "dagster api grpc" sleep 300'])  # a live run worker
    stranger = subprocess.Popen(["sleep", "300"])  # alive, but a reused pid: not a Dagster process
    try:
        with DagsterInstance.local_temp(tempdir=str(home)) as instance:
            wait_until(lambda: "dagster" in Path(f"/proc/{living.pid}/cmdline").read_text(errors="replace"), 30, "exec")
            runs = {
                "dead worker": started_run(instance, dead.pid),
                "no worker": started_run(instance, None),
                "reused pid": started_run(instance, stranger.pid),
                "live worker": started_run(instance, living.pid),
            }
            finished = create_run_for_test(instance, job_name="hourly_pipeline", status=DagsterRunStatus.SUCCESS)

        done = subprocess.run([CLI, "fail-orphaned-runs"], env={**os.environ, "DAGSTER_HOME": str(home)},
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "3 run(s) marked failed" in done.stdout, done.stdout

        with DagsterInstance.from_config(str(home)) as instance:
            status = {name: instance.get_run_by_id(run_id) for name, run_id in runs.items()}
            assert {name: run.status for name, run in status.items()} == {
                "dead worker": DagsterRunStatus.FAILURE, "no worker": DagsterRunStatus.FAILURE,
                "reused pid": DagsterRunStatus.FAILURE, "live worker": DagsterRunStatus.STARTED,
            }
            failure = instance.all_logs(runs["dead worker"], of_type=DagsterEventType.RUN_FAILURE)[0].message
            assert f"its worker (pid {dead.pid}) is not running" in failure and "pool slots are freed" in failure
            # a failure like a crash's: Dagster's run retries (run_retries in dagster.yaml) re-run it
            assert instance.get_run_by_id(runs["dead worker"]).tags.get("dagster/will_retry") != "false"
            assert instance.get_run_by_id(finished.run_id).status == DagsterRunStatus.SUCCESS
    finally:
        for process in (living, stranger):
            process.kill()
            process.wait()


def test_the_demo_backfill_covers_only_windows_some_hourly_stage_has_not_materialized() -> None:
    windows = ["2025-03-01-07:00", "2025-03-01-08:00", "2025-03-01-09:00"]
    stages = [AssetKey("validated_telemetry"), AssetKey("telemetry_5m")]
    with DagsterInstance.ephemeral() as instance:
        assert windows_not_processed(instance, stages, windows) == windows
        for stage, window in [(stages[0], windows[0]), (stages[1], windows[0]), (stages[0], windows[1])]:
            instance.report_runless_asset_event(AssetMaterialization(stage, partition=window))
        assert windows_not_processed(instance, stages, windows) == windows[1:]
        instance.report_runless_asset_event(AssetMaterialization(stages[1], partition=windows[1]))
        assert windows_not_processed(instance, stages, windows) == windows[2:]
