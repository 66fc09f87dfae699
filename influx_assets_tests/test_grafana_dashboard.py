"""The Grafana dashboard in ``deploy/grafana``: valid provisioning; every panel plots what the pipeline writes.

Stage metrics and failures are written through the project's own writers to the real test ``influxd``;
each panel's raw InfluxQL is rendered the way Grafana renders it and run over HTTP ``/query``
(:class:`InfluxQLOracle`), and what comes back must be the series the panel means to plot, with the
values the written points give.

How Grafana renders an InfluxQL raw query (Grafana 10-12, InfluxDB data source):

1. frontend, ``templateSrv.replace`` with ``InfluxDatasource.interpolateQueryExpr``: dashboard
   variables. A multi-value or include-All variable becomes ``escapeRegex(v)`` for one value and
   ``(v1|v2|...)`` for several (``@grafana/data`` ``escapeRegex`` puts ``\\`` before
   ``\\^$*+?.()|[]{}/``); "All" with a custom ``allValue`` is inserted as it is. ``$timeFilter`` and
   ``$__interval`` are left alone;
2. backend, ``pkg/tsdb/influxdb/influxql`` ``Query.Build``: ``$timeFilter`` becomes
   ``time >= <from>ms and time <= <to>ms``, then ``$interval``, ``$__interval_ms``, ``$__interval``.
   (The pre-backend frontend rendered ``now-6h`` as ``time >= now() - 6h and time <= now()``; both run.)
"""

from __future__ import annotations

import json
import re
import statistics
import time
import urllib.error
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from dagster import AssetKey

from influx_assets.automation.failure_spool import write_failures
from influx_assets.automation.sensors import StageFailure
from influx_assets.influxdb import InfluxDBResource, ServerCounters
from influx_assets.observability.pipeline_meter import EDGES_MEASUREMENT, EdgeAttempt, cost_frame, edge_frame
from influx_assets.observability.stage_metrics import METRICS_MEASUREMENT, StageSample, write_stage_metrics
from influx_assets.telemetry.keys import (
    NORMALIZED_TELEMETRY,
    SENSOR_FEATURES,
    TELEMETRY_1H,
    TELEMETRY_5M,
    VALIDATED_TELEMETRY,
)
from influx_assets_tests.influxql_oracle import InfluxQLOracle

GRAFANA = Path(__file__).resolve().parent.parent / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "influx_assets.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "influxdb.yaml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "influx_assets.yaml"
STAGE_VARIABLE_QUERY = 'SHOW TAG VALUES FROM "pipeline_metrics" WITH KEY = "stage"'

# --- Grafana's rendering (see the module docstring) ------------------------------------------------------
#: templateSrv's variable syntax: $name, [[name:format]], ${name.field:format}
_TEMPLATE_VARIABLE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}"
)
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")
MACROS = ("timeFilter", "interval", "__interval", "__interval_ms")
INTERVAL, INTERVAL_MS = "1m", "60000"
RELATIVE_TIME_FILTER = "time >= now() - 6h and time <= now()"


def escape_regex(value: str) -> str:
    """``escapeRegex`` of ``@grafana/data``."""
    return _REGEX_SPECIAL.sub(lambda match: "\\" + match.group(0), value)


def variable_text(variable: Mapping[str, Any], selected: Sequence[str] | None, options: Sequence[str]) -> str:
    """What a multi-value / include-All variable becomes in an InfluxQL query (``None``: "All")."""
    if selected is None:
        if variable.get("allValue"):
            return variable["allValue"]
        selected = options
    escaped = [escape_regex(value) for value in selected]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def render(query: str, variables: Mapping[str, str], time_filter: str) -> str:
    """A panel query as Grafana sends it to InfluxDB: variables (frontend), then macros (backend)."""
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        return variables.get(name, match.group(0))

    text = _TEMPLATE_VARIABLE.sub(replace, query)
    for macro, value in (("$timeFilter", time_filter), ("$interval", INTERVAL),
                         ("$__interval_ms", INTERVAL_MS), ("$__interval", INTERVAL)):
        text = text.replace(macro, value)
    return text


# --- what the pipeline wrote ------------------------------------------------------------------------
VALIDATED = VALIDATED_TELEMETRY.to_user_string()
NORMALIZED = NORMALIZED_TELEMETRY.to_user_string()
FIVE_MINUTE = TELEMETRY_5M.to_user_string()
#: a prefixed asset key: its "/" must be escaped inside an InfluxQL /regex/
SITE_HOURLY = AssetKey(["site_a", *TELEMETRY_1H.path]).to_user_string()
#: a stage that only ever failed: no pipeline_metrics point, so not among the variable's values
FEATURES = SENSOR_FEATURES.to_user_string()
W0, W1, DAY = "2025-03-30-00:00", "2025-03-30-01:00", "2025-03-30"


@dataclass(frozen=True)
class Written:
    """The points of one test, as plain records per measurement (tags and fields by name)."""

    records: dict[str, list[dict[str, Any]]]
    failures: list[StageFailure]


def write_pipeline_points(influxdb: InfluxDBResource) -> Written:
    """Write stage metrics, edges and failures into one 1-minute bucket an hour ago."""
    base = (int(time.time()) - 3600) // 60 * 60 + 1
    samples = [
        StageSample(VALIDATED, W0, 1200, 0, 4.5, 0, "run-a", base + 0),
        StageSample(VALIDATED, W1, 800, 1, 7.25, 2, "run-b", base + 1),
        StageSample(NORMALIZED, W0, 1150, 0, 12.0, 1, "run-a", base + 2),
        StageSample(FIVE_MINUTE, W0, 240, 2, None, None, "run-c", base + 3),
        StageSample(FIVE_MINUTE, W1, 230, 0, 30.5, 3, "run-d", base + 4),
        StageSample(SITE_HOURLY, DAY, 24, 1, 95.0, 5, "run-e", base + 5),
    ]
    write_stage_metrics(influxdb, samples)
    cost = [(3, 0.25, 1200), (3, 0.5, 800), (4, 1.75, 1150), (2, 0.125, 240), (2, 0.375, 230), (7, 2.5, 24)]
    # as the metered IO manager writes them: a stage's server cost is its own point, after the stage's
    for s, (queries, seconds, points) in zip(samples, cost, strict=True):
        counters = ServerCounters(queries=queries, query_seconds=seconds, points_written=points, response_bytes=0)
        influxdb.write_frame(cost_frame(s.stage, s.window, counters, s.run_id, s.recorded_at + 0.5),
                             METRICS_MEASUREMENT, ["stage", "window"])
    attempts = [
        EdgeAttempt(up, down, window, ready, run_id, base + 10 + i)
        for i, (up, down, window, ready, run_id) in enumerate([
            (VALIDATED, NORMALIZED, W0, True, "run-a"), (VALIDATED, NORMALIZED, W1, False, "run-b"),
            (NORMALIZED, FIVE_MINUTE, W0, True, "run-a"), (FIVE_MINUTE, SITE_HOURLY, DAY, False, "run-e"),
            (FIVE_MINUTE, SITE_HOURLY, DAY, True, "run-f"), (SITE_HOURLY, FEATURES, DAY, False, "run-h"),
        ])
    ]
    edges = edge_frame(attempts)
    influxdb.write_frame(edges, EDGES_MEASUREMENT, ["upstream", "downstream", "window"])
    failures = [
        StageFailure(FIVE_MINUTE, W0, "PartialWriteError", "partial write: type conflict", "telemetry_5m",
                     "run-c", "telemetry_hourly_job", base + 20),
        StageFailure(FIVE_MINUTE, W0, "PartialWriteError", "partial write: 3 points rejected", "telemetry_5m",
                     "run-g", "telemetry_hourly_job", base + 21),
        StageFailure(SITE_HOURLY, DAY, "ServerUnreachableError", "no answer from http://influxdb:8086",
                     "site_a__telemetry_1h", "run-e", "telemetry_daily_job", base + 22),
        StageFailure(FEATURES, DAY, "ValueError", "no hourly windows for the day", "sensor_features",
                     "run-h", "telemetry_daily_job", base + 23),
    ]
    write_failures(influxdb, failures)
    metrics = [
        {"stage": s.stage, "window": s.window, "latency_seconds": s.latency_seconds, "rows": s.rows,
         "retries": s.retries, "queue_depth": s.queue_depth, "server_queries": c[0],
         "server_query_seconds": c[1], "server_points_written": c[2]}
        for s, c in zip(samples, cost, strict=True)
    ]
    failed = [{"stage": f.stage, "window": f.window, "failures": 1} for f in failures]
    return Written({"pipeline_metrics": metrics, "pipeline_edges": edges.to_dict("records"),
                    "pipeline_failures": failed}, failures)


# --- what each panel must show ----------------------------------------------------------------------
@dataclass(frozen=True)
class Plot:
    """A time-series panel: ``aggregate`` of ``field`` per series of ``by`` tags."""

    measurement: str
    field: str
    aggregate: Callable[[list[float]], float]
    by: tuple[str, ...] = ("stage",)


PLOTS = {
    "Failures per stage": Plot("pipeline_failures", "failures", sum),
    "Stage latency (worst window)": Plot("pipeline_metrics", "latency_seconds", max),
    "Queue depth (windows waiting)": Plot("pipeline_metrics", "queue_depth", max),
    "Rows per stage": Plot("pipeline_metrics", "rows", sum),
    "Step retries per stage": Plot("pipeline_metrics", "retries", sum),
    "Edge success rate": Plot("pipeline_edges", "ready", statistics.mean, by=("upstream", "downstream")),
    "Server queries per stage": Plot("pipeline_metrics", "server_queries", sum),
    "Server query time per stage": Plot("pipeline_metrics", "server_query_seconds", sum),
    "Server points written per stage": Plot("pipeline_metrics", "server_points_written", sum),
}
TABLES = ("Failed windows per stage", "Recent failures")


def selected_record(measurement: str, record: Mapping[str, Any], selected: set[str] | None) -> bool:
    """Whether the ``stage`` selection keeps a point (an edge: either end selected)."""
    if selected is None:
        return True
    edge = measurement == "pipeline_edges"
    ends = (record["upstream"], record["downstream"]) if edge else (record["stage"],)
    return any(end in selected for end in ends)


def check_plot(title: str, plot: Plot, series: list[dict[str, Any]], written: Written,
               selected: set[str] | None) -> list[str]:
    """Problems of one time-series panel's result (empty: it plots what was written)."""
    groups: dict[tuple[str, ...], list[float]] = defaultdict(list)
    for record in written.records[plot.measurement]:
        if selected_record(plot.measurement, record, selected) and pd.notna(record[plot.field]):
            groups[tuple(record[tag] for tag in plot.by)].append(record[plot.field])
    expected = {key: plot.aggregate(values) for key, values in groups.items()}
    plotted: dict[tuple[str, ...], list[float]] = {}
    for one in series:
        key = tuple(one.get("tags", {}).get(tag) for tag in plot.by)
        plotted[key] = [value for row in one["values"] for value in row[1:] if value is not None]
    if not any(plotted.values()):
        return [f"panel {title!r}: no non-null value in {len(series)} series"]
    if set(plotted) != set(expected):
        return [f"panel {title!r}: plots series {sorted(plotted)}, the points give {sorted(expected)}"]
    # All points lie in one $__interval bucket: one value per series, the aggregate of its points.
    actual = {key: values[0] if len(values) == 1 else values for key, values in plotted.items()}
    if actual != pytest.approx(expected):
        return [f"panel {title!r}: plots {actual}, the written points give {expected}"]
    return []


def check_table(
    title: str, series: list[dict[str, Any]], written: Written, selected: set[str] | None
) -> list[str]:
    """Problems of one table panel's result: failed windows per stage, or the recent failures."""
    failures = sorted((f for f in written.failures if selected is None or f.stage in selected),
                      key=lambda f: f.failed_at)
    if title == "Failed windows per stage":
        expected: dict[tuple[str, str], list[Any]] = {}
        for f in failures:
            count = expected.get((f.stage, f.window), [0])[0]
            expected[(f.stage, f.window)] = [count + 1, f.message, f.run_id]
        actual = {(s["tags"]["stage"], s["tags"]["window"]): row[1:] for s in series for row in s["values"]}
    else:
        expected = [[pd.Timestamp(f.failed_at, unit="s").value, f.stage, f.window, f.error_class, f.message,
                     f.step_key, f.run_id, f.job_name] for f in reversed(failures)]
        actual = [row for s in series for row in s["values"]]
    return [] if actual == expected else [f"panel {title!r}: shows {actual}, the failures give {expected}"]


# --- the dashboard and its provisioning ------------------------------------------------------------
def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def stage_variable(dashboard: Mapping[str, Any]) -> dict[str, Any]:
    return next(v for v in dashboard["templating"]["list"] if v["name"] == "stage")


def panel_targets(dashboard: Mapping[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(panel, target) for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_dashboard_is_valid_provisioning_json_on_the_provisioned_datasource() -> None:
    dashboard = load_dashboard()
    datasources = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    providers = yaml.safe_load(PROVIDERS.read_text(encoding="utf-8"))
    (source,) = datasources["datasources"]
    assert datasources["apiVersion"] == 1 and source["type"] == "influxdb"
    assert source["jsonData"]["version"] == "InfluxQL" and source["uid"]
    (provider,) = providers["providers"]
    assert providers["apiVersion"] == 1 and provider["type"] == "file" and provider["options"]["path"]

    assert dashboard["uid"] and dashboard["title"] and dashboard.get("id") is None
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), f"panel ids repeat: {ids}"
    assert sorted(panel["title"] for panel in dashboard["panels"]) == sorted([*PLOTS, *TABLES])
    variable = stage_variable(dashboard)
    assert variable["query"] == STAGE_VARIABLE_QUERY and variable["multi"] and variable["includeAll"]
    defined = {v["name"] for v in dashboard["templating"]["list"]} | set(MACROS)
    for item in [variable, *dashboard["panels"], *(target for _, target in panel_targets(dashboard))]:
        assert item["datasource"] == {"type": "influxdb", "uid": source["uid"]}, item.get("title", item)
    for panel in dashboard["panels"]:
        assert panel["type"] in {"timeseries", "table"} and panel["gridPos"]["w"] <= 24, panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and all(refs) and len(refs) == len(set(refs)), f"panel {panel['title']!r}: refIds {refs}"
        for target in panel["targets"]:
            query = target["query"]
            assert target["rawQuery"] is True and "$timeFilter" in query, panel["title"]
            assert "=~ /^$stage$/" in query and "'$stage'" not in query, panel["title"]
            used = {m.group(1) or m.group(2) or m.group(4) for m in _TEMPLATE_VARIABLE.finditer(query)}
            assert used <= defined, f"panel {panel['title']!r} uses undefined variables {used - defined}"
            if panel["type"] == "timeseries":
                assert "GROUP BY time($__interval)" in query, panel["title"]


def test_stage_variable_lists_the_stages_that_wrote_metrics(
    influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    written = write_pipeline_points(influxdb)
    listed = [row["value"] for row in oracle.rows(stage_variable(load_dashboard())["query"])]
    assert sorted(listed) == sorted({record["stage"] for record in written.records["pipeline_metrics"]})


SELECTIONS = {
    "All": lambda listed: None,
    "every listed stage": lambda listed: listed,
    "one stage": lambda listed: [value for value in listed if "/" in value],
}


@pytest.mark.parametrize("time_range", ["backend absolute", "frontend relative"])
@pytest.mark.parametrize("selection", list(SELECTIONS))
def test_every_panel_query_returns_the_series_it_plots(
    influxdb: InfluxDBResource, oracle: InfluxQLOracle, selection: str, time_range: str
) -> None:
    written = write_pipeline_points(influxdb)
    dashboard = load_dashboard()
    variable = stage_variable(dashboard)
    listed = [row["value"] for row in oracle.rows(variable["query"])]
    selected = SELECTIONS[selection](listed)
    assert selected is None or selected, f"the server listed no stage for {selection!r}: {listed}"
    now_ms = int(time.time() * 1000)
    time_filter = (f"time >= {now_ms - 6 * 3600 * 1000}ms and time <= {now_ms}ms"
                   if time_range == "backend absolute" else RELATIVE_TIME_FILTER)
    variables = {"stage": variable_text(variable, selected, listed)}
    keep = None if selected is None else set(selected)
    problems: list[str] = []
    for panel, target in panel_targets(dashboard):
        query = render(target["query"], variables, time_filter)
        title, ref = panel["title"], target["refId"]
        try:
            series = oracle.query(query)
        except (urllib.error.HTTPError, AssertionError) as error:
            reason = error.read().decode() if isinstance(error, urllib.error.HTTPError) else str(error)
            problems.append(f"panel {title!r} (refId {ref}) failed on the server: {reason}: {query}")
            continue
        if not series:
            problems.append(f"panel {title!r} (refId {ref}) returned no series: {query}")
        elif title in PLOTS:
            found = check_plot(title, PLOTS[title], series, written, keep)
            problems += [f"{problem} (refId {ref}): {query}" for problem in found]
        else:
            problems += [f"{p}: {query}" for p in check_table(title, series, written, keep)]
    assert not problems, "\n".join(problems)
