"""The MinHash inner loop compiled with numba: unit hashes, n-gram shingles and the minimum per
permutation in one pass over a batch's words, without materialising the shingles.

It computes exactly what :func:`core.minhash.shingle_hashes` + :func:`core.minhash.signatures`
compute for space-separated scripts (the same xxh64 unit hashes, the same polynomial shingles, the
same permutations; ``tests/test_dedup.py`` checks equality bit for bit), but per batch of news-sized
documents it takes about half the time of the Arrow dictionary + numpy passes it replaces (see
BENCHMARKS.md, "Dedup throughput"). xxh64 is written out here because numba cannot call the xxhash
C library per unit; it is checked against that library in the tests.
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint64

_P1 = uint64(0x9E3779B185EBCA87)
_P2 = uint64(0xC2B2AE3D27D4EB4F)
_P3 = uint64(0x165667B19E3779F9)
_P4 = uint64(0x85EBCA77C2B2AE63)
_P5 = uint64(0x27D4EB2F165667C5)
_SHINGLE = uint64(0x100000001B3)  # core.minhash._P


@njit(inline="always")
def _rotl(x, r):
    return (x << uint64(r)) | (x >> uint64(64 - r))


@njit(inline="always")
def _read(data, i, width):
    """``width`` bytes of ``data`` from ``i`` as a little-endian unsigned integer."""
    v = uint64(0)
    for k in range(width):
        v |= uint64(data[i + k]) << uint64(8 * k)
    return v


@njit(inline="always")
def _round(acc, lane):
    acc = acc + lane * _P2
    acc = _rotl(acc, 31)
    return acc * _P1


@njit(inline="always")
def _merge(h, v):
    h = h ^ _round(uint64(0), v)
    return h * _P1 + _P4


@njit(cache=True)
def xxh64(data, start, end, seed):
    """xxh64 of ``data[start:end]`` (a uint8 array), as ``xxhash.xxh64_intdigest``."""
    n = end - start
    i = start
    if n >= 32:
        v1 = seed + _P1 + _P2
        v2 = seed + _P2
        v3 = seed
        v4 = seed - _P1
        limit = end - 32
        while i <= limit:
            v1 = _round(v1, _read(data, i, 8))
            v2 = _round(v2, _read(data, i + 8, 8))
            v3 = _round(v3, _read(data, i + 16, 8))
            v4 = _round(v4, _read(data, i + 24, 8))
            i += 32
        h = _rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)
        h = _merge(h, v1)
        h = _merge(h, v2)
        h = _merge(h, v3)
        h = _merge(h, v4)
    else:
        h = seed + _P5
    h = h + uint64(n)
    while i + 8 <= end:
        h = h ^ _round(uint64(0), _read(data, i, 8))
        h = _rotl(h, 27) * _P1 + _P4
        i += 8
    if i + 4 <= end:
        h = h ^ (_read(data, i, 4) * _P1)
        h = _rotl(h, 23) * _P2 + _P3
        i += 4
    while i < end:
        h = h ^ (uint64(data[i]) * _P5)
        h = _rotl(h, 11) * _P1
        i += 1
    h = h ^ (h >> uint64(33))
    h = h * _P2
    h = h ^ (h >> uint64(29))
    h = h * _P3
    h = h ^ (h >> uint64(32))
    return h


@njit(inline="always")
def _is_gap(c):
    # the characters core.minhash._NON_WORD_RE2 leaves between units: RE2's \s, [\t\n\f\r ]
    return c == 32 or c == 9 or c == 10 or c == 12 or c == 13


@njit(cache=True, nogil=True)  # (no Python objects inside: batches can be signed on threads)
def sign_spaced(data, offsets, ngram, a, b, seed, sig):
    """Fill ``sig`` (documents x permutations, preset to the empty value) from texts whose units
    are separated by runs of ASCII whitespace (as ``_NON_WORD_RE2`` leaves them): ``data`` the UTF-8 bytes,
    ``offsets`` the documents' start offsets (n + 1). A document with fewer than ``ngram`` units is
    one shingle; a document without units keeps the empty value."""
    n_docs = offsets.size - 1
    n_perm = a.size
    longest = 0
    for d in range(n_docs):
        longest = max(longest, offsets[d + 1] - offsets[d])
    th = np.empty(longest // 2 + 1, np.uint64)  # unit hashes of one document
    for d in range(n_docs):
        end = offsets[d + 1]
        i = offsets[d]
        m = 0
        while i < end:
            while i < end and _is_gap(data[i]):
                i += 1
            if i >= end:
                break
            j = i
            while j < end and not _is_gap(data[j]):
                j += 1
            th[m] = xxh64(data, i, j, seed)
            m += 1
            i = j
        if m == 0:
            continue
        n = min(ngram, m)
        count = m - n + 1
        for s in range(count):  # shingle hashes of the document, in place of its unit hashes
            g = th[s]
            for k in range(1, n):
                g = g * _SHINGLE + th[s + k]
            th[s] = g
        row = sig[d]
        s = 0
        while s + 8 <= count:  # eight shingles per pass over the permutations: an eighth of the stores
            g0, g1, g2, g3 = th[s], th[s + 1], th[s + 2], th[s + 3]
            g4, g5, g6, g7 = th[s + 4], th[s + 5], th[s + 6], th[s + 7]
            for p in range(n_perm):
                ap, bp = a[p], b[p]
                v = min(min(ap * g0 + bp, ap * g1 + bp), min(ap * g2 + bp, ap * g3 + bp))
                w = min(min(ap * g4 + bp, ap * g5 + bp), min(ap * g6 + bp, ap * g7 + bp))
                row[p] = min(row[p], min(v, w))
            s += 8
        while s < count:
            g = th[s]
            for p in range(n_perm):
                row[p] = min(row[p], a[p] * g + b[p])
            s += 1
