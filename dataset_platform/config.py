"""``sources.yaml``: the sources to ingest and the pipeline settings, validated on load.

A bad file fails with :class:`ConfigError`, whose message names the file, the field and what
is expected, e.g.::

    sources.yaml: sources[0].max_pages: expected an integer >= 1, got 'many'
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

NAME_RE = r"^[a-z][a-z0-9_-]{0,62}$"


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or invalid."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CrawlSource(_Model):
    """A website crawled with Scrapy."""

    name: Annotated[str, Field(pattern=NAME_RE)]
    kind: Literal["crawl"] = "crawl"
    start_urls: list[str] = Field(min_length=1)
    allowed_domains: list[str] = Field(default_factory=list)
    max_pages: Annotated[int, Field(ge=1)] = 1000
    max_depth: Annotated[int, Field(ge=0)] = 5
    max_bytes_per_page: Annotated[int, Field(ge=1024)] = 5_000_000
    concurrency: Annotated[int, Field(ge=1, le=64)] = 8
    download_delay: Annotated[float, Field(ge=0)] = 0.0
    obey_robots: bool = True
    user_agent: str = "dataset-platform/0.1 (+https://github.com/dataset-platform/dataset_platform)"
    #: Serve the built-in demo site on 127.0.0.1 for the crawl; start_urls are then paths on it.
    demo_site: bool = False
    #: Record URLs under this base instead of the fetched origin (crawling a mirror or a local copy).
    record_base_url: str | None = None
    timeout_s: Annotated[float, Field(gt=0)] = 3600
    #: sitemap.xml URLs whose <loc> entries are crawled like start URLs
    sitemap_urls: list[str] = Field(default_factory=list)
    #: regexes: when given, a URL must match one of them to be crawled
    allow_url_patterns: list[str] = Field(default_factory=list)
    #: regexes: a URL matching one of them is not crawled (outcome filtered_by_rule)
    deny_url_patterns: list[str] = Field(default_factory=list)
    accepted_content_types: list[str] = Field(default_factory=lambda: ["text/html", "application/xhtml+xml"])
    #: IP addresses / CIDR networks allowed although loopback, private or link-local (refused by default)
    allow_private_addresses: list[str] = Field(default_factory=list)
    retry_times: Annotated[int, Field(ge=0, le=20)] = 3
    max_redirects: Annotated[int, Field(ge=0, le=50)] = 10
    download_timeout_s: Annotated[float, Field(gt=0)] = 30
    #: the n-th retry of a 5xx/429/timeout waits retry_backoff_s * 2**(n-1) seconds (at least Retry-After)
    retry_backoff_s: Annotated[float, Field(ge=0, le=600)] = 1.0
    #: crawler-trap bound: URLs of one shape per host (every run of digits folded, so /cal/2026/7 and
    #: /cal/2031/12 share a shape) are crawled at most this many times; raise it for a site with more
    #: numbered pages of one kind (/article/<id>) than this
    trap_max_per_pattern: Annotated[int, Field(ge=1)] = 1000
    #: keep Scrapy's job state under the workdir so an interrupted crawl resumes
    resumable: bool = True
    #: send If-None-Match / If-Modified-Since from the previous crawl; unchanged pages are not stored again
    conditional_requests: bool = True

    @field_validator("start_urls", "sitemap_urls")
    @classmethod
    def _urls(cls, v: list[str], info) -> list[str]:
        for u in v:
            if not (u.startswith(("http://", "https://", "/"))):
                raise ValueError(f"URL {u!r} must be http(s):// (or a /path with demo_site: true)")
        return v

    @field_validator("allow_url_patterns", "deny_url_patterns")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        for pattern in v:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"{pattern!r} is not a valid regular expression ({e})") from None
        return v

    @field_validator("allow_private_addresses")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for a in v:
            try:
                ipaddress.ip_network(a, strict=False)
            except ValueError:
                raise ValueError(f"{a!r} is not an IP address or CIDR network (e.g. 127.0.0.1 or 10.1.0.0/16)") from None
        return v

    @model_validator(mode="after")
    def _demo_paths(self) -> "CrawlSource":
        if not self.demo_site:
            rel = [u for u in self.start_urls + self.sitemap_urls if u.startswith("/")]
            if rel:
                raise ValueError(f"start URL {rel[0]!r} is a path; give a full http(s):// URL (paths are only for demo_site: true)")
            if not self.allowed_domains:
                raise ValueError("allowed_domains is required for a crawl (e.g. [example.org]) so the crawl stays on the site")
        return self


#: landed-record fields a dump's fields can be mapped to
DUMP_FIELDS = ("url", "text", "html", "title", "fetched_at")


class DumpSource(_Model):
    """Existing files: WARC (e.g. Common Crawl), JSONL or Parquet text dumps.

    ``paths`` are files or glob patterns (relative paths are relative to the config file); files
    dropped into ``<workdir>/inbox/<name>/`` are ingested too. Each file is ingested once.
    """

    name: Annotated[str, Field(pattern=NAME_RE)]
    kind: Literal["warc", "jsonl", "parquet"]
    paths: list[str] = Field(default_factory=list)
    #: landed field -> field of the dump (jsonl/parquet), e.g. {text: content, url: link}
    fields: dict[str, str] = Field(default_factory=dict)

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
    name: Annotated[str, Field(pattern=NAME_RE)] = "web-text"
    description: str = "Web text collected and curated with dataset_platform."
    license: str = "other"
    language: list[str] = Field(default_factory=lambda: ["en", "zh"])


class ExtractSettings(_Model):
    """HTML -> main text (core/extract.py). The default chain is the best measured on the labelled
    pages (bench/extract_eval.py, BENCHMARKS.md)."""

    #: extractors tried in order until one finds main text: trafilatura, trafilatura_recall, resiliparse
    chain: list[Literal["trafilatura", "trafilatura_recall", "resiliparse"]] = Field(
        default_factory=lambda: ["trafilatura", "resiliparse"], min_length=1
    )
    #: a page that takes longer is abandoned (rule extract_timeout); 0 disables the bound
    timeout_s: Annotated[float, Field(ge=0)] = 10.0
    #: worker processes (default: the CPUs this process may use)
    workers: Annotated[int, Field(ge=1)] | None = None
    #: pages per task sent to a worker
    chunk_size: Annotated[int, Field(ge=1)] = 32
    #: a text shorter than this (characters) lets the next extractor of the chain try
    min_chars: Annotated[int, Field(ge=1)] = 1


class RuleSettings(_Model):
    """Settings of one quality rule (or of a whole family); unset fields inherit the defaults."""

    enabled: bool | None = None
    #: drop: a failing document is rejected; annotate: the value is recorded and the document kept
    mode: Literal["drop", "annotate"] | None = None
    min: float | None = None
    max: float | None = None
    #: gopher_quality.stop_words only: the stop-word list
    words: list[str] | None = None
    #: fineweb.short_line_ratio only: a line of at most this many characters is short
    line_length: Annotated[int, Field(ge=1)] | None = None


def _check_rules(rules: dict[str, RuleSettings], where: str) -> dict[str, RuleSettings]:
    from dataset_platform.core.quality.rules import FAMILIES, RULES

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
    """Normalisation and the quality rules (see core/quality/rules.py for every rule and default).

    ``rules`` and ``languages_overrides.<lang>`` map a rule name (``gopher_quality.word_count``) or
    a family (``c4``) to :class:`RuleSettings`. Precedence: built-in default < ``rules`` < built-in
    language default (zh, ja) < ``languages_overrides``.
    """

    rules: dict[str, RuleSettings] = Field(default_factory=dict)
    languages_overrides: dict[str, dict[str, RuleSettings]] = Field(default_factory=dict)
    languages: list[str] = Field(default_factory=list)  # keep only these (empty: all); rule: language_not_wanted
    redact_pii: bool = True
    #: NFKC for CJK documents (full-width letters/digits/punctuation folded to their usual forms)
    nfkc_cjk: bool = False
    #: also remove the lines C4 would remove (javascript, policy, no terminal punctuation, < 3 words)
    #: from the kept text; off: the text is kept whole and C4 only decides
    c4_remove_lines: bool = False

    @field_validator("rules")
    @classmethod
    def _rules(cls, v: dict[str, RuleSettings]) -> dict[str, RuleSettings]:
        return _check_rules(v, "")

    @field_validator("languages_overrides")
    @classmethod
    def _overrides(cls, v: dict[str, dict[str, RuleSettings]]) -> dict[str, dict[str, RuleSettings]]:
        for lang, rules in v.items():
            if not re.fullmatch(r"[a-z]{2,3}", lang):
                raise ValueError(f"{lang!r} is not a language code (ISO 639-1, e.g. zh)")
            _check_rules(rules, f"{lang}: ")
        return v


class TopicRule(_Model):
    name: Annotated[str, Field(pattern=NAME_RE)]
    keywords: list[str] = Field(min_length=1)


class DedupSettings(_Model):
    """Near-duplicate detection (core/dedup.py, core/minhash.py); exact duplicates are always removed first."""

    #: find near-duplicates with MinHash-LSH (off: exact only)
    near: bool = True
    #: word n-grams per shingle (space-separated scripts)
    ngram: Annotated[int, Field(ge=1, le=32)] = 5
    #: character n-grams per shingle for Chinese and Japanese
    cjk_ngram: Annotated[int, Field(ge=1, le=32)] = 5
    bands: Annotated[int, Field(ge=1, le=256)] = 14
    rows: Annotated[int, Field(ge=1, le=64)] = 8
    #: candidate pairs whose estimated Jaccard similarity is below this are not duplicates (0: no check)
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.7
    seed: int = 1
    #: processes computing signatures (default: every CPU this process may use)
    workers: Annotated[int, Field(ge=1)] | None = None
    #: DuckDB memory of the stage process; beyond it sorts and tables spill to disk
    #: (the signing workers hold a few batches each on top)
    memory_limit: str = "1GB"

    @field_validator("memory_limit")
    @classmethod
    def _size(cls, v: str) -> str:
        import re

        if not re.fullmatch(r"\s*\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*", v, re.I):
            raise ValueError(f"expected a size like '1GB' or '512MB', got {v!r}")
        return v.strip()


class LabelSettings(_Model):
    topics: list[TopicRule] = Field(default_factory=list)
    default_topic: str = "other"


class SplitSettings(_Model):
    train: Annotated[float, Field(ge=0, le=1)] = 0.8
    validation: Annotated[float, Field(ge=0, le=1)] = 0.1
    test: Annotated[float, Field(ge=0, le=1)] = 0.1
    salt: str = "dataset_platform"

    @model_validator(mode="after")
    def _sum(self) -> "SplitSettings":
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"train + validation + test must be 1.0, got {total:g}")
        return self


class PipelineSettings(_Model):
    extract: ExtractSettings = ExtractSettings()
    clean: CleanSettings = CleanSettings()
    dedup: DedupSettings = DedupSettings()
    labels: LabelSettings = LabelSettings()
    splits: SplitSettings = SplitSettings()
    #: cron for the scheduled refresh of the whole graph
    schedule: str = "0 3 * * *"
    #: documents per batch in the Python stages (extraction, normalisation)
    batch_size: Annotated[int, Field(ge=1)] = 2000

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str) -> str:
        if len(v.split()) != 5:
            raise ValueError(f"expected a 5-field cron string like '0 3 * * *', got {v!r}")
        return v


class PlatformConfig(_Model):
    dataset: DatasetSettings = DatasetSettings()
    sources: list[Source] = Field(min_length=1)
    pipeline: PipelineSettings = PipelineSettings()

    @model_validator(mode="after")
    def _unique_names(self) -> "PlatformConfig":
        seen: set[str] = set()
        for s in self.sources:
            if s.name in seen:
                raise ValueError(f"source name {s.name!r} appears twice; names must be unique")
            seen.add(s.name)
        return self

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of the config (goes into the release manifest)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in SOURCE_KINDS:  # discriminator tags are noise in a path
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _explain(err: dict) -> str:
    t, msg = err["type"], err["msg"]
    if t == "extra_forbidden":
        return "unknown field (check the spelling; see ARCHITECTURE.md for the fields)"
    if t == "missing":
        return "required field is missing"
    if t == "union_tag_not_found":
        return f"kind: required field is missing; expected one of {sorted(SOURCE_KINDS)}"
    if t == "union_tag_invalid":
        return f"kind: expected one of {sorted(SOURCE_KINDS)}, got {err.get('ctx', {}).get('tag')!r}"
    msg = re.sub(r"^Value error, ", "", msg)
    got = err.get("input")
    if t in ("extra_forbidden", "missing") or isinstance(got, (dict, list)):
        return msg
    return f"{msg[0].lower() + msg[1:]}, got {got!r}"


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
    cfg = parse_config(data, origin=str(p))
    return _resolve_paths(cfg, p.resolve().parent)


def _resolve_paths(cfg: PlatformConfig, base: Path) -> PlatformConfig:
    """Dump paths relative to the config file's folder become absolute."""
    sources = []
    for s in cfg.sources:
        if isinstance(s, DumpSource):
            s = s.model_copy(update={"paths": [str(base / x) if not Path(x).is_absolute() else x for x in s.paths]})
        sources.append(s)
    return cfg.model_copy(update={"sources": sources})


def demo_config_path() -> Path:
    """The embedded default config: the demo site, served on 127.0.0.1."""
    return Path(str(resources.files("dataset_platform.demo").joinpath("sources.yaml")))
