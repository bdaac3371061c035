"""URL canonicalisation and URL "shapes" (for the crawler-trap bound).

One page must be fetched once, however it is linked. :func:`canonicalize` is the key the crawler
dedupes on, the URL it requests and the URL it records (before ``record_base_url`` rewriting):

* scheme and host lower-cased, IDNA host in punycode, default port dropped, user info dropped
  (credentials found in a link are never sent);
* fragment dropped; empty path normalised to ``/``;
* tracking parameters dropped (``utm_*``, ``gclid``, ``fbclid``, ...) and session-id parameters
  dropped (``sessionid``, ``jsessionid``, ``phpsessid``, ``sid``, ...), also the ``;jsessionid=``
  path parameter;
* query parameters sorted, percent-encoding normalised (``w3lib.url.canonicalize_url``, the
  function Scrapy's request fingerprints are built on).

Trailing slashes are kept as they are: ``/a`` and ``/a/`` can be different resources, and a site
that treats them as one usually redirects one to the other (the redirect is then recorded).
"""

from __future__ import annotations

import functools
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from w3lib.url import canonicalize_url, safe_url_string

HTTP_SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}

#: Query parameters that only track the visitor (case-insensitive; ``utm_`` is a prefix).
TRACKING_PARAMS = frozenset(
    {"gclid", "gclsrc", "dclid", "fbclid", "msclkid", "yclid", "igshid", "mc_cid", "mc_eid", "_ga", "_gl"}
)
TRACKING_PREFIXES = ("utm_",)
#: Query parameters that carry a session id (case-insensitive).
SESSION_PARAMS = frozenset(
    {"sessionid", "session_id", "sid", "jsessionid", "phpsessid", "aspsessionid", "cfid", "cftoken", "sess"}
)
_PATH_SESSION = re.compile(r";(?:jsessionid|phpsessid|sessionid|sid)=[^/?#;]*", re.IGNORECASE)
_DIGITS = re.compile(r"\d+")
#: Placeholder for a run of digits in a URL shape.
SHAPE_NUMBER = "{n}"


def url_scheme(url: str) -> str:
    """Lower-case scheme of ``url`` ("" when it has none)."""
    m = re.match(r"^\s*([A-Za-z][A-Za-z0-9+.\-]*):", url)
    return m.group(1).lower() if m else ""


def _drop_param(name: str) -> bool:
    n = name.lower()
    return n in TRACKING_PARAMS or n in SESSION_PARAMS or n.startswith(TRACKING_PREFIXES)


@functools.lru_cache(maxsize=50_000)
def canonicalize(url: str) -> str | None:
    """The canonical form of an absolute http(s) URL; None when it is not one (or has no host).

    Cached: a site's navigation links repeat on every page.
    """
    url = url.strip()
    if url_scheme(url) not in HTTP_SCHEMES:
        return None
    try:
        parts = urlsplit(safe_url_string(url))
        host = parts.hostname
        port = parts.port
    except ValueError:  # bad port, bad IPv6 literal...
        return None
    if not host:
        return None
    scheme = parts.scheme.lower()
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    path = _PATH_SESSION.sub("", parts.path) or "/"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        kept = [(k, v) for k, v in pairs if not _drop_param(k)]
        if len(kept) != len(pairs):
            query = urlencode(kept)
    return canonicalize_url(urlunsplit((scheme, netloc, path, query, "")))


def host_of(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def url_shape(canonical_url: str) -> str:
    """Path and query of a canonical URL with every run of digits replaced by ``{n}``.

    ``/calendar?month=7&year=2026`` -> ``/calendar?month={n}&year={n}``. URLs of one host with the
    same shape are counted by the crawler-trap bound.
    """
    parts = urlsplit(canonical_url)
    shape = _DIGITS.sub(SHAPE_NUMBER, parts.path)
    if parts.query:
        shape += "?" + _DIGITS.sub(SHAPE_NUMBER, parts.query)
    return shape
