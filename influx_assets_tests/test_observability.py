"""Stage metrics (OpenTelemetry + ``pipeline_metrics``) and the run-failure sensor, on real runs.

The example assets call ``record_stage_metrics``; they are materialized with ``dagster.materialize``
on a temporary instance against the session's real ``influxd``. Values are checked against the
instance's own event log and through the InfluxQL oracle, never through the code under test.
"""

import gzip
import http.server
import threading
from collections.abc import Iterator

import pytest
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    AssetSpec,
    DagsterInstance,
    Definitions,
    asset,
    build_run_status_sensor_context,
    instance_for_test,
    materialize,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    PeriodicExportingMetricReader,
)

from influx_assets.observability import export as metrics_export
from influx_assets.examples import example_readings, example_readings_summary
from influx_assets.influxdb import InfluxDBResource
from influx_assets.devtools.local_server import free_port
from influx_assets.observability.export import otel_export_requested, use_meter_provider
from influx_assets.observability.stage_metrics import queue_depth, record_stage_metrics
from influx_assets.telemetry.partitions import daily_windows, hourly_windows
from influx_assets.resources import resources_for
from influx_assets.automation.sensors import pipeline_failure_sensor, run_window
from influx_assets_tests.influxql_oracle import InfluxQLOracle

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
WINDOWS = ["2024-03-01-00:00", "2024-03-01-01:00", "2024-03-01-02:00"]
READINGS_PER_WINDOW = 60 * 3  # one per minute per example sensor


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    """Stage metrics go to an in-memory reader for the test, and back to ``OTEL_*`` afterwards."""
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory], shutdown_on_exit=False)
    use_meter_provider(provider)
    yield memory
    use_meter_provider(None)
    provider.shutdown()


def run_stages(assets: list, window: str, instance: DagsterInstance, influxdb: InfluxDBResource) -> None:
    result = materialize(assets, partition_key=window, instance=instance, resources=resources_for(influxdb))
    assert result.success


def data_points(reader: InMemoryMetricReader, name: str) -> dict[tuple[str, str], object]:
    """``(stage, window) -> data point`` of one instrument."""
    points = {}
    for resource_metrics in reader.get_metrics_data().resource_metrics:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        attributes = point.attributes
                        points[(attributes["pipeline.stage"], attributes["pipeline.window"])] = point
    return points


def materialized_at(instance: DagsterInstance, key: str, window: str) -> float:
    records = instance.fetch_materializations(AssetKey(key), limit=50).records
    return max(r.timestamp for r in records if r.partition_key == window)


def test_stage_metrics_reach_opentelemetry_with_stage_and_window_attributes(
    instance: DagsterInstance, influxdb: InfluxDBResource, reader: InMemoryMetricReader
) -> None:
    window = WINDOWS[0]
    run_stages([example_readings], window, instance, influxdb)
    run_stages([example_readings, example_readings_summary], window, instance, influxdb)

    rows = data_points(reader, "pipeline.stage.rows")
    assert rows[("example_readings", window)].value == 2 * READINGS_PER_WINDOW  # two runs of the window
    assert rows[("example_readings_summary", window)].value == 3
    assert {p.value for p in data_points(reader, "pipeline.stage.retries").values()} == {0}
    latency = data_points(reader, "pipeline.stage.latency")
    assert set(latency) == {("example_readings_summary", window)}  # the root stage has no upstream
    upstream_ready = materialized_at(instance, "example_readings", window)
    summary_done = materialized_at(instance, "example_readings_summary", window)
    point = latency[("example_readings_summary", window)]
    assert point.count == 1
    assert 0 < point.sum <= summary_done - upstream_ready
    assert data_points(reader, "pipeline.stage.queue_depth")[("example_readings_summary", window)].value == 0


def test_pipeline_metrics_measurement_holds_one_point_per_stage_run(
    instance: DagsterInstance,
    influxdb: InfluxDBResource,
    oracle: InfluxQLOracle,
    reader: InMemoryMetricReader,
) -> None:
    for window in WINDOWS:
        run_stages([example_readings], window, instance, influxdb)
    run_stages([example_readings, example_readings_summary], WINDOWS[0], instance, influxdb)

    # stage points carry retries; the IO manager's server-cost points (one per stage run) carry server_*
    points = oracle.rows('SELECT * FROM "pipeline_metrics" WHERE "retries" >= 0')
    series = oracle.query('SELECT * FROM "pipeline_metrics" WHERE "retries" >= 0 GROUP BY "stage", "window"')
    costs = oracle.rows('SELECT "server_queries", "stage", "window" FROM "pipeline_metrics" WHERE "server_queries" >= 0')
    assert sorted((c["stage"], c["window"]) for c in costs) == sorted(
        [("example_readings", w) for w in WINDOWS] + [("example_readings", WINDOWS[0]), ("example_readings_summary", WINDOWS[0])]
    )
    by_series = {(s["tags"]["stage"], s["tags"]["window"]): s for s in series}
    expected = {("example_readings", w) for w in WINDOWS} | {("example_readings_summary", WINDOWS[0])}
    assert set(by_series) == expected
    assert len(points) == len(WINDOWS) + 2  # readings run twice for the first window
    summary = dict(zip(by_series[("example_readings_summary", WINDOWS[0])]["columns"],
                       by_series[("example_readings_summary", WINDOWS[0])]["values"][0], strict=True))
    assert summary["rows"] == 3
    assert summary["retries"] == 0
    assert summary["queue_depth"] == 2  # the two later windows are ready upstream, not summarized
    assert summary["latency_seconds"] > 0
    readings = by_series[("example_readings", WINDOWS[1])]
    readings_row = dict(zip(readings["columns"], readings["values"][0], strict=True))
    assert readings_row["rows"] == READINGS_PER_WINDOW
    assert readings_row["latency_seconds"] is None and readings_row["queue_depth"] is None
    field_keys = oracle.query('SHOW FIELD KEYS FROM "pipeline_metrics"')
    field_types = {v[0]: v[1] for s in field_keys for v in s["values"]}
    assert field_types == {
        "latency_seconds": "float", "queue_depth": "integer", "retries": "integer", "rows": "integer",
        "run_id": "string", "server_queries": "integer", "server_query_seconds": "float",
        "server_points_written": "integer", "server_response_bytes": "integer",
    }


def test_queue_depth_counts_missing_and_stale_windows_but_not_the_running_one(
    instance: DagsterInstance, influxdb: InfluxDBResource, reader: InMemoryMetricReader
) -> None:
    for window in WINDOWS:
        run_stages([example_readings], window, instance, influxdb)
    run_stages([example_readings, example_readings_summary], WINDOWS[0], instance, influxdb)
    queue = data_points(reader, "pipeline.stage.queue_depth")
    assert queue[("example_readings_summary", WINDOWS[0])].value == 2  # windows 1 and 2 missing

    run_stages([example_readings], WINDOWS[0], instance, influxdb)  # window 0 is now stale downstream
    run_stages([example_readings, example_readings_summary], WINDOWS[1], instance, influxdb)
    queue = data_points(reader, "pipeline.stage.queue_depth")
    assert queue[("example_readings_summary", WINDOWS[1])].value == 2  # 0 stale, 2 missing, 1 running


def test_queue_depth_maps_hourly_upstream_windows_to_daily_windows(instance: DagsterInstance) -> None:
    @asset(partitions_def=daily_windows, deps=[AssetSpec("raw_windows", partitions_def=hourly_windows)])
    def daily_stage() -> None: ...

    raw_windows = AssetSpec("raw_windows", partitions_def=hourly_windows)
    graph = Definitions(assets=[daily_stage, raw_windows]).resolve_asset_graph()
    hours = hourly_windows.get_partition_keys()[: 2 * 24]  # 2024-01-01 and 2024-01-02

    def observe(key: str, partition: str) -> None:
        instance.report_runless_asset_event(AssetObservation(asset_key=key, partition=partition))

    def materialize_day(partition: str) -> None:
        event = AssetMaterialization(asset_key="daily_stage", partition=partition)
        instance.report_runless_asset_event(event)

    for hour in hours:
        observe("raw_windows", hour)  # an external upstream: observed, never materialized
    assert queue_depth(instance, graph, daily_stage.key) == 2
    materialize_day("2024-01-01")
    assert queue_depth(instance, graph, daily_stage.key) == 1
    observe("raw_windows", "2024-01-01-13:00")  # late data: day one is stale again
    assert queue_depth(instance, graph, daily_stage.key) == 2
    assert queue_depth(instance, graph, daily_stage.key, in_progress=["2024-01-02"]) == 1
    assert queue_depth(instance, graph, daily_stage.key, scan_windows=1) == 1


class FailingExporter(MetricExporter):
    """An OTLP stand-in whose collector is always down."""

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:  # noqa: ANN001
        raise ConnectionError("collector down")

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:  # noqa: ANN003
        return None


def test_metrics_that_cannot_be_exported_never_fail_the_stage(instance: DagsterInstance) -> None:
    provider = MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(FailingExporter(), export_interval_millis=3_600_000)],
        shutdown_on_exit=False,
    )
    use_meter_provider(provider)
    unreachable = InfluxDBResource(url=f"http://127.0.0.1:{free_port()}", max_attempts=1, timeout_seconds=2)

    @asset(partitions_def=hourly_windows)
    def measured_stage(context: AssetExecutionContext) -> None:
        assert record_stage_metrics(context, rows=7, influxdb=unreachable) is not None

    try:
        result = materialize([measured_stage], partition_key=WINDOWS[0], instance=instance)
    finally:
        use_meter_provider(None)
        provider.shutdown()
    assert result.success
    run_log = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any(
        "could not write pipeline_metrics for measured_stage: ServerUnreachableError" in m for m in run_log
    ), run_log


@pytest.mark.parametrize(
    ("environ", "requested"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://collector:4318/v1/metrics"}, True),
        ({"OTEL_METRICS_EXPORTER": "console"}, True),
        ({"OTEL_METRICS_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_METRICS_EXPORTER": "otlp"}, False),
    ],
)
def test_export_is_off_unless_the_otel_variables_ask_for_it(environ: dict[str, str], requested: bool) -> None:
    assert otel_export_requested(environ) is requested


class CollectorHandler(http.server.BaseHTTPRequestHandler):
    """A minimal OTLP/HTTP collector: keeps every decoded metrics request."""

    requests: list[tuple[str, ExportMetricsServiceRequest]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.requests.append((self.path, ExportMetricsServiceRequest.FromString(body)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


def test_otlp_export_configured_from_env_reaches_a_collector(
    instance: DagsterInstance, influxdb: InfluxDBResource, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CollectorHandler)
    CollectorHandler.requests = []
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{collector.server_port}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "influx-assets-test")
    use_meter_provider(None)
    try:
        run_stages([example_readings], WINDOWS[0], instance, influxdb)
        instruments = metrics_export.stage_instruments()
        assert instruments is not None
        instruments.provider.shutdown()  # while the collector still answers the final export
    finally:
        use_meter_provider(None)
        collector.shutdown()

    assert CollectorHandler.requests, "the stage flushed nothing to the collector"
    path, request = CollectorHandler.requests[0]
    assert path == "/v1/metrics"
    resource = request.resource_metrics[0].resource
    assert {"key": "service.name", "value": "influx-assets-test"} in [
        {"key": a.key, "value": a.value.string_value} for a in resource.attributes
    ]
    rows = [
        m for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        if m.name == "pipeline.stage.rows"
    ]
    point = rows[0].sum.data_points[0]
    assert point.as_int == READINGS_PER_WINDOW
    assert {a.key: a.value.string_value for a in point.attributes} == {
        "pipeline.stage": "example_readings", "pipeline.window": WINDOWS[0],
    }


# --- run-failure sensor -------------------------------------------------------------------------


def test_failed_stage_is_recorded_with_window_and_redacted_reason(
    instance: DagsterInstance, influxdb: InfluxDBResource, oracle: InfluxQLOracle
) -> None:
    password = "pw-7f3e9b1c"
    sensor_influxdb = InfluxDBResource(
        url=influxdb.url, database=influxdb.database, username="monitor", password=password
    )

    @asset(partitions_def=hourly_windows, deps=[example_readings])
    def failing_stage() -> None:
        raise ValueError(f"cannot reach http://monitor:{password}@db:8086 with {password}\nsecond line")

    result = materialize(
        [example_readings, failing_stage], partition_key=WINDOWS[1], instance=instance,
        resources=resources_for(influxdb), raise_on_error=False,
    )
    assert not result.success
    with build_run_status_sensor_context(
        sensor_name="pipeline_failure_sensor", dagster_event=result.get_run_failure_event(),
        dagster_instance=instance, dagster_run=result.dagster_run, resources={"influxdb": sensor_influxdb},
    ) as context:
        pipeline_failure_sensor(context.for_run_failure())

    rows = oracle.rows('SELECT * FROM "pipeline_failures"')
    assert len(rows) == 1
    failure = rows[0]
    assert failure["stage"] == "failing_stage"
    assert failure["window"] == WINDOWS[1]
    assert failure["error_class"] == "ValueError"
    assert failure["message"] == "cannot reach http://***@db:8086 with *** second line"
    assert failure["step_key"] == "failing_stage" and failure["run_id"] == result.run_id
    assert failure["failures"] == 1
    step_failed_at = max(
        entry.timestamp for entry in instance.all_logs(result.run_id)
        if entry.dagster_event and entry.dagster_event.is_step_failure
    )
    assert failure["time"] == pytest.approx(step_failed_at * 1e9, abs=1e3)
    assert password not in str(oracle.query('SELECT * FROM "pipeline_failures"'))


@pytest.mark.parametrize(
    ("tags", "window"),
    [
        ({"dagster/partition": "2024-03-01-00:00"}, "2024-03-01-00:00"),
        ({RANGE_START: "2024-03-01", RANGE_END: "2024-03-05"}, "2024-03-01...2024-03-05"),
        ({RANGE_START: "2024-03-01", RANGE_END: "2024-03-01"}, "2024-03-01"),
        ({}, ""),
    ],
)
def test_run_window_names_the_partition_or_range(tags: dict[str, str], window: str) -> None:
    assert run_window(tags) == window
