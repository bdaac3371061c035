"""The crawl settings are declared once (dataset_platform/contracts/crawl.py): a sources.yaml source,
the spec the crawl process receives and the Scrapy settings it applies agree on every value, and
the defaults are the ones README.md tells users. No crawl runs here."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import dataset_platform.ingest.crawl as runner
from dataset_platform.config import CrawlSource, load_config
from dataset_platform.contracts.crawl import CrawlSettings, CrawlSpec
from dataset_platform.ingest.refresh import crawl_source
from dataset_platform.workdir import Workdir

REPO = Path(__file__).resolve().parents[1]


class _Captured(Exception):
    pass


def _spec_of(source: CrawlSource, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> CrawlSpec:
    """The spec ``crawl_source`` hands to the runner for ``source`` (the crawl is not run)."""
    seen: list[CrawlSpec] = []

    def capture(spec: CrawlSpec, log=None, **_kw):
        seen.append(spec)
        raise _Captured

    monkeypatch.setattr(runner, "run_crawl", capture)
    with pytest.raises(_Captured):
        crawl_source(source, Workdir.at(workdir))
    return seen[0]


def test_a_sources_yaml_source_and_the_spec_the_child_receives_agree_on_every_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "sources.yaml"
    config.write_text(
        "sources:\n  - name: site\n    kind: crawl\n    start_urls: [http://127.0.0.1:9/]\n"
        "    allowed_domains: [127.0.0.1]\n",
        encoding="utf-8",
    )
    source = load_config(config).sources[0]
    assert isinstance(source, CrawlSource)
    spec = _spec_of(source, tmp_path / "work", monkeypatch)
    child = CrawlSpec.from_json(spec.to_json())  # what crawlers.run reads from the spec file
    assert child == spec
    for name in CrawlSettings.model_fields:
        assert getattr(child, name) == getattr(source, name), name  # nothing lost or changed on the way
        if name not in ("start_urls", "allowed_domains"):  # the two the file gives
            assert getattr(source, name) == CrawlSettings.defaults()[name], name
    assert (child.source, child.allow_addresses, child.known_pages_path) == ("site", [], None)
    assert child.state_dir and child.state_dir.endswith("job")  # resumable by default

    # and the Scrapy settings the crawl process applies are the spec's
    from crawlers.run import build_settings

    settings = build_settings(child, tmp_path / "out.jsonl.gz.part")
    applied = {
        "USER_AGENT": child.user_agent, "ROBOTSTXT_OBEY": child.obey_robots, "RETRY_TIMES": child.retry_times,
        "DATASET_PLATFORM_RETRY_BACKOFF_S": child.retry_backoff_s, "DOWNLOAD_TIMEOUT": child.download_timeout_s,
        "DOWNLOAD_MAXSIZE": child.max_bytes_per_page, "CONCURRENT_REQUESTS_PER_DOMAIN": child.concurrency,
        "DOWNLOAD_DELAY": child.download_delay,
    }
    assert {k: settings[k] for k in applied} == applied


def test_the_scrapy_project_defaults_are_the_crawl_settings_defaults() -> None:
    # what a crawl started without a spec (scrapy crawl, with crawlers/scrapy.cfg) would use
    import crawlers.settings as project

    d = CrawlSettings.defaults()
    assert {
        "USER_AGENT": project.USER_AGENT, "ROBOTSTXT_OBEY": project.ROBOTSTXT_OBEY, "RETRY_TIMES": project.RETRY_TIMES,
        "DATASET_PLATFORM_RETRY_BACKOFF_S": project.DATASET_PLATFORM_RETRY_BACKOFF_S,
        "DOWNLOAD_TIMEOUT": project.DOWNLOAD_TIMEOUT, "DOWNLOAD_MAXSIZE": project.DOWNLOAD_MAXSIZE,
        "DOWNLOAD_WARNSIZE": project.DOWNLOAD_WARNSIZE,
        "CONCURRENT_REQUESTS_PER_DOMAIN": project.CONCURRENT_REQUESTS_PER_DOMAIN,
        "DOWNLOAD_DELAY": project.DOWNLOAD_DELAY,
    } == {
        "USER_AGENT": d["user_agent"], "ROBOTSTXT_OBEY": d["obey_robots"], "RETRY_TIMES": d["retry_times"],
        "DATASET_PLATFORM_RETRY_BACKOFF_S": d["retry_backoff_s"], "DOWNLOAD_TIMEOUT": d["download_timeout_s"],
        "DOWNLOAD_MAXSIZE": d["max_bytes_per_page"], "DOWNLOAD_WARNSIZE": d["max_bytes_per_page"],
        "CONCURRENT_REQUESTS_PER_DOMAIN": d["concurrency"], "DOWNLOAD_DELAY": d["download_delay"],
    }


def test_every_crawl_setting_is_declared_once() -> None:
    # CrawlSource and CrawlSpec take the settings from CrawlSettings and do not declare them again
    for model in (CrawlSource, CrawlSpec):
        assert set(CrawlSettings.model_fields) <= set(model.model_fields)
        assert not set(vars(model).get("__annotations__", {})) & set(CrawlSettings.model_fields), model.__name__


def test_a_demo_source_gets_absolute_urls_and_only_the_demo_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = CrawlSource(name="demo", demo_site=True, start_urls=["/"], sitemap_urls=["/sitemap.xml"])
    spec = _spec_of(source, tmp_path / "work", monkeypatch)
    assert spec.start_urls[0].startswith("http://127.0.0.1:") and spec.sitemap_urls[0].endswith("/sitemap.xml")
    assert (spec.allowed_domains, spec.allow_addresses) == (["127.0.0.1"], ["127.0.0.1"])
    assert spec.record_base_url == "http://demo.dataset-platform.localhost"
    resolved = {"start_urls", "sitemap_urls", "allowed_domains", "record_base_url"}  # by the runner, for the demo
    assert {k: v for k, v in spec.crawl_settings().items() if k not in resolved} == \
        {k: v for k, v in source.crawl_settings().items() if k not in resolved}


def _readme_value(v: object) -> str:
    """A default as README.md's table writes it."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, list):
        return ", ".join(v) if v else "none"
    if isinstance(v, int) and v >= 1_000_000 and v % 1_000_000 == 0:
        return f"{v // 1_000_000} MB"
    return f"{v:g}"


def test_the_defaults_are_the_ones_the_readme_states() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    table = text.split("Crawl settings of a `kind: crawl` source", 1)[1].split("\n\n", 2)[1]
    stated = {
        name: default
        for row in table.splitlines()[2:]
        for name, default in re.findall(r"`(\w+)`(?: \[([^\]]*)\])?", row.split("|")[1])
    }
    assert len(stated) >= 20
    fields = CrawlSource.model_fields
    assert set(stated) <= set(fields), set(stated) - set(fields)  # the table names real settings
    for name, default in stated.items():
        if default:
            assert _readme_value(fields[name].get_default(call_default_factory=True)) == default, name


def _imports_of_ours(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return {n for n in names if n.split(".")[0] == "dataset_platform"}


def test_the_crawler_and_the_contracts_import_only_the_ground_floor() -> None:
    # crawlers/ runs in its own process: it may use the contracts, text/, the atomic write and
    # procs (dying with its parent)
    allowed = re.compile(r"dataset_platform\.(contracts|text|atomic|procs)(\.|$)")
    for path in sorted((REPO / "crawlers").rglob("*.py")):
        bad = {n for n in _imports_of_ours(path) if not allowed.match(n)}
        assert not bad, (path.name, bad)
    for path in sorted((REPO / "dataset_platform" / "contracts").glob("*.py")):
        bad = {n for n in _imports_of_ours(path) if not n.startswith("dataset_platform.contracts")}
        assert not bad, (path.name, bad)


def test_scrapy_tools_find_the_project_from_the_crawlers_folder() -> None:
    # crawlers/scrapy.cfg: scrapy's own commands see our spider and settings (crawls do not read it)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    out = subprocess.run([sys.executable, "-m", "scrapy", "settings", "--get", "RETRY_TIMES"], cwd=REPO / "crawlers",
                         env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == str(CrawlSettings.defaults()["retry_times"])
    out = subprocess.run([sys.executable, "-m", "scrapy", "list"], cwd=REPO / "crawlers", env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.split() == ["site"]
