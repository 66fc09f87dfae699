"""The window ledger: which run last replaced a measurement's window, and whether it finished.

InfluxDB has no transactions: replacing a window is a ``DELETE`` followed by batched writes, and a
reader that arrives in between sees an empty or half-written window. The IO manager therefore records
each replacement in a small measurement, :data:`LEDGER_MEASUREMENT`, in the same database — one point
per (measurement, partition window), at the window's start, overwritten in place:

===============  =======  ==================================================================
column           kind     meaning
===============  =======  ==================================================================
``target``       tag      the measurement whose window this is
``state``        field    ``"writing"`` from before the ``DELETE`` until the last batch is
                          stored, then ``"committed"``
``write_id``     field    a fresh id per replacement (changes on every rewrite)
``run_id``       field    the Dagster run that wrote it (empty outside Dagster)
``rows``         field    points stored in the window by that write (0 while writing)
``written_at``   field    wall-clock time of the entry, ns since the epoch
===============  =======  ==================================================================

Readers (:meth:`WindowLedger.read`) use it like a sequence lock: they read the entries of their window,
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

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
from dagster import DagsterInstance

from .errors import BadRequestError, InfluxAssetsError
from .line_protocol import time_column_to_ns
from .resource import InfluxDBResource
from .slice import MeasurementSlice
from .transport import KnownSchema

log = logging.getLogger("influx_assets.influxdb")

LEDGER_MEASUREMENT = "influx_assets_windows"
WRITING = "writing"
COMMITTED = "committed"
#: The ledger's columns as it writes them (reads need not ask the server).
LEDGER_SCHEMA = KnownSchema(
    tags=("target",),
    fields=(("state", "string"), ("write_id", "string"), ("run_id", "string"), ("rows", "integer"),
            ("written_at", "integer")),
)
#: Ledger time of an unpartitioned asset's single entry.
WHOLE_MEASUREMENT_NS = 0


class WindowNotCommittedError(InfluxAssetsError):
    """A window is being replaced by another writer, or its last writer stopped before finishing.

    Attributes:
        measurement: the measurement.
        run_id: the run that began the unfinished write (``""`` if not a Dagster run).
    """

    def __init__(self, message: str, measurement: str, run_id: str) -> None:
        super().__init__(message)
        self.measurement, self.run_id = measurement, run_id


@dataclass(frozen=True)
class LedgerEntry:
    """One window's latest write, as the ledger holds it."""

    start_ns: int
    state: str
    write_id: str
    run_id: str
    rows: int | None
    written_at_ns: int


class WindowLedger:
    """Records window replacements and reads windows only when no replacement is in progress.

    Args:
        influxdb: the connection (any API version; the ledger is ordinary points).
        wait_seconds: how long a reader waits for an unfinished write before failing.
        poll_seconds: first pause between attempts (doubles, at most 2 s).
    """

    def __init__(self, influxdb: InfluxDBResource, wait_seconds: float = 120.0, poll_seconds: float = 0.1) -> None:
        self.influxdb, self.wait_seconds, self.poll_seconds = influxdb, wait_seconds, poll_seconds

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
        current = self.entries(where)
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
            "target": where.measurement,
            "state": state,
            "write_id": write_id,
            "run_id": run_id,
            "rows": pd.array([rows_by_start[s] for s in starts], dtype="int64"),
            "written_at": time.time_ns(),
        })
        try:
            self.influxdb.write_frame(frame, LEDGER_MEASUREMENT, ["target"], database=where.database)
        except BadRequestError as error:
            if "retention" not in str(error):
                raise
            # An entry older than the database's retention (an unpartitioned asset's entry at 1970, a
            # window starting before the cutoff) is dropped by the server: that window goes untracked
            # and reads as it is, like raw data; the write of the data itself goes on.
            log.warning(
                "window ledger: the server dropped entries of %s older than its retention; those windows "
                "are not tracked (%s)", where.measurement, error,
            )

    # --- readers -----------------------------------------------------------------------------------
    def entries(self, where: MeasurementSlice) -> dict[int, LedgerEntry]:
        """The ledger entries of ``where``'s measurement inside its window, by window start (ns)."""
        ledger = MeasurementSlice(
            where.database, LEDGER_MEASUREMENT, where.start_ns, where.end_ns,
            tag_filters=(("target", where.measurement),), columns=tuple(LEDGER_SCHEMA.field_types),
        )
        frame = self.influxdb.read_window(ledger, LEDGER_SCHEMA)
        if frame.empty or "state" not in frame.columns:
            return {}
        starts = time_column_to_ns(frame["time"], "time")
        entries = {}
        for start, state, write_id, run_id, rows, written_at in zip(
            starts, frame["state"], frame["write_id"], _column(frame, "run_id"), _column(frame, "rows"),
            _column(frame, "written_at"), strict=True,
        ):
            entries[int(start)] = LedgerEntry(
                int(start), str(state), str(write_id), "" if pd.isna(run_id) else str(run_id),
                None if pd.isna(rows) else int(rows), 0 if pd.isna(written_at) else int(written_at),
            )
        return entries

    def read(self, where: MeasurementSlice, writer_ended: Callable[[str], bool] | None = None) -> pd.DataFrame:
        """Read ``where`` once no write of it is in progress and none happened while reading.

        Args:
            where: the window.
            writer_ended: tells whether the run with a given id has ended (Dagster's run status); an
                unfinished window whose writers have all ended fails at once instead of being waited for.

        Raises:
            WindowNotCommittedError: a write stayed unfinished for ``wait_seconds``, or its run ended.
        """
        deadline = time.monotonic() + self.wait_seconds
        pause = self.poll_seconds
        while True:
            before = self.entries(where)
            unfinished = [e for e in before.values() if e.state != COMMITTED]
            if not unfinished:
                frame = self.influxdb.read_window(where)
                if self.entries(where) == before:
                    return frame
            elif writer_ended is not None and all(e.run_id and writer_ended(e.run_id) for e in unfinished):
                raise self._not_committed(where, unfinished, ended=True)
            if time.monotonic() >= deadline:
                raise self._not_committed(where, unfinished or list(before.values()))
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 2.0)

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


def dagster_run_ended(instance: DagsterInstance) -> Callable[[str], bool]:
    """``writer_ended`` for :meth:`WindowLedger.read`: runs this instance knows and that have finished."""

    def ended(run_id: str) -> bool:
        run = instance.get_run_by_id(run_id)
        return run is not None and run.is_finished

    return ended


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame.columns else pd.Series([None] * len(frame), index=frame.index)


def window_starts_ns(starts: Sequence[int] | None) -> list[int]:
    """The ledger times of a write: the partition window starts, or the whole-measurement entry."""
    return list(starts) if starts else [WHOLE_MEASUREMENT_NS]
