"""The landed batch file: see the module docstring of ``dataset_platform.ingest.files``."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from dataset_platform.contracts.records import LANDED_FIELDS

if TYPE_CHECKING:
    from dataset_platform.ingest.files import IngestSummary

Log = Callable[[str], None]

#: a progress line every this many records
PROGRESS_EVERY = 10_000
_DETAIL_MAX = 500


def quarantine_path_for(output_path: str | os.PathLike) -> Path:
    """``<batch without .jsonl.gz>.quarantine.jsonl`` (never matched by the loader's ``*.jsonl.gz``)."""
    out = Path(output_path)
    stem = out.name.removesuffix(".jsonl.gz")
    return out.with_name(stem + ".quarantine.jsonl")


class BatchWriter:
    """The batch (gzip JSONL, sorted keys, mtime 0) and its quarantine file, both atomic."""

    def __init__(self, out: Path, summary: IngestSummary, log: Log, source: str, name: str) -> None:
        self.out = out
        self.part = out.with_name(out.name + ".part")
        self.qpath = quarantine_path_for(out)
        self.qpart = self.qpath.with_name(self.qpath.name + ".part")
        self.summary = summary
        self.log = log
        self.prefix = f"{source}: {name}"
        out.parent.mkdir(parents=True, exist_ok=True)
        self._raw: IO[bytes] = open(self.part, "wb")  # noqa: SIM115 - closed by commit/abort
        # compresslevel 6: ~3x faster than the default 9, batches ~2% larger
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=6)
        self._q: IO[str] | None = None

    def write(self, rec: dict[str, Any]) -> None:
        extra = set(rec) - set(LANDED_FIELDS)
        if extra:
            raise AssertionError(f"not landed fields: {sorted(extra)}")
        full = {k: rec.get(k) for k in LANDED_FIELDS}
        if full["detail"] is not None and len(full["detail"]) > _DETAIL_MAX:
            full["detail"] = full["detail"][:_DETAIL_MAX]
        self._gz.write((json.dumps(full, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8"))
        s = self.summary
        s.records += 1
        s.outcomes[full["outcome"]] = s.outcomes.get(full["outcome"], 0) + 1
        if s.records % PROGRESS_EVERY == 0:
            self.log(f"{self.prefix}: {s.records} records, {s.bytes_read / 1e6:.1f} MB read")

    def quarantine(self, file: str, line: int, error: str, raw: str) -> None:
        if self._q is None:
            self._q = open(self.qpart, "w", encoding="utf-8", newline="\n")  # noqa: SIM115 - closed by commit/abort
        self._q.write(json.dumps({"file": file, "line": line, "error": error, "raw": raw}, ensure_ascii=False) + "\n")
        self.summary.quarantined += 1

    def commit(self) -> None:
        # The quarantine first: once the batch exists, everything it refers to exists.
        if self._q is not None:
            self._q.flush()
            os.fsync(self._q.fileno())
            self._q.close()
            self._q = None
            os.replace(self.qpart, self.qpath)
            self.summary.quarantine_path = str(self.qpath)
        self._gz.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        os.replace(self.part, self.out)

    def abort(self) -> None:
        for f in (self._q, self._gz, self._raw):
            try:
                if f is not None:
                    f.close()
            except Exception:  # noqa: BLE001, S110 - cleaning up after a failure that is re-raised
                pass
        for p in (self.part, self.qpart):
            p.unlink(missing_ok=True)
