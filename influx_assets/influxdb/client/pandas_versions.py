"""What differs between the pandas versions this package admits (``pandas>=2.2``), in one place.

- ``read_csv``'s default float parser is round-trip exact only from pandas 3.1 (2.2.x changes ~40 % of
  random doubles by an ULP or more, 3.0.0 ~25 %); before 3.1 ``float_precision="round_trip"`` is exact,
  and from 3.1 that argument is deprecated. :data:`EXACT_FLOATS` is the right keyword for each.
- ``Series.astype("str")`` keeps nulls as NaN from pandas 3.0; pandas 2.x turns them into the string
  ``'nan'``. :func:`as_text` keeps them null on both.
- Copy-on-write is always on from pandas 3.0 (opt-in before): there a shallow copy is an independent
  frame, on 2.x only a deep copy is. :func:`independent_copy` gives the cheapest safe one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_VERSION = tuple(int(part) for part in pd.__version__.split(".")[:2] if part.isdigit())

#: Keyword arguments that make ``pandas.read_csv`` parse every double exactly on this pandas.
EXACT_FLOATS: dict[str, str] = {} if _VERSION >= (3, 1) else {"float_precision": "round_trip"}
#: True where ``astype("str")`` keeps nulls (pandas 3's string dtype).
STR_KEEPS_NULLS = _VERSION >= (3, 0)
#: The dtype :func:`as_text` (and every read of a tag or string field) gives on this pandas.
TEXT_DTYPE = "str" if STR_KEEPS_NULLS else "object"


def independent_copy(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose changes never reach ``frame`` and the other way round (shallow under copy-on-write)."""
    copy_on_write = _VERSION >= (3, 0) or bool(pd.options.mode.copy_on_write is True)
    return frame.copy(deep=not copy_on_write)


def as_text(column: pd.Series) -> pd.Series:
    """``column`` as strings with its nulls still null (pandas' ``str`` dtype, or object before 3.0)."""
    if STR_KEEPS_NULLS:
        return column.astype("str")
    missing = column.isna().to_numpy()
    text = column.astype(str).astype(object)
    if missing.any():
        text[missing] = np.nan
    return text
