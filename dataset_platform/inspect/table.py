"""Rows as an aligned text table (``tabulate``): floats rounded, long cells cut, NULL shown."""

from __future__ import annotations

import datetime as _dt
import decimal
import math
from collections.abc import Sequence

#: widest cell shown in a table (longer ones end with an ellipsis)
MAX_CELL = 48


def fmt_float(x: float) -> str:
    """A float as a person reads it: 4 decimals at most, fewer when they are zeros; scientific
    notation only for magnitudes below 0.001 or from 1e12."""
    if math.isnan(x) or math.isinf(x):
        return str(x)
    if x == 0:
        return "0"
    if abs(x) < 1e-3 or abs(x) >= 1e12:
        return f"{x:.3e}"
    s = f"{x:.4f}".rstrip("0").rstrip(".")
    return s if s not in ("-0", "") else "0"


def cell(value, max_width: int = MAX_CELL) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return fmt_float(value)
    if isinstance(value, decimal.Decimal):
        return fmt_float(float(value))
    if isinstance(value, _dt.datetime):
        s = value.isoformat(sep=" ")
    elif isinstance(value, bytes | bytearray):
        s = f"<{len(value)} bytes>"
    else:
        s = str(value)
    s = s.replace("\r", " ").replace("\n", " ⏎ ").replace("\t", " ")
    return s if len(s) <= max_width else s[: max_width - 1] + "…"


def is_number(value) -> bool:
    return isinstance(value, int | float | decimal.Decimal) and not isinstance(value, bool)


def render(header: Sequence[str], rows: Sequence[Sequence], max_width: int = MAX_CELL) -> str:
    """An aligned table; numeric columns right-aligned."""
    from tabulate import tabulate

    numeric = [bool(rows) and all(r[i] is None or is_number(r[i]) for r in rows) for i in range(len(header))]
    body = [[cell(v, max_width) for v in r] for r in rows]
    return tabulate(body, headers=[cell(h, max_width) for h in header], tablefmt="simple", disable_numparse=True,
                    colalign=["right" if n else "left" for n in numeric])
