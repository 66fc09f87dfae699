"""The Dagster UI of this code location, driven in real headless Chromium.

A real ``dagster-webserver`` serves ``influx_assets.definitions`` (own ``DAGSTER_HOME``, the
session's InfluxDB, a fresh database). The test reads the rendered asset graph, launches the latest
window of the ``examples`` group through the UI's own "Materialize all… → Latest → Launch 1 run"
dialog, follows the run through the webserver's GraphQL API and checks the data through InfluxQL.
Screenshots go to ``test-artifacts/``.
"""

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from dagster import AssetCheckKey, AssetKey

from influx_assets.definitions import defs
from influx_assets.devtools.demo import launch_hourly_backfill
from influx_assets.devtools.feed import write_simulation
from influx_assets.devtools.orphans import BACKFILL_IN_PROGRESS
from influx_assets.devtools.simulate import SimulationConfig, simulate
from influx_assets.examples import example_readings
from influx_assets.influxdb import InfluxDBResource
from influx_assets_tests.influxql_oracle import InfluxQLOracle
from influx_assets_tests.pipeline_harness import window_clause
from influx_assets_tests.ui_driver import Chromium, DagsterDaemon, DagsterWebserver, chromium_binary, wait_until

pytestmark = pytest.mark.browser

RUNS_QUERY = """
query Runs {
  runsOrError(limit: 10) {
    __typename
    ... on Runs { results { runId status tags { key value } } }
    ... on PythonError { message }
  }
}
"""
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
CODE_LOCATION = "influx_assets.definitions"  # dagster-webserver -m names the location after the module


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Chromium]:
    binary = chromium_binary()
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but chromium is not installed (scripts/setup.sh installs it)")
        pytest.skip("chromium is not installed")
    browser = Chromium(binary, tmp_path / "chromium-profile").start()
    yield browser
    browser.stop()


@pytest.fixture
def webserver(tmp_path: Path, influxdb: InfluxDBResource, database_name: str) -> Iterator[DagsterWebserver]:
    env = {**os.environ, "INFLUXDB_DATABASE": database_name}
    server = DagsterWebserver(CODE_LOCATION, env, tmp_path / "dagster_home").start()
    yield server
    server.stop()


def runs(webserver: DagsterWebserver) -> list[dict]:
    result = webserver.graphql(RUNS_QUERY)["runsOrError"]
    assert result["__typename"] == "Runs", result
    return result["results"]


def open_asset_graph(webserver: DagsterWebserver, chromium: Chromium) -> None:
    """The global asset lineage page with every group expanded."""
    chromium.navigate(f"{webserver.url}/asset-groups")
    wait_until(lambda: chromium.graph_node_labels(), 30, "the asset graph to render")
    chromium.expand_asset_groups()


def label_fits(label: str, name: str) -> bool:
    """Whether a graph label shows ``name``: zoomed out, the UI elides the middle (``example_r…_summary``)."""
    if "…" not in label:
        return label == name
    head, _, tail = label.partition("…")
    return len(name) > len(head) + len(tail) and name.startswith(head) and name.endswith(tail)


def assets_without_node(names: list[str], labels: list[str]) -> list[str]:
    """Asset names that no graph node shows, each node counted for one asset only (bipartite matching)."""
    owner: dict[int, str] = {}

    def assign(name: str, seen: set[int]) -> bool:
        for index, label in enumerate(labels):
            if index not in seen and label_fits(label, name):
                seen.add(index)
                if index not in owner or assign(owner[index], seen):
                    owner[index] = name
                    return True
        return False

    return [name for name in names if not assign(name, set())]


def test_asset_graph_shows_every_asset_and_launches_a_window_that_lands(
    webserver: DagsterWebserver, chromium: Chromium, oracle: InfluxQLOracle, artifacts_dir: Path
) -> None:
    expected = sorted(key.to_user_string() for key in defs.resolve_all_asset_keys())

    webserver.graphql("mutation { setNuxSeen }")  # no first-visit newsletter dialog over the graph
    open_asset_graph(webserver, chromium)
    wait_until(
        lambda: not assets_without_node(expected, chromium.graph_node_labels()), 30,
        f"every asset of defs in the asset graph ({expected})",
    )
    assert assets_without_node(expected, chromium.graph_node_labels()) == []

    group = defs.resolve_asset_graph().get(example_readings.key).group_name
    chromium.navigate(f"{webserver.url}/locations/{CODE_LOCATION}/asset-groups/{group}")
    wait_until(lambda: chromium.click_button("Materialize all", prefix=True), 30, "the Materialize button")
    wait_until(lambda: chromium.click_button("Latest"), 30, "the partition dialog")
    wait_until(lambda: chromium.click_button("Launch 1 run"), 30, "the Launch 1 run button")

    launched = wait_until(lambda: runs(webserver), 30, "the launched run")
    assert len(launched) == 1
    run_id = launched[0]["runId"]
    final = wait_until(
        lambda: next((r for r in runs(webserver) if r["runId"] == run_id and r["status"] in TERMINAL), None),
        60, f"run {run_id} to finish (webserver log: {webserver.log_path})",
    )
    assert final["status"] == "SUCCESS", webserver.log_tail()
    window = {t["key"]: t["value"] for t in final["tags"]}["dagster/partition"]

    open_asset_graph(webserver, chromium)
    wait_until(
        lambda: not assets_without_node(expected, chromium.graph_node_labels())
        and "Loading" not in chromium.text(),
        30, "the asset graph with its materialization status",
    )
    chromium.screenshot(artifacts_dir / "ui_asset_graph.png")
    chromium.navigate(f"{webserver.url}/runs/{run_id}")
    wait_until(lambda: "RUN_SUCCESS" in chromium.text(), 30, "the run's event log")
    chromium.screenshot(artifacts_dir / "ui_run.png")

    start = datetime.strptime(window, "%Y-%m-%d-%H:%M").replace(tzinfo=UTC)
    end = start + timedelta(hours=1)
    where = f"WHERE time >= '{start:%Y-%m-%dT%H:%M:%SZ}' AND time < '{end:%Y-%m-%dT%H:%M:%SZ}'"
    assert oracle.count("example_readings", "value", where) == 60 * 3
    assert oracle.count("example_readings_summary", "mean", where) == 3
    # stage points only: the same measurement also holds each stage's server-cost points
    metrics = oracle.rows(f"SELECT * FROM \"pipeline_metrics\" WHERE \"run_id\" = '{run_id}' AND \"retries\" >= 0")
    assert sorted((m["stage"], m["window"]) for m in metrics) == [
        ("example_readings", window), ("example_readings_summary", window),
    ]


#: Three hourly windows of demo-style telemetry, backfilled as one range run (the demo's policy).
#: Yesterday (UTC), so that with the pipeline starting that day the UI shows a day or two of windows.
DAY = pd.Timestamp.now(tz="UTC").floor("1D") - pd.Timedelta(days=1)
HOURS = [DAY + pd.Timedelta(hours=h) for h in (10, 11, 12)]
RANGE = [f"{hour:%Y-%m-%d-%H:%M}" for hour in HOURS]


def ui_time(at: pd.Timestamp) -> str:
    """A timestamp as the Dagster UI shows timestamp metadata: ``Mar 1, 2025, 11:00:00 AM UTC``, without
    the year when it is the current one."""
    year = "" if at.year == pd.Timestamp.now(tz="UTC").year else f" {at.year},"
    return f"{at:%b} {at.day},{year} {at.hour % 12 or 12}:{at:%M:%S %p} UTC"


BACKFILL_QUERY = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      status
      runs(limit: 10) { runId status tags { key value } }
      assetBackfillData {
        assetBackfillStatuses {
          ... on AssetPartitionsStatusCounts { assetKey { path } numPartitionsTargeted numPartitionsMaterialized }
        }
      }
    }
  }
}
"""
#: Backfill statuses in which the daemon may still launch runs.
BACKFILL_ACTIVE = {status.value for status in BACKFILL_IN_PROGRESS}


@pytest.fixture
def daemon(webserver: DagsterWebserver) -> Iterator[DagsterDaemon]:
    running = DagsterDaemon(webserver).start()
    yield running
    running.stop()


def status_counts(text: str) -> dict[str, int]:
    """The partition status filters of a check's Partitions view: ``{"Passed": 3, "Skipped": 0, ...}``."""
    return {name: int(count) for name, count in re.findall(r"(Execution Failed|Failed|In Progress|Missing|Skipped|Passed) \((\d+)\)", text)}


def metadata_entries(page_text: str) -> dict[str, str]:
    """The label → value pairs of the *Metadata* table of a partition's page, up to the ``preview``."""
    lines = [line.strip() for line in page_text.splitlines() if line.strip()]
    entries: dict[str, str] = {}
    rest = lines[lines.index("Metadata") + 1:]
    for label, value in zip(rest[::2], rest[1::2]):
        entries[label] = value
        if label == "preview":  # a table: its cells are not label/value pairs
            break
    return entries


def backfill(webserver: DagsterWebserver, backfill_id: str) -> dict:
    found = webserver.graphql(BACKFILL_QUERY, {"id": backfill_id})["partitionBackfillOrError"]
    assert found["__typename"] == "PartitionBackfill", found
    return found


@pytest.fixture
def range_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFLUX_ASSETS_START", RANGE[0][:10])  # the demo's start: near its data
    # only the backfill launches runs here: a schedule tick would add its own window to the counts
    monkeypatch.setenv("INFLUX_ASSETS_AUTOMATION", "stopped")


def test_a_range_backfill_shows_each_windows_own_checks_and_metadata(
    range_env: None, influxdb: InfluxDBResource, oracle: InfluxQLOracle, webserver: DagsterWebserver,
    daemon: DagsterDaemon, chromium: Chromium, artifacts_dir: Path,
) -> None:
    config = SimulationConfig(
        start=HOURS[0], end=HOURS[-1] + pd.Timedelta(hours=1), sensors=5, seed=3
    )
    write_simulation(simulate(config), influxdb, "on_time")
    backfill_id = launch_hourly_backfill(webserver.url, RANGE)  # what `influx-assets demo-backfill` does
    done = wait_until(
        lambda: (b := backfill(webserver, backfill_id))["status"] not in BACKFILL_ACTIVE and b, 300,
        f"the backfill to finish (daemon log: {daemon.log_path})",
    )
    assert done["status"] in {"COMPLETED", "COMPLETED_SUCCESS"}, (done, daemon.log_tail())
    # range runs only (up to 24 windows per run), all successful: the three windows, then the window
    # after them, whose sliding aggregate reads the last of them (Dagster adds it to the backfill)
    assert done["runs"] and all(r["status"] == "SUCCESS" for r in done["runs"]), done["runs"]
    for run in done["runs"]:
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags["dagster/asset_partition_range_start"] == RANGE[0], tags
    targeted = {
        "/".join(s["assetKey"]["path"]): s["numPartitionsTargeted"]
        for s in done["assetBackfillData"]["assetBackfillStatuses"]
    }
    assert targeted["validated_telemetry"] == len(RANGE) and targeted["telemetry_sliding_15m"] == len(RANGE) + 1

    webserver.graphql("mutation { setNuxSeen }")
    graph = defs.resolve_asset_graph()
    for stage in ("validated_telemetry", "normalized_telemetry", "telemetry_5m", "telemetry_sliding_15m"):
        for check in sorted(k.name for k in graph.get_check_keys_for_assets({AssetKey(stage)})):
            chromium.navigate(f"{webserver.url}/assets/{stage}?view=checks&checkDetail={check}")
            wait_until(lambda: "Latest execution" in chromium.text(), 30, f"the {stage} {check} check page")
            wait_until(lambda: chromium.click_last_text("Partitions"), 30, f"the Partitions tab of {check}")
            counts = wait_until(
                lambda: (c := status_counts(chromium.text())) and "Passed" in c and c, 30, f"{check}'s partition statuses"
            )
            blocking = graph.get_check_spec(AssetCheckKey(AssetKey(stage), check)).blocking
            settled = counts["Passed"] + (0 if blocking else counts.get("Failed", 0))
            # every window the backfill covered shows this check's own outcome for it: none skipped
            assert (settled, counts["Skipped"], counts["Execution Failed"]) == (targeted[stage], 0, 0), (stage, check, counts)
            if (stage, check) == ("normalized_telemetry", "no_invented_points"):
                chromium.screenshot(artifacts_dir / "ui_check_partitions.png")

    # a window's own metadata: its bounds and its counts, next to the range's (named range_*)
    window = RANGE[1]
    chromium.navigate(f"{webserver.url}/assets/normalized_telemetry?view=partitions&partition={window}")
    wait_until(lambda: "rows_out" in chromium.text(), 30, "the partition's materialization metadata")
    text = chromium.text()
    shown = metadata_entries(text)
    stored = oracle.count("normalized_telemetry", "value", window_clause(window))
    assert shown["window_start"] == ui_time(HOURS[1]) and shown["window_end"] == ui_time(HOURS[2])
    assert int(shown["rows_out"]) == int(shown["dagster/row_count"]) == stored
    assert shown["range_window"] == f"[{HOURS[0].isoformat()}, {(HOURS[-1] + pd.Timedelta(hours=1)).isoformat()})"
    # the window's own counts are not the range's
    range_rows = oracle.count("normalized_telemetry", "value", window_clause(RANGE[0], pd.Timedelta(hours=len(RANGE))))
    assert int(shown["range_rows_out"]) == range_rows > stored
    assert int(shown["rows_in"]) < int(shown["range_rows_in"])
    assert "preview" in shown
    chromium.evaluate(  # the window's own entries into view for the picture
        "(() => { const cell = Array.from(document.querySelectorAll('td')).find(e => e.innerText.trim() === 'window_start');"
        " if (cell) cell.scrollIntoView({block: 'start'}); return Boolean(cell); })()"
    )
    chromium.screenshot(artifacts_dir / "ui_window_metadata.png")

    # the pictures of the README: the telemetry graph and a stage's partitions after the backfill
    chromium.navigate(f"{webserver.url}/locations/{CODE_LOCATION}/asset-groups/telemetry")
    # each hourly node: its latest window's checks, passed (a WARN may warn), never "0 / n Passed"
    node = r"^(\w+)\nLatest event\n.*\nAsset checks\n(\d+ / \d+) Passed$"
    hourly = ("validated_telemetry", "quarantined_telemetry", "normalized_telemetry", "telemetry_5m", "telemetry_sliding_15m")
    summaries = wait_until(
        lambda: (found := dict(re.findall(node, chromium.text(), flags=re.MULTILINE))) and set(hourly) <= set(found) and found,
        60, "the check status of every hourly node",
    )
    for stage in hourly:
        passed, total = map(int, summaries[stage].split(" / "))
        checks = graph.get_check_keys_for_assets({AssetKey(stage)})
        warn_only = sum(not graph.get_check_spec(key).blocking for key in checks)
        assert total == len(checks) and total - warn_only <= passed <= total, (stage, summaries[stage])
    chromium.screenshot(artifacts_dir / "ui_asset_graph_after_backfill.png")
    chromium.navigate(f"{webserver.url}/assets/telemetry_5m?view=partitions")
    wait_until(lambda: "Materialized (" in chromium.text(), 30, "telemetry_5m's partitions")
    chromium.screenshot(artifacts_dir / "ui_partitions.png")
