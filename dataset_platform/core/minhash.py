"""MinHash signatures and LSH band keys, vectorised over a batch of documents.

Shingles: word n-grams (lower-cased ``\\w+`` words; default n = 5) for space-separated scripts;
character n-grams of the word characters for Chinese and Japanese (and any text that is mostly
CJK), so that no whitespace "words" are needed. A text shorter than n units is one shingle.

Hashing: each distinct unit is hashed once with xxh64 (seeded); an n-gram's hash combines its
units' hashes (a polynomial over 64-bit words), so shingles are 64-bit. Permutation ``p`` maps a
shingle ``x`` to ``a_p * x + b_p mod 2**64`` with odd ``a_p`` (a bijection of the 64-bit words);
the signature is the minimum per permutation over the document's shingles, computed for the whole
batch at once with ``numpy.minimum.reduceat``. Band ``k`` of a signature (rows ``k*r .. k*r+r-1``)
is folded into one 64-bit band key. Nothing here imports DuckDB or Dagster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_WORD = re.compile(r"\w+")
_CHAR = re.compile(r"\w")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_P = np.uint64(0x100000001B3)
_MIX = np.uint64(0x9E3779B97F4A7C15)
EMPTY = np.iinfo(np.uint64).max


@dataclass(frozen=True)
class MinHashParams:
    ngram: int = 5
    cjk_ngram: int = 5
    bands: int = 14
    rows: int = 8
    seed: int = 1

    @property
    def permutations(self) -> int:
        return self.bands * self.rows

    def coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        a = rng.integers(1, 2**63, size=self.permutations, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        b = rng.integers(0, 2**63, size=self.permutations, dtype=np.uint64)
        return a, b


def is_cjk(text: str, lang: str | None = None) -> bool:
    """Chinese/Japanese by language code, or by script when the language is unknown."""
    if lang in ("zh", "ja"):
        return True
    if lang not in (None, "", "und"):
        return False
    sample = text[:2000]
    return len(_CJK.findall(sample)) > 0.3 * max(1, len(sample.replace(" ", "")))


def units(text: str, cjk: bool) -> list[str]:
    """The units shingles are made of: lower-cased words, or word characters for CJK."""
    return _CHAR.findall(text.lower()) if cjk else _WORD.findall(text.lower())


def shingle_hashes(texts: list[str], langs: list[str | None] | None, params: MinHashParams) -> tuple[np.ndarray, np.ndarray]:
    """(shingle hashes of all documents, concatenated; start offset of each document, n + 1 long)."""
    import xxhash

    import pyarrow as pa
    import pyarrow.compute as pc

    langs = langs or [None] * len(texts)
    cjk = [is_cjk(t or "", lang) for t, lang in zip(texts, langs)]
    per_doc = [units(t or "", c) for t, c in zip(texts, cjk)]
    ns = np.where(np.array(cjk, bool), params.cjk_ngram, params.ngram).astype(np.int64)
    lens = np.fromiter(map(len, per_doc), np.int64, len(per_doc))
    # units -> ids with Arrow's dictionary encoding (C++), each distinct unit hashed once
    enc = pc.dictionary_encode(pa.array(per_doc, pa.list_(pa.string())).flatten())
    ids = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    seed = params.seed
    vocab = enc.dictionary.to_pylist()
    vh = np.fromiter((xxhash.xxh64_intdigest(u.encode("utf-8"), seed) for u in vocab), np.uint64, len(vocab))
    th = vh[ids] if ids.size else np.zeros(0, np.uint64)
    starts = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    doc_of = np.repeat(np.arange(len(texts)), lens)
    pos = np.arange(th.size) - starts[doc_of] if th.size else np.zeros(0, np.int64)
    # n per document: shingles start where at least n units remain; a shorter document is one shingle
    n_doc = np.minimum(ns, np.maximum(lens, 1))
    n_tok = n_doc[doc_of] if th.size else np.zeros(0, np.int64)
    remaining = lens[doc_of] - pos if th.size else np.zeros(0, np.int64)
    g = th.copy()
    with np.errstate(over="ignore"):
        for k in range(1, int(n_doc.max()) if len(texts) else 1):
            nxt = np.zeros_like(th)
            nxt[:-k or None] = th[k:]
            use = n_tok > k  # this n-gram has a (k+1)-th unit
            g = np.where(use, g * _P + nxt, g)
    valid = remaining >= n_tok
    sh = g[valid]
    sh_doc = doc_of[valid]
    counts = np.bincount(sh_doc, minlength=len(texts)) if sh.size else np.zeros(len(texts), np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return sh, offsets


def signatures(sh: np.ndarray, offsets: np.ndarray, params: MinHashParams) -> np.ndarray:
    """MinHash signatures (documents x permutations, uint64); a document without shingles gets
    :data:`EMPTY` everywhere."""
    n = offsets.size - 1
    a, b = params.coefficients()
    sig = np.full((n, params.permutations), EMPTY, np.uint64)
    has = np.flatnonzero(np.diff(offsets) > 0)
    if has.size == 0:
        return sig
    starts = offsets[has]
    buf = np.empty_like(sh)
    with np.errstate(over="ignore"):
        for p in range(params.permutations):  # one contiguous pass per permutation
            np.multiply(sh, a[p], out=buf)
            np.add(buf, b[p], out=buf)
            sig[has, p] = np.minimum.reduceat(buf, starts)
    return sig


def band_keys(sig: np.ndarray, params: MinHashParams) -> np.ndarray:
    """One 64-bit key per (document, band): documents x bands (uint64)."""
    n = sig.shape[0]
    keys = np.zeros((n, params.bands), np.uint64)
    with np.errstate(over="ignore"):
        for r in range(params.rows):
            col = sig[:, np.arange(params.bands) * params.rows + r]  # row r of every band
            keys = (keys ^ col) * _MIX + np.uint64(r + 1)
    return keys


def sign_batch(batch, params: MinHashParams):
    """Signatures and band keys of a batch (Arrow, columns ``id``, ``content_hash``, ``text``,
    ``lang``): a record batch of id, content_hash, sig (fixed-size binary, permutations x 8 bytes,
    little-endian uint64) and keys (list of ``bands`` uint64; null for a document without shingles).
    Top-level and Arrow in / Arrow out, so it runs in worker processes."""
    import pyarrow as pa

    sh, off = shingle_hashes(batch.column("text").to_pylist(), batch.column("lang").to_pylist(), params)
    sig = signatures(sh, off, params)
    keys = band_keys(sig, params)
    n = sig.shape[0]
    empty = (sig == EMPTY).all(axis=1)
    sig_arr = pa.FixedSizeBinaryArray.from_buffers(pa.binary(params.permutations * 8), n,
                                                   [None, pa.py_buffer(np.ascontiguousarray(sig).tobytes())])
    key_arr = pa.FixedSizeListArray.from_arrays(pa.array(keys.ravel(), pa.uint64()), params.bands,
                                                mask=pa.array(empty))
    return pa.RecordBatch.from_arrays([batch.column("id"), batch.column("content_hash"), sig_arr,
                                       key_arr.cast(pa.list_(pa.uint64()))],
                                      names=["id", "content_hash", "sig", "keys"])


def sig_matrix(blobs, permutations: int) -> np.ndarray:
    """An Arrow binary column of equal-width signatures (as :func:`sign_batch` writes them and
    DuckDB returns them) as a documents x permutations uint64 array, without a copy per row."""
    import pyarrow as pa

    if isinstance(blobs, pa.ChunkedArray):
        blobs = blobs.combine_chunks()
    n = len(blobs)
    if n == 0:
        return np.zeros((0, permutations), np.uint64)
    if blobs.null_count:
        raise ValueError("a signature is missing")
    if pa.types.is_fixed_size_binary(blobs.type):
        data = np.frombuffer(blobs.buffers()[1], np.uint8)[blobs.offset * permutations * 8 :]
        return data[: n * permutations * 8].view(np.uint64).reshape(n, permutations)
    off_type = np.int64 if pa.types.is_large_binary(blobs.type) else np.int32
    offsets = np.frombuffer(blobs.buffers()[1], off_type)[blobs.offset : blobs.offset + n + 1]
    if not (np.diff(offsets) == permutations * 8).all():
        raise ValueError(f"signatures must be {permutations * 8} bytes each (were they made with other settings?)")
    data = np.frombuffer(blobs.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    return data.view(np.uint64).reshape(n, permutations)


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Share of equal signature rows, per pair of rows of ``sig_a`` / ``sig_b``."""
    return (sig_a == sig_b).mean(axis=1)


def exact_jaccard(text_a: str, text_b: str, params: MinHashParams, lang: str | None = None) -> float:
    """Jaccard similarity of the two texts' shingle sets (for verification and evaluation)."""
    sh, off = shingle_hashes([text_a, text_b], [lang, lang], params)
    a, b = set(sh[off[0] : off[1]].tolist()), set(sh[off[1] : off[2]].tolist())
    return len(a & b) / len(a | b) if a or b else 1.0
