"""checks/gx_memo.py: GX's validation gives the same whole results with its memos as without."""

from __future__ import annotations

import contextlib
import threading

import duckdb
import pytest
from test_gx_suites import columns, spec_of, write_layer

from dataset_platform.checks import gx_memo, gx_suites
from dataset_platform.contracts.schema import LAYERS

# rows that break the row-level expectations of most layers: null ids and texts, an unknown
# language, negative counts, a bad URL
BROKEN = {
    "id": "CASE WHEN i % 7 = 3 THEN NULL ELSE substr(md5('doc' || i), 1, 16) END",
    "text": "CASE WHEN i % 5 = 1 THEN NULL WHEN i % 5 = 2 THEN '' ELSE 'Document ' || i || ' text' END",
    "lang": "CASE WHEN i % 4 = 0 THEN 'xx-not-a-language' ELSE 'en' END",
    "n_chars": "CASE WHEN i % 6 = 0 THEN -5 ELSE 80 END",
    "url": "CASE WHEN i % 3 = 0 THEN 'not a url' ELSE 'https://example.org/page/' || i END",
    "status": "CASE WHEN i % 9 = 0 THEN 999 ELSE 200 END",
    "split": "CASE i % 4 WHEN 0 THEN 'holdout' WHEN 1 THEN 'validation' ELSE 'train' END",
}


def _validate(df, configs: list[dict], name: str = "s") -> list[dict]:
    """GX's whole result of each expectation config over ``df`` (as ours run it: within the
    memos' context; each config's id left out)."""
    from great_expectations.core import ExpectationSuite
    from great_expectations.validator.v1_validator import Validator

    with gx_suites._GX_LOCK:
        definition = gx_suites._batch_definition()
        with gx_memo.memoised_configurations():
            result = Validator(batch_definition=definition, batch_parameters={"dataframe": df},
                               result_format="COMPLETE").validate_expectation_suite(
                ExpectationSuite(name=name, expectations=configs))
    out = []
    for r in result.results:
        d = r.to_json_dict()
        d["expectation_config"].pop("id", None)
        out.append(d)
    return out


def _gx_results(layer: str, path) -> list[dict]:
    """GX's own result of every row-level expectation of ``layer``'s suite over the file."""
    configs = [{"type": e["type"], "kwargs": e["kwargs"], "severity": e["severity"]}
               for e in spec_of(layer)["expectations"] if e["type"] in gx_suites.BATCH_TYPES]
    df = duckdb.connect().sql(f"SELECT * FROM read_parquet('{path}')").df()
    return _validate(df, configs, layer)


@contextlib.contextmanager
def _graph_builds():
    """The expectations whose metric graph GX builds meanwhile (a list, filled on exit)."""
    from great_expectations.validator.metrics_calculator import MetricsCalculator

    own = MetricsCalculator.build_metric_dependency_graph
    builds: list = []

    def counted(self, metric_configurations, runtime_configuration=None):
        builds.append([m.metric_name for m in metric_configurations])
        return own(self, metric_configurations, runtime_configuration)

    MetricsCalculator.build_metric_dependency_graph = counted
    try:
        yield builds
    finally:
        MetricsCalculator.build_metric_dependency_graph = own


@pytest.fixture
def memos():
    with gx_suites._GX_LOCK:
        gx_suites._batch_definition()  # (installs the memos)
    yield
    gx_memo.install()


@pytest.mark.parametrize("layer", list(LAYERS))
def test_every_suite_gives_gx_s_own_results_with_the_memos(tmp_path, layer, memos):
    path = write_layer(tmp_path / "t.parquet", layer, 60,
                       **{c: sql for c, sql in BROKEN.items() if c in columns(layer)})
    gx_memo.uninstall()
    plain = _gx_results(layer, path)
    gx_memo.install()
    # the metric graphs are kept by a validation of other rows (all valid), then used on these
    _gx_results(layer, write_layer(tmp_path / "valid.parquet", layer, 40))
    with _graph_builds() as builds:
        memoised = _gx_results(layer, path)
    assert builds == []  # every expectation's graph came from the memo
    assert memoised == plain
    assert len(plain) == sum(e["type"] in gx_suites.BATCH_TYPES for e in spec_of(layer)["expectations"])
    if layer in ("raw_pages", "cleaned_documents", "deduplicated_documents", "dataset_release"):
        assert any(not r["success"] for r in plain)  # the broken rows are seen, both ways


def test_a_suite_validation_outside_the_memo_is_gx_s_own(memos):
    """The configuration memo lives only within a validation, on its thread."""
    from great_expectations.expectations.core import ExpectColumnValuesToNotBeNull

    e = ExpectColumnValuesToNotBeNull(column="id")
    assert e.configuration is not e.configuration  # GX's property: a new object each time
    with gx_memo.memoised_configurations():
        assert e.configuration is e.configuration
        seen: list = []
        other = threading.Thread(target=lambda: seen.append(e.configuration is e.configuration))
        other.start()
        other.join()
        assert seen == [False]  # another thread gets GX's own property
        e.column = "text"  # (not done by GX while it validates; shown: the memo would not see it)
        assert e.configuration.kwargs["column"] == "id"
    assert e.configuration.kwargs["column"] == "text"
    assert getattr(gx_memo._LOCAL, "memo", None) is None


def test_ids_of_equal_looking_values_of_other_types_stay_apart(memos):
    from great_expectations.core.id_dict import IDDict

    ids = [IDDict({"column": "n", "value": v, "batch_id": "b"}).to_id() for v in (1, 1.0, True, "1", 0.0, -0.0)]
    gx_memo.uninstall()
    plain = [IDDict({"column": "n", "value": v, "batch_id": "b"}).to_id() for v in (1, 1.0, True, "1", 0.0, -0.0)]
    gx_memo.install()
    assert ids == plain
    assert len(set(ids)) == 6
    nested = IDDict({"column": "n", "value_set": ["a", "b"], "parse": {"k": [1, 2]}})
    assert nested.to_id() == nested.to_id()
    assert gx_memo._content(nested) is not None
    assert gx_memo._content({"column": object()}) is None  # anything else: GX's own method


def test_a_kept_metric_graph_is_used_only_for_the_same_type_and_kwargs(memos):
    import pandas as pd

    df = pd.DataFrame({"n": [1, 4, 6, 9, None], "s": ["a", "b", "c", "dd", "e"]})
    between = {"type": "expect_column_values_to_be_between", "kwargs": {"column": "n", "min_value": 0, "max_value": 10}}
    narrower = {"type": "expect_column_values_to_be_between", "kwargs": {"column": "n", "min_value": 5, "max_value": 10}}
    lengths = {"type": "expect_column_value_lengths_to_equal", "kwargs": {"column": "s", "value": 1}}
    gx_memo.uninstall()
    plain = [_validate(df, [between]), _validate(df, [narrower]), _validate(df, [lengths, between])]
    gx_memo.install()
    with _graph_builds() as builds:
        first = _validate(df, [between])
        assert len(builds) == 1
        # other kwargs, another type: their own graphs; the kept one again with them
        assert [_validate(df, [narrower]), _validate(df, [lengths, between])] == plain[1:]
        assert len(builds) == 3
        again = _validate(df.assign(n=[11, 4, 6, 9, None]), [between])
    assert first == plain[0]
    assert first[0]["success"] and not again[0]["success"]  # the same graph, new rows: their verdict
    assert again[0]["result"]["unexpected_count"] == 1 and len(builds) == 3
    gx_memo.uninstall()
    assert again == _validate(df.assign(n=[11, 4, 6, 9, None]), [between])
    gx_memo.install()


def test_outside_a_validation_gx_builds_every_graph_itself(memos):
    import pandas as pd
    from great_expectations.core import ExpectationSuite
    from great_expectations.validator.v1_validator import Validator

    suite = ExpectationSuite(name="s", expectations=[
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"}}])
    with gx_suites._GX_LOCK:
        definition = gx_suites._batch_definition()
        with _graph_builds() as builds:
            for _ in range(2):
                Validator(batch_definition=definition,
                          batch_parameters={"dataframe": pd.DataFrame({"x": [1, None]})}).validate_expectation_suite(suite)
    assert len(builds) == 2
