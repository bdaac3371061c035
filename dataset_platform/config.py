"""``sources.yaml``: the sources to ingest and the pipeline settings, validated on load.

A bad file fails with :class:`ConfigError`, whose message names the file, the field and what
is expected, e.g.::

    sources.yaml: sources[0].max_pages: expected an integer >= 1, got 'many'
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from dataset_platform.contracts.crawl import CrawlSettings, check_networks
from dataset_platform.contracts.languages import language_codes, language_names
from dataset_platform.contracts.records import DUMP_FIELDS
from dataset_platform.contracts.validation import explain, location

NAME_RE = r"^[a-z][a-z0-9_-]{0,62}$"


def dagster_name(name: str) -> str:
    """The form of a source name inside Dagster names (job, schedule, sensor, op, asset and check
    names allow only letters, digits and ``_``): every other character becomes ``_``, so
    ``my-blog`` -> ``my_blog``. Partition keys keep the name as written."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


#: worker processes a stage may start, per CPU of the machine that validates the config: more only
#: queue (40 extraction workers on 2 cores timed out 37 of 40 pages)
WORKERS_PER_CPU = 4


def _workers(v: int | None) -> int | None:
    cpus = os.cpu_count() or 1
    if v is not None and v > WORKERS_PER_CPU * cpus:
        raise ValueError(f"{v} workers on a machine of {cpus} CPU(s): at most {WORKERS_PER_CPU * cpus} "
                         f"({WORKERS_PER_CPU} per CPU); leave it unset to use every CPU")
    return v


#: a number of worker processes (unset: one per CPU)
Workers = Annotated[int | None, Field(ge=1), AfterValidator(_workers)]
#: a random seed (a 32-bit unsigned integer, as numpy and the MinHash permutations take it)
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


def _cron(v: str) -> str:
    if len(v.split()) != 5:
        raise ValueError(f"expected a 5-field cron string like '0 3 * * *', got {v!r}")
    return v


#: a 5-field cron string (minute hour day month weekday), evaluated in UTC
Cron = Annotated[str, AfterValidator(_cron)]


#: what ``sources[].name`` means (both kinds of source)
SOURCE_NAME_DOC = ("The source's name: lower-case letters, digits, `_` and `-`, starting with a letter. It names the "
                   "raw partition, `inbox/<name>/` and the `source` column; in Dagster's names (the `refresh_<name>` "
                   "schedule) `-` becomes `_`, so two names that differ only there are refused.")
#: what ``sources[].schedule`` means (both kinds of source)
SCHEDULE_DOC = ("Cron (UTC) refreshing this source's raw partition; default: pipeline.schedule. The layers below then "
                "refresh by themselves once the raw layer's checks pass.")
DATASET_LANGUAGE_DOC = ("Not read: the dataset card lists the languages of the released rows (release/publish.py, "
                        "card_languages). Accepted so that existing files stay valid.")


def _closest_language(value: str) -> str | None:
    """The language code a person most likely meant by ``value`` ('english', 'EN', 'zh-CN', 'eng')."""
    codes = language_codes()
    low = value.strip().lower()
    head = re.split(r"[-_ ]", low)[0]
    if low in codes or head in codes:
        return low if low in codes else head
    by_name = language_names()
    starts = {code for name, code in by_name.items() if len(low) >= 3 and name.startswith(low)}
    if len(starts) == 1:  # 'ger' -> german -> de
        return starts.pop()
    for pool, cutoff in ((by_name, 0.85), (codes, 0.6)):
        close = difflib.get_close_matches(low, list(pool), n=1, cutoff=cutoff)
        if close:
            return pool[close[0]] if pool is by_name else close[0]
    return None


def check_language(value: str, where: str = "") -> str:
    """``value`` if documents can have it as ``lang``; else a ValueError saying what was probably meant."""
    if value in language_codes():
        return value
    guess = _closest_language(value)
    hint = f"did you mean {guess!r}? " if guess and guess != value else ""
    raise ValueError(f"{where}{value!r} is not a language code: {hint}Languages are ISO 639-1 codes as the language "
                     "detector (CLD2) gives them, e.g. en, zh, de, fr, ja; 'und' is text without a detected language")


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or invalid."""


class _Model(BaseModel):
    # (no .inf or .nan: an infinite timeout or delay validates and then never ends)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class CrawlSource(CrawlSettings):
    """A website crawled with Scrapy: the crawl settings (``contracts/crawl.py``, README.md's
    table) and the source's own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    url_paths: ClassVar[str | None] = "with demo_site: true"

    name: Annotated[str, Field(pattern=NAME_RE)] = Field(description=SOURCE_NAME_DOC)
    kind: Literal["crawl"] = Field("crawl", description="`crawl`: a website crawled with Scrapy.")
    demo_site: bool = Field(False, description="Serve the built-in demo site on 127.0.0.1 for the crawl; start_urls are "
                                               "then paths on it (e.g. `/`).")
    allow_private_addresses: list[str] = Field(
        default_factory=list, description="IP addresses / CIDR networks the crawl may connect to although they are "
                                          "loopback, private or link-local (refused by default: outcome "
                                          "`blocked_address`), each optionally with `:port` (`127.0.0.1:8080`, "
                                          "`[::1]:8080`); an entry without a port allows only the ports of the "
                                          "source's start and sitemap URLs.")
    resumable: bool = Field(True, description="Keep Scrapy's job state under the work folder, so an interrupted crawl "
                                              "resumes where it stopped.")
    conditional_requests: bool = Field(True, description="Send If-None-Match / If-Modified-Since from the previous "
                                                         "crawl; unchanged pages are logged `not_modified` and not "
                                                         "stored again.")
    schedule: Cron | None = Field(None, description=SCHEDULE_DOC)

    @field_validator("allow_private_addresses")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        return check_networks(v)

    @model_validator(mode="after")
    def _demo_paths(self) -> CrawlSource:
        if not self.demo_site:
            rel = [u for u in self.start_urls + self.sitemap_urls if u.startswith("/")]
            if rel:
                raise ValueError(f"start URL {rel[0]!r} is a path; give a full http(s):// URL (paths are only for demo_site: true)")
            if not self.allowed_domains:
                raise ValueError("allowed_domains is required for a crawl (e.g. [example.org]) so the crawl stays on the site")
        return self


#: what each crawl setting means in ``sources.yaml`` (the settings and their bounds are declared in
#: contracts/crawl.py, shared with the crawl process; README.md's table says the same)
CRAWL_SETTING_DOCS = {
    "start_urls": "Where the crawl starts: absolute http(s):// URLs (paths such as `/` with `demo_site: true`).",
    "sitemap_urls": "sitemap.xml URLs (or sitemap indexes) whose `<loc>` entries are crawled like start URLs.",
    "allowed_domains": "Hosts (and their subdomains) to crawl; links to other hosts are logged `off_domain`. "
                       "Required unless `demo_site: true`.",
    "allow_url_patterns": "Regexes: when given, a URL must match one of them to be crawled (else `filtered_by_rule`).",
    "deny_url_patterns": "Regexes: a URL matching one of them is not crawled (outcome `filtered_by_rule`).",
    "max_pages": "Pages a crawl stores (outcome `fetched` or `not_modified`); 404s and other failures, redirects and "
                 "non-HTML answers do not count. Once reached, further URLs are logged `filtered_by_rule` with detail "
                 "`max_pages`.",
    "max_requests": "Bound on the requests a crawl schedules (start URLs, sitemaps, links, redirect targets; retries "
                    "not counted), so a site answering mostly errors still ends; default: 10 x max_pages. Further "
                    "URLs are logged `filtered_by_rule` with detail `max_requests`.",
    "max_depth": "Links of a page this many links away from a start URL are not followed (logged "
                 "`filtered_by_rule`, detail `max_depth`).",
    "max_bytes_per_page": "A larger body is cut off and the page logged `too_large` (bytes).",
    "concurrency": "Concurrent requests per domain.",
    "download_delay": "Seconds between requests to one domain; AutoThrottle is on when > 0.",
    "obey_robots": "Obey robots.txt (a disallowed URL is logged `robots_disallowed`).",
    "user_agent": "The User-Agent header the crawler sends (and robots.txt rules are matched against).",
    "record_base_url": "Record URLs under this base instead of the fetched origin (crawling a mirror or a local copy "
                       "of a site).",
    "timeout_s": "The whole crawl is stopped after this many seconds.",
    "accepted_content_types": "Content types whose bodies are stored; others are logged `not_html`.",
    "retry_times": "Times a request that failed with 5xx, 429 or a timeout is retried.",
    "retry_backoff_s": "The n-th retry waits retry_backoff_s * 2**(n-1) seconds (at least the Retry-After header).",
    "download_timeout_s": "Seconds one request may take before it fails (and is retried).",
    "max_redirects": "Redirects followed for one request.",
    "trap_max_per_pattern": "Crawler-trap bound: URLs of one shape per host (digits folded, so /cal/2026/7 and "
                            "/cal/2031/12 share a shape) are crawled at most this many times; raise it for a site "
                            "with more numbered pages of one kind (/article/<id>) than this.",
}


def _describe_inherited(model: type[BaseModel], docs: dict[str, str]) -> None:
    """Give ``model``'s own copies of inherited fields these descriptions (the parent's fields
    stay as they are) and rebuild its schema."""
    fields = model.__pydantic_fields__  # (a field left without one fails tests/test_config.py)
    for name, text in docs.items():
        fields[name].description = text
    model.model_rebuild(force=True)


_describe_inherited(CrawlSource, CRAWL_SETTING_DOCS)


class DumpSource(_Model):
    """Existing files: WARC (e.g. Common Crawl), JSONL or Parquet text dumps.

    ``paths`` are files or glob patterns (relative paths are relative to the config file); files
    dropped into ``<workdir>/inbox/<name>/`` are ingested too. Each file is ingested once.
    """

    name: Annotated[str, Field(pattern=NAME_RE)] = Field(description=SOURCE_NAME_DOC)
    schedule: Cron | None = Field(None, description=SCHEDULE_DOC)
    kind: Literal["warc", "jsonl", "parquet"] = Field(
        description="The files' format: `warc` (WARC, e.g. Common Crawl, optionally .gz), `jsonl` (JSON Lines, "
                    "optionally .gz) or `parquet`.")
    paths: list[str] = Field(
        default_factory=list,
        description="Files or glob patterns (`dumps/*.warc.gz`) to ingest, relative to sources.yaml; each file lands "
                    "once (its batch id is a hash of its bytes). Files dropped into `<workdir>/inbox/<name>/` land too. "
                    "A pattern that matches no file stops `run` / `ui` before any work starts.")
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="JSONL / Parquet only: landed field -> field of the dump, e.g. `{text: body, url: link}`; the "
                    f"landed fields are {', '.join(DUMP_FIELDS)}.")

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: dict[str, str]) -> dict[str, str]:
        bad = sorted(set(v) - set(DUMP_FIELDS))
        if bad:
            raise ValueError(f"unknown landed field(s) {bad}; map any of {list(DUMP_FIELDS)}")
        return v


Source = Annotated[CrawlSource | DumpSource, Field(discriminator="kind")]
#: every value ``sources[].kind`` can take
SOURCE_KINDS = ("crawl", "jsonl", "parquet", "warc")


class DatasetSettings(_Model):
    """The released dataset: its name and what its dataset card (the release's README.md) says."""

    name: Annotated[str, Field(pattern=NAME_RE)] = Field(
        "web-text", description="The dataset's name: releases go to `<workdir>/releases/<name>/<version>/`; the "
                                "card's `pretty_name`.")
    description: str = Field("Web text collected and curated with dataset_platform.",
                             description="The first paragraph of the dataset card.")
    license: str = Field("other", description="The `license` of the dataset card (a Hugging Face licence id, e.g. "
                                              "`cc-by-4.0`).")
    language: list[str] = Field(default_factory=lambda: ["en", "zh"], description=DATASET_LANGUAGE_DOC)


class BlocklistSettings(_Model):
    """Pages of blocked domains and URLs, and documents full of banned words, dropped at extraction
    (stages/blocklist.py; rules ``blocklist.domain``, ``blocklist.url``, ``blocklist.words``)."""

    lists: list[str] = Field(
        default_factory=list,
        description="Domain / URL blocklists, relative to sources.yaml: a UT1 category folder (its `domains` file: "
                    "each entry blocks the domain and its subdomains; its `urls` file: each entry blocks that URL "
                    "prefix, host + path without scheme) or a plain file of domains and URLs (a line with a path is a "
                    "URL prefix, else a domain). One entry per line; `#` comments and blank lines are ignored. Pages "
                    "they block are dropped before extraction (rules `blocklist.domain`, `blocklist.url`; value: the "
                    "entry).")
    default_words: bool = Field(
        True, description="Use the built-in list of explicit adult terms, English and Chinese "
                          "(stages/blocklist.py, DEFAULT_WORDS_EN / DEFAULT_WORDS_ZH).")
    words: list[str] = Field(
        default_factory=list, description="More banned words or phrases (case-insensitive; Latin-script entries "
                                          "match whole words, plural `s`/`es` included; Chinese and Japanese entries "
                                          "match as substrings).")
    word_lists: list[str] = Field(
        default_factory=list, description="Files of banned words, one per line (`#` comments and blank lines "
                                          "ignored), relative to sources.yaml; matched as `words`.")
    min_word_hits: Annotated[int, Field(ge=1)] = Field(
        3, description="Banned-word occurrences (title and text) a document needs to be dropped (rule "
                       "`blocklist.words`, value: the hits and the entries found); it must also meet "
                       "min_distinct_words and min_hits_per_1000_chars, so one incidental word drops nothing.")
    min_distinct_words: Annotated[int, Field(ge=1)] = Field(
        2, description="Different entries of the lists among those occurrences a document needs to be dropped.")
    min_hits_per_1000_chars: Annotated[float, Field(ge=0)] = Field(
        2.0, description="Occurrences per 1,000 characters a document needs to be dropped (a long text with a few "
                         "incidental hits is kept; BENCHMARKS.md shows the values measured on news and on spam).")


class ExtractSettings(_Model):
    """HTML -> main text (stages/extract.py). The default chain is the best measured on the labelled
    pages (bench/extract_eval.py, BENCHMARKS.md)."""

    chain: list[Literal["trafilatura", "trafilatura_recall", "resiliparse"]] = Field(
        default_factory=lambda: ["trafilatura", "resiliparse"], min_length=1,
        description="Extractors tried in order until one finds main text: `trafilatura`, `trafilatura_recall`, "
                    "`resiliparse`.")
    timeout_s: Annotated[float, Field(ge=0, le=3600)] = Field(
        10.0, description="A page whose extraction takes longer is dropped (rule `extract_timeout`); 0 disables the "
                          "bound.")
    workers: Workers = Field(None, description="Extraction worker processes (unset: the CPUs this process may use).")
    chunk_size: Annotated[int, Field(ge=1)] = Field(32, description="Pages per task sent to a worker.")
    min_chars: Annotated[int, Field(ge=1)] = Field(
        1, description="A text shorter than this (characters) lets the next extractor of the chain try.")
    blocklist: BlocklistSettings = Field(
        BlocklistSettings(), description="Domain / URL blocklists and banned words, applied at extraction (the "
                                         "built-in adult word list is on by default).")


class RuleSettings(_Model):
    """Settings of one quality rule (or of a whole family); unset fields inherit the defaults."""

    enabled: bool | None = Field(None, description="`false`: the rule (or the family's rules) is not evaluated.")
    mode: Literal["drop", "annotate"] | None = Field(
        None, description="`drop`: a failing document is rejected (rejected_documents, with the rule and value); "
                          "`annotate`: the value is recorded and the document kept.")
    min: float | None = Field(None, description="A document whose value is below this fails the rule.")
    max: float | None = Field(None, description="A document whose value is above this fails the rule.")
    words: list[str] | None = Field(None, description="`gopher_quality.stop_words` only: the stop-word list.")
    line_length: Annotated[int, Field(ge=1)] | None = Field(
        None, description="`fineweb.short_line_ratio` only: a line of at most this many characters is short.")


def _check_rules(rules: dict[str, RuleSettings], where: str) -> dict[str, RuleSettings]:
    from dataset_platform.contracts.rules import FAMILIES, RULES

    for key, rs in rules.items():
        if key in FAMILIES:
            extra = [f for f in ("min", "max", "words", "line_length") if getattr(rs, f) is not None]
            if extra:
                raise ValueError(f"{where}{key}: a family takes only enabled/mode, not {extra}")
            continue
        rule = RULES.get(key)
        if rule is None:
            raise ValueError(f"{where}{key!r} is not a rule; rules: {sorted(RULES)}; families: {list(FAMILIES)}")
        for bound in ("min", "max"):
            if getattr(rs, bound) is not None and getattr(rule, bound) is None:
                raise ValueError(f"{where}{key}: this rule has no {bound} threshold")
        if rs.words is not None and key != "gopher_quality.stop_words":
            raise ValueError(f"{where}{key}: 'words' applies to gopher_quality.stop_words only")
        if rs.line_length is not None and key != "fineweb.short_line_ratio":
            raise ValueError(f"{where}{key}: 'line_length' applies to fineweb.short_line_ratio only")
    return rules


class CleanSettings(_Model):
    """Normalisation and the quality rules (see contracts/rules.py for every rule and default).

    ``rules`` and ``languages_overrides.<lang>`` map a rule name (``gopher_quality.word_count``) or
    a family (``c4``) to :class:`RuleSettings`. Precedence: built-in default < ``rules`` < built-in
    language default (zh, ja) < ``languages_overrides``.
    """

    rules: dict[str, RuleSettings] = Field(
        default_factory=dict,
        description="Rule name (`gopher_quality.word_count`) or family (`gopher_repetition`, `gopher_quality`, `c4`, "
                    "`fineweb`) -> its settings, over the built-in defaults (dataset_platform/contracts/rules.py).")
    languages_overrides: dict[str, dict[str, RuleSettings]] = Field(
        default_factory=dict,
        description="Language code (as `languages`) -> rule or family -> settings for documents of that language; "
                    "they win over `rules` and the built-in language defaults (zh, ja).")
    languages: list[str] = Field(
        default_factory=list,
        description="Keep only documents of these languages (ISO 639-1 codes as the language detector gives them, "
                    "e.g. `en`, `zh`; `und`: no language detected); others are dropped (rule `language_not_wanted`). "
                    "Empty: every language.")
    redact_pii: bool = Field(True, description="Replace e-mail addresses, phone numbers, IP addresses, card numbers, "
                                               "IBANs and Chinese ID numbers by `<EMAIL>`, `<PHONE>`, `<IP_ADDRESS>`, "
                                               "`<CARD>`, `<IBAN>`, `<CN_ID>` (counts per type in the pii_* columns).")
    nfkc_cjk: bool = Field(False, description="NFKC for Chinese and Japanese documents (full-width letters, digits "
                                              "and punctuation folded to their usual forms).")
    c4_remove_lines: bool = Field(
        False, description="Also remove from the kept text the lines C4 would remove (javascript, policy, no terminal "
                           "punctuation, < 3 words); off: the text is kept whole and C4 only decides.")

    @field_validator("rules")
    @classmethod
    def _rules(cls, v: dict[str, RuleSettings]) -> dict[str, RuleSettings]:
        return _check_rules(v, "")

    @field_validator("languages")
    @classmethod
    def _languages(cls, v: list[str]) -> list[str]:
        for lang in v:
            check_language(lang)
        return v

    @field_validator("languages_overrides")
    @classmethod
    def _overrides(cls, v: dict[str, dict[str, RuleSettings]]) -> dict[str, dict[str, RuleSettings]]:
        for lang, rules in v.items():
            check_language(lang, where=f"{lang}: ")
            _check_rules(rules, f"{lang}: ")
        return v


def size_bytes(v: str) -> int:
    """Bytes of a :data:`Size` ('2GB' -> 2 * 1000**3, '2GiB' -> 2 * 1024**3, as DuckDB reads them)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT])(i?)B\s*", v, re.I)
    if m is None:
        raise ValueError(f"expected a size like '1GB' or '512MB', got {v!r}")
    base = 1024 if m.group(3) else 1000
    return int(float(m.group(1)) * base ** ("KMGT".index(m.group(2).upper()) + 1))


#: the bounds of a memory size: DuckDB cannot run below the first; the second is a typo
MIN_SIZE, MAX_SIZE = 64 * 10**6, 10**15


def _size(v: str) -> str:
    n = size_bytes(v)  # (raises, saying what is expected, when it is not a size)
    if not MIN_SIZE <= n <= MAX_SIZE:
        raise ValueError(f"{v.strip()!r} is not a usable memory size: between 64MB and 1000TB")
    return v.strip()


#: a DuckDB memory size: '1GB', '512MB'
Size = Annotated[str, AfterValidator(_size)]


class DedupSettings(_Model):
    """Near-duplicate detection (stages/dedup/stage.py, stages/dedup/minhash.py); exact duplicates are always removed first."""

    near: bool = Field(True, description="Find near-duplicates with MinHash-LSH (off: exact duplicates only).")
    ngram: Annotated[int, Field(ge=1, le=32)] = Field(
        5, description="Words per shingle (n-gram) of space-separated scripts.")
    cjk_ngram: Annotated[int, Field(ge=1, le=32)] = Field(
        5, description="Characters per shingle (n-gram) of Chinese and Japanese text.")
    bands: Annotated[int, Field(ge=1, le=256)] = Field(
        14, description="LSH bands: two documents are candidates when all rows of one band agree.")
    rows: Annotated[int, Field(ge=1, le=64)] = Field(
        8, description="MinHash values per LSH band (a signature has bands x rows values).")
    threshold: Annotated[float, Field(ge=0, le=1)] = Field(
        0.7, description="Candidate pairs whose estimated Jaccard similarity is below this are not duplicates "
                         "(0: no check).")
    seed: Seed = Field(1, description="Seed of the MinHash permutations (changing it signs everything again).")
    workers: Workers = Field(None, description="Processes computing signatures (unset: every CPU this process may "
                                               "use).")
    #: (the signing workers hold a few batches each on top of it. 1 GB was too little at 1M documents:
    #: the first scan reads a whole part's row group of text per thread, about 90 MB decoded)
    memory_limit: Size = Field(
        "2GB", description="DuckDB memory of the dedup stage; beyond it sorts and tables spill to "
                           "`<workdir>/tmp/dedup/`.")


class LabelRule(_Model):
    """A labelling function: votes for ``value`` when it fires, abstains otherwise.

    Exactly one matcher: ``keywords`` (case-insensitive substrings of title + text, so they work for
    Chinese without segmentation; the vote's weight is the number of occurrences), ``regex`` (RE2
    over title + text, case-insensitive; weight: matches), ``url`` (regex searched in the URL;
    weight 1) or ``domains`` (the URL's host is one of them or a subdomain; weight 1).
    """

    value: str = Field(description="The value the rule votes for when it fires (one of the set's values).")
    keywords: list[str] | None = Field(
        None, description="Fires on these case-insensitive substrings of title + text (works for Chinese without "
                          "segmentation); the vote's weight is the number of occurrences.")
    regex: str | None = Field(None, description="Fires on matches of this regex (RE2, case-insensitive) in title + "
                                                "text; weight: the number of matches.")
    url: str | None = Field(None, description="Fires when this regex is found in the URL (weight 1).")
    domains: list[str] | None = Field(None, description="Fires when the URL's host is one of these or a subdomain of "
                                                        "one (weight 1).")

    @model_validator(mode="after")
    def _one_matcher(self) -> LabelRule:
        given = [k for k in ("keywords", "regex", "url", "domains") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"a rule needs exactly one of keywords, regex, url, domains (got {given or 'none'})")
        for pattern in (self.regex, self.url):
            if pattern:
                try:
                    re.compile(pattern)
                except re.error as e:
                    raise ValueError(f"{pattern!r} is not a valid regular expression ({e})") from None
        return self


class LabelSet(_Model):
    """A named label set (e.g. ``topic``, ``quality_grade``) and its allowed values.

    The labelled layer gets three columns per set: ``<name>`` (the value), ``<name>_source``
    (``human`` | ``rule`` | ``model`` | ``rule+model`` | ``default``) and ``<name>_confidence`` (0..1).
    """

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")] = Field(
        description="The set's name: its column in the labelled layer (with `<name>_source` and `<name>_confidence`) "
                    "and its field in the gold file.")
    values: list[str] = Field(min_length=2, description="The values a document may get (at least two).")
    default: str = Field(description="The value of a document no rule, model or person labels (confidence 0); must "
                                     "be one of `values`.")
    rules: list[LabelRule] = Field(default_factory=list, description="Labelling functions (one matcher each) that "
                                                                     "vote for a value.")
    model: bool = Field(True, description="Train a classifier (TF-IDF + calibrated linear SVM; characters and character "
                                          "pairs for Chinese/Japanese) on the gold labels that exist (gold file + "
                                          "resolved human labels) and combine it with the rules.")

    @model_validator(mode="after")
    def _values(self) -> LabelSet:
        if len(set(self.values)) != len(self.values):
            raise ValueError(f"label set {self.name!r}: values repeat")
        if self.default not in self.values:
            raise ValueError(f"label set {self.name!r}: default {self.default!r} is not one of its values {self.values}")
        bad = sorted({r.value for r in self.rules} - set(self.values))
        if bad:
            raise ValueError(f"label set {self.name!r}: rules vote for {bad}, which are not among its values {self.values}")
        if self.name in RESERVED_LABEL_NAMES:
            raise ValueError(f"label set name {self.name!r} is a column of the layer already; choose another")
        return self


#: columns of the labelled layer that a label set may not shadow
RESERVED_LABEL_NAMES = frozenset({
    "id", "source", "url", "title", "text", "lang", "n_chars", "n_words", "content_hash", "split", "domain",
})



class ReviewSettings(_Model):
    """Which documents are exported as Label Studio tasks for people to label."""

    min_confidence: Annotated[float, Field(ge=0, le=1)] = Field(
        0.6, description="A document whose label confidence is below this (in any set) needs review.")
    audit_fraction: Annotated[float, Field(ge=0, le=1)] = Field(
        0.02, description="Share of the other documents also exported as a random audit sample (stable: a hash of "
                          "the id).")
    max_tasks: Annotated[int, Field(ge=1)] = Field(
        500, description="At most this many tasks per export (lowest confidence first, then disagreements, then "
                         "audit).")


class LabelSettings(_Model):
    """Label sets, their gold labels and the review export (stages/label/)."""

    sets: list[LabelSet] = Field(default_factory=list, description="The label sets (none: documents are not "
                                                                    "labelled).")
    gold: str | None = Field(
        None, description="JSONL of gold labels to train the classifiers, relative to sources.yaml: one object per "
                          "line with `id`, `text` (optionally `title`) and one field per label set.")
    review: ReviewSettings = Field(ReviewSettings(), description="Which documents go to people for labelling (Label "
                                                                 "Studio tasks).")
    min_kappa: Annotated[float, Field(ge=-1, le=1)] = Field(
        0.6, description="The annotator_agreement check fails below this kappa (per label set, when >= 2 annotators).")
    seed: Seed = Field(0, description="Seed of the audit sample and of the classifiers.")

    @model_validator(mode="after")
    def _unique(self) -> LabelSettings:
        names = [s.name for s in self.sets]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"label set(s) {dup} declared twice")
        return self


class SplitSettings(_Model):
    """How documents are assigned to train / validation / test (release/split.py)."""

    train: Annotated[float, Field(ge=0, le=1)] = Field(0.8, description="Share of the documents in train.")
    validation: Annotated[float, Field(ge=0, le=1)] = Field(0.1, description="Share of the documents in validation.")
    test: Annotated[float, Field(ge=0, le=1)] = Field(0.1, description="Share of the documents in test (the three "
                                                                       "shares add up to 1).")
    salt: str = Field("dataset_platform", description="Salt of the stable hash that assigns groups to splits "
                                                      "(documents of an earlier release keep their split).")
    group_by: list[Literal["cluster", "url", "domain"]] = Field(
        default_factory=lambda: ["cluster", "url"],
        description="Documents sharing any of these keys stay in one split: `cluster` (near-duplicate cluster), "
                    "`url`, `domain` (the URL's host).")
    stratify_by: str | None = Field(
        None, description="A label set: keep each split's shares of its values near the whole's (unset: no "
                          "stratification).")
    tolerance: Annotated[float, Field(ge=0, le=1)] = Field(
        0.05, description="The largest allowed |share in a split - share in the whole| (the split_balance check).")

    @model_validator(mode="after")
    def _sum(self) -> SplitSettings:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"train + validation + test must be 1.0, got {total:g}")
        return self


class BenchmarkSet(_Model):
    """An evaluation set to keep out of the release: JSONL items."""

    path: str = Field(description="The JSONL file of the evaluation set (one item per line), relative to "
                                  "sources.yaml.")
    name: str | None = Field(None, description="Name used in the rejects (`<name>:<item id>:<field>`); default: the "
                                               "file's stem.")
    fields: list[str] = Field(
        default_factory=list, description="Fields of an item whose text is matched (strings, or lists of strings); "
                                          "each must be in some item. Empty: every string field but `id`.")


class DecontaminationSettings(_Model):
    """Documents that overlap an evaluation set are removed (stages/decontaminate.py, rule ``benchmark_overlap``)."""

    benchmarks: list[BenchmarkSet] = Field(default_factory=list, description="The evaluation sets (none: nothing is "
                                                                             "removed).")
    ngram: Annotated[int, Field(ge=3, le=64)] = Field(
        13, description="A document sharing a word n-gram of this length with a benchmark item is removed "
                        "(space-separated scripts).")
    cjk_ngram: Annotated[int, Field(ge=3, le=64)] = Field(
        13, description="The same in characters, for Chinese and Japanese text.")


class AugmentSettings(_Model):
    """EDA-style augmentation of the train split (off by default)."""

    enabled: bool = Field(False, description="Add augmented copies of the train documents (synonym replacement, "
                                             "random swap, random deletion); each stays in train and carries "
                                             "`augmented_from`.")
    copies: Annotated[int, Field(ge=1, le=16)] = Field(1, description="Augmented copies per train document.")
    alpha: Annotated[float, Field(gt=0, le=0.5)] = Field(
        0.1, description="Share of a document's words changed by each operation.")
    operations: list[Literal["synonym", "swap", "delete"]] = Field(
        default_factory=lambda: ["synonym", "swap", "delete"], description="The operations applied, in order.")
    synonyms: str | None = Field(None, description="JSON file of word -> [synonyms] added to the small built-in "
                                                   "English list, relative to sources.yaml.")
    seed: Seed = Field(0, description="Seed of the changes (with the original's id and the copy number: each copy is "
                                      "deterministic).")


class ReleaseSettings(_Model):
    """The published release (release/): shard size and freshness."""

    max_shard_bytes: Annotated[int, Field(ge=1024)] = Field(
        256 * 1024 * 1024, description="A Parquet shard holds at most about this many bytes of text (more shards when "
                                       "larger).")
    freshness_warn_hours: Annotated[float, Field(gt=0)] = Field(
        26, description="The release asset's freshness policy warns when the newest release is older than this.")
    freshness_fail_hours: Annotated[float, Field(gt=0)] = Field(
        50, description="The release asset's freshness policy fails when the newest release is older than this (not "
                        "less than freshness_warn_hours).")

    @model_validator(mode="after")
    def _windows(self) -> ReleaseSettings:
        if self.freshness_warn_hours > self.freshness_fail_hours:
            raise ValueError(f"freshness_warn_hours ({self.freshness_warn_hours}) must not exceed "
                             f"freshness_fail_hours ({self.freshness_fail_hours})")
        return self


class QualitySettings(_Model):
    """Floors and limits of the release's diversity_and_balance check (WARN when not met)."""

    min_sources: Annotated[int, Field(ge=0)] = Field(1, description="Distinct sources the release should have.")
    min_languages: Annotated[int, Field(ge=0)] = Field(1, description="Distinct languages the release should have.")
    min_domains: Annotated[int, Field(ge=0)] = Field(1, description="Distinct URL hosts (www. ignored) the release "
                                                                    "should have.")
    min_label_values: Annotated[int, Field(ge=0)] = Field(2, description="Distinct values of each label set the "
                                                                         "release should have.")
    max_label_share: Annotated[float, Field(gt=0, le=1)] = Field(
        0.9, description="The most frequent value of a label set may hold at most this share of the release.")


class QualityModelSettings(_Model):
    """The quality model (stages/quality_model.py): a classifier of each cleaned document's quality,
    trained from a gold file, human labels and reference sources. Without any of them it is off:
    every document passes with quality_score NULL."""

    gold: str | None = Field(
        None, description="JSONL of documents labelled for quality, relative to sources.yaml: one object per line with "
                          "`text` and `quality` (`good` / `bad`, 1 / 0 or true / false), optionally `id`.")
    reference_sources: list[str] = Field(
        default_factory=list, description="Sources whose cleaned documents are examples of good text (the DCLM "
                                          "recipe): they are the positives, against a sample of the other sources' "
                                          "documents and of the documents the quality rules rejected.")
    max_per_kind: Annotated[int, Field(ge=0)] = Field(
        10_000, description="With `reference_sources`: at most this many training documents of each kind "
                            "(reference documents; other sources' documents; rule-rejected documents), a stable "
                            "sample by a hash of the id.")
    label_set: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")] = Field(
        "quality", description="The label set (values `good`, `bad`) whose human labels from Label Studio "
                               "(`inbox/annotations/`) train the model; a person's label wins over the gold file "
                               "and the recipe.")
    use_model: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")] | None = Field(
        None, description="Pin a stored model (its version, as the release card names it; kept in "
                          "`layers/scored_documents/models/`) instead of training: the training data is then not "
                          "read, and new batches do not retrain the model.")
    threshold: Annotated[float, Field(ge=0, le=1)] = Field(
        0.5, description="A document scoring below this (P(good)) fails the model.")
    mode: Literal["drop", "annotate"] = Field(
        "drop", description="`drop`: a failing document is rejected (rule `quality_model`, its score as value); "
                            "`annotate`: it is kept with `quality_model` in its annotations.")
    review_tasks: Annotated[int, Field(ge=0)] = Field(
        200, description="Documents nearest the threshold written as Label Studio tasks "
                         "(`annotation/export/quality/tasks.json`) for people to label good or bad.")
    max_score_shift: Annotated[float, Field(gt=0, le=1)] = Field(
        0.15, description="The score_distribution_stable check warns when the score histogram moved by more than "
                          "this share of documents (total variation distance) against the previous materialisation.")
    seed: Seed = Field(0, description="Seed of the negative sample and of the model.")

    @field_validator("reference_sources")
    @classmethod
    def _no_repeats(cls, v: list[str]) -> list[str]:
        dup = sorted({n for n in v if v.count(n) > 1})
        if dup:
            raise ValueError(f"reference source(s) {dup} named twice")
        return v


class RaySettings(_Model):
    """Where and how per-batch work runs when ``pipeline.executor`` is ``ray``."""

    address: str | None = Field(
        None, description="The cluster (`ray://host:10001`, `host:6379`, or `auto`); unset: `$RAY_ADDRESS`, else a "
                          "Ray instance on this machine is started for the run.")
    task_memory: Size = Field("2GB", description="Memory Ray reserves for each part's task (the part's DuckDB "
                                                 "connection is held below it).")
    max_retries: Annotated[int, Field(ge=0, le=100)] = Field(
        3, description="Times a part's task is run again when its worker dies (the part is committed once).")
    submit: Literal["driver", "job"] = Field(
        "driver", description="How a stage's step reaches the cluster: `driver` (the Dagster step process is the Ray "
                              "driver and submits each part as a task) or `job` (the step submits a Ray job through "
                              "Dagster Pipes, dagster-ray's PipesRayJobClient; its log lines and result come back to "
                              "the step).")
    job_address: str | None = Field(
        None, description="The cluster's job API for `submit: job` (`http://head:8265`: the head's dashboard); unset: "
                          "`$RAY_API_SERVER_ADDRESS`.")
    job_python: str = Field(
        "python", min_length=1,
        description="The Python interpreter a `submit: job` step's Ray job runs on the cluster (its entrypoint is "
                    "`<job_python> -m dataset_platform.cluster.ray_job`): `python` on the head's PATH by default, or "
                    "the path of the environment where dataset_platform is installed there (e.g. `/opt/dp/bin/python`).")


#: settings that decide where the work runs, not what it produces: left out of the config's
#: fingerprint, so the same inputs give the same release on one machine or on a cluster
RUNTIME_ONLY = ("executor", "ray")


class PipelineSettings(_Model):
    """The settings of every stage, the schedule and where the work runs."""

    extract: ExtractSettings = Field(ExtractSettings(), description="HTML -> main text, title, date and language.")
    clean: CleanSettings = Field(CleanSettings(), description="Normalisation, PII redaction, language filter and the "
                                                              "quality rules.")
    quality_model: QualityModelSettings = Field(
        QualityModelSettings(), description="The quality model after the rules (off until it has training data).")
    dedup: DedupSettings = Field(DedupSettings(), description="Exact and near-duplicate removal.")
    labels: LabelSettings = Field(LabelSettings(), description="Label sets, gold labels and the review export.")
    decontamination: DecontaminationSettings = Field(DecontaminationSettings(),
                                                     description="Removal of documents overlapping evaluation sets.")
    splits: SplitSettings = Field(SplitSettings(), description="Train / validation / test assignment.")
    augmentation: AugmentSettings = Field(AugmentSettings(), description="Augmented copies of train documents (off by "
                                                                         "default).")
    release: ReleaseSettings = Field(ReleaseSettings(), description="Shards and freshness of the release.")
    quality: QualitySettings = Field(QualitySettings(), description="Floors of the release's diversity_and_balance "
                                                                    "check.")
    schedule: Cron = Field("0 3 * * *", description="Default cron (UTC) of each source's scheduled refresh "
                                                    "(sources[].schedule overrides it).")
    batch_size: Annotated[int, Field(ge=1)] = Field(
        2000, description="Documents per batch in the Python stages (extraction, normalisation).")
    part_rows: Annotated[int, Field(ge=100)] = Field(
        50_000, description="Documents per part of a layer: a landed batch larger than this is stored (and processed, "
                            "and refreshed) as several parts.")
    memory_limit: Size = Field(
        "2GB", description="DuckDB memory of a stage's connection (dedup has its own, dedup.memory_limit); beyond it "
                           "sorts and tables spill to `<workdir>/tmp/<stage>/`.")
    max_drop_rate_change: Annotated[float, Field(gt=0, le=1)] = Field(
        0.15, description="A stage's drop rate may change by this share between two materialisations before its "
                          "drop_rate_stable check warns (runs of fewer than 100 documents are not compared).")
    executor: Literal["local", "ray"] = Field(
        "local", description="Where the parts of the per-batch stages run: `local` (processes of this machine) or "
                             "`ray` (tasks on a Ray cluster, `pipeline.ray`; needs the `ray` extra installed). "
                             "`--executor` overrides it.")
    ray: RaySettings = Field(RaySettings(), description="The Ray cluster, for `executor: ray`.")
    takedowns: str | None = Field(
        "takedowns.yaml", description="Takedown requests (stages/takedown.py), relative to sources.yaml: each with an "
                                      "`id`, a `date` (YYYY-MM-DD) and one of `url`, `url_prefix`, `domain`, `doc_id`, "
                                      "`content_hash`, `text` (literal) or `regex`; the files dropped into "
                                      "`<workdir>/inbox/takedowns/` are added. A missing `takedowns.yaml` means none.")

    @model_validator(mode="after")
    def _stratify(self) -> PipelineSettings:
        by = self.splits.stratify_by
        if by is not None and by not in {s.name for s in self.labels.sets}:
            raise ValueError(f"splits.stratify_by: {by!r} is not a label set (declared: {[s.name for s in self.labels.sets]})")
        return self


#: the inbox folder that receives Label Studio exports (not a source)
ANNOTATIONS_INBOX = "annotations"
#: inbox/takedowns/ receives takedown request files (stages/takedown.py)
TAKEDOWNS_INBOX = "takedowns"


class PlatformConfig(_Model):
    """``sources.yaml``: the sources to ingest, the dataset they make and the pipeline's settings."""

    dataset: DatasetSettings = Field(DatasetSettings(), description="The released dataset's name and card.")
    sources: list[Source] = Field(min_length=1, description="The sources: websites to crawl (`kind: crawl`) or "
                                                            "files to ingest (`kind: warc`, `jsonl`, `parquet`).")
    pipeline: PipelineSettings = Field(PipelineSettings(), description="The settings of the stages.")

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, v: list[CrawlSource | DumpSource]) -> list[CrawlSource | DumpSource]:
        seen: dict[str, int] = {}  # Dagster name -> index of the source that has it
        for i, s in enumerate(v):
            if s.name == ANNOTATIONS_INBOX:
                raise ValueError(f"source name {s.name!r} is reserved: inbox/{ANNOTATIONS_INBOX}/ receives Label Studio exports")
            if s.name == TAKEDOWNS_INBOX:
                raise ValueError(f"source name {s.name!r} is reserved: inbox/{TAKEDOWNS_INBOX}/ receives takedown requests")
            key = dagster_name(s.name)
            if key in seen:
                first = v[seen[key]].name
                if first == s.name:
                    raise ValueError(f"source name {s.name!r} appears twice (sources[{seen[key]}] and sources[{i}]); "
                                     "names must be unique")
                raise ValueError(f"source names {first!r} (sources[{seen[key]}]) and {s.name!r} (sources[{i}]) both "
                                 f"become {key!r} in Dagster's names (schedule refresh_{key}; Dagster allows only "
                                 "letters, digits and _, so - becomes _): rename one of them")
            seen[key] = i
        return v

    @property
    def label_set_names(self) -> list[str]:
        return [s.name for s in self.pipeline.labels.sets]

    @property
    def label_values(self) -> dict[str, list[str]]:
        """label set -> allowed values (for the GX suites of the labelled layers)."""
        return {s.name: list(s.values) for s in self.pipeline.labels.sets}

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of the config (goes into the release manifest)."""
        data = self.model_dump(mode="json")
        for key in RUNTIME_ONLY:  # (where the work runs does not change what it produces)
            data["pipeline"].pop(key, None)
        # the takedowns file's path (by default beside sources.yaml, so it moves with it): what the requests
        # remove is in the data, and the card lists them
        data["pipeline"].pop("takedowns", None)
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def _loc(loc: tuple) -> str:
    return location(part for part in loc if part not in SOURCE_KINDS)  # discriminator tags are noise in a path


#: where every field of sources.yaml is described (generated from these models: config_reference.py)
REFERENCE = "docs/CONFIG.md"


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The model whose fields the last part of an error location ``loc`` is among (None when the
    location does not lead to one), following fields, list items, mapping values and the
    discriminator tags of ``sources``."""
    tp: object = PlatformConfig
    for part in loc[:-1]:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                return None
            tp = field.annotation
        elif typing.get_origin(tp) is list and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        elif typing.get_origin(tp) in (typing.Union, types.UnionType):  # a tag: the member whose kind it is
            tagged = [m for m in typing.get_args(tp) if isinstance(m, type) and issubclass(m, BaseModel)
                      and "kind" in m.model_fields and part in typing.get_args(m.model_fields["kind"].annotation)]
            if len(tagged) != 1:
                return None
            tp = tagged[0]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _unwrap(tp: object) -> object:
    """``tp`` without Annotated and without a ``| None``."""
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            members = [m for m in typing.get_args(tp) if m is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
        return tp


def _unknown_field(loc: tuple) -> str:
    """What to say about an unknown field: the closest field name there, or the fields there."""
    model = _model_at(loc)
    name = str(loc[-1]) if loc else ""
    if model is None:
        return f"unknown field (check the spelling; {REFERENCE} lists every field)"
    known = list(model.model_fields)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"unknown field: did you mean {close[0]!r}? ({REFERENCE} lists every field)"
    return f"unknown field; the fields here are {', '.join(known)} ({REFERENCE} describes each)"


def _explain(err: dict) -> str:
    t = err["type"]
    if t == "extra_forbidden":
        return _unknown_field(tuple(err["loc"]))
    if t == "union_tag_not_found":
        return f"kind: required field is missing; expected one of {sorted(SOURCE_KINDS)}"
    if t == "union_tag_invalid":
        return f"kind: expected one of {sorted(SOURCE_KINDS)}, got {err.get('ctx', {}).get('tag')!r}"
    return explain(err)


def parse_config(data: object, *, origin: str = "<config>") -> PlatformConfig:
    """Validate already-parsed YAML/JSON data."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping with 'sources' (and optional 'dataset', 'pipeline') at the top level")
    try:
        return PlatformConfig.model_validate(data)
    except ValidationError as e:
        lines = [f"{origin}: {_loc(err['loc'])}: {_explain(err)}" for err in e.errors()]
        raise ConfigError("\n".join(lines)) from None


def load_config(path: str | Path) -> PlatformConfig:
    """Load and validate ``sources.yaml``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found (pass --config FILE or see README.md)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{p}: nested too deeply (lists or mappings inside one another hundreds of levels deep); "
                          "a sources.yaml needs a few levels") from None
    depth = _depth(data)
    if depth > MAX_DEPTH:
        raise ConfigError(f"{p}: nested {depth} levels deep; a sources.yaml needs a few (at most {MAX_DEPTH})")
    cfg = parse_config(data, origin=str(p))
    return with_executor(_resolve_paths(cfg, p.resolve().parent))


#: deeper nesting than any valid config has (a crafted file would exhaust the validators' stack)
MAX_DEPTH = 32


def _depth(data: object) -> int:
    """How deeply lists and mappings nest in ``data`` (without recursion)."""
    deepest, todo = 0, [(data, 1)]
    while todo:
        node, d = todo.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, d)
            if d <= MAX_DEPTH:  # (deeper than that is the answer already)
                todo.extend((child, d + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


#: overrides ``pipeline.executor`` (set by ``--executor``; inherited by Dagster's code server and runs)
EXECUTOR_ENV = "DATASET_PLATFORM_EXECUTOR"


def with_executor(cfg: PlatformConfig) -> PlatformConfig:
    """``cfg`` with ``pipeline.executor`` from ``$DATASET_PLATFORM_EXECUTOR`` when that is set."""
    value = os.environ.get(EXECUTOR_ENV)
    if not value:
        return cfg
    if value not in ("local", "ray"):
        raise ConfigError(f"{EXECUTOR_ENV}={value!r}: expected 'local' or 'ray'")
    return cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(update={"executor": value})})


def _resolve_paths(cfg: PlatformConfig, base: Path) -> PlatformConfig:
    """Dump paths relative to the config file's folder become absolute."""
    sources = []
    for s in cfg.sources:
        if isinstance(s, DumpSource):
            s = s.model_copy(update={"paths": [str(base / x) if not Path(x).is_absolute() else x for x in s.paths]})
        sources.append(s)
    def rel(x: str | None) -> str | None:
        return x if x is None or Path(x).is_absolute() else str(base / x)

    p = cfg.pipeline
    labels = p.labels.model_copy(update={"gold": rel(p.labels.gold)})
    decon = p.decontamination.model_copy(update={
        "benchmarks": [b.model_copy(update={"path": rel(b.path)}) for b in p.decontamination.benchmarks]})
    aug = p.augmentation.model_copy(update={"synonyms": rel(p.augmentation.synonyms)})
    bl = p.extract.blocklist
    blocklist = bl.model_copy(update={"lists": [rel(x) for x in bl.lists], "word_lists": [rel(x) for x in bl.word_lists]})
    extract = p.extract.model_copy(update={"blocklist": blocklist})
    qmodel = p.quality_model.model_copy(update={"gold": rel(p.quality_model.gold)})
    pipeline = p.model_copy(update={"labels": labels, "decontamination": decon, "augmentation": aug,
                                    "extract": extract, "takedowns": rel(p.takedowns), "quality_model": qmodel})
    return cfg.model_copy(update={"sources": sources, "pipeline": pipeline})


def demo_config_path() -> Path:
    """The embedded default config: the demo site, served on 127.0.0.1."""
    return Path(str(resources.files("dataset_platform.demo").joinpath("sources.yaml")))
