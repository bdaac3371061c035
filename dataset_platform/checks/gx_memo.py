"""GX's validation without its repeated work: two memos over pure computations of GX 1.24.

On a refresh's new part (a few hundred rows) a suite's validation is almost all fixed cost, and
most of that is GX rebuilding the same values (profiled over the 12 suites of a +1 % refresh at
100k documents, ``bench/gx_overhead.py``):

* ``Expectation.configuration`` is a property that converts the whole pydantic model to a new
  ``ExpectationConfiguration`` on every access, and GX reads it once per domain, success and
  runtime key of every expectation while building the metric graph and again when judging the
  metrics: ~21 000 conversions for 11 validations, 45 % of GX's time. Within one of our
  validations (:func:`memoised_configurations`, entered by ``gx_suites._validate_batches`` on its
  own thread) the expectation objects GX builds are not changed, so each is converted once;
  outside it, and on any other thread, the property is GX's own.
* ``IDDict.to_id`` (the id of every metric's domain and value kwargs) converts its dict to JSON
  with GX's generic serialiser, then hashes it; the same few dicts come again and again. The id
  depends only on the dict's content: for content made of plain values (str, int, float, bool,
  None, and lists, tuples and dicts of them, keys str) it is kept by that content, with its type
  (``1``, ``1.0``, ``True`` and ``"1"`` are different keys), in a bounded dict; anything else
  goes to GX's method.

Both are installed once per process (:func:`install`, called where GX's batch definition is
built) and change no result: ``tests/test_gx_memo.py`` validates every suite of
``expectations/`` with and without them and compares GX's whole results.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

_LOCAL = threading.local()
_INSTALLED: list[Any] = []  # (the originals, once installed)
_IDS: dict[Any, Any] = {}
#: ids kept before the memo starts again (a validation needs a few hundred)
MAX_IDS = 20_000
_PLAIN = (str, int, bool, type(None))


def install() -> None:
    """Put both memos in place (once per process; GX imported)."""
    if _INSTALLED:
        return
    from great_expectations.core.id_dict import IDDict
    from great_expectations.expectations.expectation import Expectation

    configuration = Expectation.__dict__["configuration"]
    to_id = IDDict.to_id
    if not isinstance(configuration, property):  # another GX than the one these memos were measured on
        return

    def memo_configuration(self):
        memo = getattr(_LOCAL, "memo", None)
        if memo is None:
            return configuration.fget(self)
        hit = memo.get(id(self))  # (the memo holds the object too: its id is not reused meanwhile)
        if hit is None:
            hit = memo[id(self)] = (self, configuration.fget(self))
        return hit[1]

    def memo_to_id(self, id_keys=None, id_ignore_keys=None):
        if id_keys is not None or id_ignore_keys is not None:
            return to_id(self, id_keys, id_ignore_keys)
        key = _content(self)
        if key is None:
            return to_id(self)
        key = (type(self), frozenset(self._id_ignore_keys), key)
        found = _IDS.get(key)
        if found is None:
            if len(_IDS) >= MAX_IDS:
                _IDS.clear()
            found = _IDS[key] = to_id(self)
        return found

    Expectation.configuration = property(memo_configuration, doc=configuration.__doc__)
    IDDict.to_id = memo_to_id
    _INSTALLED.append((configuration, to_id))


def uninstall() -> None:
    """GX's own methods again (tests compare both ways)."""
    if not _INSTALLED:
        return
    from great_expectations.core.id_dict import IDDict
    from great_expectations.expectations.expectation import Expectation

    configuration, to_id = _INSTALLED.pop()
    Expectation.configuration = configuration
    IDDict.to_id = to_id
    _IDS.clear()


@contextlib.contextmanager
def memoised_configurations() -> Iterator[None]:
    """Within: each expectation object converts itself to its configuration once (this thread)."""
    outer = getattr(_LOCAL, "memo", None)
    _LOCAL.memo = {} if outer is None else outer
    try:
        yield
    finally:
        _LOCAL.memo = outer


def _content(value: Any) -> Any:
    """A hashable stand-in for ``value`` when it is made of plain values only, else None."""
    t = type(value)
    if t in _PLAIN:
        return (t, value)
    if t is float:
        return (t, repr(value))  # (-0.0 and 0.0 are equal, and print differently)
    if t is list or t is tuple:
        items = tuple(_content(v) for v in value)
        return None if None in items else (t, items)
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            if type(k) is not str:
                return None
            c = _content(v)
            if c is None:
                return None
            out.append((k, c))
        return (dict, tuple(sorted(out)))
    return None
