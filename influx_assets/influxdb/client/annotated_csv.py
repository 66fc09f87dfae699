"""Flux annotated CSV (the body of ``/api/v2/query``) → typed pandas tables, via ``pandas.read_csv``.

A response is one or more blocks separated by blank lines. Each block has its own annotation rows
(``#datatype``, ``#group``, ``#default``, in any order), one header row and data rows; the first
column of every row is the annotation column (empty in data rows). Tables with the same schema share
a block and differ in the ``table`` column. A block whose header is ``error,reference`` carries an
error that happened after the response had started (HTTP status already 200).

Only the few annotation and header rows go through Python's ``csv`` module; the data rows of each
block are read by pandas' C parser with dtypes taken from ``#datatype`` (never inferred).
:func:`pivoted_frame` turns the tables of a pivoted read into the public frame shape of
:mod:`.schema` (the same shape the v1 transport returns).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np
import pandas as pd

from influx_assets.influxdb.client.errors import BadRequestError, ServerBusyError
from influx_assets.influxdb.client.http import is_resource_exhausted
from influx_assets.influxdb.client.flux import FLUX_META_COLUMNS
from influx_assets.influxdb.client.pandas_versions import EXACT_FLOATS
from influx_assets.influxdb.client.schema import CANONICAL_FIELD_TYPES, finish_frame, merge_field_types

#: ``#datatype`` → dtype handed to ``read_csv``; booleans and times are read as text and converted.
READ_DTYPES = {"double": "float64", "long": "Int64", "unsignedLong": "UInt64"}
_ANNOTATION_COLUMN = "\0annotation"
_TIME_NS = "\0time_ns"


@dataclass(frozen=True)
class AnnotatedTable:
    """One block of an annotated-CSV response.

    Attributes:
        columns: column names in order (without the leading annotation column).
        datatypes: ``#datatype`` per column (``double``, ``long``, ``dateTime:RFC3339``, ...).
        group: ``#group`` per column: True for group-key columns (tags and Flux's own keys).
        rows: the data rows, typed by ``datatypes`` (times and booleans still text).
    """

    columns: list[str]
    datatypes: dict[str, str]
    group: dict[str, bool]
    rows: pd.DataFrame

    def tag_columns(self) -> list[str]:
        """Group-key columns that are not Flux's own (``result``, ``table``, ``_start``, ...)."""
        return [c for c in self.columns if self.group.get(c) and c not in FLUX_META_COLUMNS]

    def field_columns(self) -> list[str]:
        """Columns outside the group key that are not Flux's own (after a pivot: fields and ``_time``)."""
        return [c for c in self.columns if not self.group.get(c) and c not in FLUX_META_COLUMNS]

    def time_ns(self, column: str) -> np.ndarray:
        """An RFC3339(Nano) column as int64 ns since the epoch (exact to the nanosecond)."""
        stamps = pd.to_datetime(self.rows[column], format="ISO8601", utc=True)
        return stamps.dt.as_unit("ns").astype("int64").to_numpy()


def split_blocks(body: bytes) -> list[bytes]:
    """Split a response into blocks at blank lines, never inside a quoted (multi-line) value.

    A block starts with an annotation row (``#...``) right after a blank line; ``bytes.find`` visits
    only those few candidates, and a candidate preceded by an odd number of quotes is inside a value.
    """
    pieces: list[bytes] = []
    begin = scanned = quotes = 0
    candidate = body.find(b"\n#")
    while candidate != -1:
        row_start = candidate + 1
        if body.endswith((b"\n", b"\n\r"), 0, candidate):  # the row before is blank
            quotes += body.count(b'"', scanned, row_start)
            scanned = row_start
            if quotes % 2 == 0:
                pieces.append(body[begin:row_start])
                begin = row_start
        candidate = body.find(b"\n#", row_start)
    pieces.append(body[begin:])
    return [piece for piece in (p.strip(b"\r\n") for p in pieces) if piece]


def _undo_crlf(column: pd.Series) -> pd.Series:
    """Read ``\\r\\n`` inside a value back as ``\\n``, as Go's ``encoding/csv`` reader does.

    Flux writes CSV with ``UseCRLF``: a ``\\n`` inside a quoted value goes out as ``\\r\\n`` and a bare
    ``\\r`` is dropped (Go ``encoding/csv`` Writer). So ``"a\\nb"`` comes back as it was stored; a ``\\r``
    that was stored is lost by the server's encoder and cannot be recovered.
    """
    text = column.dropna()
    if text.empty or not text.str.contains("\r", regex=False).any():
        return column
    return column.str.replace("\r\n", "\n", regex=False)


def _csv_row(line: bytes) -> list[str]:
    return next(csv.reader([line.decode("utf-8").rstrip("\r")]), [])


def _next_line(block: bytes, pos: int) -> tuple[bytes, int]:
    end = block.find(b"\n", pos)
    end = len(block) if end == -1 else end
    return block[pos:end], end + 1


def parse_block(block: bytes, where: str) -> AnnotatedTable:
    """Parse one block; raises :class:`BadRequestError` for an in-band Flux error table."""
    annotations: dict[str, list[str]] = {}
    pos = 0
    while block.startswith(b"#", pos):
        line, pos = _next_line(block, pos)
        row = _csv_row(line)
        annotations[row[0]] = row[1:]
    line, pos = _next_line(block, pos)
    columns = _csv_row(line)[1:]
    if columns[:2] == ["error", "reference"]:
        first, _ = _next_line(block, pos)
        values = _csv_row(first)[1:] + ["", ""]
        reference = f" (reference {values[1]})" if values[1] else ""
        message = f"InfluxDB at {where} failed the Flux query: {values[0]}{reference}"
        if is_resource_exhausted(values[0]):  # out of query slots or memory: a later try can succeed
            raise ServerBusyError(message)
        raise BadRequestError(message)
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise BadRequestError(
            f"InfluxDB at {where} returned a table with the column(s) {duplicated} twice: a tag or field "
            "shares its name with a column Flux adds (result, table, _start, _stop, _time, _value, "
            "_measurement, _field) and cannot be read through Flux; rename it or read it with api='v1'"
        )
    declared = annotations.get("#datatype") or ["string"] * len(columns)
    datatypes = dict(zip(columns, declared, strict=False))
    group = {c: flag == "true" for c, flag in zip(columns, annotations.get("#group", []), strict=False)}
    dtypes = {c: READ_DTYPES.get(datatypes.get(c, "string"), "str") for c in columns}
    data = block[pos:]
    if data.strip():
        rows = pd.read_csv(
            io.BytesIO(data),
            header=None,
            names=[_ANNOTATION_COLUMN, *columns],
            usecols=columns,
            dtype=dtypes,
            keep_default_na=False,
            na_values=[""],
            engine="c",
            **EXACT_FLOATS,
        )
    else:
        rows = pd.DataFrame({c: pd.Series([], dtype=dtypes[c]) for c in columns})
    for column, default in zip(columns, annotations.get("#default", []), strict=False):
        if default and dtypes[column] == "str":
            rows[column] = rows[column].fillna(default)
    for column in columns:
        if dtypes[column] == "str" and b"\r\n" in data:
            rows[column] = _undo_crlf(rows[column])
    return AnnotatedTable(columns=columns, datatypes=datatypes, group=group, rows=rows[columns])


def parse_annotated_csv(body: bytes, where: str = "the server") -> list[AnnotatedTable]:
    """Parse a whole ``/api/v2/query`` response (empty body → no tables)."""
    return [parse_block(block, where) for block in split_blocks(body)]


def pivoted_frame(tables: list[AnnotatedTable]) -> pd.DataFrame | None:
    """Combine the tables of a pivoted Flux result into the public frame; ``None`` if no rows.

    Group-key columns (other than Flux's own) are tags; the other columns except ``_time`` are fields.
    A field typed differently in different tables gets one merged type (string > float > integer).
    Rows are ordered by time; equal times keep the server's table (series-key) order, as in InfluxQL.
    """
    parts: list[pd.DataFrame] = []
    tag_keys: set[str] = set()
    kinds: dict[str, list[str]] = {}
    for table in tables:
        if table.rows.empty or "_time" not in table.rows:
            continue
        tags = table.tag_columns()
        fields = [c for c in table.field_columns() if c != "_time"]
        tag_keys.update(tags)
        for name in fields:
            kinds.setdefault(name, []).append(table.datatypes.get(name, "string").lower())
        part = table.rows[tags + fields].copy()
        part[_TIME_NS] = table.time_ns("_time")
        parts.append(part)
    if not parts:
        return None
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    field_types = {
        name: merge_field_types([k if k in CANONICAL_FIELD_TYPES else "string" for k in found])
        for name, found in kinds.items()
    }
    result = finish_frame(frame, _TIME_NS, sorted(tag_keys), field_types)
    return result.sort_values("time", kind="stable").reset_index(drop=True)
