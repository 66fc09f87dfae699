"""The demo's first job: a backfill of the hourly stages over the simulated windows, via the UI's API.

``scripts/demo.sh`` calls ``influx-assets demo-backfill`` once the Dagster webserver answers; the
daemon then runs the backfill (one run per day of windows, the stages' backfill policy) and the
operator watches it in the UI under *Overview → Backfills*.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pandas as pd

from influx_assets.telemetry.partitions import hourly_windows
from influx_assets.automation.schedules import HOURLY_STAGES

LAUNCH_BACKFILL = """
mutation LaunchBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}
"""


def recent_windows(hours: int, now: pd.Timestamp | None = None) -> list[str]:
    """Partition keys of the last ``hours`` closed hourly windows."""
    now = now or pd.Timestamp.now(tz="UTC")
    return list(hourly_windows.get_partition_keys(current_time=now.to_pydatetime())[-hours:])


def graphql(webserver: str, query: str, variables: dict, timeout: float = 30.0) -> dict:
    """POST one GraphQL request to a Dagster webserver and return its ``data``."""
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(
        f"{webserver.rstrip('/')}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload = json.load(response)
    if payload.get("errors"):
        raise RuntimeError(f"GraphQL errors: {payload['errors']}")
    return payload["data"]


def wait_for_webserver(webserver: str, timeout: float = 180.0) -> None:
    """Block until ``/server_info`` answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{webserver.rstrip('/')}/server_info", timeout=5):
                return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def launch_hourly_backfill(webserver: str, partitions: list[str]) -> str:
    """Ask the webserver for an asset backfill of the hourly stages over ``partitions``; return its id."""
    from influx_assets.definitions import defs

    keys = HOURLY_STAGES.resolve(defs.resolve_asset_graph())
    params = {
        "assetSelection": [{"path": key.path} for key in sorted(keys, key=lambda k: k.path)],
        "partitionNames": partitions,
        "fromFailure": False,
    }
    result = graphql(webserver, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise RuntimeError(f"backfill not launched: {result}")
    return str(result["backfillId"])
