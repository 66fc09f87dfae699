"""Arrow-built text of line-protocol columns: the rendering half of :mod:`.line_protocol`.

Each column of a validated frame becomes a renderer that, given row positions, returns the column's
line-protocol text for those rows as an Arrow string array (null where the row has no value); the
encoder joins them into lines with Arrow string kernels, one batch at a time. Internal to the
encoder: the rules (escaping, what is rejected) live in :mod:`.line_protocol`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: 64-bit offsets, so no frame is too large to render.
TEXT = pa.large_string()


def scalar(value: str) -> pa.Scalar:
    """A string scalar of :data:`TEXT` type (Arrow kernels want one string type throughout)."""
    return pa.scalar(value, TEXT)


def body(lines: pa.Array) -> bytes:
    """The bytes of newline-terminated lines without the final newline (no per-line copy)."""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset : lines.offset + len(lines) + 1]
    return memoryview(lines.buffers()[2])[int(offsets[0]) : int(offsets[-1]) - 1].tobytes()


@dataclass(frozen=True)
class Distinct:
    """Rows rendered through their distinct values: ``texts[codes[row]]``, null where the code is -1."""

    codes: np.ndarray
    texts: pa.Array

    def render(self, rows: np.ndarray) -> pa.Array:
        codes = self.codes[rows]
        return self.texts.take(pa.array(codes, mask=codes < 0))


def by_distinct_value(values: pd.Series, render: Callable[[object], str]) -> Distinct:
    """Apply ``render`` once per distinct non-null value; null positions render as null."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return Distinct(codes, pa.array([render(u) for u in uniques], type=TEXT))


@dataclass(frozen=True)
class Numbers:
    """A numeric or boolean field: ``,key=`` plus the formatted value, null where absent."""

    prefix: str
    values: np.ndarray
    present: np.ndarray
    kind: str  # "float", "integer" or "boolean"

    def render(self, rows: np.ndarray) -> pa.Array:
        values, absent = self.values[rows], ~self.present[rows]
        if self.kind == "float":
            return pc.binary_join_element_wise(scalar(self.prefix), float_text(values, absent), scalar(""))
        if self.kind == "integer":
            digits = pc.cast(pa.array(values, mask=absent), TEXT)
            return pc.binary_join_element_wise(scalar(self.prefix), digits, scalar("i"), scalar(""))
        flags = pa.array(values, mask=absent)
        return pc.if_else(flags, scalar(self.prefix + "true"), scalar(self.prefix + "false"))


def float_text(values: np.ndarray, absent: np.ndarray) -> pa.Array:
    """``repr()`` of every float (null where absent), mostly computed by Arrow.

    ``repr`` is the shortest text that round-trips, like Go's strconv 'g' -1 (and numpy's ``str``).
    Arrow's cast writes the same shortest digits about 4x faster but spells some numbers differently
    (``40`` for ``40.0``, ``1e-9`` for ``1e-09``, exponents from other thresholds). Its text is kept
    only where it has a decimal point and no exponent and ``repr`` is positional too
    (``1e-4 <= |x| < 1e16``; no two shortest candidates tie there); every other value takes ``repr``.
    """
    shortest = pc.cast(pa.array(values, mask=absent), TEXT)
    positional = pc.and_(pc.match_substring(shortest, "."), pc.invert(pc.match_substring(shortest, "e")))
    magnitude = np.abs(values)
    keep = (magnitude >= 1e-4) & (magnitude < 1e16)
    keep &= pc.fill_null(positional, False).to_numpy(zero_copy_only=False)
    redo = ~(keep | absent)
    if redo.any():
        exact = pa.array([repr(v) for v in values[redo].tolist()], type=TEXT)
        shortest = pc.replace_with_mask(shortest, pa.array(redo), exact)
    return shortest


def float_renderer(prefix: str, values: np.ndarray, present: np.ndarray) -> Distinct | Numbers:
    """Float fields: formatted once per distinct value when values repeat (sensor precision), else per row.

    Distinct values are found on the bit patterns, so ``-0.0`` and ``0.0`` stay apart. Which way is
    taken only changes the speed, never the text.
    """
    bits = values.view(np.int64)
    sample = bits[:: max(1, len(bits) // 4096)]
    if np.unique(sample).size * 2 > len(sample):
        return Numbers(prefix, values, present, "float")
    codes, distinct = pd.factorize(bits)
    codes = np.where(present, codes, -1)
    texts = [prefix + repr(v) for v in distinct.view(np.float64).tolist()]
    return Distinct(codes, pa.array(texts, type=TEXT))
