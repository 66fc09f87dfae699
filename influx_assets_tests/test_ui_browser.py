"""The Dagster UI of this code location, driven in real headless Chromium.

A real ``dagster-webserver`` serves ``influx_assets.definitions`` (own ``DAGSTER_HOME``, the
session's InfluxDB, a fresh database). The test reads the rendered asset graph, launches the latest
window of the ``examples`` group through the UI's own "Materialize all… → Latest → Launch 1 run"
dialog, follows the run through the webserver's GraphQL API and checks the data through InfluxQL.
Screenshots go to ``test-artifacts/``.
"""

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from influx_assets.definitions import defs
from influx_assets.examples import example_readings
from influx_assets.influxdb import InfluxDBResource
from influx_assets_tests.influxql_oracle import InfluxQLOracle
from influx_assets_tests.ui_driver import Chromium, DagsterWebserver, chromium_binary, wait_until

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
    metrics = oracle.rows(f"SELECT * FROM \"pipeline_metrics\" WHERE \"run_id\" = '{run_id}'")
    assert sorted((m["stage"], m["window"]) for m in metrics) == [
        ("example_readings", window), ("example_readings_summary", window),
    ]
