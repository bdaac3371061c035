"""Asset checks: adapters from the Dagster-free check logic (``checks/``) to asset check results.

Failed critical expectations (and broken accounting) are ERROR and ``blocking``: downstream
assets in the same run do not materialise, so bad data never reaches a release. Failed warning
expectations are WARN and do not block. Every document stage gets a suite, ``accounting`` and
``drop_rate_stable`` check from the stage registry.

Each check is a :class:`Check` (its spec and a function computing its result). The checks of the
layers one asset step writes are that step's ``check_specs`` and run at its end, after its
materialisations (``materialise_and_check``): one step per layer in the UI and 18 fewer events per run
than a check step after each (measured: a +1 % refresh at 100k ~5 % shorter, within the spread; the
checks' own time is their work and Dagster's two events per result). A failed blocking check
fails the step once all its checks have reported, so what is below does not run. A check can
still run alone (the UI's "Execute" on a check): the step then materialises nothing and runs only
the selected checks. In the UI every check is its own check with its own result; its metadata
says how long it took (``check_seconds``). A check that raises is reported as failed (ERROR when it
is blocking, so what is below stays blocked) with the error, and the others of its step still run.
"""

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg

from dataset_platform.checks import invariants as inv
from dataset_platform.checks.gx_suites import expectations_dir
from dataset_platform.contracts.schema import LAYERS
from dataset_platform.defs.metadata import round_floats
from dataset_platform.defs.resources import PlatformResource
from dataset_platform.stages.registry import STAGES


@dataclass(frozen=True)
class Check:
    spec: dg.AssetCheckSpec
    evaluate: Callable[[dg.AssetCheckExecutionContext, PlatformResource], dg.AssetCheckResult]


#: the checks not generated from the registry or the suites (``_check``), in definition order
_STANDALONE: list[Check] = []


def _check(*, asset: str, name: str, blocking: bool, description: str):
    def register(fn):
        _STANDALONE.append(Check(dg.AssetCheckSpec(name, asset=asset, blocking=blocking, description=description), fn))
        return fn

    return register


def layers_with_suites() -> list[str]:
    """Every table of the contract with a suite in ``expectations/`` (contract order)."""
    d = expectations_dir()
    return [name for name in LAYERS if (d / f"{name}.json").exists()]


def start_checks_ahead(context: dg.AssetExecutionContext, platform: PlatformResource, *layers: str,
                       later: tuple[str, ...] = (), suites: bool = True, invariants: bool = True) -> None:
    """Start the checks of the ``layers`` an asset step just wrote that the run will execute, as
    the step's work on them is done: they overlap the rest of the step and the cheaper checks run
    before them. The ``gx_suite`` checks on the GX worker (``gx_worker.prefetch``; ``suites``);
    the invariants of :data:`_AHEAD` on a thread (``checks/ahead.py``; ``invariants``). A stage's
    step starts its suites as the stage commits (they read the committed files) and its
    invariants once the stage has returned (one may read a warehouse view, published last).
    ``later``: layers whose files are final now though a later step materialises them
    (``rejected_documents``, a view over every stage's rejects, once the last stage has written):
    their suites start now too. Only a head start: a problem here is logged, and each check then
    computes its result itself."""
    from dataset_platform.checks import ahead, gx_worker

    selected = set(context.selected_asset_check_keys)
    for layer in later if suites else ():
        key = dg.AssetCheckKey(dg.AssetKey(layer), "gx_suite")
        # (the run's selections: None, or no asset at all, when the run executes the whole job)
        checks, assets = context.run.asset_check_selection, context.run.asset_selection
        if (key in checks) if checks is not None else (not assets or key.asset_key in assets):
            selected.add(key)
    points = None  # (the work folder's commit points: what every invariant started here starts on)
    for layer in (*layers, *later):
        suite = expectations_dir() / f"{layer}.json"
        if suites and suite.exists() and dg.AssetCheckKey(dg.AssetKey(layer), "gx_suite") in selected:
            try:
                gx_worker.prefetch(platform.config, platform.wd, layer, suite)
            except Exception as e:
                context.log.warning(f"{layer}: suite check not started ahead ({type(e).__name__}: {e}); "
                                    "its gx_suite check runs it")
        for (on, name), call in _AHEAD.items() if invariants else ():
            if on != layer or dg.AssetCheckKey(dg.AssetKey(layer), name) not in selected:
                continue
            try:
                todo = call(platform)
                if todo is not None:
                    points = inv.commit_points(platform.wd) if points is None else points
                    ahead.start(_ahead_key(platform, layer, name), points, todo[0], *todo[1])
            except Exception as e:
                context.log.warning(f"{layer}:{name} not started ahead ({type(e).__name__}: {e}); the check "
                                    "computes it")


def _ahead_key(platform: PlatformResource, layer: str, name: str) -> tuple:
    return (layer, name, str(platform.wd.root))


def _ahead_or_now(platform: PlatformResource, layer: str, name: str):
    """The result of invariant ``name`` of ``layer`` (:data:`_AHEAD`): started ahead, when on the
    layers as they are now, else computed now."""
    from dataset_platform.checks import ahead

    fn, args = _AHEAD[(layer, name)](platform, now=True)
    return ahead.result(_ahead_key(platform, layer, name), inv.commit_points(platform.wd), fn, *args)


def _result(o: inv.Outcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=o.passed, description=o.description, metadata=o.metadata,
        severity=dg.AssetCheckSeverity.ERROR if o.severity == inv.ERROR else dg.AssetCheckSeverity.WARN)


def _gx_check(layer: str) -> Check:
    def evaluate(context: dg.AssetCheckExecutionContext, platform: PlatformResource) -> dg.AssetCheckResult:
        from dataset_platform.checks import gx_worker
        from dataset_platform.checks.suite_check import layer_files

        wd = platform.wd
        if layer == "dataset_release" and layer_files(platform.config, wd, layer) is None:
            return _result(inv.no_release())
        # on the GX worker process (checks/gx_worker.py): GX's import and pages off this process
        checked = gx_worker.suite_check(platform.config, wd, layer, expectations_dir() / f"{layer}.json")
        outcome = checked.outcome
        critical_ok, warn_ok = outcome.critical_passed, outcome.warnings_passed
        failed = [o for o in outcome.outcomes if not o.success]
        context.log.info(f"{layer}: {len(outcome.outcomes)} expectations, {len(failed)} failed; row-level over "
                         f"{checked.rows_validated} of {checked.layer_rows} rows ({checked.scope()})")
        docs: dict = {}
        try:  # the report is a convenience: a rendering problem must not change the check's verdict
            page = gx_worker.data_docs(outcome, wd.data_docs, context.run.run_id)  # rendered by the run's end
            docs = {"data_docs": dg.MetadataValue.path(str(page)),
                    "data_docs_index": dg.MetadataValue.path(str(wd.data_docs / "site" / "index.html"))}
        except Exception as e:
            context.log.warning(f"{layer}: GX Data Docs not built: {type(e).__name__}: {e}")
            docs = {"data_docs_error": f"{type(e).__name__}: {e}"[:500]}
        return dg.AssetCheckResult(
            passed=critical_ok and warn_ok,
            severity=dg.AssetCheckSeverity.ERROR if not critical_ok else dg.AssetCheckSeverity.WARN,
            description=outcome.explain(),
            metadata={
                "rows_validated": checked.rows_validated,  # by the row-level expectations
                "layer_rows": checked.layer_rows,  # by the whole-table ones
                "files_validated": len(checked.units_validated),
                "layer_files": checked.units,
                "row_level_scope": checked.scope(),
                "expectations": len(outcome.outcomes),
                "failed_critical": len(outcome.failed("critical")),
                "failed_warning": len(outcome.failed("warning")),
                "failed_info": len(outcome.failed("info")),  # informational only: never fail the check
                "results": dg.MetadataValue.md(outcome.to_markdown()),
                **docs,
            },
        )

    return Check(dg.AssetCheckSpec(
        "gx_suite", asset=layer, blocking=True,
        description=f"Great Expectations suite expectations/{layer}.json (critical expectations ERROR and block "
                    "downstream; warnings WARN). Row-level expectations cover what the materialisation wrote (the "
                    "parts, files or shards not validated yet: checks/scope.py); whole-table ones (uniqueness, "
                    "row count, columns, distinct counts, outliers) the whole layer."), evaluate)


def _accounting_check(stage) -> Check:
    def evaluate(context, platform: PlatformResource) -> dg.AssetCheckResult:
        return _result(inv.accounting_outcome(platform.wd, stage))

    return Check(dg.AssetCheckSpec("accounting", asset=stage.output, blocking=True,
                                   description=f"{stage.name}: documents in = kept + rejected (nothing lost "
                                               "unaccounted)."), evaluate)


def _drop_rate_check(stage) -> Check:
    layer = stage.output

    def evaluate(context: dg.AssetCheckExecutionContext, platform: PlatformResource) -> dg.AssetCheckResult:
        from dataset_platform.checks.drift import drop_rate_change

        records = context.instance.fetch_materializations(dg.AssetKey(layer), limit=2).records

        def counts(record) -> tuple[int, int] | None:
            md = record.asset_materialization.metadata if record.asset_materialization else {}
            if "input_rows" not in md or "rejected_rows" not in md:
                return None
            return int(md["input_rows"].value), int(md["rejected_rows"].value)

        current = counts(records[0]) if records else None
        if current is None:
            return dg.AssetCheckResult(passed=True, metadata={"note": f"{layer} has no counts to compare yet"})
        previous = counts(records[1]) if len(records) > 1 else None
        d = drop_rate_change(previous, current, platform.config.pipeline.max_drop_rate_change)
        return dg.AssetCheckResult(
            passed=d.ok,
            severity=dg.AssetCheckSeverity.WARN,
            description=d.reason,
            metadata={"drop_rate": d.rate if d.rate is not None else 0.0,
                      "previous_drop_rate": d.previous_rate if d.previous_rate is not None else "none",
                      "change": d.change if d.change is not None else "not compared",
                      "max_change": platform.config.pipeline.max_drop_rate_change, "verdict": d.reason},
        )

    return Check(dg.AssetCheckSpec(
        "drop_rate_stable", asset=layer, blocking=False,
        description=f"{stage.name}: the share of documents dropped did not jump against the previous materialisation "
                    "(pipeline.max_drop_rate_change share points; WARN only)."), evaluate)


@_check(asset="scored_documents", name="score_distribution_stable", blocking=False,
        description="The quality model's score histogram did not move more than "
                    "pipeline.quality_model.max_score_shift against the previous materialisation (WARN only).")
def score_distribution_stable(context, platform: PlatformResource) -> dg.AssetCheckResult:
    from dataset_platform.checks.drift import score_distribution_shift

    records = context.instance.fetch_materializations(dg.AssetKey("scored_documents"), limit=2).records

    def bins(record) -> list[int] | None:
        md = record.asset_materialization.metadata if record.asset_materialization else {}
        return list(md["quality_score_bins"].value) if "quality_score_bins" in md else None

    current = bins(records[0]) if records else None
    if current is None:
        return dg.AssetCheckResult(passed=True, metadata={"note": "no quality scores (no model trained)"})
    limit = platform.config.pipeline.quality_model.max_score_shift
    d = score_distribution_shift(bins(records[1]) if len(records) > 1 else None, current, limit)
    return dg.AssetCheckResult(
        passed=d.ok, severity=dg.AssetCheckSeverity.WARN, description=d.reason,
        metadata={"distance": d.distance if d.distance is not None else "not compared", "max_shift": limit,
                  "verdict": d.reason})


def _release(platform: PlatformResource):
    from dataset_platform.release.materialise import current_release

    return current_release(platform.config, platform.wd)


def _release_call(fn: Callable, args: Callable) -> Callable:
    def call(p: PlatformResource, now: bool = False):
        release = _release(p)
        return None if release is None and not now else (fn, args(p, release))

    return call


def _pii_call(p: PlatformResource, now: bool = False):
    """The PII scan, ahead on a thread: only a scan this process would run alone (few rows, no
    Ray); a larger one spreads over worker processes or the cluster when its check runs."""
    if not now and (p.config.pipeline.executor == "ray" or inv.pii_rows_pending(p.wd) >= inv.PARALLEL_SCAN_ROWS):
        return None
    return inv.structured_pii_check, (p.wd, p.config)


#: the checks besides the suites started ahead on a thread of this process (``start_checks_ahead``,
#: ``checks/ahead.py``): (layer, check) -> ``call(platform, now=False)``, the function and arguments
#: that compute the check's outcome (None: not worth starting ahead)
_AHEAD: dict[tuple[str, str], Callable] = {
    ("dataset_release", "reconciles_with_crawl"): _release_call(
        inv.release_reconciles_with_crawl, lambda p, release: (p.wd, release)),
    ("dataset_release", "no_split_leakage"): _release_call(
        inv.split_leakage, lambda p, release: (p.wd, release)),
    ("dataset_release", "split_balance"): lambda p, now=False: (
        None if p.config.pipeline.splits.stratify_by is None or (release := _release(p)) is None
        else (inv.split_shares, (release, p.config.pipeline.splits.stratify_by))),
    ("dataset_release", "diversity_and_balance"): _release_call(
        inv.release_diversity, lambda p, release: (release, p.config.label_set_names, p.config.pipeline.quality,
                                                   p.wd.check_counts("dataset_release", "diversity_and_balance"))),
    ("cleaned_documents", "no_structured_pii"): _pii_call,
    ("raw_pages", "reconciles_with_crawl_log"): lambda p, now=False: (inv.raw_reconciles_with_crawl_log, (p.wd,)),
}


@_check(asset="dataset_release", name="reconciles_with_crawl", blocking=True,
                description="Every crawled page is in the release or in rejected_documents, exactly once.")
def reconciles_with_crawl(context, platform: PlatformResource) -> dg.AssetCheckResult:
    release = _release(platform)
    return _result(inv.no_release() if release is None else _ahead_or_now(platform, "dataset_release", "reconciles_with_crawl"))


@_check(
    asset="raw_pages", name="reconciles_with_crawl_log", blocking=True,
    description="Every stored page has its 'fetched' record in crawl_log, and every URL the newest crawl of a "
                "source fetched or found not_modified is stored (nothing stored without a record, nothing lost).",
)
def raw_reconciles_with_crawl_log(context, platform: PlatformResource) -> dg.AssetCheckResult:
    return _result(_ahead_or_now(platform, "raw_pages", "reconciles_with_crawl_log"))


@_check(
    asset="raw_pages", name="no_refused_inbox_files", blocking=False,
    description="No inbox file waits in inbox/<source>/rejected/ (a file the raw refresh could not take: a link, "
                "a special file, an unknown ending, unreadable, no text field). WARN while one does.",
)
def no_refused_inbox_files(context, platform: PlatformResource) -> dg.AssetCheckResult:
    return _result(inv.refused_inbox_files(platform.wd, [s.name for s in platform.config.sources]))


@_check(
    asset="cleaned_documents", name="no_structured_pii", blocking=True,
    description="No structured PII (e-mail, phone, IP, payment card, IBAN, Chinese resident ID; "
                "stages/clean/pii.py) is left in the cleaned text or title of the parts not scanned clean yet (those "
                "the last materialisation wrote; a failed part is scanned again until it is fixed); streamed "
                "in bounded Arrow batches.",
)
def no_structured_pii(context, platform: PlatformResource) -> dg.AssetCheckResult:
    return _result(_ahead_or_now(platform, "cleaned_documents", "no_structured_pii"))


@_check(
    asset="labelled_documents", name="annotator_agreement", blocking=False,
    description="Agreement between Label Studio annotators per label set (Cohen's kappa for two annotators, "
                "Fleiss' for more) is at least pipeline.labels.min_kappa (WARN below it).",
)
def annotator_agreement(context, platform: PlatformResource) -> dg.AssetCheckResult:
    from dataset_platform.runner import layer_extra

    agreement = layer_extra(platform.wd, "labelled_documents").get("prepared", {}).get("agreement", {})
    floor = platform.config.pipeline.labels.min_kappa
    measured = {k: v for k, v in agreement.items() if v.get("kappa") is not None}
    low = sorted(k for k, v in measured.items() if v["kappa"] < floor)
    md: dict = {"min_kappa": floor, "label_sets_measured": len(measured), "below_threshold": ", ".join(low) or "none"}
    for k, v in sorted(measured.items()):
        md[f"kappa:{k}"] = round(float(v["kappa"]), 4)
        md[f"method:{k}"] = v.get("method") or ""
        md[f"documents:{k}"] = int(v.get("items") or 0)
    if not measured:
        md["note"] = "no document has labels from two annotators yet (import Label Studio exports into inbox/annotations/)"
    description = "; ".join(f"{k}: kappa {measured[k]['kappa']:.3f} below min_kappa {floor}" for k in low) or None
    return dg.AssetCheckResult(passed=not low, severity=dg.AssetCheckSeverity.WARN, metadata=md,
                               description=description)


@_check(asset="dataset_release", name="no_split_leakage", blocking=True,
                description="No URL, near-duplicate cluster or split group has documents in two splits, and no "
                            "augmented copy is outside train.")
def no_split_leakage(context, platform: PlatformResource) -> dg.AssetCheckResult:
    release = _release(platform)
    return _result(inv.no_release() if release is None else _ahead_or_now(platform, "dataset_release", "no_split_leakage"))


@_check(asset="dataset_release", name="split_balance", blocking=False,
                description="Each split's shares of the stratified label set's values stay within "
                            "pipeline.splits.tolerance of the whole release's (WARN otherwise).")
def split_balance(context, platform: PlatformResource) -> dg.AssetCheckResult:
    from dataset_platform.defs.metadata import md_table

    settings = platform.config.pipeline.splits
    release = _release(platform)
    if release is None:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                                   metadata={"error": "no release has been published"})
    if settings.stratify_by is None:
        return dg.AssetCheckResult(passed=True, metadata={"note": "splits.stratify_by is not set: nothing to balance"})
    col = settings.stratify_by
    rows = _ahead_or_now(platform, "dataset_release", "split_balance")
    worst = rows[0][4] if rows else 0.0
    passed = worst <= settings.tolerance + 1e-9
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=None if passed else (f"{col}={rows[0][1]}: a share of {rows[0][2]:.3f} in {rows[0][0]} against {rows[0][3]:.3f} "
                                         f"of the whole: deviation {worst:.3f} > tolerance {settings.tolerance}"),
        metadata={"stratify_by": col, "tolerance": settings.tolerance, "max_deviation": float(worst),
                  "shares": dg.MetadataValue.md(md_table(["split", col, "share", "share of whole", "deviation"],
                                                         [list(r) for r in rows]))},
    )


@_check(
    asset="dataset_release", name="diversity_and_balance", blocking=False,
    description="The release holds at least pipeline.quality's number of sources, languages, domains and values "
                "per label set, and no label value holds more than max_label_share of it (WARN otherwise).",
)
def diversity_and_balance(context, platform: PlatformResource) -> dg.AssetCheckResult:
    from dataset_platform.defs.metadata import md_table

    release = _release(platform)
    if release is None:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                                   metadata={"error": "no release has been published"})
    findings = _ahead_or_now(platform, "dataset_release", "diversity_and_balance")
    failed = [f for f in findings if not f.ok]
    return dg.AssetCheckResult(
        passed=not failed,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(f"{f.what} {f.value:g} ({'at least' if f.kind == 'floor' else 'at most'} {f.bound:g})"
                              for f in failed) or None,
        metadata={"findings": dg.MetadataValue.md(md_table(
                      ["measure", "value", "bound", "ok", "largest"],
                      [[f.what, f"{f.value:g}", f"{'>=' if f.kind == 'floor' else '<='} {f.bound:g}",
                        "yes" if f.ok else "**no**", f.detail] for f in findings])),
                  "failed": len(failed),
                  **{f.what.replace(": ", "_").replace(" ", "_"): float(f.value) for f in findings}},
    )


def all_checks() -> list[Check]:
    return (
        [_gx_check(layer) for layer in layers_with_suites()]
        + [_accounting_check(st) for st in STAGES]
        + [_drop_rate_check(st) for st in STAGES]
        + _STANDALONE
    )


def _writer_step(layer: str) -> str:
    """The asset step that writes ``layer`` (its checks run together after it)."""
    if layer in ("raw_pages", "crawl_log"):
        return "raw_layer"
    for st in STAGES:
        if layer in (st.output, *st.also_writes):
            return st.output
    return layer


def evaluate_checks(context, platform: PlatformResource, checks: list[Check]):
    """The selected ``checks``, one :class:`dg.AssetCheckResult` each (with ``check_seconds``); the
    cheap ones first: the suites' verdicts, started ahead on the GX worker, come last. A check that
    raises is reported as failed (ERROR when it is blocking) and the others still run."""
    selected = context.selected_asset_check_keys
    for c in sorted(checks, key=lambda c: c.spec.name == "gx_suite"):
        if c.spec.key not in selected:
            continue
        t0 = time.monotonic()
        try:
            r = c.evaluate(context, platform)
        except Exception as e:
            context.log.error(f"{c.spec.key.to_user_string()} raised:\n{traceback.format_exc()}")
            r = dg.AssetCheckResult(
                passed=False, description=f"the check raised {type(e).__name__}: {e}"[:1000],
                severity=dg.AssetCheckSeverity.ERROR if c.spec.blocking else dg.AssetCheckSeverity.WARN,
                metadata={"error": f"{type(e).__name__}: {e}"[:2000]})
        yield dg.AssetCheckResult(
            asset_key=c.spec.asset_key, check_name=c.spec.name, passed=r.passed, severity=r.severity,
            description=r.description,
            metadata=round_floats({**(r.metadata or {}), "check_seconds": round(time.monotonic() - t0, 3)}))


def step_checks(step: str) -> list[Check]:
    """The checks of the layers the asset step ``step`` writes: they run at the end of that step."""
    return [c for c in all_checks() if _writer_step(c.spec.asset_key.to_user_string()) == step]


def step_check_specs(step: str) -> list[dg.AssetCheckSpec]:
    """The ``check_specs`` of the asset step ``step`` (:func:`step_checks`)."""
    return [c.spec for c in step_checks(step)]


def materialise_and_check(context, platform: PlatformResource, checks: list[Check], materialise):
    """The body of an asset step: ``materialise()`` (its ``MaterializeResult`` s) when the run
    selected any of the step's layers -- the step writes them all, and reports those selected --
    then the selected ``checks`` of those layers (:func:`step_checks`). A run of checks alone materialises nothing: they run
    on the layers as they are."""
    selected = context.selected_asset_keys
    if selected:
        for r in materialise():
            if r.asset_key is None or dg.AssetKey.from_coercible(r.asset_key) in selected:
                yield r
    yield from evaluate_checks(context, platform, checks)


def _definition(name: str, checks: list[Check]) -> dg.AssetChecksDefinition:
    """``checks`` as a step of their own (tests run a check beside stand-in assets)."""
    @dg.multi_asset_check(name=name, specs=[c.spec for c in checks], can_subset=True,
                          description="; ".join(f"{c.spec.asset_key.to_user_string()}:{c.spec.name}" for c in checks))
    def _run(context: dg.AssetCheckExecutionContext, platform: PlatformResource):
        yield from evaluate_checks(context, platform, checks)

    return _run


def check_definition(asset: str, name: str) -> dg.AssetChecksDefinition:
    """The check ``asset``:``name`` as a step of its own, beside stand-in assets (as tests run one check)."""
    (one,) = [d for d in build_checks() if dg.AssetCheckKey(dg.AssetKey(asset), name) in d.check_keys]
    return one


def build_checks() -> list[dg.AssetChecksDefinition]:
    """Every check as a step of its own (tests pick one with :func:`check_definition`). The graph
    itself defines no check steps: each asset step runs its layers' checks (``step_check_specs``)."""
    return [_definition(f"{c.spec.asset_key.to_python_identifier()}_{c.spec.name}", [c]) for c in all_checks()]
