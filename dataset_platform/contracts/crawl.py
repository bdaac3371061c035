"""The crawl settings, declared once, and the crawl spec the crawl process receives.

:class:`CrawlSettings` holds every setting of one crawl, with its default and its bounds.
``config.CrawlSource`` (a ``kind: crawl`` source of ``sources.yaml``) is a ``CrawlSettings`` plus
the source's own fields (name, schedule, demo_site, ...); :class:`CrawlSpec` is a
``CrawlSettings`` plus what one run needs (crawl id, output path, job directory, the addresses
it may connect to, ...). The runner (``ingest/crawl.py``) writes the spec as JSON beside the
output and starts ``python -m crawlers.run SPEC``; the crawl process validates the JSON with the
same model (strictly: JSON types, no coercion). So a setting, its default and its bounds live
here only, and the README's table of crawl settings is what the tests hold them to.

Also the rest of the runner/child protocol: the summary line, the exit code of a bad spec and
the names of the spec and partial output files.

Imports nothing of ours but other contracts (the crawl process imports it).
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from dataset_platform.contracts.validation import describe

#: ``max_requests`` unset: this many requests per page of ``max_pages`` (a site answering mostly
#: errors still ends; on a real site 1,966 of 2,000 requests were 404s).
MAX_REQUESTS_PER_PAGE = 10
#: Prefix of the crawl process's last stdout line, followed by the summary as JSON.
SUMMARY_PREFIX = "CRAWL_SUMMARY "
#: Exit code of the crawl process for an unreadable or invalid spec.
EXIT_BAD_SPEC = 2
#: The crawler's default identity (``user_agent``).
DEFAULT_USER_AGENT = "dataset-platform/0.1 (+https://github.com/dataset-platform/dataset_platform)"

_HTTP = ("http://", "https://")


def _non_blank(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be empty")
    return v


#: a string with something in it
NonBlank = Annotated[str, AfterValidator(_non_blank)]


def check_regexes(v: list[str]) -> list[str]:
    for pattern in v:
        try:
            re.compile(pattern)
        except re.error as e:
            raise ValueError(f"{pattern!r} is not a valid regular expression ({e})") from None
    return v


def split_allow_entry(entry: str) -> tuple[str, int | None]:
    """An ``allow_addresses`` entry as (address or CIDR network, port or None): ``10.0.0.5``,
    ``10.1.0.0/16``, ``127.0.0.1:8080``, ``10.1.0.0/16:443``, ``::1``, ``fd00::/8``, ``[::1]:8080``.
    Raises ValueError."""
    e = entry.strip()
    port: str | None = None
    if e.startswith("["):
        host, _, rest = e[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(entry)
        port = rest[1:] or None
    elif e.count(":") == 1:
        host, port = e.split(":")
    else:
        host = e
    ipaddress.ip_network(host, strict=False)
    if port is None:
        return host, None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(entry)
    return host, int(port)


def check_networks(v: list[str]) -> list[str]:
    """IP addresses or CIDR networks, each optionally with ``:port`` (``allow_private_addresses``,
    ``allow_addresses``)."""
    for a in v:
        try:
            split_allow_entry(a)
        except ValueError:
            raise ValueError(f"{a!r} is not an IP address or CIDR network, optionally with :port (e.g. 127.0.0.1, "
                             "10.1.0.0/16, 127.0.0.1:8080 or [::1]:8080)") from None
    return v


class CrawlSettings(BaseModel):
    """The settings of one crawl (README.md, "Crawl settings of a kind: crawl source")."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    #: What a start or sitemap URL may be besides an absolute http(s):// URL: None, or a hint
    #: saying when a /path is accepted (``CrawlSource``: on the demo site it serves).
    url_paths: ClassVar[str | None] = None

    start_urls: list[str] = Field(min_length=1)
    #: sitemap.xml URLs (or sitemap indexes) whose <loc> entries are crawled like start URLs
    sitemap_urls: list[str] = Field(default_factory=list)
    #: hosts (and their subdomains) to crawl; other links are recorded off_domain (empty: any host)
    allowed_domains: list[str] = Field(default_factory=list)
    #: regexes: when given, a URL must match one of them to be crawled
    allow_url_patterns: list[str] = Field(default_factory=list)
    #: regexes: a URL matching one of them is not crawled (outcome filtered_by_rule)
    deny_url_patterns: list[str] = Field(default_factory=list)
    #: pages stored (fetched or not_modified); failed requests, redirects and non-HTML do not count
    max_pages: Annotated[int, Field(ge=1)] = 1000
    max_requests: Annotated[int, Field(ge=1)] | None = Field(
        None, description="Bound on the requests a crawl schedules (start URLs, sitemaps, links, redirect targets; "
                          f"retries not counted), so a site answering mostly errors still ends; default: "
                          f"{MAX_REQUESTS_PER_PAGE} x max_pages. Further URLs are logged `filtered_by_rule` with "
                          "detail `max_requests`.")
    max_depth: Annotated[int, Field(ge=0)] = 5
    max_bytes_per_page: Annotated[int, Field(ge=1024)] = 5_000_000
    #: concurrent requests per domain
    concurrency: Annotated[int, Field(ge=1, le=64)] = 8
    #: seconds between requests to one domain; AutoThrottle is on when > 0
    download_delay: Annotated[float, Field(ge=0, le=3600)] = 0.0  # (an hour per request is already a crawl of months)
    obey_robots: bool = True
    user_agent: NonBlank = DEFAULT_USER_AGENT
    #: record URLs under this base instead of the fetched origin (crawling a mirror or a local copy)
    record_base_url: str | None = None
    #: the whole crawl is stopped after this many seconds
    timeout_s: Annotated[float, Field(gt=0, le=30 * 86400)] = 3600  # at most 30 days
    accepted_content_types: list[NonBlank] = Field(default_factory=lambda: ["text/html", "application/xhtml+xml"])
    retry_times: Annotated[int, Field(ge=0, le=20)] = 3
    #: the n-th retry of a 5xx/429/timeout waits retry_backoff_s * 2**(n-1) seconds (at least Retry-After)
    retry_backoff_s: Annotated[float, Field(ge=0, le=600)] = 1.0
    download_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30
    max_redirects: Annotated[int, Field(ge=0, le=50)] = 10
    #: crawler-trap bound: URLs of one shape per host (every run of digits folded, so /cal/2026/7 and
    #: /cal/2031/12 share a shape) are crawled at most this many times; raise it for a site with more
    #: numbered pages of one kind (/article/<id>) than this
    trap_max_per_pattern: Annotated[int, Field(ge=1)] = 1000

    @field_validator("start_urls", "sitemap_urls")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for u in v:
            if not (u.lower().startswith(_HTTP) or (cls.url_paths and u.startswith("/"))):
                hint = f" (or a /path {cls.url_paths})" if cls.url_paths else ""
                raise ValueError(f"URL {u!r} must be http(s)://{hint}")
        return v

    @field_validator("allowed_domains")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        for d in v:
            if not d.strip() or "/" in d or ":" in d:
                raise ValueError(f"allowed domain {d!r} must be a bare host name (no scheme, port or path)")
        return v

    @field_validator("allow_url_patterns", "deny_url_patterns")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        return check_regexes(v)

    @field_validator("record_base_url")
    @classmethod
    def _base(cls, v: str | None) -> str | None:
        if v is not None and not v.lower().startswith(_HTTP):
            raise ValueError("must be an http(s):// URL")
        return v

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every setting that has a default -> its default."""
        return {n: f.get_default(call_default_factory=True) for n, f in CrawlSettings.model_fields.items()
                if not f.is_required()}

    def crawl_settings(self) -> dict[str, Any]:
        """The values of the :class:`CrawlSettings` fields (not of a subclass's own)."""
        return {name: getattr(self, name) for name in CrawlSettings.model_fields}


class CrawlSpec(CrawlSettings):
    """Everything one crawl needs: the settings and the run's own fields. Serialised as JSON
    for the crawl process (:meth:`to_json`, :meth:`from_json`)."""

    source: NonBlank
    crawl_id: NonBlank
    #: where the batch is landed: gzip JSONL (written as ``<output_path>.part`` until it is complete)
    output_path: NonBlank
    #: non-public IPs/CIDRs the crawl may connect to (the source's allow_private_addresses, and
    #: the address of a site the runner serves)
    allow_addresses: list[str] = Field(default_factory=list)
    #: gzip JSONL of the stored pages' validators (conditional requests)
    known_pages_path: NonBlank | None = None
    #: Scrapy JOBDIR: an interrupted crawl resumes from it
    state_dir: NonBlank | None = None

    @model_validator(mode="before")
    @classmethod
    def _domains_given(cls, data: Any) -> Any:
        # an empty list lets the crawl go to any host: a spec says so explicitly
        if isinstance(data, dict) and "allowed_domains" not in data:
            raise ValueError("allowed_domains: required field is missing (an empty list allows every host)")
        return data

    @field_validator("allow_addresses")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        return check_networks(v)

    @classmethod
    def for_crawl(cls, settings: CrawlSettings, **run: Any) -> CrawlSpec:
        """The spec of one run of ``settings`` (e.g. a ``sources.yaml`` source): its crawl
        settings, with ``run`` on top (the run's fields, and settings the runner resolves)."""
        return cls.model_validate({**settings.crawl_settings(), **run})

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> CrawlSpec:
        """Validated spec from decoded JSON (strictly: no type coercion); raises ValueError
        naming every problem."""
        if not isinstance(data, dict):
            raise ValueError(f"a crawl spec must be a JSON object, not {type(data).__name__}")
        try:
            return cls.model_validate(data, strict=True)
        except ValidationError as e:
            raise ValueError(describe(e)) from None

    @classmethod
    def from_json(cls, text: str) -> CrawlSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"not valid JSON: {e}") from None
        return cls.from_dict(data)


def spec_path_for(output_path: str | Path) -> Path:
    """Where the spec of the crawl landing at ``output_path`` is written (beside it)."""
    out = Path(output_path)
    stem = out.name.removesuffix(".gz").removesuffix(".jsonl")
    return out.with_name(stem + ".spec.json")


def partial_path_for(output_path: str | Path) -> Path:
    """Temporary name of the output while the crawl runs."""
    out = Path(output_path)
    return out.with_name(out.name + ".part")
