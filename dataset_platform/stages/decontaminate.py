"""Benchmark decontamination: drop documents that share an n-gram with an evaluation set.

A model evaluated on a benchmark whose questions it saw in training scores too high; the usual
defence (GPT-3, Llama, OLMo) is n-gram overlap against the test sets. Here:

Normalisation (the same for documents and benchmark items, with Arrow kernels over a batch):
NFKC, then lower-case; tokens are the maximal runs of letters, digits and combining marks
(punctuation, symbols and whitespace are dropped, so casing, quotes and spacing do not hide a
copy), except that every Han, Hiragana, Katakana and Hangul character (and the prolonged sound
mark) is a token of its own. Mixed text keeps its tokens in order.

N-grams: an item contributes its windows of ``ngram`` tokens that hold at least one non-CJK
token, and its windows of ``cjk_ngram`` tokens made only of CJK characters. The choice is made
per n-gram, from the tokens, not per document from ``lang``: benchmark items carry no language,
and a Chinese question quoted in an English page is still found. (With the default 13 / 13 both
are simply every 13-token window.) A field too short to give one n-gram is matched as a whole
(one n-gram of all its tokens) when it has at least :data:`MIN_WHOLE_FIELD_TOKENS` tokens;
shorter fields are skipped and counted (an MMLU choice such as "Mars" would match everything).
Documents are checked at every window length the index holds, whatever the window's tokens: a
window can only equal an indexed n-gram if it is the same token sequence.

Hashing: each distinct token of a batch is hashed once (xxh3_64 of its UTF-8); an n-gram's
64-bit hash is the polynomial ``((t0 * P + t1) * P + t2) ...`` over its token hashes modulo
2**64, rolled over the whole batch with numpy (one pass per extra token). The index is a sorted
uint64 array searched with ``numpy.searchsorted``; per hash it records the first item having it
(benchmarks in configuration order, items in file order, fields in order).

A document with any indexed n-gram is rejected (rule ``benchmark_overlap``); the value names the
item with the most matching n-grams in it (ties: the earliest item), as
``<benchmark>:<item id>:<field>`` (a list field as ``choices[2]``). Only ``text`` is matched.
Documents are streamed in bounded Arrow batches; ``kept`` is a view over the input filtered by a
positional keep flag, so it keeps the input's columns and order (id order in the pipeline) and
no text is held or sorted. Nothing here imports Dagster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np

from dataset_platform.config import BenchmarkSet, DecontaminationSettings
from dataset_platform.stages.base import (
    CliOption,
    Prepared,
    Stage,
    StageContext,
    StageOutput,
    StageResult,
    finish_stage,
    streamable_view,
)
from dataset_platform.text.jsonl import json_objects

NAME = "decontaminate"
RULE = "benchmark_overlap"
REQUIRED = ("id", "source", "url", "title", "text", "lang")
#: a field too short for one n-gram is matched whole from this many tokens (words / CJK chars)
MIN_WHOLE_FIELD_TOKENS = 8

_CJK = r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\x{30FC}]"  # U+30FC: the prolonged sound mark
# neither a token character nor (ASCII) whitespace: only punctuation runs are rewritten, not every
# gap between words (twice as fast); the split at whitespace then drops both
_NOT_TOKEN = r"[^\p{L}\p{N}\p{M}\s]+"
_P = np.uint64(0x100000001B3)
_MASK = (1 << 64) - 1


class BenchmarkError(ValueError):
    """A benchmark file is missing, malformed, or does not have the configured fields."""


@dataclass(frozen=True)
class BenchmarkStats:
    """What one benchmark contributed to the index."""

    name: str
    path: str
    items: int = 0
    fields: int = 0  # strings matched (a list field counts once per string)
    ngrams: int = 0  # distinct n-gram hashes (whole short fields included)
    whole_fields: int = 0  # too short for one n-gram, matched as a whole
    skipped_fields: int = 0  # shorter than MIN_WHOLE_FIELD_TOKENS tokens: not matched
    skipped_items: int = 0  # items with no n-gram at all: cannot be found


@dataclass
class BenchmarkIndex:
    """Sorted n-gram hashes of the evaluation sets and, per hash, the first item having it."""

    ngram: int
    cjk_ngram: int
    hashes: np.ndarray  # sorted, distinct uint64
    owner: np.ndarray  # int64, per hash: an index into ``sources``
    sources: list[tuple[str, str, str]]  # (benchmark name, item id, field)
    lengths: tuple[int, ...]  # the window lengths documents are checked at, ascending
    stats: list[BenchmarkStats] = field(default_factory=list)
    _bits: np.ndarray | None = field(default=None, repr=False, compare=False)

    @classmethod
    def empty(cls, ngram: int = 13, cjk_ngram: int = 13) -> BenchmarkIndex:
        return cls(ngram, cjk_ngram, np.zeros(0, np.uint64), np.zeros(0, np.int64), [], (), [])

    def __len__(self) -> int:
        return int(self.hashes.size)

    @property
    def benchmarks(self) -> list[str]:
        return [s.name for s in self.stats]

    def lookup(self, hashes: np.ndarray) -> np.ndarray:
        """The ``sources`` index of each hash, -1 where it is not in the index.

        Almost no document n-gram is in the index: a bit set over the top bits of the hashes
        (about 16 bits per indexed n-gram, so at most ~1/16 of the misses get through) answers
        most of them with one memory access each, before the binary search."""
        out = np.full(hashes.shape, -1, np.int64)
        if not self.hashes.size or not hashes.size:
            return out
        bits, shift = self._bitset()
        top = hashes >> shift
        maybe = np.flatnonzero((bits[top >> np.uint64(3)] >> (top & np.uint64(7)).astype(np.uint8)) & 1)
        if not maybe.size:
            return out
        q = hashes[maybe]
        at = np.minimum(np.searchsorted(self.hashes, q), self.hashes.size - 1)
        hit = self.hashes[at] == q
        out[maybe[hit]] = self.owner[at[hit]]
        return out

    def _bitset(self) -> tuple[np.ndarray, np.uint64]:
        k = int(min(32, max(16, np.ceil(np.log2(max(1, self.hashes.size) * 16)))))  # 2**k bits, <= 512 MB
        shift = np.uint64(64 - k)
        if self._bits is None or self._bits.size * 8 != 1 << k:
            top = self.hashes >> shift
            bits = np.zeros(1 << (k - 3), np.uint8)
            np.bitwise_or.at(bits, (top >> np.uint64(3)).astype(np.int64),
                             np.left_shift(1, (top & np.uint64(7)).astype(np.uint8)).astype(np.uint8))
            self._bits = bits
        return self._bits, shift

    def value(self, source: int) -> str:
        """The rejected value for a ``sources`` index: ``<benchmark>:<item id>:<field>``."""
        return ":".join(self.sources[source])


# ------------------------------------------------------------------------------- tokens, n-grams


def tokens(text: str) -> list[str]:
    """The tokens of one text, as matching sees them (for inspection and tests)."""
    import pyarrow as pa

    return _normalised_tokens(pa.array([text or ""], pa.string()))[1].to_pylist()


def _normalised_tokens(texts):
    """(text index of every token, the tokens as an Arrow string array), in text order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(texts, pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = pc.fill_null(arr.cast(pa.string()), "")
    norm = pc.utf8_lower(pc.utf8_normalize(arr, "NFKC"))
    spaced = pc.replace_substring_regex(norm, _NOT_TOKEN, " ")
    # every CJK character stands alone; RE2 only rewrites texts that have one
    spaced = pc.replace_substring_regex(spaced, f"({_CJK})", r" \1 ")
    parts = pc.utf8_split_whitespace(spaced)
    flat = pc.list_flatten(parts)
    text_of = np.repeat(np.arange(len(arr), dtype=np.int64),
                        pc.list_value_length(parts).to_numpy(zero_copy_only=False))
    keep = pc.not_equal(pc.binary_length(flat), 0)  # the split leaves "" at leading/trailing spaces
    return text_of[keep.to_numpy(zero_copy_only=False)], flat.filter(keep)


def token_hashes(texts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(text index, 64-bit hash, is-CJK flag) of every token of a batch of texts, in order.
    Each distinct token is hashed once (Arrow dictionary encoding)."""
    import pyarrow.compute as pc
    import xxhash

    text_of, flat = _normalised_tokens(texts)
    if not len(flat):
        return text_of, np.zeros(0, np.uint64), np.zeros(0, bool)
    enc = pc.dictionary_encode(flat)
    vocab = enc.dictionary
    vh = np.fromiter((xxhash.xxh3_64_intdigest(u.encode("utf-8")) for u in vocab.to_pylist()),
                     np.uint64, len(vocab))
    vcjk = pc.match_substring_regex(vocab, f"^{_CJK}$").to_numpy(zero_copy_only=False)
    ids = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return text_of, vh[ids], vcjk[ids]


def ngram_hash(token_hashes: list[int]) -> int:
    """The hash of one n-gram from its token hashes (what the rolling computation gives)."""
    h = 0
    for t in token_hashes:
        h = (h * int(_P) + int(t)) & _MASK
    return h


def _windows(th: np.ndarray, text_of: np.ndarray, n_texts: int,
             lengths: tuple[int, ...]) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(length, start position, hash) of every window of each length in ``lengths`` that lies
    inside one text, rolled over the whole batch: after step k, ``g[p]`` is the hash of tokens
    p .. p + k (positions index the concatenated tokens of all texts)."""
    if not th.size or not lengths:
        return
    counts = np.bincount(text_of, minlength=n_texts)
    end_of = np.cumsum(counts)[text_of]  # one past the last token of each token's text
    pos = np.arange(th.size, dtype=np.int64)
    room = end_of - pos  # tokens from here to the end of the text
    g = th.copy()
    wanted = set(lengths)
    with np.errstate(over="ignore"):
        for k in range(min(max(lengths), th.size)):  # no longer window fits in the batch
            if k:
                head = g[: th.size - k]
                head *= _P
                head += th[k:]
            if k + 1 in wanted:
                valid = np.flatnonzero(room >= k + 1)
                yield k + 1, valid, g[valid]


# ------------------------------------------------------------------------------- the index


def load_benchmarks(benchmarks: list[BenchmarkSet], *, ngram: int = 13, cjk_ngram: int = 13) -> BenchmarkIndex:
    """Read the evaluation sets (JSONL) into a :class:`BenchmarkIndex`.

    Items are identified by their ``id`` field if present, else ``<name>:<line number>``. The
    fields matched are ``BenchmarkSet.fields``, or else every string (or list of strings) field
    but ``id``. Raises :class:`BenchmarkError` naming the file (and line) for a missing file, a
    line that is not a JSON object, a configured field that no item has or that holds something
    other than text, and for two sets with the same name."""
    all_h, all_o, sources, stats = [], [], [], []
    lengths: set[int] = set()
    names: set[str] = set()
    for bench in benchmarks:
        name = bench.name or Path(bench.path).stem
        if name in names:
            raise BenchmarkError(f"two benchmarks are named {name!r}: give one a different `name`")
        names.add(name)
        strings, labels, item_of, n_items = _read_items(bench, name)
        base = len(sources)
        sources.extend(labels)
        h, o, whole_lens, st = _index_strings(strings, item_of, n_items, ngram, cjk_ngram)
        lengths.update(whole_lens)
        stats.append(BenchmarkStats(name, str(bench.path), items=n_items, fields=len(strings),
                                    ngrams=_distinct(h), **st))
        all_h.append(h)
        all_o.append(o + base)
    if not all_h or not sum(h.size for h in all_h):
        return BenchmarkIndex(ngram, cjk_ngram, np.zeros(0, np.uint64), np.zeros(0, np.int64), sources, (), stats)
    hs, owners = np.concatenate(all_h), np.concatenate(all_o)
    uniq, first = np.unique(hs, return_index=True)  # first occurrence: configuration, file, field order
    lengths.update({ngram, cjk_ngram})
    return BenchmarkIndex(ngram, cjk_ngram, uniq, owners[first].astype(np.int64), sources,
                          tuple(sorted(lengths)), stats)


def _distinct(h: np.ndarray) -> int:
    s = np.sort(h)
    return int(s.size and 1 + np.count_nonzero(s[1:] != s[:-1]))


def _read_items(bench: BenchmarkSet, name: str) -> tuple[list[str], list[tuple[str, str, str]], list[int], int]:
    """(strings to match, (name, item id, field) of each, item number of each, items)."""
    path = Path(bench.path)
    if not path.is_file():
        raise BenchmarkError(f"benchmark {name!r}: file not found: {path}")
    wanted = list(bench.fields)
    seen: set[str] = set()
    strings: list[str] = []
    labels: list[tuple[str, str, str]] = []
    item_of: list[int] = []
    n_items = 0
    for line_no, where, item in json_objects(path, BenchmarkError, prefix=f"benchmark {name!r}: ", what="an item"):
        item_id = str(item["id"]) if item.get("id") is not None else f"{name}:{line_no}"
        for key in wanted or [k for k in item if k != "id"]:
            if key not in item:
                continue
            seen.add(key)
            for label, text in _texts(item[key], key, strict=bool(wanted), where=f"benchmark {name!r}: {where}"):
                strings.append(text)
                labels.append((name, item_id, label))
                item_of.append(n_items)
        n_items += 1
    absent = [k for k in wanted if k not in seen]
    if absent:
        raise BenchmarkError(f"benchmark {name!r}: no item of {path} has the field(s) {', '.join(map(repr, absent))}")
    return strings, labels, item_of, n_items


def _texts(value, key: str, *, strict: bool, where: str) -> list[tuple[str, str]]:
    """(field label, text) of a field value: a string, or each string of a list as ``key[i]``.
    Other values are skipped by default and an error when the field was asked for by name."""
    if value is None:
        return []
    if isinstance(value, str):
        return [(key, value)]
    if isinstance(value, list) and all(isinstance(v, str) or v is None for v in value):
        return [(f"{key}[{i}]", v) for i, v in enumerate(value) if v is not None]
    if strict:
        raise BenchmarkError(f"{where}: field {key!r} must be a string or a list of strings, not {type(value).__name__}")
    return []


def _index_strings(strings: list[str], item_of: list[int], n_items: int, ngram: int, cjk_ngram: int,
                   chunk: int = 10_000) -> tuple[np.ndarray, np.ndarray, set[int], dict[str, int]]:
    """(n-gram hashes, string number of each, whole-field lengths used, counters) of one set."""
    hs, owners, whole_lens = [], [], set()
    has_ngram = np.zeros(len(strings), bool)
    n_tokens = np.zeros(len(strings), np.int64)
    short_lengths = tuple(range(MIN_WHOLE_FIELD_TOKENS, max(ngram, cjk_ngram)))
    for lo in range(0, len(strings), chunk):
        batch = strings[lo : lo + chunk]
        text_of, th, cjk = token_hashes(batch)
        counts = np.bincount(text_of, minlength=len(batch))
        n_tokens[lo : lo + len(batch)] = counts
        starts = np.concatenate([[0], np.cumsum(counts)])
        cjk_before = np.concatenate([[0], np.cumsum(cjk)])  # CJK tokens before each position
        whole = []  # (string, hash) of every whole-string window of a short length
        for size, at, h in _windows(th, text_of, len(batch), tuple(sorted({ngram, cjk_ngram, *short_lengths}))):
            if size in (ngram, cjk_ngram):
                n_cjk = cjk_before[at + size] - cjk_before[at]
                use = ((size == ngram) & (n_cjk < size)) | ((size == cjk_ngram) & (n_cjk == size))
                s = text_of[at[use]]
                hs.append(h[use])
                owners.append(s + lo)
                has_ngram[lo + s] = True
            if size in short_lengths:  # the window that is the whole string
                s = text_of[at]
                use = (at == starts[s]) & (counts[s] == size)
                whole.append((s[use] + lo, h[use]))
        for s, h in whole:
            short = ~has_ngram[s]
            hs.append(h[short])
            owners.append(s[short])
            whole_lens.update(n_tokens[s[short]].tolist())
    no_ngram = ~has_ngram
    whole_mask = no_ngram & (n_tokens >= MIN_WHOLE_FIELD_TOKENS)
    matched = has_ngram | whole_mask
    item_ok = np.zeros(n_items, bool)
    item_ok[np.asarray(item_of, np.int64)[matched]] = True
    st = {"whole_fields": int(whole_mask.sum()), "skipped_fields": int((no_ngram & ~whole_mask).sum()),
          "skipped_items": int(n_items - item_ok.sum())}
    h = np.concatenate(hs) if hs else np.zeros(0, np.uint64)
    o = np.concatenate(owners).astype(np.int64) if owners else np.zeros(0, np.int64)
    order = np.argsort(o, kind="stable")  # string order, so "first" means the earliest field
    return h[order], o[order], whole_lens, st


# ------------------------------------------------------------------------------- the stage


def match_batch(texts, index: BenchmarkIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(documents of a batch that overlap the index, the ``sources`` index chosen for each, every
    ``sources`` index found in the batch). The chosen source is the one with the most matching
    n-grams in the document, ties to the earliest."""
    text_of, th, _ = token_hashes(texts)
    n = len(texts)
    docs, owners = [], []
    for _size, at, h in _windows(th, text_of, n, index.lengths):
        o = index.lookup(h)
        hit = o >= 0
        if hit.any():
            docs.append(text_of[at[hit]])
            owners.append(o[hit])
    if not docs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    d, o = np.concatenate(docs), np.concatenate(owners)
    width = np.int64(max(1, len(index.sources)))
    pairs, hits = np.unique(d * width + o, return_counts=True)
    pd, po = pairs // width, pairs % width
    order = np.lexsort((po, -hits, pd))  # per document: most hits, then earliest source
    pd, po = pd[order], po[order]
    first = np.concatenate([[True], pd[1:] != pd[:-1]])
    return pd[first], po[first], np.unique(po)


def run_decontaminate(
    con: duckdb.DuckDBPyConnection,
    src_sql: str,
    settings: DecontaminationSettings | None,
    *,
    index: BenchmarkIndex | None = None,
    batch_size: int = 2000,
    log: Callable[[str], None] | None = print,
) -> StageResult:
    """Leaves ``kept`` (a view over ``src_sql``: every input column, in input order; keep the input
    readable until it is written) and ``rejected`` on ``con``.

    ``src_sql`` is FROM-able with at least id and text (source, url, title: NULL and lang 'und'
    when absent). ``index``: from
    :func:`load_benchmarks` (built here from ``settings`` when None; its n-gram sizes must be the
    settings'). ``result.extra`` has ``items:<b>``, ``ngrams:<b>``, ``matched:<b>`` (documents
    rejected for that benchmark), ``contaminated_items:<b>`` (items with an n-gram in some
    document), ``whole_fields:<b>``, ``skipped_fields:<b>`` and ``skipped_items:<b>``."""
    settings = settings or DecontaminationSettings()
    log = log or (lambda _m: None)
    cols = [r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {src_sql}").fetchall()]
    missing = [c for c in ("id", "text") if c not in cols]
    if missing:
        raise ValueError(f"decontaminate input needs the column(s) {', '.join(missing)} (has: {', '.join(cols)})")
    default = {"lang": "'und'"}
    fill = "".join(f", {default.get(c, 'NULL')}::VARCHAR AS {c}" for c in REQUIRED if c not in cols)
    if fill:  # (a file of documents may carry only id and text)
        src_sql = f"(SELECT *{fill} FROM {src_sql})"
    if index is None:
        index = load_benchmarks(settings.benchmarks, ngram=settings.ngram, cjk_ngram=settings.cjk_ngram)
    elif (index.ngram, index.cjk_ngram) != (settings.ngram, settings.cjk_ngram):
        raise ValueError(f"the benchmark index was built with n-grams {index.ngram}/{index.cjk_ngram}, "
                         f"the settings ask for {settings.ngram}/{settings.cjk_ngram}")
    streamable_view(con, "_dc_in", f"SELECT * FROM {src_sql}")  # batches are read on a second cursor
    n = con.sql("SELECT count(*) FROM _dc_in").fetchall()[0][0]
    con.sql("CREATE OR REPLACE TABLE _dc_hits (pos BIGINT, id VARCHAR, source VARCHAR, url VARCHAR, "
            "value VARCHAR, benchmark VARCHAR)")
    for s in index.stats:
        log(f"{NAME}: benchmark {s.name}: {s.items} items, {s.fields} fields, {s.ngrams} n-grams "
            f"({s.whole_fields} short fields matched whole, {s.skipped_fields} fields and "
            f"{s.skipped_items} items too short to match)")
    contaminated = np.zeros(0, np.int64)
    if not index.stats:
        log(f"{NAME}: no benchmarks configured: all {n} documents kept")
    elif not len(index):
        log(f"{NAME}: the benchmarks gave no n-gram: all {n} documents kept")
    else:
        contaminated = _scan(con, index, n, batch_size, log)
    if con.sql("SELECT count(*) FROM _dc_hits").fetchall()[0][0]:
        con.sql("CREATE OR REPLACE TABLE _dc_flags AS SELECT h.pos IS NULL AS keep FROM range(?) r(pos) "
                "LEFT JOIN _dc_hits h ON h.pos = r.pos ORDER BY r.pos", params=[n])
        con.sql("CREATE OR REPLACE VIEW kept AS SELECT s.* FROM _dc_in s POSITIONAL JOIN _dc_flags f WHERE f.keep")
    else:
        con.sql("CREATE OR REPLACE VIEW kept AS SELECT * FROM _dc_in")
    con.sql(f"CREATE OR REPLACE TABLE rejected AS SELECT id, source, url, '{NAME}' AS stage, '{RULE}' AS rule, "
            "value FROM _dc_hits ORDER BY id")
    result = finish_stage(con, NAME, input_rows=n)
    matched = dict(con.sql("SELECT benchmark, count(*) FROM _dc_hits GROUP BY 1").fetchall())
    hit_items = {}
    for src in np.unique(contaminated).tolist():
        b, item, _f = index.sources[src]
        hit_items.setdefault(b, set()).add(item)
    for s in index.stats:
        result.extra[f"items:{s.name}"] = s.items
        result.extra[f"ngrams:{s.name}"] = s.ngrams
        result.extra[f"matched:{s.name}"] = int(matched.get(s.name, 0))
        result.extra[f"contaminated_items:{s.name}"] = len(hit_items.get(s.name, ()))
        result.extra[f"whole_fields:{s.name}"] = s.whole_fields
        result.extra[f"skipped_fields:{s.name}"] = s.skipped_fields
        result.extra[f"skipped_items:{s.name}"] = s.skipped_items
    log(f"{NAME}: {result.rejected_rows} of {n} documents overlap a benchmark"
        + "".join(f", {b} {c}" for b, c in sorted(matched.items())))
    return result


def _scan(con: duckdb.DuckDBPyConnection, index: BenchmarkIndex, n: int, batch_size: int,
          log: Callable[[str], None]) -> np.ndarray:
    """Stream the texts in input order, append the overlapping documents to ``_dc_hits``; returns
    the ``sources`` indices found in some document (for the contaminated-items counter)."""
    import pyarrow as pa

    cur = con.cursor()
    reader = cur.sql(
        "SELECT CAST(id AS VARCHAR) AS id, CAST(source AS VARCHAR) AS source, CAST(url AS VARCHAR) AS url, "
        "CAST(text AS VARCHAR) AS text FROM _dc_in"
    ).to_arrow_reader(batch_size)
    bench_of = [b for b, _i, _f in index.sources]
    done, found, seen = 0, 0, []
    next_log = 100_000
    try:
        for batch in reader:
            docs, owners, found_sources = match_batch(batch.column("text"), index)
            if docs.size:
                take = pa.array(docs)
                hits = pa.table({
                    "pos": pa.array(docs + done, pa.int64()),
                    "id": batch.column("id").take(take),
                    "source": batch.column("source").take(take),
                    "url": batch.column("url").take(take),
                    "value": pa.array([index.value(o) for o in owners.tolist()], pa.string()),
                    "benchmark": pa.array([bench_of[o] for o in owners.tolist()], pa.string()),
                })
                con.register("_dc_batch", hits)
                con.sql("INSERT INTO _dc_hits SELECT * FROM _dc_batch")
                con.unregister("_dc_batch")
                found += docs.size
                seen.append(found_sources)
            done += batch.num_rows
            if done >= next_log or done == n:
                log(f"{NAME}: checked {done}/{n} documents, {found} overlap a benchmark")
                next_log = done + 100_000
    finally:
        cur.close()
    return np.concatenate(seen) if seen else np.zeros(0, np.int64)


# ------------------------------------------------------------------ as a stage of the graph


def _prepare(ctx: StageContext) -> Prepared:
    """The benchmark index, built once per materialisation; its fingerprint is that of the
    benchmark files' bytes and the matching settings."""
    import hashlib

    settings = ctx.settings or DecontaminationSettings()
    h = hashlib.sha256()
    for b in settings.benchmarks:
        h.update(b.model_dump_json().encode())
        try:
            h.update(hashlib.sha256(Path(b.path).read_bytes()).digest())
        except OSError:
            h.update(b"missing")
    index = load_benchmarks(settings.benchmarks, ngram=settings.ngram, cjk_ngram=settings.cjk_ngram)
    counters = {f"{k}:{s.name}": getattr(s, k) for s in index.stats for k in ("items", "ngrams")}
    return Prepared(state=index, fingerprint=h.hexdigest()[:32], counters=counters)


def _run(ctx: StageContext, src: str) -> StageOutput:
    res = run_decontaminate(ctx.con, src, ctx.settings, index=ctx.state, batch_size=ctx.batch_size, log=ctx.log)
    return StageOutput(kept=ctx.con.table("kept"), rejected=ctx.con.table("rejected"), result=res)


def summarise(con: duckdb.DuckDBPyConnection, _kept_sql: str, rejected_sql: str) -> dict:
    """Documents removed per evaluation set (the rejected value starts with its name)."""
    return {f"matched:{b}": int(n) for b, n in con.sql(
        f"SELECT split_part(value, ':', 1), count(*) FROM {rejected_sql} GROUP BY 1 ORDER BY 1").fetchall()}


def _cli_settings(args, _settings) -> DecontaminationSettings:
    fields = [f.strip() for f in (args.fields or "").split(",") if f.strip()]
    return DecontaminationSettings(
        benchmarks=[BenchmarkSet(path=str(Path(b).resolve()), fields=fields) for b in args.benchmark],
        ngram=args.ngram, cjk_ngram=args.cjk_ngram)


STAGE = Stage(
    name=NAME, input="labelled_documents", output="decontaminated_documents",
    settings=lambda p: p.decontamination, run=_run, prepare=_prepare, summarise=summarise,
    requires=("id", "text"), passthrough=("source", "url", "title", "lang"), parallel_parts=True,
    cli_options=(
        CliOption("--benchmark", {"required": True, "nargs": "+", "help": "JSONL evaluation set(s)"}),
        CliOption("--fields", {"default": None, "help": "comma-separated item fields to match (default: every "
                                                        "string field)"}),
        CliOption("--ngram", {"type": int, "default": 13, "help": "word n-gram length (default 13)"}),
        CliOption("--cjk-ngram", {"type": int, "default": 13, "help": "character n-gram length for CJK text "
                                                                      "(default 13)"}),
    ),
    cli_settings=_cli_settings,
    description="Labelled documents sharing no 13-gram (13 characters for CJK) with a configured evaluation set; "
                "matches go to rejected_documents with the benchmark item.",
)
