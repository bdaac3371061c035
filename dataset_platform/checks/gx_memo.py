"""GX's validation without its repeated work: three memos over pure computations of GX 1.24.

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
* The metric graph of each expectation (what it needs computed, and what those metrics need in
  turn): GX derives it anew for every validation from the expectation's type and kwargs, the
  batch id, the runtime configuration (the result format) and the kind of execution engine --
  never from the rows -- by building the expectation and asking it and each metric provider for
  their dependencies: ~45 % of a small suite's validation. Within our validations the edges of
  each graph are kept by that content (bounded) and a later validation with the same content gets
  a new graph over them on its own execution engine; the configuration it carries is GX's
  own deep copy, as GX makes it. An expectation whose graph GX fails to build is never kept.
  GX writes into a metric configuration only while it builds the graph (its dependencies, its
  default kwargs), so kept edges are only read.

All three are installed once per process (:func:`install`, called where GX's batch definition is
built) and change no result: ``tests/test_gx_memo.py`` validates every suite of
``expectations/`` with and without them and compares GX's whole results.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Iterator
from typing import Any

_LOCAL = threading.local()
_INSTALLED: list[Any] = []  # (the originals, once installed)
_IDS: dict[Any, Any] = {}
#: ids kept before the memo starts again (a validation needs a few hundred)
MAX_IDS = 20_000
#: (engine type, batch id, runtime configuration, expectation type, kwargs) -> the edges of the
#: expectation's metric graph
_GRAPHS: dict[Any, list] = {}
#: graphs kept before the memo starts again (the suites of expectations/ have ~300 expectations)
MAX_GRAPHS = 5_000
_PLAIN = (str, int, bool, type(None))


def install() -> None:
    """Put both memos in place (once per process; GX imported)."""
    if _INSTALLED:
        return
    from great_expectations.core.id_dict import IDDict
    from great_expectations.expectations.expectation import Expectation
    from great_expectations.validator.validation_graph import ExpectationValidationGraph, ValidationGraph
    from great_expectations.validator.validator import Validator

    configuration = Expectation.__dict__["configuration"]
    to_id = IDDict.to_id
    subgraphs = Validator.__dict__.get("_generate_metric_dependency_subgraphs_for_each_expectation_configuration")
    if not isinstance(configuration, property) or subgraphs is None:  # another GX than the one these
        return  # memos were measured on

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

    def memo_subgraphs(self, expectation_configurations, processed_configurations, catch_exceptions,
                       runtime_configuration=None):
        if getattr(_LOCAL, "memo", None) is None:  # (outside our validations: GX's own)
            return subgraphs(self, expectation_configurations, processed_configurations, catch_exceptions,
                             runtime_configuration)
        engine, batch_id = self._execution_engine, self.active_batch_id
        runtime = _content(runtime_configuration or {})
        graphs: list = []
        evrs: list = []
        for config in expectation_configurations:
            kwargs = _content(dict(config.kwargs)) if runtime is not None and config.type else None
            key = None if kwargs is None else (type(engine), batch_id, runtime, config.type, kwargs)
            edges = None if key is None else _GRAPHS.get(key)
            if edges is None:  # GX builds it (and reports it when it cannot)
                built, failed, _ = subgraphs(self, [config], processed_configurations, catch_exceptions,
                                             runtime_configuration)
                graphs += built
                evrs += failed
                if key is not None and built and not failed:
                    if len(_GRAPHS) >= MAX_GRAPHS:
                        _GRAPHS.clear()
                    _GRAPHS[key] = list(built[0].graph.edges)
                continue
            evaluated = copy.deepcopy(config)  # (what GX's own step gives the rest of the validation)
            if batch_id:
                evaluated.kwargs.update({"batch_id": batch_id})
            graphs.append(ExpectationValidationGraph(
                configuration=evaluated, graph=ValidationGraph(execution_engine=engine, edges=list(edges))))
            processed_configurations.append(evaluated)
        return graphs, evrs, processed_configurations

    Expectation.configuration = property(memo_configuration, doc=configuration.__doc__)
    IDDict.to_id = memo_to_id
    Validator._generate_metric_dependency_subgraphs_for_each_expectation_configuration = memo_subgraphs
    _INSTALLED.append((configuration, to_id, subgraphs))


def uninstall() -> None:
    """GX's own methods again (tests compare both ways)."""
    if not _INSTALLED:
        return
    from great_expectations.core.id_dict import IDDict
    from great_expectations.expectations.expectation import Expectation
    from great_expectations.validator.validator import Validator

    configuration, to_id, subgraphs = _INSTALLED.pop()
    Expectation.configuration = configuration
    IDDict.to_id = to_id
    Validator._generate_metric_dependency_subgraphs_for_each_expectation_configuration = subgraphs
    _IDS.clear()
    _GRAPHS.clear()


@contextlib.contextmanager
def memoised_configurations() -> Iterator[None]:
    """Within (this thread): each expectation object converts itself to its configuration once, and
    an expectation's metric graph kept from an earlier validation is used again."""
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
