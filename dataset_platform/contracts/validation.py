"""Pydantic validation errors as a person reads them: where, what is expected, what was given.

Shared by ``sources.yaml`` (``config.py``) and the crawl spec (``contracts/crawl.py``), e.g.::

    max_pages: input should be greater than or equal to 1, got 0
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import ValidationError
from pydantic_core import ErrorDetails


def location(loc: Iterable[int | str]) -> str:
    """``('sources', 0, 'max_pages')`` -> ``sources[0].max_pages``; ``()`` -> ``(top level)``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out or "(top level)"


def explain(err: ErrorDetails) -> str:
    """What one error says: pydantic's message (or our validator's) and the value given, unless
    that is a list or mapping (the message names the bad item)."""
    t = err["type"]
    if t == "extra_forbidden":
        return "unknown field"
    if t == "missing":
        return "required field is missing"
    msg = re.sub(r"^Value error, ", "", err["msg"])
    got = err.get("input")
    if isinstance(got, (dict, list)):
        return msg
    return f"{msg[0].lower() + msg[1:]}, got {got!r}"


def describe(e: ValidationError) -> str:
    """Every error of ``e`` as ``<location>: <explanation>`` (the explanation alone for an error
    of the whole object), joined by ``; ``."""
    return "; ".join(f"{location(err['loc'])}: {explain(err)}" if err["loc"] else explain(err) for err in e.errors())
