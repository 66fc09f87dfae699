"""Two signals measured where the data moves: lineage-edge readiness and the server's cost per stage.

:class:`MeteredInfluxDBIOManager` is the InfluxDB IO manager plus two measurements, written to InfluxDB
(and OpenTelemetry, :mod:`influx_assets.observability.export`) without ever failing a step:

**Edge success rate** (measurement ``pipeline_edges``, tags ``upstream``, ``downstream``, ``window``;
fields ``ready`` and ``run_id``). Each time a stage loads an upstream stage's windows — one *attempt*
per downstream window — it records ``ready=1`` if every upstream window it reads was committed (the
window ledger let the load through) and every blocking check of those upstream windows last passed on
their latest materialization, else ``ready=0`` (a load refused with ``WindowNotCommittedError`` is
recorded, then re-raised). ``MEAN("ready")`` per edge is the share of hand-offs that found their input
ready. A step Dagster skips because an upstream step of the same run failed never loads, so it is not
an attempt here (the failure is in ``pipeline_failures``).

**Server query cost** (measurement ``pipeline_metrics``, tags ``stage``, ``window``; fields
``server_queries``, ``server_query_seconds``, ``server_points_written``, ``server_response_bytes``).
The server's own counters (1.x ``SHOW STATS``, 2.x ``/metrics``;
:mod:`influx_assets.influxdb.client.server_stats`) are read when a step first touches InfluxDB through
this IO manager and again after each output is written; the difference is the cost of the stage's
loads, checks of its own body, deletes and writes. The counters are the whole server's: with other
work running at the same time the figure includes it (an upper bound per stage; exact on a quiet
server, which is how ``bench/`` reads it). Where the server exposes no statistics (3.x, a token
without access), nothing is recorded and the step says so once in its log.
"""

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from dagster import (
    AssetCheckKey,
    AssetKey,
    DagsterInvariantViolationError,
    InputContext,
    OutputContext,
    PartitionsDefinition,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from pydantic import PrivateAttr

from influx_assets.influxdb import (
    OWN_QUERIES,
    InfluxDBIOManager,
    InfluxDBResource,
    ServerCounters,
    WindowNotCommittedError,
)
from influx_assets.observability.export import stage_instruments
from influx_assets.observability.stage_metrics import METRICS_MEASUREMENT, window_label

log = logging.getLogger("influx_assets.observability.pipeline_meter")

EDGES_MEASUREMENT = "pipeline_edges"


@dataclass(frozen=True)
class EdgeAttempt:
    """One downstream window's attempt to use its upstream window(s)."""

    upstream: str
    downstream: str
    window: str
    ready: bool
    run_id: str
    at: float


def edge_frame(attempts: Sequence[EdgeAttempt]) -> pd.DataFrame:
    """Attempts as rows of ``pipeline_edges`` (one point each; a nanosecond apart, never merged)."""
    base = pd.Timestamp(attempts[0].at, unit="s", tz="UTC") if attempts else pd.Timestamp.now(tz="UTC")
    return pd.DataFrame({
        "time": [base + pd.Timedelta(nanoseconds=i) for i in range(len(attempts))],
        "upstream": [a.upstream for a in attempts],
        "downstream": [a.downstream for a in attempts],
        "window": [a.window for a in attempts],
        "ready": pd.array([int(a.ready) for a in attempts], dtype="Int64"),
        "run_id": pd.array([a.run_id for a in attempts], dtype="str"),
    })


def cost_frame(stage: str, window: str, cost: ServerCounters, run_id: str, at: float) -> pd.DataFrame:
    """One ``pipeline_metrics`` row holding a stage's server cost (absent counters: absent fields)."""
    return pd.DataFrame({
        "time": [pd.Timestamp(at, unit="s", tz="UTC")],
        "stage": [stage],
        "window": [window],
        "server_queries": pd.array([cost.queries], dtype="Int64"),
        "server_query_seconds": pd.array([round(cost.query_seconds, 6)], dtype="float64"),
        "server_points_written": pd.array([cost.points_written], dtype="Int64"),
        "server_response_bytes": pd.array([cost.response_bytes], dtype="Int64"),
        "run_id": pd.array([run_id], dtype="str"),
    })


def blocking_checks_passed(
    instance: object, asset_graph: object, upstream: AssetKey, partitions: Sequence[str]
) -> dict[str, bool]:
    """Per upstream partition: did every blocking check of ``upstream`` last pass on its latest data?"""
    checks: list[AssetCheckKey] = [
        key for key in asset_graph.get_check_keys_for_assets({upstream})  # type: ignore[attr-defined]
        if asset_graph.get_check_spec(key).blocking  # type: ignore[attr-defined]
    ]
    passed = dict.fromkeys(partitions, True)
    if not checks or not partitions:
        return passed
    infos = instance.event_log_storage.get_asset_check_partition_info(  # type: ignore[attr-defined]
        checks, partition_keys=list(partitions)
    )
    seen = {(info.check_key, info.partition_key): info for info in infos}
    for partition in partitions:
        for check in checks:
            info = seen.get((check, partition))
            if info is None or info.latest_execution_status != AssetCheckExecutionRecordStatus.SUCCEEDED or not info.is_current:
                passed[partition] = False
    return passed


def _upstream_of(
    asset_graph: object, downstream: AssetKey, upstream: AssetKey, window: str, instance: object
) -> list[str]:
    """The upstream partitions ``window`` of ``downstream`` reads (through its partition mapping)."""
    own: PartitionsDefinition = asset_graph.get(downstream).partitions_def  # type: ignore[attr-defined]
    parent: PartitionsDefinition = asset_graph.get(upstream).partitions_def  # type: ignore[attr-defined]
    mapping = asset_graph.get_partition_mapping(downstream, upstream)  # type: ignore[attr-defined]
    return list(
        mapping.get_upstream_mapped_partitions_result_for_partitions(
            own.subset_with_partition_keys([window]), own, parent, dynamic_partitions_store=instance
        ).partitions_subset.get_partition_keys()
    )


def whole_asset_graph(step: object) -> object:
    """The code location's whole asset graph: a job's own graph lacks the checks and assets it does not run.

    A launched run's step knows its repository; a run of ``materialize()`` has none, and then the
    graph is this code location's (``influx_assets.definitions``), which holds the same stages.
    """
    try:
        return step.repository_def.asset_graph  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - Dagster's invariant error: no repository on this step
        from influx_assets.definitions import defs  # here: definitions imports this module

        return defs.resolve_asset_graph()


class MeteredInfluxDBIOManager(InfluxDBIOManager):
    """:class:`~influx_assets.influxdb.InfluxDBIOManager` that also records edge readiness and server cost.

    Storage behaviour is the parent's, unchanged; see the module docstring for what is measured.
    """

    _cost_since: dict[tuple[str, str], ServerCounters | None] = PrivateAttr(default_factory=dict)
    _cost_warned: set[str] = PrivateAttr(default_factory=set)

    # --- edges -----------------------------------------------------------------------------------
    def load_input(self, context: InputContext) -> object:
        """Load like the parent, then record one edge attempt per downstream window."""
        self._start_cost(context)
        try:
            value = super().load_input(context)
        except WindowNotCommittedError:
            self._record_edges(context, committed=False)
            raise
        self._record_edges(context, committed=True)
        return value

    def _record_edges(self, context: InputContext, committed: bool) -> None:
        try:
            attempts = self._edge_attempts(context, committed)
        except Exception as error:  # noqa: BLE001 - metrics never fail a step
            log.warning("could not measure edge readiness: %s: %s", type(error).__name__, error)
            return
        if not attempts:
            return
        _export(lambda instruments: [instruments.record_edge(a.upstream, a.downstream, a.ready) for a in attempts])
        self._write(context, edge_frame(attempts), EDGES_MEASUREMENT, ["upstream", "downstream", "window"])

    def _edge_attempts(self, context: InputContext, committed: bool) -> list[EdgeAttempt]:
        if context.upstream_output is None or not context.has_asset_key:
            return []
        step = context.step_context
        asset_graph = whole_asset_graph(step)
        upstream = context.asset_key
        node = asset_graph.get(upstream)
        if node.partitions_def is None or not node.is_materializable:
            return []  # external sources and unpartitioned assets have no windows to hand over
        assets_def = step.job_def.asset_layer.get_assets_def_for_node(step.node_handle)
        downstream = sorted(
            (k for k in assets_def.keys if upstream in assets_def.asset_deps.get(k, set())),
            key=lambda k: k.to_user_string(),
        )
        attempts = []
        now = time.time()
        for key in downstream:
            own = asset_graph.get(key).partitions_def
            if own is None or not (step.has_partition_key or step.has_partition_key_range):
                continue
            windows = (
                own.get_partition_keys_in_range(step.partition_key_range)
                if step.has_partition_key_range else [step.partition_key]
            )
            reads = {w: _upstream_of(asset_graph, key, upstream, w, step.instance) for w in windows}
            checked = blocking_checks_passed(
                step.instance, asset_graph, upstream, sorted({p for ps in reads.values() for p in ps})
            ) if committed else {}
            for window in windows:
                ready = committed and all(checked.get(p, False) for p in reads[window])
                attempts.append(EdgeAttempt(
                    upstream.to_user_string(), key.to_user_string(), window, ready, step.run_id, now
                ))
        return attempts

    # --- server cost -----------------------------------------------------------------------------
    def handle_output(self, context: OutputContext, obj: object) -> None:
        """Store like the parent, then record the server's work since the step began (or last output)."""
        self._start_cost(context)
        super().handle_output(context, obj)
        self._finish_cost(context)

    def _step(self, context: InputContext | OutputContext) -> tuple[str, str] | None:
        try:
            step = context.step_context
        except DagsterInvariantViolationError:  # built by hand, no run
            return None
        return step.run_id, step.step.key

    def _counters(self, context: InputContext | OutputContext) -> ServerCounters | None:
        try:
            return self.influxdb.connection.server_counters()
        except Exception as error:  # noqa: BLE001 - metrics never fail a step
            reason = f"{type(error).__name__}: {error}"
            if reason not in self._cost_warned:
                self._cost_warned.add(reason)
                context.log.warning(f"server query cost not recorded: the server's statistics are unavailable ({reason})")
            return None

    def _start_cost(self, context: InputContext | OutputContext) -> None:
        step = self._step(context)
        if step is not None and step not in self._cost_since:
            self._cost_since[step] = self._counters(context)

    def _finish_cost(self, context: OutputContext) -> None:
        step = self._step(context)
        before = self._cost_since.get(step) if step is not None else None
        if step is None or before is None:
            return
        after = self._counters(context)
        self._cost_since[step] = after
        if after is None:
            return
        cost = after.since(before, own_queries=OWN_QUERIES)
        stage = context.asset_key.to_user_string()
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else []
        window = window_label(keys)
        _export(lambda instruments: instruments.record_server_cost(stage, window, cost.queries, cost.query_seconds))
        self._write(context, cost_frame(stage, window, cost, step[0], time.time()), METRICS_MEASUREMENT, ["stage", "window"])

    # --- shared ----------------------------------------------------------------------------------
    def _write(self, context: InputContext | OutputContext, frame: pd.DataFrame, measurement: str, tags: list[str]) -> None:
        influxdb: InfluxDBResource = self.influxdb
        try:
            influxdb.prepare_database()
            influxdb.write_frame(frame, measurement, tags)
        except Exception as error:  # noqa: BLE001 - our errors carry no secrets
            context.log.warning(f"could not write {measurement}: {type(error).__name__}: {error}")


def _export(record: object) -> None:
    """Hand the instruments to ``record`` when OpenTelemetry export is on; never raises."""
    try:
        instruments = stage_instruments()
        if instruments is not None:
            record(instruments)  # type: ignore[operator]
    except Exception as error:  # noqa: BLE001
        log.warning("could not export to OpenTelemetry: %s: %s", type(error).__name__, error)
