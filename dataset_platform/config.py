"""``sources.yaml``: the sources to ingest and the pipeline settings, validated on load.

A bad file fails with :class:`ConfigError`, whose message names the file, the field and what
is expected, e.g.::

    sources.yaml: sources[0].max_pages: expected an integer >= 1, got 'many'
"""

from __future__ import annotations

import hashlib
import json
import os
import re
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
from dataset_platform.contracts.records import DUMP_FIELDS
from dataset_platform.contracts.validation import explain, location

NAME_RE = r"^[a-z][a-z0-9_-]{0,62}$"


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

    name: Annotated[str, Field(pattern=NAME_RE)]
    kind: Literal["crawl"] = "crawl"
    #: Serve the built-in demo site on 127.0.0.1 for the crawl; start_urls are then paths on it.
    demo_site: bool = False
    #: IP addresses / CIDR networks allowed although loopback, private or link-local (refused by default)
    allow_private_addresses: list[str] = Field(default_factory=list)
    #: keep Scrapy's job state under the workdir so an interrupted crawl resumes
    resumable: bool = True
    #: send If-None-Match / If-Modified-Since from the previous crawl; unchanged pages are not stored again
    conditional_requests: bool = True
    #: cron (UTC) for refreshing this source's raw partition; default: pipeline.schedule. Downstream
    #: layers then refresh by themselves (declarative automation) once the raw layer's checks pass.
    schedule: Cron | None = None

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


class DumpSource(_Model):
    """Existing files: WARC (e.g. Common Crawl), JSONL or Parquet text dumps.

    ``paths`` are files or glob patterns (relative paths are relative to the config file); files
    dropped into ``<workdir>/inbox/<name>/`` are ingested too. Each file is ingested once.
    """

    name: Annotated[str, Field(pattern=NAME_RE)]
    #: cron (UTC) for refreshing this source's raw partition; default: pipeline.schedule. Downstream
    #: layers then refresh by themselves (declarative automation) once the raw layer's checks pass.
    schedule: Cron | None = None
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
    """HTML -> main text (stages/extract.py). The default chain is the best measured on the labelled
    pages (bench/extract_eval.py, BENCHMARKS.md)."""

    #: extractors tried in order until one finds main text: trafilatura, trafilatura_recall, resiliparse
    chain: list[Literal["trafilatura", "trafilatura_recall", "resiliparse"]] = Field(
        default_factory=lambda: ["trafilatura", "resiliparse"], min_length=1
    )
    #: a page that takes longer is abandoned (rule extract_timeout); 0 disables the bound
    timeout_s: Annotated[float, Field(ge=0)] = 10.0
    #: worker processes (default: the CPUs this process may use)
    workers: Workers = None
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
    seed: Seed = 1
    #: processes computing signatures (default: every CPU this process may use)
    workers: Workers = None
    #: DuckDB memory of the stage process; beyond it sorts and tables spill to disk
    #: (the signing workers hold a few batches each on top). 1 GB was too little at 1M documents:
    #: the first scan reads a whole part's row group of text per thread (about 90 MB decoded)
    memory_limit: Size = "2GB"


class LabelRule(_Model):
    """A labelling function: votes for ``value`` when it fires, abstains otherwise.

    Exactly one matcher: ``keywords`` (case-insensitive substrings of title + text, so they work for
    Chinese without segmentation; the vote's weight is the number of occurrences), ``regex`` (RE2
    over title + text, case-insensitive; weight: matches), ``url`` (regex searched in the URL;
    weight 1) or ``domains`` (the URL's host is one of them or a subdomain; weight 1).
    """

    value: str
    keywords: list[str] | None = None
    regex: str | None = None
    url: str | None = None
    domains: list[str] | None = None

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

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")]
    values: list[str] = Field(min_length=2)
    #: the value of a document no rule, model or person labels (confidence 0); must be in values
    default: str
    rules: list[LabelRule] = Field(default_factory=list)
    #: train a classifier (TF-IDF + calibrated linear SVM; characters and character pairs for CJK) on the gold labels that
    #: exist (gold file + resolved human labels) and combine it with the rules
    model: bool = True

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

    #: a document whose label confidence is below this (in any set) needs review
    min_confidence: Annotated[float, Field(ge=0, le=1)] = 0.6
    #: and a random audit sample of the rest (stable: a hash of the id)
    audit_fraction: Annotated[float, Field(ge=0, le=1)] = 0.02
    #: at most this many tasks per export (lowest confidence first, then disagreements, then audit)
    max_tasks: Annotated[int, Field(ge=1)] = 500


class LabelSettings(_Model):
    sets: list[LabelSet] = Field(default_factory=list)
    #: JSONL of ``id, text`` (optionally ``title``) and one field per label set: gold labels to train
    #: the classifiers (relative to the config file)
    gold: str | None = None
    review: ReviewSettings = ReviewSettings()
    #: the annotator_agreement check fails below this kappa (per label set, when >= 2 annotators)
    min_kappa: Annotated[float, Field(ge=-1, le=1)] = 0.6
    #: seed of the audit sample and the classifier
    seed: Seed = 0

    @model_validator(mode="after")
    def _unique(self) -> LabelSettings:
        names = [s.name for s in self.sets]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"label set(s) {dup} declared twice")
        return self


class SplitSettings(_Model):
    train: Annotated[float, Field(ge=0, le=1)] = 0.8
    validation: Annotated[float, Field(ge=0, le=1)] = 0.1
    test: Annotated[float, Field(ge=0, le=1)] = 0.1
    salt: str = "dataset_platform"
    #: documents sharing any of these keys stay in one split: ``cluster`` (near-duplicate cluster),
    #: ``url``, ``domain`` (the URL's host)
    group_by: list[Literal["cluster", "url", "domain"]] = Field(default_factory=lambda: ["cluster", "url"])
    #: keep each split's shares of this label set's values near the whole's (None: no stratification)
    stratify_by: str | None = None
    #: the largest allowed |share in a split - share in the whole| (the split_balance check)
    tolerance: Annotated[float, Field(ge=0, le=1)] = 0.05

    @model_validator(mode="after")
    def _sum(self) -> SplitSettings:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"train + validation + test must be 1.0, got {total:g}")
        return self


class BenchmarkSet(_Model):
    """An evaluation set to keep out of the release: JSONL items."""

    path: str
    #: name used in the rejects (default: the file's stem)
    name: str | None = None
    #: fields whose text is matched (strings, or lists of strings); empty: every string field
    fields: list[str] = Field(default_factory=list)


class DecontaminationSettings(_Model):
    benchmarks: list[BenchmarkSet] = Field(default_factory=list)
    #: word n-grams (space-separated scripts)
    ngram: Annotated[int, Field(ge=3, le=64)] = 13
    #: character n-grams for Chinese and Japanese text
    cjk_ngram: Annotated[int, Field(ge=3, le=64)] = 13


class AugmentSettings(_Model):
    """EDA-style augmentation of the train split (off by default)."""

    enabled: bool = False
    #: augmented copies per train document
    copies: Annotated[int, Field(ge=1, le=16)] = 1
    #: share of a document's words changed by each operation
    alpha: Annotated[float, Field(gt=0, le=0.5)] = 0.1
    operations: list[Literal["synonym", "swap", "delete"]] = Field(default_factory=lambda: ["synonym", "swap", "delete"])
    #: JSON file of word -> [synonyms] added to the small built-in English list
    synonyms: str | None = None
    seed: Seed = 0


class ReleaseSettings(_Model):
    #: a Parquet shard holds at most about this many bytes of text (more shards when larger)
    max_shard_bytes: Annotated[int, Field(ge=1024)] = 256 * 1024 * 1024
    #: freshness policy of the release asset: WARN when the newest release is older than
    #: freshness_warn_hours, FAIL when older than freshness_fail_hours
    freshness_warn_hours: Annotated[float, Field(gt=0)] = 26
    freshness_fail_hours: Annotated[float, Field(gt=0)] = 50

    @model_validator(mode="after")
    def _windows(self) -> ReleaseSettings:
        if self.freshness_warn_hours > self.freshness_fail_hours:
            raise ValueError(f"freshness_warn_hours ({self.freshness_warn_hours}) must not exceed "
                             f"freshness_fail_hours ({self.freshness_fail_hours})")
        return self


class QualitySettings(_Model):
    """Floors and limits of the release's diversity_and_balance check (WARN when not met)."""

    min_sources: Annotated[int, Field(ge=0)] = 1
    min_languages: Annotated[int, Field(ge=0)] = 1
    #: distinct URL hosts (www. ignored)
    min_domains: Annotated[int, Field(ge=0)] = 1
    #: distinct values of each label set
    min_label_values: Annotated[int, Field(ge=0)] = 2
    #: the most frequent value of a label set may hold at most this share of the release
    max_label_share: Annotated[float, Field(gt=0, le=1)] = 0.9


class RaySettings(_Model):
    """Where and how per-batch work runs when ``pipeline.executor`` is ``ray``."""

    #: the cluster (``ray://host:10001``, ``host:6379``, or ``auto``); unset: ``$RAY_ADDRESS``, else
    #: a Ray instance on this machine is started for the run
    address: str | None = None
    #: memory Ray reserves for each part's task (the part's DuckDB connection is held below it)
    task_memory: Size = "2GB"
    #: times a part's task is run again when its worker dies (the part is committed once)
    max_retries: Annotated[int, Field(ge=0, le=100)] = 3
    #: how a stage's step reaches the cluster: ``driver`` (the Dagster step process is the Ray
    #: driver and submits each part as a task), or ``job`` (the step submits a Ray job through
    #: Dagster Pipes, dagster-ray's PipesRayJobClient; the job is the driver, and its log lines
    #: and result come back to the step)
    submit: Literal["driver", "job"] = "driver"
    #: the cluster's job API for ``submit: job`` (``http://head:8265``: the head's dashboard);
    #: unset: ``$RAY_API_SERVER_ADDRESS``
    job_address: str | None = None


#: settings that decide where the work runs, not what it produces: left out of the config's
#: fingerprint, so the same inputs give the same release on one machine or on a cluster
RUNTIME_ONLY = ("executor", "ray")


class PipelineSettings(_Model):
    extract: ExtractSettings = ExtractSettings()
    clean: CleanSettings = CleanSettings()
    dedup: DedupSettings = DedupSettings()
    labels: LabelSettings = LabelSettings()
    decontamination: DecontaminationSettings = DecontaminationSettings()
    splits: SplitSettings = SplitSettings()
    augmentation: AugmentSettings = AugmentSettings()
    release: ReleaseSettings = ReleaseSettings()
    quality: QualitySettings = QualitySettings()
    #: default cron (UTC) of each source's scheduled refresh (sources[].schedule overrides it)
    schedule: Cron = "0 3 * * *"
    #: documents per batch in the Python stages (extraction, normalisation)
    batch_size: Annotated[int, Field(ge=1)] = 2000
    #: documents per part of a layer: a landed batch larger than this is stored (and processed,
    #: and refreshed) as several parts
    part_rows: Annotated[int, Field(ge=100)] = 50_000
    #: DuckDB memory of a stage's connection (dedup has its own, dedup.memory_limit); beyond it
    #: sorts and tables spill to <workdir>/tmp/<stage>/
    memory_limit: Size = "2GB"
    #: a stage's drop rate may change by this many share points between two materialisations
    #: before its drop_rate_stable check warns (runs of fewer than 100 documents are not compared)
    max_drop_rate_change: Annotated[float, Field(gt=0, le=1)] = 0.15
    #: where the parts of the per-batch stages run: ``local`` (processes of this machine) or
    #: ``ray`` (tasks on a Ray cluster, ``pipeline.ray``; needs the ``ray`` extra installed)
    executor: Literal["local", "ray"] = "local"
    ray: RaySettings = RaySettings()

    @model_validator(mode="after")
    def _stratify(self) -> PipelineSettings:
        by = self.splits.stratify_by
        if by is not None and by not in {s.name for s in self.labels.sets}:
            raise ValueError(f"splits.stratify_by: {by!r} is not a label set (declared: {[s.name for s in self.labels.sets]})")
        return self


#: the inbox folder that receives Label Studio exports (not a source)
ANNOTATIONS_INBOX = "annotations"


class PlatformConfig(_Model):
    dataset: DatasetSettings = DatasetSettings()
    sources: list[Source] = Field(min_length=1)
    pipeline: PipelineSettings = PipelineSettings()

    @model_validator(mode="after")
    def _unique_names(self) -> PlatformConfig:
        seen: set[str] = set()
        for s in self.sources:
            if s.name == ANNOTATIONS_INBOX:
                raise ValueError(f"source name {s.name!r} is reserved: inbox/{ANNOTATIONS_INBOX}/ receives Label Studio exports")
            if s.name in seen:
                raise ValueError(f"source name {s.name!r} appears twice; names must be unique")
            seen.add(s.name)
        return self

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
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def _loc(loc: tuple) -> str:
    return location(part for part in loc if part not in SOURCE_KINDS)  # discriminator tags are noise in a path


def _explain(err: dict) -> str:
    t = err["type"]
    if t == "extra_forbidden":
        return "unknown field (check the spelling; see ARCHITECTURE.md for the fields)"
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
    pipeline = p.model_copy(update={"labels": labels, "decontamination": decon, "augmentation": aug})
    return cfg.model_copy(update={"sources": sources, "pipeline": pipeline})


def demo_config_path() -> Path:
    """The embedded default config: the demo site, served on 127.0.0.1."""
    return Path(str(resources.files("dataset_platform.demo").joinpath("sources.yaml")))
