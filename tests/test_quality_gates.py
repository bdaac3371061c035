"""Quality gates through the real graph: a batch that fails a critical expectation stops everything
below it and leaves the published release as it was; a warning-only failure does not block; the
automation sensor refreshes a layer only after its upstream blocking checks passed.

The source is a JSONL dump of the project's own demo articles (HTML), dropped into the inbox as
the inbox sensor would see it. The suites are the project's own, copied, with one rule a data
engineer might add ("no unfinished drafts in the text") at the severity under test.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from dataset_platform.definitions import build_definitions
from dataset_platform.demo.site import generate_site
from dataset_platform.storage import Workdir

REPO = Path(__file__).resolve().parents[1]
DRAFT_MARK = "TODO: replace this paragraph"
DRAFT_RULE = {"type": "expect_column_values_to_not_match_regex",
              "kwargs": {"column": "text", "regex": "TODO: replace"}}


@pytest.fixture(scope="module")
def articles(tmp_path_factory) -> list[tuple[str, str]]:
    """(url, html) of the demo site's articles, in a fixed order."""
    out = tmp_path_factory.mktemp("site")
    manifest = generate_site(out)
    pages = [e["path"] for e in manifest["pages"] if e["kind"] == "article"]
    return [(f"https://notes.test{p}", (out / "site" / p.lstrip("/")).read_text(encoding="utf-8")) for p in pages]


def _suites(tmp_path: Path, layer: str, severity: str) -> Path:
    """The project's suites with the draft rule added to ``layer`` at ``severity``."""
    d = tmp_path / "expectations"
    shutil.copytree(REPO / "expectations", d)
    spec = json.loads((d / f"{layer}.json").read_text())
    spec["expectations"].append({**DRAFT_RULE, "severity": severity})
    (d / f"{layer}.json").write_text(json.dumps(spec, indent=1))
    return d


def _setup(tmp_path: Path):
    cfg = tmp_path / "sources.yaml"
    cfg.write_text("dataset:\n  name: notes-text\nsources:\n  - name: notes\n    kind: jsonl\n")
    wd = Workdir.at(tmp_path / "w").ensure()
    return build_definitions(cfg, wd.root), wd


def _drop(wd: Workdir, name: str, rows: list[dict]) -> None:
    wd.inbox("notes").mkdir(parents=True, exist_ok=True)
    (wd.inbox("notes") / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _with_draft(html: str) -> str:
    return html.replace("</p>", f"</p><p>{DRAFT_MARK} before publishing: the figures are not checked yet.</p>", 1)


def _run(defs, instance, job: str = "dataset_pipeline"):
    """What the inbox sensor launches: the job for the source's partition."""
    result = defs.resolve_job_def(job).execute_in_process(
        partition_key="notes", instance=instance, raise_on_error=False,
        tags={"dataset_platform/trigger": "inbox"})
    done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    checks = {(e.asset_key.to_user_string(), e.check_name): e
              for e in result.get_asset_check_evaluations()}
    return result, done, checks


def _drop_draft_batch(defs, wd: Workdir, instance, articles):
    """Six new articles, one of them an unfinished draft, dropped and run: (result, done, its gx_suite check)."""
    rows = [{"url": u, "html": h} for u, h in articles[30:36]]
    rows[2]["html"] = _with_draft(rows[2]["html"])
    _drop(wd, "batch-2.jsonl", rows)
    result, done, checks = _run(defs, instance)
    return result, done, checks[("extracted_documents", "gx_suite")]


def _release_state(wd: Workdir) -> dict[str, str]:
    root = wd.releases / "notes-text"
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _first_release(defs, wd, instance, articles) -> dict[str, str]:
    # one record without a URL: dumps often have none; it must flow through like the rest
    rows = [{"url": u, "html": h} for u, h in articles[:24]] + [{"html": articles[24][1]}]
    _drop(wd, "batch-1.jsonl", rows)
    result, done, checks = _run(defs, instance)
    failed = {k: e.metadata.get("results") for k, e in checks.items() if not e.passed}
    assert result.success and "dataset_release" in done, failed
    assert all(e.passed for e in checks.values()), failed
    return _release_state(wd)


@pytest.mark.slow
def test_a_critical_failure_blocks_downstream_and_keeps_the_release(tmp_path, monkeypatch, articles):
    monkeypatch.setenv("DATASET_PLATFORM_EXPECTATIONS", str(_suites(tmp_path, "extracted_documents", "critical")))
    defs, wd = _setup(tmp_path)
    with dg.instance_for_test() as instance:
        before = _first_release(defs, wd, instance, articles)
        assert any(k.endswith(".parquet") for k in before)
        start = dg.evaluate_automation_conditions(defs=defs, instance=instance)

        result, done, gx = _drop_draft_batch(defs, wd, instance, articles)
        assert not gx.passed and gx.severity == dg.AssetCheckSeverity.ERROR
        assert gx.metadata["failed_critical"].value == 1
        assert "TODO: replace" in gx.metadata["results"].value  # the table names the rule and a sample
        # the raw layer and the failing layer itself were written; nothing below them was
        assert {"raw_pages", "extracted_documents"} <= done
        below = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()} - {
            "raw_pages", "crawl_log", "extracted_documents"}
        assert "dataset_release" in below and done & below == set()
        assert not result.success  # the blocked steps make the run fail, visibly
        assert _release_state(wd) == before  # the published release is byte for byte the same

        # and the automation sensor does not pick the layers up either: the blocking check failed
        # (its cursor starts before the bad batch, as the running sensor's would)
        evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=start.cursor)
        assert evaluation.get_num_requested(dg.AssetKey("cleaned_documents")) == 0
        assert evaluation.total_requested == 0


@pytest.mark.slow
def test_a_warning_only_failure_does_not_block(tmp_path, monkeypatch, articles):
    monkeypatch.setenv("DATASET_PLATFORM_EXPECTATIONS", str(_suites(tmp_path, "extracted_documents", "warning")))
    defs, wd = _setup(tmp_path)
    with dg.instance_for_test() as instance:
        before = _first_release(defs, wd, instance, articles)
        first_version = (wd.releases / "notes-text" / "LATEST").read_text().strip()
        result, done, gx = _drop_draft_batch(defs, wd, instance, articles)
        assert not gx.passed and gx.severity == dg.AssetCheckSeverity.WARN
        assert gx.metadata["failed_critical"].value == 0 and gx.metadata["failed_warning"].value == 1
        assert result.success and "dataset_release" in done
        new_version = (wd.releases / "notes-text" / "LATEST").read_text().strip()
        assert new_version != first_version  # a new release was published ...
        after = _release_state(wd)
        assert {k: v for k, v in after.items() if k.startswith(first_version + "/")} == \
            {k: v for k, v in before.items() if k.startswith(first_version + "/")}  # ... next to the old one


def test_layers_refresh_by_themselves_only_after_upstream_checks_pass(tmp_path, monkeypatch, articles):
    """raw_refresh (what each source's schedule runs) + the automation conditions, evaluated for real."""
    monkeypatch.setenv("DATASET_PLATFORM_EXPECTATIONS", str(_suites(tmp_path, "raw_pages", "info")))
    defs, wd = _setup(tmp_path)
    extracted = dg.AssetKey("extracted_documents")
    with dg.instance_for_test() as instance:
        # the sensor ticks all the time; its first tick only starts its cursor
        start = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert start.total_requested == 0
        _drop(wd, "batch-1.jsonl", [{"url": u, "html": h} for u, h in articles[:5]])
        result, done, checks = _run(defs, instance, "raw_refresh")
        assert result.success and done == {"raw_pages", "crawl_log"}
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=start.cursor)
        assert first.get_num_requested(extracted) == 1
        # only the layer right below: the next ones wait for it
        assert first.get_num_requested(dg.AssetKey("cleaned_documents")) == 0
        again = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        assert again.total_requested == 0  # nothing new since: no second request

    # the same with the raw suite's draft rule critical: a draft in the batch stops the refresh
    tmp2 = tmp_path / "strict"
    tmp2.mkdir()
    monkeypatch.setenv("DATASET_PLATFORM_EXPECTATIONS", str(_suites(tmp2, "raw_pages", "critical")))
    defs, wd = _setup(tmp2)
    with dg.instance_for_test() as instance:
        start = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        rows = [{"url": u, "html": h} for u, h in articles[:5]]
        # the raw layer holds no text column for HTML pages: the draft rule is checked on a text record
        rows.append({"url": "https://notes.test/drafts/1", "text": f"{DRAFT_MARK}: " + "unchecked figures. " * 20})
        _drop(wd, "batch-1.jsonl", rows)
        result, done, checks = _run(defs, instance, "raw_refresh")
        assert not checks[("raw_pages", "gx_suite")].passed
        assert checks[("raw_pages", "gx_suite")].severity == dg.AssetCheckSeverity.ERROR
        blocked = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=start.cursor)
        assert blocked.get_num_requested(extracted) == 0 and blocked.total_requested == 0
