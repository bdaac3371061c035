"""GX Data Docs for a suite outcome: the HTML site Great Expectations renders, in the workdir.

Our validation evaluates a suite in pieces (row-level expectations with GX on streamed batches,
whole-table ones in DuckDB) and sums the results, so there is no single GX validation result to
render; this module builds one from the summed outcomes (one ``ExpectationValidationResult`` per
expectation, with the counts, the unexpected sample and the observed value) and lets GX's own
site builder render it into ``<docs_dir>/site/validations/<suite>/<run>/<time>/<suite>.html``.

The validation results are kept as GX keeps them (a filesystem validation-results store in
``<docs_dir>/validation_results/``); each build renders only the new page (earlier pages stay as
they are) and the site's index, which lists the newest ``INDEX_LIMIT`` validations (GX's
``validation_results_limit``: its index builder reads every result it lists, so an unbounded
index made every check slower than the one before: 0.25 s for the first, 0.86 s after 120 of one
suite). One GX context per docs folder is kept for the life of the process.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

from dataset_platform.checks.gx_suites import SuiteOutcome

_LOCK = threading.Lock()
_CONTEXTS: dict[str, Any] = {}
#: validations the site's index lists (the newest; older pages stay, linked from their checks)
INDEX_LIMIT = 25


def _result(o: Any) -> dict[str, Any]:
    res: dict[str, Any] = {"element_count": o.element_count, "unexpected_count": o.unexpected_count,
                           "partial_unexpected_list": list(o.sample_unexpected)}
    if o.element_count:
        res["unexpected_percent"] = 100.0 * o.unexpected_count / o.element_count
    if o.observed_value is not None:
        res["observed_value"] = o.observed_value
    return res


def _config(o: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(GX type, kwargs, meta) to render; our own types are restated as the GX type they amount to."""
    meta = {"severity": o.severity, "evaluated_by": o.engine}
    if o.type == "expect_column_values_to_be_within_iqr_fences":
        # Tukey's fences are a between-expectation whose bounds come from the data: render it so
        k = float(o.kwargs.get("k", 1.5))
        stats = o.observed_value if isinstance(o.observed_value, dict) else {}
        q1, q3 = stats.get("q1"), stats.get("q3")
        kw = {"column": o.kwargs["column"], "mostly": o.kwargs.get("mostly", 1.0)}
        if q1 is not None and q3 is not None:
            kw.update(min_value=q1 - k * (q3 - q1), max_value=q3 + k * (q3 - q1))
        return "expect_column_values_to_be_between", kw, {**meta, "rendered_from": o.type, "k": k, "q1": q1, "q3": q3}
    return o.type, dict(o.kwargs), meta


def build_data_docs(outcome: SuiteOutcome, docs_dir: Path, run_name: str,
                    run_time: dt.datetime | None = None, *, index_limit: int = INDEX_LIMIT) -> Path:
    """Render ``outcome`` into the Data Docs site under ``docs_dir``; returns the validation page."""
    from great_expectations.core import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    run_time = (run_time or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    results = [
        ExpectationValidationResult(
            success=o.success,
            expectation_config=ExpectationConfiguration(type=typ, kwargs=kwargs, meta=meta),
            result=_result(o),
        )
        for o in outcome.outcomes
        for typ, kwargs, meta in [_config(o)]
    ]
    n_ok = sum(o.success for o in outcome.outcomes)
    validation = ExpectationSuiteValidationResult(
        success=not outcome.failed("critical") and not outcome.failed("warning"),
        results=results,
        suite_name=outcome.suite,
        statistics={"evaluated_expectations": len(results), "successful_expectations": n_ok,
                    "unsuccessful_expectations": len(results) - n_ok,
                    "success_percent": 100.0 * n_ok / len(results) if results else 100.0},
        meta={"rows": outcome.row_count, "rows_validated": outcome.rows_validated,
              "run_id": RunIdentifier(run_name=run_name, run_time=run_time),
              "active_batch_definition": {"datasource_name": "dataset_platform", "data_connector_name": "duckdb",
                                          "data_asset_name": outcome.suite, "batch_identifiers": {}}},
    )
    key = ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=outcome.suite),
        run_id=RunIdentifier(run_name=run_name, run_time=run_time),
        batch_identifier=outcome.suite,
    )
    with _LOCK:
        ctx = _context(Path(docs_dir), index_limit)
        ctx.validation_results_store.set(key, validation)
        ctx.build_data_docs(site_names=["workdir"], resource_identifiers=[key])
    page = page_path(Path(docs_dir), outcome.suite, run_name, run_time)
    if not page.exists():
        raise RuntimeError(f"GX Data Docs did not write the expected page {page}")
    return page


def page_path(docs_dir: Path, suite: str, run_name: str, run_time: dt.datetime) -> Path:
    """Where GX's site builder writes the page of a validation of ``suite`` in run ``run_name``."""
    stamp = run_time.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return docs_dir / "site" / "validations" / suite / run_name / stamp / f"{suite}.html"


def _context(docs_dir: Path, index_limit: int) -> Any:
    """The process's ephemeral GX context writing to ``docs_dir`` (call it holding ``_LOCK``)."""
    ctx = _CONTEXTS.get(f"{docs_dir}:{index_limit}")
    if ctx is None:
        import great_expectations as gx
        from great_expectations.data_context.store import ValidationResultsStore

        ctx = gx.get_context(mode="ephemeral")
        name = ctx.validation_results_store_name
        ctx.stores[name] = ValidationResultsStore(store_name=name, store_backend={
            "class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir / "validation_results")})
        ctx.add_data_docs_site(site_name="workdir", site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir / "site")},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder", "validation_results_limit": index_limit},
        })
        _CONTEXTS[f"{docs_dir}:{index_limit}"] = ctx
    return ctx

