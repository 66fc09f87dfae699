"""The writer pools of the pipeline, created up front so that runs never race to create them.

Dagster creates a pool's slots on first use. On SQLite storage two runs that start at the same
instant on an instance where a pool does not exist yet can both find it missing and both allocate a
slot, so a pool limited to one step briefly admits two (seen in this project's racing-runs test).
:func:`initialize_writer_pools` creates every writer pool with the instance's default limit before
anything runs; ``influx-assets init-pools`` does it from the command line and ``scripts/demo.sh``
calls that. Idempotent: an existing pool keeps its slots and a limit an operator set stays.
"""

from dagster import DagsterInstance

from influx_assets.telemetry import pipeline_assets


def writer_pools() -> list[str]:
    """Every concurrency pool a pipeline stage declares (``influxdb_write/<stage>``, the archive's too)."""
    return sorted({asset.op.pool for asset in pipeline_assets if getattr(asset, "op", None) and asset.op.pool})


def initialize_writer_pools(instance: DagsterInstance) -> list[str]:
    """Create the writer pools that do not exist yet with the default limit; returns those created."""
    storage = instance.event_log_storage
    existing = set(storage.get_concurrency_keys())
    created = [pool for pool in writer_pools() if pool not in existing]
    for pool in created:
        storage.initialize_concurrency_limit_to_default(pool)
    return created
