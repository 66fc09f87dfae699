"""Parsing InfluxQL's CSV responses (``Accept: application/csv``) into typed frames, as they stream in.

A response looks like ``name,tags,time,<tags and fields...>`` followed by one line per point. With
``chunked=true`` some versions repeat the header line at chunk boundaries; repeats are dropped while
streaming. The ``name`` (measurement) and ``tags`` (empty) columns are never used and never
materialized; the header's own names are replaced positionally, so a tag or field that is itself
called ``name`` or ``tags`` reads back as such instead of colliding with them.
"""

import csv
import io
from collections.abc import Iterable, Iterator

import pandas as pd

from influx_assets.influxdb.client.pandas_versions import EXACT_FLOATS
from influx_assets.influxdb.client.schema import TIME_COLUMN, finish_frame, read_dtypes

#: Stand-ins for the response's own ``name`` and ``tags`` columns (not valid InfluxDB names).
_UNUSED = ("\x00name", "\x00tags")


def parse_influxql_csv(body: bytes, tag_keys: list[str], field_types: dict[str, str]) -> pd.DataFrame | None:
    """Parse a whole response body; None when it holds no header (no points)."""
    return parse_influxql_csv_stream([body], tag_keys, field_types)


def parse_influxql_csv_stream(
    blocks: Iterable[bytes], tag_keys: list[str], field_types: dict[str, str]
) -> pd.DataFrame | None:
    """Parse a response given as consecutive byte blocks, reading them as the parser needs them.

    Returns None when the response holds no header (the slice has no points). Missing values and
    empty strings both read as null.
    """
    blocks = iter(blocks)
    head = b""
    for block in blocks:
        head += block
        if b"\n" in head:
            break
    end = head.find(b"\n")
    header = head if end < 0 else head[: end + 1]
    if not header.strip():
        return None
    columns = next(csv.reader([header.decode("utf-8").rstrip("\r\n")]))
    names = [*_UNUSED, *columns[2:]] if columns[:2] == ["name", "tags"] else columns
    body = _ReadableBlocks(_without_repeats(header, head[len(header):], blocks))
    frame = pd.read_csv(
        io.BufferedReader(body, buffer_size=1 << 20),
        header=None, names=names, usecols=lambda c: c not in _UNUSED,
        dtype=read_dtypes(tag_keys, field_types) | {"time": "int64"},
        keep_default_na=False, na_values=[""], engine="c", **EXACT_FLOATS,
    )
    return finish_frame(frame, TIME_COLUMN, tag_keys, field_types)


def _without_repeats(header: bytes, rest: bytes, blocks: Iterator[bytes]) -> Iterator[bytes]:
    """The body after the header line, with every later copy of the header line removed."""
    keep = len(header) - 1  # a copy may straddle two blocks: hold back what could be its start
    pending = rest
    for block in blocks:
        data = (pending + block).replace(header, b"")
        pending = data[len(data) - keep:] if len(data) > keep else data
        if len(data) > keep:
            yield data[: len(data) - keep]
    tail = pending.replace(header, b"")
    if tail:
        yield tail


class _ReadableBlocks(io.RawIOBase):
    """A read-only file over an iterator of byte blocks (what ``pandas.read_csv`` pulls from)."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks
        self._current = memoryview(b"")

    def readable(self) -> bool:
        """Always True: this file is only ever read."""
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        """Copy the next bytes into ``buffer``; 0 at the end."""
        while not len(self._current):
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._current = memoryview(block)
        count = min(len(buffer), len(self._current))
        buffer[:count] = self._current[:count]
        self._current = self._current[count:]
        return count
