"""``max_pages`` counts stored pages, ``max_requests`` bounds the requests: real crawls (a child
process, ``run_crawl``) of sites served by the test on 127.0.0.1 whose links are mostly dead.

Issue 20: on a real site 1,966 of the 2,000 requests of ``max_pages: 2000`` went to 404s, so the
crawl stored 34 pages. Now a 404 (any failure, redirect, non-HTML answer or sitemap) does not use
up the page budget; a separate bound on requests (default 10 x max_pages) still ends a crawl of a
site that answers only errors.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from crawlsite import Page, Site, by_url, html, records, spec

from dataset_platform.ingest.crawl import run_crawl

DEAD = 30  # dead links on the home page, before its live ones
LIVE = 10


@pytest.fixture
def dead_links_site() -> Iterator[Site]:
    """Home links to 30 dead URLs (404), then 10 live pages; each live page links to 5 more dead
    URLs and one more live page. 21 live pages in all, 80 dead links."""
    live = {f"/live/{i}.html": Page(html(f"Live {i}", [f"/live/{i}/dead-{k}" for k in range(5)]
                                         + [f"/live/{i}/more.html"])) for i in range(LIVE)}
    more = {f"/live/{i}/more.html": Page(html(f"More {i}")) for i in range(LIVE)}
    site = Site({
        "/robots.txt": Page(b"User-agent: *\nAllow: /\n", "text/plain"),
        "/": Page(html("Home", [f"/dead/{k}" for k in range(DEAD)] + list(live))),
        **live, **more,
    })  # any other path: 404
    yield site
    site.close()


def _outcomes(recs: dict) -> Counter:
    return Counter((r["outcome"], r["detail"]) for r in recs.values())


def test_max_pages_counts_stored_pages_not_404s(dead_links_site: Site, tmp_path: Path) -> None:
    s = spec(tmp_path, [dead_links_site.base + "/"], max_pages=12, max_depth=3)
    summary = run_crawl(s)
    recs = by_url(records(s.output_path))  # one record per URL
    got = _outcomes(recs)
    assert got[("fetched", None)] == 12  # the budget is reached although 30+ requests were 404s
    assert got[("failed:http_404", None)] >= DEAD  # every dead link of the home page was requested
    # what was not requested once 12 pages were stored: recorded, with the reason
    filtered = [u for u, r in recs.items() if r["detail"] == "max_pages"]
    assert filtered and all(recs[u]["outcome"] == "filtered_by_rule" for u in filtered)
    assert len(recs) == 1 + DEAD + LIVE + sum(1 for u in recs if "/live/" in u and u.count("/") > 4)
    # breadth-first: every live page one link from home was stored before any deeper page
    assert all(recs[dead_links_site.url(f"/live/{i}.html")]["outcome"] == "fetched" for i in range(LIVE))
    requested = {h.path for h in dead_links_site.hits} - {"/robots.txt"}
    assert requested == {u.removeprefix(dead_links_site.base) for u, r in recs.items() if r["outcome"] != "filtered_by_rule"}
    assert summary.finish_reason == "finished" and summary.stats["stored_pages"] == 12


def test_the_old_count_would_have_stored_only_a_few_pages(dead_links_site: Site, tmp_path: Path) -> None:
    """The same site under the old rule (a request is a page): max_requests = max_pages = 12
    schedules home and 11 of its links, the first dead ones (what issue 20 saw)."""
    s = spec(tmp_path, [dead_links_site.base + "/"], max_pages=12, max_requests=12, max_depth=3)
    run_crawl(s)
    got = _outcomes(by_url(records(s.output_path)))
    assert got[("fetched", None)] == 1 and got[("failed:http_404", None)] == 11
    assert got[("filtered_by_rule", "max_requests")] == DEAD + LIVE - 11


def test_a_site_of_only_404s_ends_at_max_requests(tmp_path: Path) -> None:
    site = Site({"/": Page(html("Home", [f"/gone/{k}" for k in range(100)]))})
    try:
        s = spec(tmp_path, [site.base + "/"], max_pages=50, max_requests=20, max_depth=3, obey_robots=False)
        summary = run_crawl(s)
        got = _outcomes(by_url(records(s.output_path)))
        assert got == Counter({("fetched", None): 1, ("failed:http_404", None): 19,
                               ("filtered_by_rule", "max_requests"): 81})
        assert len(site.hits) == 20 and summary.finish_reason == "finished"
        # the default bound: 10 requests per page of max_pages
        s = spec(tmp_path / "default", [site.base + "/"], max_pages=3, max_depth=3, obey_robots=False)
        got = _outcomes(by_url(records(run_crawl(s) and s.output_path)))
        assert got[("fetched", None)] + got[("failed:http_404", None)] == 30
        assert got[("filtered_by_rule", "max_requests")] == 71
    finally:
        site.close()
