"""Stage metrics through OpenTelemetry: four instruments, exported over OTLP/HTTP when configured.

Export is **off** unless the standard variables ask for it:

- ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``, a full URL) turns it
  on: OTLP over HTTP/protobuf to ``<endpoint>/v1/metrics``;
- ``OTEL_METRICS_EXPORTER`` = ``otlp`` and/or ``console`` (comma-separated) turns it on; ``none``
  turns it off even with an endpoint; ``OTEL_SDK_DISABLED=true`` turns it off;
- ``OTEL_EXPORTER_OTLP_HEADERS``, ``..._TIMEOUT``, ``..._METRICS_TEMPORALITY_PREFERENCE``,
  ``OTEL_METRIC_EXPORT_INTERVAL``, ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` are read by
  the SDK and the exporter themselves (``service.name`` defaults to ``influx_assets``).

Instruments (attributes ``pipeline.stage`` = asset key, ``pipeline.window`` = partition key or
``first...last`` for a range run):

- ``pipeline.stage.latency`` (histogram, ``s``): upstream window ready → stage done;
- ``pipeline.stage.rows`` (counter, ``{row}``): rows the stage produced;
- ``pipeline.stage.retries`` (counter, ``{retry}``): step retries it took to get there;
- ``pipeline.stage.queue_depth`` (gauge, ``{window}``): windows of the stage still waiting.

Dagster runs each step in a short-lived process, so every recording is followed by a bounded
``force_flush``; the provider also shuts down (flushing) at interpreter exit.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry.metrics import Counter, Histogram, MeterProvider
from opentelemetry.metrics import _Gauge as Gauge  # the synchronous gauge is still underscored in the API
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource

log = logging.getLogger("influx_assets.observability.stage_metrics")

METER_NAME = "influx_assets"
STAGE_ATTRIBUTE = "pipeline.stage"
WINDOW_ATTRIBUTE = "pipeline.window"
#: Latency buckets in seconds: a minute-level pipeline up to a day-late backfill.
LATENCY_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
#: Upper bound of the flush after each recording, so a dead collector cannot hold a stage for long.
FLUSH_TIMEOUT_MILLIS = 5_000


def otel_export_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the ``OTEL_*`` variables ask for metric export (see the module docstring)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = _exporter_names(env)
    if exporters:
        return exporters != ["none"]
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))


def _exporter_names(env: Mapping[str, str]) -> list[str]:
    return [name.strip().lower() for name in env.get("OTEL_METRICS_EXPORTER", "").split(",") if name.strip()]


def _exporters_from_env(env: Mapping[str, str]) -> list[MetricExporter]:
    names = _exporter_names(env) or ["otlp"]
    exporters: list[MetricExporter] = []
    for name in names:
        if name == "otlp":
            protocol = env.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", env.get("OTEL_EXPORTER_OTLP_PROTOCOL"))
            if protocol and protocol != "http/protobuf":
                log.warning("OTLP protocol %r is not installed; exporting over http/protobuf", protocol)
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            exporters.append(OTLPMetricExporter())
        elif name == "console":
            exporters.append(ConsoleMetricExporter())
        elif name != "none":
            log.warning("OTEL_METRICS_EXPORTER=%r is not supported here; ignored", name)
    return exporters


def meter_provider_from_env(environ: Mapping[str, str] | None = None) -> MeterProvider | None:
    """An SDK ``MeterProvider`` exporting as the ``OTEL_*`` variables say, or None when export is off."""
    env = os.environ if environ is None else environ
    if not otel_export_requested(env):
        return None
    readers = [PeriodicExportingMetricReader(exporter) for exporter in _exporters_from_env(env)]
    if not readers:
        return None
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": METER_NAME}
    return SdkMeterProvider(metric_readers=readers, resource=Resource.create(attributes))


@dataclass(frozen=True)
class StageInstruments:
    """The four stage instruments of one meter provider."""

    provider: MeterProvider
    latency: Histogram
    rows: Counter
    retries: Counter
    queue_depth: Gauge
    edge_attempts: Counter
    server_queries: Counter
    server_query_seconds: Counter

    @classmethod
    def on(cls, provider: MeterProvider) -> StageInstruments:
        """Create the instruments on ``provider``."""
        meter = provider.get_meter(METER_NAME)
        return cls(
            provider=provider,
            latency=meter.create_histogram(
                "pipeline.stage.latency", unit="s",
                description="Time from the stage's upstream window being ready to the stage finishing it.",
                explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
            ),
            rows=meter.create_counter(
                "pipeline.stage.rows", unit="{row}", description="Rows a stage produced for a window."
            ),
            retries=meter.create_counter(
                "pipeline.stage.retries", unit="{retry}",
                description="Step retries before the stage succeeded.",
            ),
            queue_depth=meter.create_gauge(
                "pipeline.stage.queue_depth", unit="{window}",
                description="Windows of the stage whose upstream data is newer than the stage's output.",
            ),
            edge_attempts=meter.create_counter(
                "pipeline.edge.attempts", unit="{attempt}",
                description="Downstream window attempts per lineage edge; attribute ready says if the "
                "upstream window was committed and its blocking checks passed.",
            ),
            server_queries=meter.create_counter(
                "pipeline.stage.server_queries", unit="{query}",
                description="Queries InfluxDB executed while the stage ran.",
            ),
            server_query_seconds=meter.create_counter(
                "pipeline.stage.server_query_time", unit="s",
                description="Query execution time InfluxDB reported while the stage ran.",
            ),
        )

    def record(
        self,
        stage: str,
        window: str,
        latency_seconds: float | None,
        rows: int | None,
        retries: int,
        queue_depth: int | None,
    ) -> None:
        """Record one stage completion and flush it (bounded by :data:`FLUSH_TIMEOUT_MILLIS`)."""
        attributes = {STAGE_ATTRIBUTE: stage, WINDOW_ATTRIBUTE: window}
        if latency_seconds is not None:
            self.latency.record(latency_seconds, attributes)
        if rows is not None:
            self.rows.add(rows, attributes)
        self.retries.add(retries, attributes)
        if queue_depth is not None:
            self.queue_depth.set(queue_depth, attributes)
        self._flush()

    def record_edge(self, upstream: str, downstream: str, ready: bool) -> None:
        """Count one downstream window attempt on the edge ``upstream -> downstream``."""
        self.edge_attempts.add(1, {"upstream": upstream, "downstream": downstream, "ready": ready})
        self._flush()

    def record_server_cost(self, stage: str, window: str, queries: int, query_seconds: float) -> None:
        """Add what the server did for one stage run."""
        attributes = {STAGE_ATTRIBUTE: stage, WINDOW_ATTRIBUTE: window}
        self.server_queries.add(queries, attributes)
        self.server_query_seconds.add(query_seconds, attributes)
        self._flush()

    def _flush(self) -> None:
        flush = getattr(self.provider, "force_flush", None)
        if flush is not None:
            flush(timeout_millis=FLUSH_TIMEOUT_MILLIS)


_lock = threading.Lock()
_instruments: StageInstruments | None = None
_resolved = False


def use_meter_provider(provider: MeterProvider | None) -> None:
    """Send stage metrics to ``provider`` (an application's own SDK setup, or a test's reader).

    ``None`` goes back to configuring from the ``OTEL_*`` variables on the next recording.
    """
    global _instruments, _resolved
    with _lock:
        _instruments = StageInstruments.on(provider) if provider is not None else None
        _resolved = provider is not None


def stage_instruments() -> StageInstruments | None:
    """The instruments in use: the provider set by :func:`use_meter_provider`, else one from env."""
    global _instruments, _resolved
    with _lock:
        if not _resolved:
            provider = meter_provider_from_env()
            _instruments = StageInstruments.on(provider) if provider is not None else None
            _resolved = True
        return _instruments
