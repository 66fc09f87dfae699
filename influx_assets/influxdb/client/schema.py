"""Server field types → pandas dtypes. Cast by the schema the server reports, never by inference.

InfluxQL returns a float field holding whole numbers as ``40``; inference would make it int64. Here
the dtype comes from ``SHOW FIELD KEYS`` (1.x) or the Flux ``#datatype`` annotation (2.x).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from influx_assets.influxdb.client.pandas_versions import as_text

TIME_COLUMN = "time"

#: InfluxQL ``fieldType`` and Flux ``#datatype`` names, mapped to one canonical name each.
CANONICAL_FIELD_TYPES = {
    "float": "float",
    "double": "float",
    "integer": "integer",
    "long": "integer",
    "unsignedlong": "integer",
    "unsigned": "integer",
    "string": "string",
    "boolean": "boolean",
}


def merge_field_types(types: Sequence[str]) -> str:
    """One type for a field stored with several (1.x keeps a type per shard): string > float > int."""
    canonical = {CANONICAL_FIELD_TYPES.get(t, "string") for t in types}
    for winner in ("string", "float", "boolean", "integer"):
        if winner in canonical:
            return winner
    return "string"


def read_dtypes(tag_keys: Sequence[str], field_types: Mapping[str, str]) -> dict[str, object]:
    """dtypes to hand ``pandas.read_csv`` so that parsing never guesses."""
    dtypes: dict[str, object] = {key: "str" for key in tag_keys}
    for name, kind in field_types.items():
        dtypes[name] = {"float": "float64", "integer": "Int64", "boolean": "str", "string": "str"}[kind]
    return dtypes


def finish_frame(
    frame: pd.DataFrame, time_ns_column: str, tag_keys: Sequence[str], field_types: Mapping[str, str]
) -> pd.DataFrame:
    """Turn a parsed frame into the public shape: ``time`` (UTC) first, then tags, then fields.

    Integer fields without nulls become ``int64`` (nullable ``Int64`` otherwise); boolean fields
    ``bool`` (nullable ``boolean`` otherwise); strings ``str``.
    """
    out: dict[str, pd.Series] = {
        TIME_COLUMN: pd.to_datetime(frame[time_ns_column].astype("int64"), unit="ns", utc=True)
    }
    for key in sorted(tag_keys):
        if key in frame.columns:
            out[key] = as_text(frame[key]) if len(frame) else pd.Series([], dtype="str")
    for name in sorted(field_types):
        if name not in frame.columns:
            continue
        column = frame[name]
        kind = field_types[name]
        if kind == "integer":
            column = column.astype("Int64")
            if not column.isna().any():
                column = column.astype("int64")
        elif kind == "boolean":
            column = column.map({"true": True, "false": False, True: True, False: False}).astype("boolean")
            if not column.isna().any():
                column = column.astype(bool)
        elif kind == "float":
            column = column.astype("float64")
        else:
            column = as_text(column)
        out[name] = column
    result = pd.DataFrame(out)
    result.index = pd.RangeIndex(len(result))
    return result


def empty_frame(tag_keys: Sequence[str], field_types: Mapping[str, str]) -> pd.DataFrame:
    """A zero-row frame with the right columns and dtypes."""
    columns: dict[str, pd.Series] = {TIME_COLUMN: pd.Series([], dtype="int64")}
    columns |= {k: pd.Series([], dtype="str") for k in tag_keys}
    columns |= {k: pd.Series([], dtype="object") for k in field_types}
    return finish_frame(pd.DataFrame(columns), TIME_COLUMN, tag_keys, field_types)
