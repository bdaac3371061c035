"""Blocklists applied at extraction: domains and URL prefixes, and banned words.

``pipeline.extract.blocklist`` (config.BlocklistSettings) names the lists; the extract stage
(stages/extract.py) applies them in two set-based steps, each with its own rule in
``rejected_documents`` (stage ``extract``, registry: ``contracts.rules.BLOCKLIST_RULES``):

- **domains and URLs**, before any page is parsed (a blocked page costs no extraction):
  ``blocklist.domain`` when the page's host is a listed domain or a subdomain of one,
  ``blocklist.url`` when its URL (host + path, without scheme) starts with a listed URL prefix
  at a path boundary (``adult.test/videos`` blocks ``adult.test/videos``, ``adult.test/videos/1``
  and ``adult.test/videos?page=2``, not ``adult.test/videos-of-cats``; a prefix ending in ``/`` or
  ``?`` blocks anything after it). The value is the listed entry (the most specific that matched).
  Hosts and entries are normalised alike: lower case, no scheme, user, port or trailing dot, and
  a leading ``www.`` (``www2.`` ...) removed. Matching is a DuckDB hash join of each page's host
  and its parent domains (``a.b.adult.test``, ``b.adult.test``, ``adult.test``, ``test``) with
  the domain set, and of its host with the URL entries' hosts: no loop over the list per page.
- **banned words**, on the extracted title and text: one RE2 pattern for Latin-script entries
  (case-insensitive, whole words, an optional plural ``s``/``es``; spaces inside a phrase match
  any run of whitespace) and one for Chinese and Japanese entries (substrings: those scripts do not
  separate words), both run by DuckDB's ``regexp_extract_all`` over the whole batch. A document is
  dropped (``blocklist.words``) only when it has at least ``min_word_hits`` occurrences, of at least
  ``min_distinct_words`` different entries, and at least ``min_hits_per_1000_chars`` of them per
  1,000 characters: a news story naming a website once, or a long text with a few incidental
  words, is kept. The value: ``"<hits> hits (<per 1000 chars> per 1000 chars): <entries found>"``.

List files: a **UT1 category folder** (e.g. ``blacklists/adult``: its ``domains`` file, one domain
per line, and its ``urls`` file, one ``host/path`` prefix per line; other files of the folder,
such as ``expressions``, are not read) or a **plain file** (a line whose URL has a path beyond
``/`` is a URL prefix, any other line a domain; ``http://`` and ``https://`` are accepted). Word
files hold one word or phrase per line. Everywhere ``#`` starts a comment and blank lines are
ignored.

The lists are read once per materialisation (:func:`prepare`); what enters the extract stage's
fingerprint is the content of the normalised lists (sorted entries, the words and the thresholds'
settings through the stage settings), so editing a list file recomputes extraction and every layer
below, while moving or re-commenting it recomputes nothing.

The built-in word list (``default_words``, on by default) was written for this project: explicit
adult terms in English and Chinese, chosen to be rare outside adult pages. Clinical, legal and
news words (sex, pornography, nude, rape, 色情, 淫秽 ...) are left out on purpose, and so are
Chinese terms that occur inside ordinary text across a word boundary (做爱 in 做爱心, 口交 in
出口交易, 性交 in 男性交往, 中出 in 其中出现).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

#: Explicit adult terms in English (lower case; a plural s/es is matched too).
DEFAULT_WORDS_EN: tuple[str, ...] = (
    "porn", "porno", "pornstar", "xxx", "hentai", "milf", "blowjob",
    "blow job", "handjob", "hand job", "rimjob", "footjob", "cumshot", "creampie", "gangbang", "bukkake",
    "deepthroat", "camgirl", "sexcam", "sex cam", "sex chat", "live sex", "sex video", "sex tape", "hot sex",
    "anal sex", "phone sex", "cybersex", "hardcore sex", "nude pic", "nude girl", "naked girl", "horny", "slut",
    "dildo", "fleshlight", "orgy", "threesome", "striptease", "tits", "titties", "boobs", "pussy", "cunt",
    "bdsm", "upskirt", "jizz", "jerk off", "adult video", "adult dating", "adult chat", "erotic massage",
    "escort girl", "pornhub", "xvideos", "xhamster", "redtube", "youporn", "brazzers",
)
#: Explicit adult terms in Chinese (matched as substrings).
DEFAULT_WORDS_ZH: tuple[str, ...] = (
    "黄片", "毛片", "三级片", "成人视频", "成人电影", "成人影片", "成人网站", "成人直播", "黄色网站", "黄色视频",
    "色情网站", "色情视频", "色情片", "色情图片", "av女优", "一夜情", "裸聊", "约炮", "肛交", "骚货", "淫荡",
    "巨乳", "爆乳", "无码", "潮吹", "激情视频", "激情聊天", "啪啪啪", "操逼", "屄", "鸡巴", "裸照", "免费看片",
)

DOMAIN, URL, WORDS = "blocklist.domain", "blocklist.url", "blocklist.words"

# Chinese, Japanese and Korean characters: such an entry matches as a substring
_CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f]")
_RE2_SPECIAL = set("\\.^$|?*+()[]{}")


class BlocklistError(ValueError):
    """A list file is missing or is not what it should be."""


@dataclass(frozen=True)
class Blocklist:
    """The normalised lists, ready for one extract run (picklable: Ray tasks get it)."""

    domains: pa.Table | None = None  # column domain
    urls: pa.Table | None = None  # columns host, rest
    latin_pattern: str | None = None
    cjk_pattern: str | None = None
    min_hits: int = 3
    min_distinct: int = 2
    min_per_1000: float = 2.0
    fingerprint: str = ""
    counters: dict = field(default_factory=dict)

    @property
    def has_addresses(self) -> bool:
        return bool((self.domains is not None and self.domains.num_rows) or (self.urls is not None and self.urls.num_rows))

    @property
    def has_words(self) -> bool:
        return bool(self.latin_pattern or self.cjk_pattern)


# ------------------------------------------------------------------ reading the lists


def _lines(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BlocklistError(f"{path}: cannot read the list ({e.strerror or e}); fix the path in "
                             "pipeline.extract.blocklist (relative to sources.yaml)") from None
    out = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        line = line.split("#", 1)[0].strip() if "#" in line else line.strip()
        if line:
            out.append(line)
    return out


def read_address_lists(paths: list[str]) -> list[tuple[str, str]]:
    """(kind, entry) of every list: kind ``domain`` / ``url`` (UT1 folder files) or ``plain``."""
    rows: list[tuple[str, str]] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files = [(kind, path / kind) for kind in ("domains", "urls") if (path / kind).is_file()]
            if not files:
                raise BlocklistError(
                    f"{path}: a folder without a 'domains' or 'urls' file; name a UT1 category folder "
                    "(e.g. blacklists/adult) or a plain file of domains and URLs")
            for kind, f in files:
                rows += [(kind[:-1], e) for e in _lines(f)]
        elif path.exists():
            rows += [("plain", e) for e in _lines(path)]
        else:
            raise BlocklistError(f"{path}: blocklist not found; name a UT1 category folder or a file of domains and "
                                 "URLs (pipeline.extract.blocklist.lists, relative to sources.yaml)")
    return rows


def read_words(settings) -> list[str]:
    """The banned words: built-in (when ``default_words``), ``words``, then ``word_lists``;
    lower case, whitespace folded, without duplicates (sorted)."""
    words = list(DEFAULT_WORDS_EN + DEFAULT_WORDS_ZH) if settings.default_words else []
    words += settings.words
    for p in settings.word_lists:
        path = Path(p)
        if not path.is_file():
            raise BlocklistError(f"{path}: word list not found; name a file of banned words, one per line "
                                 "(pipeline.extract.blocklist.word_lists, relative to sources.yaml)")
        words += _lines(path)
    return sorted({" ".join(w.lower().split()) for w in words if w.strip()})


def _escape(word: str) -> str:
    return "".join("\\s+" if c == " " else "\\" + c if c in _RE2_SPECIAL else c for c in word)


def word_patterns(words: list[str]) -> tuple[str | None, str | None]:
    """(Latin pattern, CJK pattern) for RE2: the entries in one alternation each, longest first."""
    ordered = sorted(words, key=lambda w: (-len(w), w))
    latin = [_escape(w) for w in ordered if not _CJK.search(w)]
    cjk = [_escape(w) for w in ordered if _CJK.search(w)]
    return ((r"(?i)\b(" + "|".join(latin) + r")(?:e?s)?\b") if latin else None,
            ("(?i)(" + "|".join(cjk) + ")") if cjk else None)


# ------------------------------------------------------------------ URL normalisation (SQL)

_MACROS = r"""
CREATE OR REPLACE TEMP MACRO _bl_s1(u) AS regexp_replace(lower(trim(u)), '^[a-z][a-z0-9+.-]*://', '');
CREATE OR REPLACE TEMP MACRO _bl_auth(u) AS regexp_extract(_bl_s1(u), '^[^/?#]*');
CREATE OR REPLACE TEMP MACRO _bl_host(u) AS
  regexp_replace(trim(regexp_replace(regexp_replace(_bl_auth(u), '^.*@', ''), ':[0-9]*$', ''), '.'), '^www[0-9]*\.', '');
CREATE OR REPLACE TEMP MACRO _bl_rest(u) AS regexp_replace(substr(_bl_s1(u), length(_bl_auth(u)) + 1), '#.*$', '');
"""


def _macros(con: duckdb.DuckDBPyConnection) -> None:
    for stmt in _MACROS.strip().split(";"):
        if stmt.strip():
            con.sql(stmt)


def load(con: duckdb.DuckDBPyConnection, settings) -> Blocklist:
    """Read and normalise the lists of ``settings`` (config.BlocklistSettings) on ``con``."""
    _macros(con)
    rows = read_address_lists(list(settings.lists))
    entries = pa.table({"kind": pa.array([k for k, _ in rows], pa.string()),
                        "entry": pa.array([e for _, e in rows], pa.string())})
    con.register("_bl_entries", entries)
    try:
        con.sql("""
            CREATE OR REPLACE TEMP TABLE _bl_norm AS
            SELECT kind, _bl_host(entry) AS host,
                   CASE WHEN _bl_rest(entry) = '/' THEN '' ELSE _bl_rest(entry) END AS rest
            FROM _bl_entries
        """)
    finally:
        con.unregister("_bl_entries")
    domains = con.sql("""
        SELECT DISTINCT host AS domain FROM _bl_norm
        WHERE host <> '' AND (kind = 'domain' OR (kind = 'plain' AND rest = ''))
        ORDER BY domain
    """).to_arrow_table()
    urls = con.sql("""
        SELECT DISTINCT host, rest FROM _bl_norm
        WHERE host <> '' AND (kind = 'url' OR (kind = 'plain' AND rest <> ''))
        ORDER BY host, rest
    """).to_arrow_table()
    con.sql("DROP TABLE _bl_norm")
    words = read_words(settings)
    latin, cjk = word_patterns(words)
    h = hashlib.sha256()
    for name, table, cols in (("domains", domains, ("domain",)), ("urls", urls, ("host", "rest"))):
        con.register("_bl_t", table)
        digest = con.sql(f"SELECT md5(coalesce(string_agg({' || chr(9) || '.join(cols)}, chr(10) "
                         f"ORDER BY {', '.join(cols)}), ''))::VARCHAR FROM _bl_t").fetchall()[0][0]
        con.unregister("_bl_t")
        h.update(f"{name}:{digest}\n".encode())
    h.update(("words:" + "\n".join(words)).encode())
    return Blocklist(
        domains=domains, urls=urls, latin_pattern=latin, cjk_pattern=cjk,
        min_hits=settings.min_word_hits, min_distinct=settings.min_distinct_words,
        min_per_1000=float(settings.min_hits_per_1000_chars), fingerprint=h.hexdigest()[:32],
        counters={"domains": domains.num_rows, "url_prefixes": urls.num_rows, "words": len(words)},
    )


def check(settings) -> list[tuple[str, str]]:
    """(field, problem) for every list of ``settings`` that cannot be read (for a pre-flight)."""
    out = []
    try:
        read_address_lists(list(settings.lists))
    except BlocklistError as e:
        out.append(("pipeline.extract.blocklist.lists", str(e)))
    try:
        read_words(settings)
    except BlocklistError as e:
        out.append(("pipeline.extract.blocklist.word_lists", str(e)))
    return out


# ------------------------------------------------------------------ applying them


def address_hits(con: duckdb.DuckDBPyConnection, bl: Blocklist, pages_sql: str) -> duckdb.DuckDBPyRelation:
    """(id, rule, value) of the pages of ``pages_sql`` (id, url) a domain or URL entry blocks; the
    domain rule wins over the URL rule; left as table ``_bl_hits`` on ``con``."""
    _macros(con)
    con.sql(f"""
        CREATE OR REPLACE TEMP TABLE _bl_pages AS
        SELECT id, _bl_host(url) AS host, _bl_rest(url) AS rest FROM ({pages_sql}) WHERE url IS NOT NULL
    """)
    con.sql("CREATE OR REPLACE TEMP TABLE _bl_hits (id VARCHAR, rule VARCHAR, value VARCHAR)")
    if bl.domains is not None and bl.domains.num_rows:
        con.register("_bl_domains", bl.domains)
        con.sql(f"""
            INSERT INTO _bl_hits
            SELECT s.id, '{DOMAIN}', max_by(d.domain, length(d.domain))
            FROM (SELECT id, unnest(list_transform(range(len(parts)),
                                                    lambda i: array_to_string(parts[i + 1:], '.'))) AS suffix
                  FROM (SELECT id, string_split(host, '.') AS parts FROM _bl_pages WHERE host <> '')) s
            JOIN _bl_domains d ON d.domain = s.suffix
            GROUP BY s.id
        """)
        con.unregister("_bl_domains")
    if bl.urls is not None and bl.urls.num_rows:
        con.register("_bl_urls", bl.urls)
        con.sql(f"""
            INSERT INTO _bl_hits
            SELECT p.id, '{URL}', max_by(u.host || u.rest, length(u.rest))
            FROM _bl_pages p JOIN _bl_urls u ON u.host = p.host
            WHERE starts_with(p.rest, u.rest)
              AND (u.rest = '' OR length(p.rest) = length(u.rest) OR right(u.rest, 1) IN ('/', '?', '&', '=')
                   OR substr(p.rest, length(u.rest) + 1, 1) IN ('/', '?'))
              AND p.id NOT IN (SELECT id FROM _bl_hits)
            GROUP BY p.id
        """)
        con.unregister("_bl_urls")
    con.sql("DROP TABLE _bl_pages")
    return con.table("_bl_hits")


def word_hits(con: duckdb.DuckDBPyConnection, bl: Blocklist, docs_sql: str) -> duckdb.DuckDBPyRelation:
    """(id, rule, value) of the documents of ``docs_sql`` (id, title, text) over the word
    thresholds; left as table ``_bl_word_hits`` on ``con``."""
    parts = []
    for pattern, group in ((bl.latin_pattern, 1), (bl.cjk_pattern, 1)):
        if pattern:
            parts.append(f"regexp_extract_all(body, {_sql_str(pattern)}, {group})")
    found = parts[0] if len(parts) == 1 else f"list_concat({', '.join(parts)})"
    con.sql(f"""
        CREATE OR REPLACE TEMP TABLE _bl_word_hits AS
        WITH d AS (SELECT id, coalesce(title || chr(10), '') || coalesce(text, '') AS body FROM ({docs_sql})),
        m AS (
          SELECT id, length(body) AS n_chars,
                 list_transform({found}, lambda x: regexp_replace(lower(x), '\\s+', ' ', 'g')) AS found
          FROM d
        ),
        s AS (
          SELECT id, len(found) AS hits, list_sort(list_distinct(found)) AS entries,
                 len(found)::DOUBLE * 1000 / greatest(n_chars, 1) AS per_1000
          FROM m WHERE len(found) > 0
        )
        SELECT id, '{WORDS}' AS rule,
               printf('%d hits (%.2f per 1000 chars): %s', hits, per_1000,
                      array_to_string(entries[1:10], ', ') || CASE WHEN len(entries) > 10 THEN ', ...' ELSE '' END)
                 AS value
        FROM s
        WHERE hits >= {int(bl.min_hits)} AND len(entries) >= {int(bl.min_distinct)} AND per_1000 >= {float(bl.min_per_1000)!r}
    """)
    return con.table("_bl_word_hits")


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"
