"""An independent path to the server for assertions: stdlib ``urllib`` + InfluxQL JSON.

Tests assert through this, never through the code under test, so a bug in our transport cannot hide
itself. Works against 1.x, 3.x and 2.x (v1-compatibility ``/query`` with a DBRP mapping).
"""

from __future__ import annotations

import base64
import json
import os
import urllib.parse
import urllib.request
from typing import Any


class InfluxQLOracle:
    """Runs InfluxQL against one database and returns plain Python values."""

    def __init__(self, url: str, database: str) -> None:
        self.url = url.rstrip("/")
        self.database = database

    def _headers(self) -> dict[str, str]:
        token = os.environ.get("INFLUXDB_TOKEN")
        if token:
            return {"Authorization": f"Token {token}"}
        user = os.environ.get("INFLUXDB_USERNAME")
        if user:
            raw = f"{user}:{os.environ.get('INFLUXDB_PASSWORD', '')}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {}

    def query(self, statement: str) -> list[dict[str, Any]]:
        """Run one statement; return its series as ``{"name", "tags", "columns", "values"}`` dicts."""
        data = urllib.parse.urlencode({"q": statement, "db": self.database, "epoch": "ns"}).encode()
        request = urllib.request.Request(f"{self.url}/query", data=data, headers=self._headers())
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = json.load(response)
        result = payload["results"][0]
        if "error" in result:
            raise AssertionError(f"oracle query failed: {result['error']}: {statement}")
        return result.get("series", [])

    def rows(self, statement: str) -> list[dict[str, Any]]:
        """Rows of the first series as dicts."""
        out: list[dict[str, Any]] = []
        for series in self.query(statement):
            out.extend(dict(zip(series["columns"], values, strict=True)) for values in series["values"])
        return out

    def count(self, measurement: str, field: str = "*", where: str = "") -> int:
        """Number of points (max over fields of ``COUNT``) in a measurement."""
        name = '"' + measurement.replace("\\", "\\\\").replace('"', '\\"') + '"'
        rows = self.rows(f"SELECT COUNT({field}) FROM {name} {where}")
        if not rows:
            return 0
        return max(v for k, v in rows[0].items() if k != "time")

    def measurements(self) -> list[str]:
        """Names of all measurements in the database."""
        return [v[0] for s in self.query("SHOW MEASUREMENTS") for v in s["values"]]

    def drop_database(self) -> None:
        """Drop the test database (best effort)."""
        try:
            name = '"' + self.database.replace('"', '\\"') + '"'
            self.query(f"DROP DATABASE {name}")
        except Exception:  # noqa: BLE001 - cleanup only
            pass
