"""Item pipeline: append every response record to a gzip JSON Lines file."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import IO, Any

from scrapy.crawler import Crawler
from scrapy.statscollectors import StatsCollector

#: Stats keys the pipeline maintains (read by the progress reporter and the final summary).
STAT_PAGES = "dataset_platform/pages"
STAT_BYTES = "dataset_platform/bytes"
STAT_STATUS_PREFIX = "dataset_platform/status/"
STAT_OUTPUT_COMPLETE = "dataset_platform/output_complete"
STAT_WRITE_ERROR = "dataset_platform/write_error"


class GzipJsonLinesPipeline:
    """Writes ``json.dumps(item, ensure_ascii=False, sort_keys=True)`` lines to the file named by
    the ``DATASET_PLATFORM_OUTPUT`` setting (gzip with mtime 0 and no file name in the header).

    The file is complete (flushed and fsynced) only once the spider has closed; the caller renames
    it into place.
    """

    def __init__(self, path: str, stats: StatsCollector) -> None:
        if not path:
            raise ValueError("the DATASET_PLATFORM_OUTPUT setting (output file of the crawl) is not set")
        self.path = Path(path)
        self.stats = stats
        self._raw: IO[bytes] | None = None
        self._gz: gzip.GzipFile | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> GzipJsonLinesPipeline:
        assert crawler.stats is not None
        return cls(crawler.settings.get("DATASET_PLATFORM_OUTPUT", ""), crawler.stats)

    def open_spider(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._raw = open(self.path, "wb")
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0)

    def process_item(self, item: Any) -> Any:
        assert self._gz is not None, "pipeline used before open_spider"
        record = dict(item)
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        try:
            self._gz.write(line.encode("utf-8"))
        except OSError as e:  # e.g. disk full: the batch is incomplete, the crawl must fail
            self.stats.set_value(STAT_WRITE_ERROR, f"{type(e).__name__}: {e}")
            raise
        self.stats.inc_value(STAT_PAGES)
        self.stats.inc_value(STAT_BYTES, int(record.get("body_bytes") or 0))
        self.stats.inc_value(f"{STAT_STATUS_PREFIX}{record.get('status')}")
        return item

    def close_spider(self) -> None:
        if self._gz is None or self._raw is None:
            return
        self._gz.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        self._gz = self._raw = None
        if not self.stats.get_value(STAT_WRITE_ERROR):
            self.stats.set_value(STAT_OUTPUT_COMPLETE, 1)
