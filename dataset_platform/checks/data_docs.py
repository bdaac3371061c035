"""GX Data Docs for a suite outcome: the HTML site Great Expectations renders, in the workdir.

Our validation evaluates a suite in pieces (row-level expectations with GX on streamed batches,
whole-table ones in DuckDB) and sums the results, so there is no single GX validation result to
render; this module builds one from the summed outcomes (one ``ExpectationValidationResult`` per
expectation, with the counts, the unexpected sample and the observed value) and lets GX's own
site builder render it into ``<docs_dir>/site/validations/<suite>/<run>/<time>/<suite>.html``.

The validation results are kept as GX keeps them (a filesystem validation-results store in
``<docs_dir>/validation_results/``), the newest ``INDEX_LIMIT`` only (``prune_results``: GX lists
every stored result for each page and index it renders). Each build renders only the new page
(earlier pages stay as they are, also those of pruned results); ``build_data_docs`` also renders the
site's index, which lists the stored validations (``data_docs_index.py``), and a run renders its
pages without it (``build_page``) and the index once at its end (``build_site_index``). One GX
context per docs folder is kept for the life of the process.

**Templates compiled once.** GX builds a new Jinja environment for every view it renders, so every
page compiled its ~30 templates again (0.10 s a page, two thirds of it in Jinja's compiler). The
environments GX's views build here share one in-memory bytecode cache (Jinja's own mechanism,
keyed by template name and source checksum: ``_share_compiled_templates``): 0.037 s a page, the
same HTML.

**Offline.** GX's templates load Bootstrap, jQuery, Font Awesome, bootstrap-table, a date picker and
Vega from CDNs (and its logo from S3): without a network the pages render unstyled and the index
lists nothing. Each page written (and the index) is rewritten to load local copies instead
(``localise``): Bootstrap 4 (its bundle holds Popper), jQuery and Font Awesome 6, copied from their
XStatic packages into ``<docs_dir>/site/static/vendor/`` once, and for what no installed package
ships, a small script of ours (``static/offline/data_docs_offline.js``): the index's table drawn from
its rows (no sorting or filters) and a note in place of a Vega chart (our suites draw none). The
dark theme and the date picker are left out. The pages then fetch nothing from the network (their
links to GX's web site stay links).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
from pathlib import Path
from typing import Any

from dataset_platform import atomic
from dataset_platform.checks.gx_suites import SuiteOutcome

_LOCK = threading.Lock()
_CONTEXTS: dict[str, Any] = {}
#: validations the site's index lists (the newest; older pages stay, linked from their checks)
INDEX_LIMIT = 25


def _result(o: Any) -> dict[str, Any]:
    res: dict[str, Any] = {"element_count": o.element_count, "unexpected_count": o.unexpected_count,
                           "partial_unexpected_list": list(o.sample_unexpected)}
    if o.element_count and o.unexpected_count <= o.element_count:
        # (a table-level outcome may count more mismatches than elements, e.g. a column list
        # against a table with fewer columns; GX refuses a percentage over 100)
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
        extra = {**meta, "rendered_from": o.type, "k": k, "q1": q1, "q3": q3}
        if q1 is None or q3 is None:  # no fences (the column is missing, or has no values): GX's
            # between-expectation needs a bound, so the page shows what was checked of the column
            return "expect_column_to_exist", {"column": o.kwargs["column"]}, extra
        kw.update(min_value=q1 - k * (q3 - q1), max_value=q3 + k * (q3 - q1))
        return "expect_column_values_to_be_between", kw, extra
    return o.type, dict(o.kwargs), meta


def build_data_docs(outcome: SuiteOutcome, docs_dir: Path, run_name: str,
                    run_time: dt.datetime | None = None, *, index_limit: int = INDEX_LIMIT,
                    build_index: bool = True) -> Path:
    """Render ``outcome`` into the Data Docs site under ``docs_dir``; returns the validation page.
    Without ``build_index`` the site's index is left as it is (:func:`build_site_index` renders it)."""
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
    page = page_path(Path(docs_dir), outcome.suite, run_name, run_time)
    with _LOCK:
        ctx = _context(Path(docs_dir), index_limit)
        ctx.validation_results_store.set(key, validation)
        ctx.build_data_docs(site_names=["workdir"], resource_identifiers=[key], build_index=build_index)
        if not page.exists():
            raise RuntimeError(f"GX Data Docs did not write the expected page {page}")
        prune_results(Path(docs_dir), keep=index_limit)
        site = Path(docs_dir) / "site"
        install_static(site)
        localise(page, site)
        if build_index:
            localise(site / "index.html", site)
    return page


def build_page(outcome: SuiteOutcome, docs_dir: Path, run_name: str, run_time: dt.datetime | None = None) -> Path:
    """:func:`build_data_docs` without the site's index: a run renders its pages so, and the index
    once at its end (``gx_worker.drain``). The index is half of a page's cost (it reads the
    :data:`INDEX_LIMIT` results it lists): 0.145 s a page with it, 0.073 s without, and a run renders 12."""
    return build_data_docs(outcome, docs_dir, run_name, run_time, build_index=False)


def prune_results(docs_dir: Path, keep: int = INDEX_LIMIT) -> list[Path]:
    """Delete the stored validation results (``<docs_dir>/validation_results/<suite>/<run>/<time>/
    <batch>.json``) but the newest ``keep``, by validation time; returns those deleted. The pages
    rendered from them stay. GX lists every stored result for each page it renders and for the
    index: 0.095 s a page with 24 stored, 0.35 s with 612 (about 50 runs of 12 checks)."""
    root = Path(docs_dir) / "validation_results"
    found = sorted(root.glob("*/*/*/*.json"), key=lambda p: (p.parent.name, str(p)), reverse=True)
    gone = []
    for path in found[keep:]:
        try:
            path.unlink()
            gone.append(path)
        except FileNotFoundError:  # (another process pruned it first)
            continue
        for folder in (path.parent, path.parent.parent):
            try:
                folder.rmdir()
            except OSError:  # (not empty, or gone)
                break
    return gone


def build_site_index(docs_dir: Path, *, index_limit: int = INDEX_LIMIT) -> Path:
    """Render the index of the Data Docs site under ``docs_dir`` alone (the newest ``index_limit``
    validations, no page rendered again); returns it."""
    with _LOCK:
        ctx = _context(Path(docs_dir), index_limit)
        builder = ctx._init_site_builder_for_data_docs_site_creation(
            site_name="workdir", site_config=ctx.variables.data_docs_sites["workdir"])
        builder.site_index_builder.build(build_index=True)
        site = Path(docs_dir) / "site"
        index = site / "index.html"
        if not index.exists():
            raise RuntimeError(f"GX Data Docs did not write the site index {index}")
        install_static(site)
        localise(index, site)
    return index


def page_path(docs_dir: Path, suite: str, run_name: str, run_time: dt.datetime) -> Path:
    """Where GX's site builder writes the page of a validation of ``suite`` in run ``run_name``."""
    stamp = run_time.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return docs_dir / "site" / "validations" / suite / run_name / stamp / f"{suite}.html"


_SHARED_TEMPLATES: list[Any] = []  # the bytecode cache, once installed


def _share_compiled_templates() -> None:
    """Let every Jinja environment GX's views build in this process share one bytecode cache (see the
    module docstring). Once per process; call it holding ``_LOCK``."""
    if _SHARED_TEMPLATES:
        return
    import jinja2
    from great_expectations.render.view.view import DefaultJinjaView

    class _InMemory(jinja2.BytecodeCache):
        def __init__(self) -> None:
            self.compiled: dict[str, tuple[str, Any]] = {}

        def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
            hit = self.compiled.get(bucket.key)
            if hit is not None and hit[0] == bucket.checksum:  # (a changed template compiles again)
                bucket.code = hit[1]

        def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
            self.compiled[bucket.key] = (bucket.checksum, bucket.code)

    cache = _InMemory()
    gx_init = DefaultJinjaView.__init__

    def __init__(self, *args, **kwargs) -> None:
        gx_init(self, *args, **kwargs)
        self.env.bytecode_cache = cache

    DefaultJinjaView.__init__ = __init__
    _SHARED_TEMPLATES.append(cache)


def _context(docs_dir: Path, index_limit: int) -> Any:
    """The process's ephemeral GX context writing to ``docs_dir`` (call it holding ``_LOCK``)."""
    ctx = _CONTEXTS.get(f"{docs_dir}:{index_limit}")
    if ctx is None:
        import great_expectations as gx

        _share_compiled_templates()
        from great_expectations.data_context.store import ValidationResultsStore

        ctx = gx.get_context(mode="ephemeral")
        name = ctx.validation_results_store_name
        ctx.stores[name] = ValidationResultsStore(store_name=name, store_backend={
            "class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir / "validation_results")})
        ctx.add_data_docs_site(site_name="workdir", site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir / "site")},
            # (the newest results stored, not every page ever rendered: checks/data_docs_index.py)
            "site_index_builder": {"class_name": "RecentValidationsIndexBuilder",
                                   "module_name": "dataset_platform.checks.data_docs_index",
                                   "validation_results_limit": index_limit},
            # no "how to" buttons and call-to-action footer: links to GX's online guides
            "show_how_to_buttons": False,
        })
        _CONTEXTS[f"{docs_dir}:{index_limit}"] = ctx
    return ctx



# ------------------------------------------------------------------------------------- offline

#: what a page loads from a CDN (a pattern of its URL) -> the local file under ``site/static/``
#: that replaces it; any other script or stylesheet a page loads from the network is left out
_LOCAL = [
    (re.compile(r"/bootstrap/4[\d.]*/css/bootstrap\.min\.css$"), "vendor/bootstrap/css/bootstrap.min.css"),
    # the bundle includes Popper, which the page loads on its own
    (re.compile(r"/bootstrap/4[\d.]*/js/bootstrap\.min\.js$"), "vendor/bootstrap/js/bootstrap.bundle.min.js"),
    (re.compile(r"/jquery-3[\d.]*\.min\.js$"), "vendor/jquery/jquery.min.js"),
    (re.compile(r"/font-awesome/6[\d.]*/css/all\.min\.css$"), "vendor/font-awesome/css/all.min.css"),
    # (loaded after jQuery, before the page's scripts that call bootstrap-table)
    (re.compile(r"/bootstrap-table[@\d.]*/dist/bootstrap-table\.min\.js$"), "offline/data_docs_offline.js"),
    (re.compile(r"^https://great-expectations-web-assets\.[^/]+/[\w-]*logo[\w-]*\.png(\?.*)?$"), "images/logo-long.png"),
]
_RESOURCE = re.compile(
    r"""<script\b[^>]*\bsrc="(https?://[^"]+)"[^>]*>\s*</script>\n?"""  # a script
    r"""|<link\b[^>]*\bhref="(https?://[^"]+)"[^>]*>\n?"""  # a stylesheet
    r"""|\b(?:src="|url\(')(https?://[^"']+)["']""",  # an image, a CSS background
)

#: our stand-ins for what no installed package ships (bootstrap-table, vega-embed)
OFFLINE_JS = """/* dataset_platform: offline stand-ins for scripts GX Data Docs load from CDNs (checks/data_docs.py) */
(function ($) {
  "use strict";
  if ($ && !$.fn.bootstrapTable) {
    // bootstrap-table: draw a table from its columns and rows (no sorting, search or filters offline)
    $.fn.bootstrapTable = function (options) {
      if (typeof options !== "object" || !options.columns) return this;  // a method: clearFilterControl, ...
      if (options.toolbar) $(options.toolbar).hide();  // (its buttons clear filters there are none of)
      var cols = options.columns, rows = (options.data || []).slice();
      var by = options.sortName, desc = options.sortOrder === "desc";
      cols.forEach(function (c) { if (c.field === by && c.sortName) by = c.sortName; });
      if (by) rows.sort(function (a, b) { return (a[by] < b[by] ? -1 : a[by] > b[by] ? 1 : 0) * (desc ? -1 : 1); });
      return this.each(function () {
        var $t = $(this).addClass("table table-hover");
        var $head = $("<tr>").appendTo($("<thead>").appendTo($t));
        cols.forEach(function (c) { $("<th>").text(c.title || c.field).appendTo($head); });
        var $body = $("<tbody>").appendTo($t);
        rows.forEach(function (r) {
          var $r = $("<tr>").appendTo($body);
          if (r._table_row_link_path) $r.attr("data-href", r._table_row_link_path).css("cursor", "pointer");
          cols.forEach(function (c) { $("<td>").html(r[c.field] == null ? "" : String(r[c.field])).appendTo($r); });
        });
        $body.on("click", "tr[data-href]", function () { window.location = $(this).attr("data-href"); });
      });
    };
    $(function () { $('table[data-toggle="table"]').not(".table").addClass("table"); });
  }
  if (!window.vegaEmbed) {
    window.vegaEmbed = function (el) {
      document.querySelectorAll(el).forEach(function (e) { e.textContent = "(a chart: Vega is not available offline)"; });
      return Promise.resolve();
    };
  }
})(window.jQuery);
"""


def vendor_files() -> dict[str, Path]:
    """Files under ``site/static/`` -> the installed file each is copied from (XStatic packages)."""
    try:
        from xstatic.pkg import bootstrap, font_awesome, jquery
    except ImportError as e:
        raise RuntimeError(
            f"GX Data Docs need Bootstrap, jQuery and Font Awesome to render offline ({e}); install the "
            "project's dependencies: pip install -e . (XStatic-Bootstrap, XStatic-jQuery, XStatic-Font-Awesome)"
        ) from None
    b, j, f = Path(bootstrap.BASE_DIR), Path(jquery.BASE_DIR), Path(font_awesome.BASE_DIR)
    files = {"vendor/bootstrap/css/bootstrap.min.css": b / "css" / "bootstrap.min.css",
             "vendor/bootstrap/js/bootstrap.bundle.min.js": b / "js" / "bootstrap.bundle.min.js",
             "vendor/jquery/jquery.min.js": j / "jquery.min.js",
             "vendor/font-awesome/css/all.min.css": f / "css" / "all.min.css"}
    for font in sorted((f / "webfonts").iterdir()):  # (all.min.css loads them from ../webfonts/)
        if font.suffix in (".woff2", ".ttf"):
            files[f"vendor/font-awesome/webfonts/{font.name}"] = font
    return files


def install_static(site: Path) -> None:
    """Copy the vendored files and our script into ``site/static/`` (those missing or changed)."""
    static = site / "static"
    wanted = {rel: src.read_bytes() for rel, src in vendor_files().items()}
    wanted["offline/data_docs_offline.js"] = OFFLINE_JS.encode()
    for rel, data in wanted.items():
        dest = static / rel
        if not (dest.exists() and dest.stat().st_size == len(data) and dest.read_bytes() == data):
            atomic.write_bytes(dest, data)


def localise(page: Path, site: Path) -> None:
    """Rewrite ``page`` (a file of the Data Docs ``site``) to load nothing from the network: the
    files it loads instead are those ``install_static`` puts in the site."""
    static = os.path.relpath(site / "static", page.parent).replace(os.sep, "/")

    def local(m: re.Match) -> str:
        url = m.group(1) or m.group(2) or m.group(3)
        for pattern, rel in _LOCAL:
            if pattern.search(url):
                return m.group(0).replace(url, f"{static}/{rel}")
        return "" if m.group(3) is None else m.group(0).replace(url, "")  # left out

    html = page.read_text(encoding="utf-8")
    out = _RESOURCE.sub(local, html)
    # a local file may not be loaded as a CORS request (what the CDN tags ask for)
    out = re.sub(r'\s+integrity="[^"]*"|\s+crossorigin="[^"]*"', "", out)
    # GX's favicon link on a validation page is one folder short
    out = re.sub(r'(<link\b[^>]*\bhref=")(?:\.\./)+static/images/favicon\.ico"', rf'\g<1>{static}/images/favicon.ico"', out)
    if out != html:
        atomic.write_text(page, out)
