"""``WindowReadCache``: frames read through the window ledger, reused while the ledger shows no write.

A pipeline run reads each stage's window several times: the stage's own read-back check, its other
checks, the downstream stages' loads, the reconciliation checks of later stages. Every one of those
reads returns the same points unless a writer replaced the window in between — and every writer that
goes through :class:`.window_store.WindowStore` changes the window's ledger entry (a fresh
``write_id``) before it deletes anything. So a frame the server returned under ledger state *S* is
still what the server holds as long as the ledger still shows *S*: :meth:`.WindowStore.read` asks the
ledger (one small query, as every read already does) and, when nothing changed, serves the frame
from here instead of transferring the window again.

What the cache trusts, and when it stays out of the way:

* Only windows the ledger tracks are served from it: the snapshot must be non-empty, every entry
  ``committed``, and the slice must begin exactly at a window's entry (so a rewrite of any window the
  slice overlaps changes an entry inside the snapshot). Raw data written by devices has no entries and
  is always read from the server.
* A measurement the IO manager writes must not also be written or deleted by other means (a client
  that bypasses the ledger); such a change is invisible to the ledger and hence to the cache — and to
  the readers' sequence lock, which already relies on the same rule.
* Every frame here was returned by the server; nothing a writer *sent* is ever served as if read.
* A request for a slice inside a cached one (a range run's span, then each window of it) is cut from
  the cached frame when the ledger entries of the requested slice are unchanged.
* Callers get an independent copy (shallow under pandas' copy-on-write, deep before pandas 3); the cache keeps at most ``max_bytes`` (least recently used go first). A
  budget of 0 disables it. It lives in one process: with the ``in_process`` executor one run's steps
  share it, with a multi-process executor each step starts empty.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, replace

import pandas as pd

from influx_assets.influxdb.client.pandas_versions import independent_copy
from influx_assets.influxdb.client.ledger import COMMITTED, WHOLE_MEASUREMENT_NS, LedgerEntry
from influx_assets.influxdb.client.slice import MeasurementSlice

#: A ledger snapshot as :meth:`.WindowStore.overlapping_entries` returns it: (target, start) -> entry.
Snapshot = Mapping[tuple[str, int], LedgerEntry]

#: Default budget of the process-wide cache.
DEFAULT_READ_CACHE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class _Cached:
    where: MeasurementSlice
    snapshot: dict[tuple[str, int], LedgerEntry]
    frame: pd.DataFrame
    nbytes: int


def cacheable(where: MeasurementSlice, snapshot: Snapshot) -> bool:
    """Whether a frame read under ``snapshot`` may be reused: tracked, committed, window-aligned."""
    first = WHOLE_MEASUREMENT_NS if where.is_unbounded else where.start_ns
    return all(e.state == COMMITTED for e in snapshot.values()) and any(start == first for _t, start in snapshot)


def _within(snapshot: Snapshot, where: MeasurementSlice) -> dict[tuple[str, int], LedgerEntry]:
    return {key: entry for key, entry in snapshot.items() if where.start_ns <= key[1] < where.end_ns}


def _cut(frame: pd.DataFrame, where: MeasurementSlice) -> pd.DataFrame:
    times = frame["time"]
    start = pd.Timestamp(where.start_ns, unit="ns", tz="UTC")
    end = pd.Timestamp(where.end_ns, unit="ns", tz="UTC")
    return frame.loc[(times >= start) & (times < end)].reset_index(drop=True)


class WindowReadCache:
    """Frames keyed by (connection identity, slice), valid while the slice's ledger entries are unchanged.

    Args:
        max_bytes: memory budget (``DataFrame.memory_usage(deep=True)``); 0 disables the cache.
    """

    def __init__(self, max_bytes: int = DEFAULT_READ_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._frames: OrderedDict[tuple[Hashable, MeasurementSlice], _Cached] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, identity: Hashable, where: MeasurementSlice, snapshot: Snapshot) -> pd.DataFrame | None:
        """A copy of the points of ``where`` read under exactly ``snapshot``, or None."""
        if self.max_bytes <= 0 or not cacheable(where, snapshot):
            return None
        with self._lock:
            found = self._frames.get((identity, where))
            if found is not None and found.snapshot == snapshot:
                self._frames.move_to_end((identity, where))
                self.hits += 1
                return independent_copy(found.frame)
            for (owner, cached_where), cached in reversed(self._frames.items()):
                if owner == identity and self._contains(cached_where, where) and _within(cached.snapshot, where) == snapshot:
                    part = _cut(cached.frame, where)
                    if len(part):  # an empty window is read from the server, whose empty frame is the reference
                        self.hits += 1
                        return part
            self.misses += 1
        return None

    @staticmethod
    def _contains(outer: MeasurementSlice, inner: MeasurementSlice) -> bool:
        return outer.start_ns <= inner.start_ns and inner.end_ns <= outer.end_ns and outer == replace(
            inner, start_ns=outer.start_ns, end_ns=outer.end_ns
        )

    def put(self, identity: Hashable, where: MeasurementSlice, snapshot: Snapshot, frame: pd.DataFrame) -> None:
        """Keep a copy of ``frame``, read from the server under ``snapshot`` (if it may be reused and fits)."""
        if self.max_bytes <= 0 or not cacheable(where, snapshot) or "time" not in frame.columns:
            return
        nbytes = int(frame.memory_usage(deep=True, index=True).sum())
        if nbytes > self.max_bytes:
            return
        entry = _Cached(where, dict(snapshot), independent_copy(frame), nbytes)
        with self._lock:
            old = self._frames.pop((identity, where), None)
            self._bytes -= old.nbytes if old else 0
            self._frames[(identity, where)] = entry
            self._bytes += nbytes
            while self._bytes > self.max_bytes:
                _key, evicted = self._frames.popitem(last=False)
                self._bytes -= evicted.nbytes

    def clear(self) -> None:
        """Forget every frame."""
        with self._lock:
            self._frames.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return self._bytes


_shared = WindowReadCache()


def shared_read_cache(max_bytes: int) -> WindowReadCache:
    """The process-wide cache (one per process, so that every step of an in-process run shares it).

    ``max_bytes`` sets its budget (the latest caller's wins; 0 disables it).
    """
    if _shared.max_bytes != max_bytes:
        with _shared._lock:
            _shared.max_bytes = max_bytes
        if max_bytes <= 0:
            _shared.clear()
    return _shared
