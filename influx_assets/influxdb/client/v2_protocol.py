"""What the v2 transport needs to know about InfluxDB 2.x's HTTP API, apart from the calls themselves.

The query dialect, the column names Flux owns, org IDs, the urllib3 retry policy and how to read an
error body (``code: message``) — each pinned to the 2.7.12 source by the contract tests.
"""

from __future__ import annotations

import json
import re

import urllib3
from influxdb_client.domain.dialect import Dialect
from influxdb_client.rest import ApiException

#: Column names a Flux read produces itself: a tag or field of that name cannot be read back (a pivot
#: would hold two columns of one name, or drop it), so the v2 transport refuses to write one.
FLUX_OWN_COLUMNS = frozenset({"result", "table", "_start", "_stop", "_time", "_value", "_measurement", "_field"})
_ORG_ID = re.compile(r"[0-9a-f]{16}")


def is_org_id(org: str | None) -> bool:
    """True when ``org`` is an organization ID (16 hex digits) rather than a name, as 2.x tells them apart."""
    return bool(org) and _ORG_ID.fullmatch(str(org)) is not None


def no_retries_but_redirects() -> urllib3.Retry:
    """urllib3 policy: our own loop retries (:mod:`.retries`); redirects (e.g. a proxy's 307) are followed.

    Needs urllib3 >= 2.5: before it, ``PoolManager`` ignored a pool's ``Retry`` for redirects (CVE-2025-50181).
    """
    return urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=10, raise_on_status=False)

#: CSV dialect of every query: ``#datatype`` types the columns, ``#group`` tells tags from fields.
QUERY_DIALECT = Dialect(
    header=True,
    delimiter=",",
    comment_prefix="#",
    annotations=["datatype", "group"],
    date_time_format="RFC3339Nano",
)


def is_missing_route(error: ApiException) -> bool:
    """A 404 for the endpoint itself (3.x: plain ``Not found``), not for a bucket or org it names."""
    text = body_text(error).lower()
    return "bucket" not in text and "organization" not in text and "org " not in text


def body_text(error: ApiException) -> str:
    """The server's explanation: ``code: message`` of a 2.x JSON error body, else the body itself.

    The code matters: a query on a missing bucket says ``not found: ... could not find bucket "x"``.
    """
    body = error.body
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else str(body or "")
    try:
        payload = json.loads(text)
    except ValueError:
        return text or str(error.reason or "")
    if not isinstance(payload, dict) or "message" not in payload:
        return text
    code = payload.get("code")
    return f"{code}: {payload['message']}" if code else str(payload["message"])
