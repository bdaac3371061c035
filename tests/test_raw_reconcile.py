"""The blocking ``reconciles_with_crawl_log`` check of raw_pages (checks/invariants.py), on raw
parts and crawl_log files written with the real storage code: it fails on a stored page with no
'fetched' record and on a URL the newest crawl fetched but did not store, keeps failing until the
data is fixed, and once clean checks only the parts it has not checked (by difference)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from dataset_platform.checks import invariants as inv
from dataset_platform.storage.batched import BatchedLayer, PartInfo
from dataset_platform.workdir import Workdir


def _part(wd: Workdir, source: str, key: str, crawl_id: str, urls: list[str]) -> None:
    """A raw part of ``source`` holding ``urls`` from the batch ``crawl_id`` (as the raw refresh
    commits one)."""
    with BatchedLayer(wd.raw_source(source), f"raw_pages/{source}").locked() as layer:
        staging = layer.stage(key)
        pq.write_table(pa.table({"source": [source] * len(urls), "crawl_id": [crawl_id] * len(urls), "url": urls}),
                       staging / "data.parquet")
        layer.staged(PartInfo(key, rows=len(urls)))
        layer.commit()


def _log(wd: Workdir, source: str, crawl_id: str, outcomes: dict[str, str]) -> None:
    path = wd.crawl_log_file(source, crawl_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"source": [source] * len(outcomes), "crawl_id": [crawl_id] * len(outcomes),
                             "url": list(outcomes), "outcome": list(outcomes.values())}), path)


def test_a_dump_source_reconciles_by_difference_and_an_orphan_fails_until_fixed(tmp_path):
    wd = Workdir.at(tmp_path / "w").ensure()
    urls = [f"https://d.test/{i}" for i in range(5)]
    _log(wd, "dump", "dump-aaaa", dict.fromkeys(urls, "fetched"))
    _part(wd, "dump", "dump-aaaa", "dump-aaaa", urls)
    first = inv.raw_reconciles_with_crawl_log(wd)
    assert first.passed and first.metadata["parts_checked"] == 1 and first.metadata["sources_with_pages"] == 1
    again = inv.raw_reconciles_with_crawl_log(wd)
    assert again.passed and again.metadata["parts_checked"] == 0  # nothing new: nothing read

    # a new batch whose crawl_log lacks one stored page's 'fetched' record (it says failed)
    new = [f"https://d.test/n{i}" for i in range(3)]
    _log(wd, "dump", "dump-bbbb", {new[0]: "fetched", new[1]: "fetched", new[2]: "failed:http_500"})
    _part(wd, "dump", "dump-bbbb", "dump-bbbb", new)
    bad = inv.raw_reconciles_with_crawl_log(wd)
    assert not bad.passed and bad.severity == inv.ERROR
    assert bad.metadata["stored_without_fetched_record"] == 1 and bad.metadata["parts_checked"] == 1
    assert not inv.raw_reconciles_with_crawl_log(wd).passed  # still pending: still failing

    _part(wd, "dump", "dump-bbbb", "dump-bbbb", new[:2])  # the part rewritten without the orphan
    fixed = inv.raw_reconciles_with_crawl_log(wd)
    assert fixed.passed and fixed.metadata["parts_checked"] == 1 and fixed.metadata["layer_parts"] == 2


def test_a_page_the_newest_crawl_fetched_but_did_not_store_fails(tmp_path):
    wd = Workdir.at(tmp_path / "w").ensure()
    old, newest = "site-20261201T000000Z", "site-20261202T000000Z"
    _log(wd, "site", old, {"https://s.test/a": "fetched", "https://s.test/gone": "fetched"})
    _part(wd, "site", old, old, ["https://s.test/a"])
    # the newest crawl found /a not modified (its row stays in the older part) and fetched /b, /c
    _log(wd, "site", newest, {"https://s.test/a": "not_modified", "https://s.test/b": "fetched",
                              "https://s.test/c": "fetched"})
    _part(wd, "site", newest, newest, ["https://s.test/b"])  # /c was not stored
    out = inv.raw_reconciles_with_crawl_log(wd)
    assert not out.passed and out.metadata["fetched_but_not_stored"] == 1
    assert out.metadata["stored_without_fetched_record"] == 0  # (/gone of the older crawl is not checked)
    _part(wd, "site", newest, newest, ["https://s.test/b", "https://s.test/c"])
    assert inv.raw_reconciles_with_crawl_log(wd).passed
