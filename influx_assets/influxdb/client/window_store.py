"""``WindowStore``: the one gateway that replaces and reads a slice, with the window ledger.

Everything that touches a window goes through it — the IO manager's writes and loads, the pipeline's
checks, tools — so that the ledger protocol below lives in one place. No Dagster imports: whether a
writer's run has ended is a callable passed in (the Dagster resource passes one backed by the instance).

The window ledger: which run last replaced a measurement's window, and whether it finished.

InfluxDB has no transactions: replacing a window is a ``DELETE`` followed by batched writes, and a
reader that arrives in between sees an empty or half-written window. The IO manager therefore records
each replacement in a small measurement, :data:`LEDGER_MEASUREMENT`, in the same database — one point
per (slice, partition window), at the window's start, overwritten in place:

===============  =======  ==================================================================
column           kind     meaning
===============  =======  ==================================================================
``measurement``  tag      the measurement (readers select their measurement's entries by it)
``target``       tag      the slice whose window this is: the measurement (percent-escaped), plus
                          ``?tag=value&...`` when the slice is one tag value's series (a static key)
``state``        field    ``"writing"`` from before the ``DELETE`` until the last batch is
                          stored, then ``"committed"``
``write_id``     field    a fresh id per replacement (changes on every rewrite)
``run_id``       field    the Dagster run that wrote it (empty outside Dagster)
``rows``         field    points stored in the window by that write (0 while writing)
``written_at``   field    wall-clock time of the entry, ns since the epoch
===============  =======  ==================================================================

Readers (:meth:`WindowStore.read`) use it like a sequence lock: they read the entries of their window,
then the data, then the entries again, and accept the data only if no entry was ``writing`` and none
changed meanwhile; otherwise they wait (doubling the pause) and try again, and after ``wait_seconds``
fail with :class:`WindowNotCommittedError`. So a stage never consumes a window another run is
replacing, or one whose writer died between its ``DELETE`` and its last batch: that window stays
``writing`` until it is materialized again. Windows with no entry are read as they are: raw data
written by devices, and windows whose entry the server dropped as older than the database's retention
(an unpartitioned asset's entry lives at 1970, so in a database with a finite retention policy those
assets go untracked). The ledger is also the audit trail: which run wrote each window, when, how many
rows.

Writers must not overlap on one window for the lock to be exact — the pipeline's per-stage pools
ensure that for its own runs. Overlapping writers of one window (unpooled assets, runs of separate
Dagster instances) still leave one copy of identical frames, since a point is keyed by series and time;
but if they wrote *different* frames the window can hold the union of both under a ``committed``
entry. A writer that finds another writer's id when it is about to commit leaves the entry to that
writer and warns.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from influx_assets.influxdb.client.connection import InfluxDBConnection
from influx_assets.influxdb.client.errors import BadRequestError, PartialWriteError
from influx_assets.influxdb.client.line_protocol import EncodedFrame, time_column_to_ns
from influx_assets.influxdb.client.read_cache import WindowReadCache
from influx_assets.influxdb.client.slice import MeasurementSlice
from influx_assets.influxdb.client.ledger import (  # noqa: F401 - the ledger's names, re-exported
    COMMITTED,
    LEDGER_MEASUREMENT,
    LEDGER_SCHEMA,
    WHOLE_MEASUREMENT_NS,
    WRITING,
    LedgerEntry,
    WindowNotCommittedError,
    column_or_nulls,
    ledger_target,
    overlaps,
)

log = logging.getLogger("influx_assets.influxdb")

@dataclass(frozen=True)
class Replacement:
    """What :meth:`WindowStore.replace` did.

    Attributes:
        points_written: points stored.
        rows_without_fields: rows that could not be stored (every field null).
        empty_tag_values: null or empty tag values omitted.
        deleted: whether a ``DELETE`` was sent (the slice held points before).
        rows_per_window: points stored per window start (ns).
        taken: window starts another writer began replacing meanwhile (left to it).
        seconds: wall time of the whole replacement.
    """

    points_written: int
    rows_without_fields: int
    empty_tag_values: int
    deleted: bool
    rows_per_window: dict[int, int]
    taken: list[int]
    seconds: float


def rows_per_window(starts: Sequence[int], times_ns: np.ndarray) -> dict[int, int]:
    """Points per window, given the sorted window starts and the stored points' times (ns)."""
    if len(starts) == 1:  # one partition, or an unpartitioned asset (whose points may precede 1970)
        return {starts[0]: len(times_ns)}
    owner = np.searchsorted(np.asarray(starts, dtype="int64"), times_ns, side="right") - 1
    counts = np.bincount(owner, minlength=len(starts)) if len(owner) else np.zeros(len(starts), int)
    return {start: int(n) for start, n in zip(starts, counts, strict=True)}


class WindowStore:
    """Replaces and reads slices; a reader never consumes a window a writer has not finished.

    Args:
        connection: the server (any API version; the ledger is ordinary points).
        wait_seconds: how long a reader waits for an unfinished write before failing.
        poll_seconds: first pause between attempts (doubles, at most 2 s).
        writer_ended: tells whether the run with a given id has ended; an unfinished window whose
            writers have all ended fails at once instead of being waited for.
        cache: frames read earlier under the same ledger state (:mod:`.read_cache`); None reads every
            window from the server.

    Examples:
        >>> store = WindowStore(InfluxDBConnection(ConnectionSettings("http://127.0.0.1:8086")))  # doctest: +SKIP
        >>> store.read(store.connection.slice("sensor_raw", start, end))  # doctest: +SKIP
    """

    def __init__(
        self, connection: InfluxDBConnection, wait_seconds: float = 120.0, poll_seconds: float = 0.1,
        writer_ended: Callable[[str], bool] | None = None, cache: WindowReadCache | None = None,
    ) -> None:
        self.connection, self.wait_seconds, self.poll_seconds = connection, wait_seconds, poll_seconds
        self.writer_ended, self.cache = writer_ended, cache

    # --- the whole replacement -----------------------------------------------------------------------
    def replace(
        self, where: MeasurementSlice, encoded: EncodedFrame, times_ns: np.ndarray, window_starts: Sequence[int],
        run_id: str = "",
    ) -> Replacement:
        """Replace the slice's points with ``encoded``: ledger ``writing``, delete, write, ledger ``committed``.

        ``times_ns`` are the frame's row times (ns) and ``window_starts`` the ledger times of the
        windows the slice covers (partition starts, or :data:`WHOLE_MEASUREMENT_NS`). The caller has
        checked that every row lies inside the slice.
        """
        started = time.perf_counter()
        self.connection.prepare_database(where.database)
        write_id = self.begin(where, window_starts, run_id)
        deleted = self.connection.delete_window(where)
        result = self.connection.write_encoded(encoded, where.database)
        counts = rows_per_window(list(window_starts), times_ns[encoded.written])
        taken = self.commit(where, counts, write_id, run_id)
        return Replacement(
            points_written=result.points_written, rows_without_fields=result.rows_without_fields,
            empty_tag_values=result.empty_tag_values, deleted=deleted, rows_per_window=counts, taken=taken,
            seconds=time.perf_counter() - started,
        )

    # --- writers -----------------------------------------------------------------------------------
    def begin(self, where: MeasurementSlice, starts_ns: Sequence[int], run_id: str = "") -> str:
        """Mark the windows starting at ``starts_ns`` as being written; returns this write's id."""
        write_id = uuid.uuid4().hex
        self._record(where, {start: 0 for start in starts_ns}, WRITING, write_id, run_id)
        return write_id

    def commit(
        self, where: MeasurementSlice, rows_by_start: Mapping[int, int], write_id: str, run_id: str = ""
    ) -> list[int]:
        """Mark the windows committed, except those another writer began since; returns those skipped."""
        current = self._own_entries(where)
        taken = [s for s in rows_by_start if s in current and current[s].write_id != write_id]
        mine = {s: n for s, n in rows_by_start.items() if s not in taken}
        if mine:
            self._record(where, mine, COMMITTED, write_id, run_id)
        return taken

    def _record(
        self, where: MeasurementSlice, rows_by_start: Mapping[int, int], state: str, write_id: str, run_id: str
    ) -> None:
        starts = list(rows_by_start)
        frame = pd.DataFrame({
            "time": pd.to_datetime(starts, unit="ns", utc=True),
            "measurement": where.measurement,
            "target": ledger_target(where),
            "state": state,
            "write_id": write_id,
            "run_id": run_id,
            "rows": pd.array([rows_by_start[s] for s in starts], dtype="int64"),
            "written_at": time.time_ns(),
        })
        try:
            self.connection.write_frame(frame, LEDGER_MEASUREMENT, ["measurement", "target"], database=where.database)
        except BadRequestError as error:
            if not (isinstance(error, PartialWriteError) and "retention" in error.reason):
                raise
            # An entry older than the database's retention (an unpartitioned asset's entry at 1970, a
            # window starting before the cutoff) is dropped by the server: that window goes untracked
            # and reads as it is, like raw data; the write of the data itself goes on.
            log.warning(
                "window ledger: the server dropped entries of %s older than its retention; those windows "
                "are not tracked (%s)", where.measurement, error,
            )

    # --- readers -----------------------------------------------------------------------------------
    def _ledger_rows(self, where: MeasurementSlice, target: str | None) -> pd.DataFrame:
        filters = (("measurement", where.measurement),) + ((("target", target),) if target is not None else ())
        ledger = MeasurementSlice(
            where.database, LEDGER_MEASUREMENT, where.start_ns, where.end_ns, tag_filters=filters,
            columns=tuple(LEDGER_SCHEMA.field_types),
        )
        return self.connection.read_window(ledger, LEDGER_SCHEMA)

    def _own_entries(self, where: MeasurementSlice) -> dict[int, LedgerEntry]:
        """The entries of exactly this slice's target (what a writer commits against)."""
        return {start: entry for (target, start), entry in self._parse(self._ledger_rows(where, ledger_target(where))).items()}

    def overlapping_entries(self, where: MeasurementSlice) -> dict[tuple[str, int], LedgerEntry]:
        """Entries of every slice of the measurement that can share points with ``where``, by target and start.

        A whole-window writer's entry covers a one-tag reader and the other way round.
        """
        rows = self._ledger_rows(where, None)  # every target of the measurement: a few points per window
        return {key: entry for key, entry in self._parse(rows).items() if overlaps(key[0], where)}

    def entries(self, where: MeasurementSlice) -> dict[int, LedgerEntry]:
        """:meth:`overlapping_entries` by window start: where several exist, the unfinished (or newest) one."""
        relevant: dict[int, LedgerEntry] = {}
        for (_target, start), entry in self.overlapping_entries(where).items():
            kept = relevant.get(start)
            if kept is None or (entry.state != COMMITTED, entry.written_at_ns) > (kept.state != COMMITTED, kept.written_at_ns):
                relevant[start] = entry
        return relevant

    @staticmethod
    def _parse(frame: pd.DataFrame) -> dict[tuple[str, int], LedgerEntry]:
        if frame.empty or "state" not in frame.columns:
            return {}
        starts = time_column_to_ns(frame["time"], "time")
        entries = {}
        for target, start, state, write_id, run_id, rows, written_at in zip(
            column_or_nulls(frame, "target"), starts, frame["state"], frame["write_id"], column_or_nulls(frame, "run_id"),
            column_or_nulls(frame, "rows"), column_or_nulls(frame, "written_at"), strict=True,
        ):
            entries[(str(target), int(start))] = LedgerEntry(
                int(start), str(state), str(write_id), "" if pd.isna(run_id) else str(run_id),
                None if pd.isna(rows) else int(rows), 0 if pd.isna(written_at) else int(written_at),
            )
        return entries

    def read(self, where: MeasurementSlice) -> pd.DataFrame:
        """Read ``where`` once no write of it is in progress and none happened while reading.

        With a cache, a window whose ledger entries are unchanged since an earlier read is served from
        it (see :mod:`.read_cache`): what the server returned after the window's latest write.

        Raises:
            WindowNotCommittedError: a write stayed unfinished for ``wait_seconds``, or its run ended.
        """
        deadline = time.monotonic() + self.wait_seconds
        pause = self.poll_seconds
        while True:
            before = self.overlapping_entries(where)  # every target: a change to any of them is a change
            unfinished = [e for e in before.values() if e.state != COMMITTED]
            if not unfinished:
                cached = None if self.cache is None else self.cache.get(self._identity, where, before)
                if cached is not None:
                    return cached
                frame = self.connection.read_window(where)
                if self.overlapping_entries(where) == before:
                    if self.cache is not None:
                        self.cache.put(self._identity, where, before, frame)
                    return frame
            elif self.writer_ended is not None and all(e.run_id and self.writer_ended(e.run_id) for e in unfinished):
                raise self._not_committed(where, unfinished, ended=True)
            if time.monotonic() >= deadline:
                raise self._not_committed(where, unfinished or list(before.values()))
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 2.0)

    @property
    def _identity(self) -> object:
        """Whose reads may share cached frames: the same server, database and credentials (never shown)."""
        return self.connection.settings

    def _not_committed(
        self, where: MeasurementSlice, unfinished: list[LedgerEntry], ended: bool = False
    ) -> WindowNotCommittedError:
        entry = min(unfinished, key=lambda e: e.start_ns) if unfinished else None
        run_id = entry.run_id if entry else ""
        began = (
            pd.Timestamp(entry.written_at_ns, unit="ns", tz="UTC").isoformat(timespec="seconds") if entry else "?"
        )
        at = "" if entry is None else " at " + pd.Timestamp(entry.start_ns, unit="ns", tz="UTC").isoformat()
        by = f"run {run_id}" if run_id else "a writer outside Dagster"
        if ended:
            return WindowNotCommittedError(
                f"the window{at} of measurement {where.measurement!r} is incomplete: {by} began replacing it "
                f"at {began} and ended without finishing ({len(unfinished)} window(s) unfinished); "
                "materialize the partition again.",
                where.measurement, run_id,
            )
        return WindowNotCommittedError(
            f"the window{at} of measurement {where.measurement!r} was not committed within "
            f"{self.wait_seconds:g} s: {by} began replacing it at {began} and has not finished "
            f"({len(unfinished)} window(s) unfinished). Another run may still be writing it, or that run "
            "stopped between its DELETE and its last batch; if no run is writing it, materialize the "
            "partition again.",
            where.measurement, run_id,
        )
