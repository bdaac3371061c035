"""The demo website: real generation into a temporary folder, real HTTP on 127.0.0.1."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import urllib.robotparser
import zlib
from collections import Counter, deque
from email.utils import formatdate, parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

import pytest

from dataset_platform.demo.server import DemoServer
from dataset_platform.demo.site import KINDS, TOPIC_KEYWORDS, TOPICS, generate_site

REPO = Path(__file__).resolve().parents[1]
HAN = re.compile(r"[\u4e00-\u9fff]")
EN_WORD = re.compile(r"[A-Za-z0-9]+(?:['’-][A-Za-z0-9]+)*")
EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[a-z0-9._%+-]+@example\.(?:com|org|net)(?![A-Za-z0-9-])")
PHONE_FORMATS = {
    "international": re.compile(r"\+44 20 7946 0\d{3}"),
    "nanp_parens": re.compile(r"\(555\) 010-\d{4}"),
    "nanp_dashes": re.compile(r"(?<![\d(])555-010-\d{4}"),
    "cn_mobile": re.compile(r"(?<!\d)1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)"),
}


# --------------------------------------------------------------------------- helpers


class _Page(HTMLParser):
    """Links, <article> paragraphs, <h1>, <time datetime> and <html lang> of one page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.paragraphs: list[str] = []
        self.h1 = ""
        self.datetime: str | None = None
        self.lang: str | None = None
        self._in_article = self._in_p = self._in_h1 = False
        self._buf: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.links.append(a["href"] or "")
        elif tag == "html":
            self.lang = a.get("lang")
        elif tag == "article":
            self._in_article = True
        elif tag == "p" and self._in_article:
            self._in_p, self._buf = True, []
        elif tag == "h1":
            self._in_h1, self._buf = True, []
        elif tag == "time":
            self.datetime = a.get("datetime")

    def handle_endtag(self, tag: str) -> None:
        if tag == "article":
            self._in_article = False
        elif tag == "p" and self._in_p:
            self._in_p = False
            self.paragraphs.append("".join(self._buf))
        elif tag == "h1" and self._in_h1:
            self._in_h1 = False
            self.h1 = "".join(self._buf)

    def handle_data(self, data: str) -> None:
        if self._in_p or self._in_h1:
            self._buf.append(data)


def parse(data: bytes) -> _Page:
    p = _Page()
    p.feed(data.decode("utf-8"))
    p.close()
    return p


def text_of(site: Path, path: str) -> str:
    return "\n".join(parse((site / path.lstrip("/")).read_bytes()).paragraphs)


def shingles(text: str, lang: str, k: int = 5) -> set[tuple[str, ...]]:
    """k-word shingles (English) or k-character shingles of the Han/alphanumeric text (Chinese)."""
    if lang == "en":
        toks = [w.lower() for w in EN_WORD.findall(text)]
    else:
        toks = [c for c in text if c.isalnum()]
    return {tuple(toks[i:i + k]) for i in range(len(toks) - k + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def get(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a raw request; the path is sent exactly as given."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, url[len(f"{parts.scheme}://{parts.netloc}"):] or "/", headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def by_kind(manifest: dict, *kinds: str) -> list[dict]:
    return [p for p in manifest["pages"] if p["kind"] in kinds]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo")
    return out, generate_site(out)


@pytest.fixture(scope="module")
def site(generated) -> Path:
    return generated[0] / "site"


@pytest.fixture(scope="module")
def manifest(generated) -> dict:
    return generated[1]


@pytest.fixture(scope="module")
def server(site):
    with DemoServer(site) as s:
        yield s


# --------------------------------------------------------------------------- generation


def test_generation_is_deterministic_idempotent_and_fast(tmp_path, generated):
    first, manifest = generated
    t0 = time.perf_counter()
    again = generate_site(tmp_path)
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0, elapsed
    assert again == manifest

    def tree(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    a, b = tree(first), tree(tmp_path)
    assert sorted(a) == sorted(b) and len(a) > 200
    assert [k for k in a if a[k] != b[k]] == []
    assert json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8")) == manifest

    # idempotent: a stale file disappears and the tree comes back byte-identical
    (tmp_path / "site" / "stale.html").write_text("old")
    (tmp_path / "site" / "index.html").write_text("tampered")
    generate_site(tmp_path)
    assert tree(tmp_path) == b
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "site"]


def test_generation_is_identical_across_processes(tmp_path, generated):
    """Nothing depends on hash randomisation or the process: another interpreter writes the same bytes."""
    first, _ = generated
    code = "import sys; from pathlib import Path; from dataset_platform.demo.site import generate_site; " \
           "generate_site(Path(sys.argv[1]))"
    for seed in ("1", "2"):
        out = tmp_path / seed
        subprocess.run([sys.executable, "-c", code, str(out)], cwd=REPO, check=True, timeout=60,
                       env={**os.environ, "PYTHONHASHSEED": seed})
        files = [first / "manifest.json", *(f for f in sorted((first / "site").rglob("*")) if f.is_file())]
        for f in files:
            assert (out / f.relative_to(first)).read_bytes() == f.read_bytes(), f


def test_manifest_lists_every_file_with_counts_in_range(site, manifest):
    pages = manifest["pages"]
    paths = [p["path"] for p in pages]
    assert paths == sorted(paths) and len(set(paths)) == len(paths)
    assert {p["kind"] for p in pages} <= set(KINDS)
    on_disk = {"/" + str(p.relative_to(site)) for p in site.rglob("*") if p.is_file()}
    listed = {p["path"] for p in pages if p["kind"] != "missing"}
    assert on_disk == listed
    assert 250 <= len(on_disk) <= 340
    missing = by_kind(manifest, "missing")
    assert [m["path"] for m in missing] == ["/articles/en/missing-page.html"]
    assert not (site / "articles/en/missing-page.html").exists()
    assert not (site / "manifest.json").exists()  # the manifest is not served

    assert manifest["counts"] == dict(sorted(Counter(p["kind"] for p in pages).items()))
    per = Counter((p["kind"], p["lang"]) for p in pages)
    assert 130 <= per[("article", "en")] <= 150
    assert 55 <= per[("article", "zh")] <= 65
    c = manifest["counts"]
    for kind, lo, hi in (("exact_duplicate", 8, 12), ("near_duplicate", 8, 12), ("pii", 8, 12), ("spam", 6, 10),
                         ("short", 6, 10), ("private", 4, 6), ("binary", 2, 2), ("category", 10, 10)):
        assert lo <= c[kind] <= hi, kind
    for kind in ("exact_duplicate", "near_duplicate", "pii", "short"):
        assert per[(kind, "en")] >= 1 and per[(kind, "zh")] >= 1, kind

    topics = Counter(p["topic"] for p in by_kind(manifest, "article"))
    assert set(topics) == set(TOPICS) and max(topics.values()) - min(topics.values()) <= 2
    for p in pages:
        if p["kind"] in ("article", "pii", "exact_duplicate", "near_duplicate"):
            assert p["topic"] in TOPICS and p["lang"] in ("en", "zh")
        if p["kind"] in ("exact_duplicate", "near_duplicate"):
            assert p["duplicate_of"] in listed and p["duplicate_of"] != p["path"]
        else:
            assert p["duplicate_of"] is None


def test_every_html_page_has_the_shared_boilerplate(site, manifest):
    for p in manifest["pages"]:
        if not p["path"].endswith(".html") or p["kind"] == "missing":
            continue
        raw = (site / p["path"].lstrip("/")).read_bytes()
        doc = raw.decode("utf-8")
        assert '<meta charset="utf-8">' in doc, p["path"]
        assert re.search(r"<title>[^<]+</title>", doc), p["path"]
        for tag in ("<header", "<nav", "<footer", "©"):
            assert tag in doc, (p["path"], tag)
        page = parse(raw)
        assert page.lang == {"en": "en", "zh": "zh-CN"}[p["lang"]], p["path"]


def test_english_articles_have_the_expected_shape(site, manifest):
    for p in by_kind(manifest, "article", "pii"):
        if p["lang"] != "en":
            continue
        page = parse((site / p["path"].lstrip("/")).read_bytes())
        n_words = sum(len(EN_WORD.findall(par)) for par in page.paragraphs)
        assert 180 <= n_words <= 500, (p["path"], n_words)
        assert 3 <= len(page.paragraphs) <= 7, p["path"]
        assert page.h1 and page.datetime and re.fullmatch(r"\d{4}-\d{2}-\d{2}", page.datetime)
        for par in page.paragraphs:
            assert par.rstrip()[-1] in '.!?"', (p["path"], par[-40:])
            assert not HAN.search(par)


def test_chinese_articles_are_mostly_han_without_spaces(site, manifest):
    for p in by_kind(manifest, "article", "pii"):
        if p["lang"] != "zh":
            continue
        page = parse((site / p["path"].lstrip("/")).read_bytes())
        text = "".join(page.paragraphs)
        n_han = len(HAN.findall(text))
        assert 300 <= n_han <= 900, (p["path"], n_han)
        letters = [c for c in text if c.isalnum()]
        floor = 0.75 if p["kind"] == "pii" else 0.85  # e-mail addresses are Latin
        assert n_han / len(letters) >= floor, p["path"]
        assert HAN.search(page.h1)
        for par in page.paragraphs:
            assert par[-1] in "。！？”", (p["path"], par[-20:])
            if p["kind"] == "article":
                assert " " not in par, (p["path"], par)


def test_topic_keywords_make_labels_learnable(site, manifest):
    assert TOPICS == ("science", "sports", "business", "technology", "culture")
    assert set(TOPIC_KEYWORDS) == set(TOPICS)
    for kws in TOPIC_KEYWORDS.values():
        assert set(kws) == {"en", "zh"} and len(kws["en"]) >= 8 and len(kws["zh"]) >= 8
    all_kws = {lang: [(t, k.lower()) for t, kws in TOPIC_KEYWORDS.items() for k in kws[lang]] for lang in ("en", "zh")}
    correct = 0
    docs = by_kind(manifest, "article", "pii")
    for p in docs:
        page = parse((site / p["path"].lstrip("/")).read_bytes())
        text = (page.h1 + "\n" + "\n".join(page.paragraphs)).lower()
        hits = Counter()
        for topic, kw in all_kws[p["lang"]]:
            hits[topic] += text.count(kw)
        own = hits[p["topic"]]
        others = sum(hits.values()) - own
        assert own >= 3, p["path"]
        assert others <= 2, (p["path"], hits)
        # the keyword labeller's rule: most hits wins, ties alphabetical
        predicted = min(hits, key=lambda t: (-hits[t], t))
        correct += predicted == p["topic"]
    assert correct / len(docs) >= 0.98


def test_distinct_articles_share_few_shingles(site, manifest):
    for lang in ("en", "zh"):
        sets = [shingles(text_of(site, p["path"]), lang)
                for p in by_kind(manifest, "article", "pii") if p["lang"] == lang]
        assert len(sets) > 50
        worst = max(jaccard(a, b) for a, b in itertools.combinations(sets, 2))
        assert worst < 0.2, (lang, worst)


def test_exact_duplicates_are_byte_identical_copies(site, manifest):
    dups = by_kind(manifest, "exact_duplicate")
    assert len({d["duplicate_of"] for d in dups}) == len(dups)
    kinds = {p["path"]: p["kind"] for p in manifest["pages"]}
    for d in dups:
        assert d["path"].startswith("/mirror/") and kinds[d["duplicate_of"]] == "article"
        copy = (site / d["path"].lstrip("/")).read_bytes()
        original = (site / d["duplicate_of"].lstrip("/")).read_bytes()
        assert copy == original
        assert text_of(site, d["path"]) == text_of(site, d["duplicate_of"]) != ""


def test_near_duplicates_differ_by_one_sentence(site, manifest):
    dups = by_kind(manifest, "near_duplicate")
    for d in dups:
        page = parse((site / d["path"].lstrip("/")).read_bytes())
        orig = parse((site / d["duplicate_of"].lstrip("/")).read_bytes())
        a, b = "\n".join(page.paragraphs), "\n".join(orig.paragraphs)
        assert a != b and page.h1 == orig.h1
        split = re.compile(r"(?<=[.!?。！？])\s*")
        sa, sb = set(split.split(a)) - {""}, set(split.split(b)) - {""}
        assert 1 <= len(sa - sb) <= 1 and len(sb - sa) <= 1, d["path"]
        assert jaccard(shingles(a, d["lang"]), shingles(b, d["lang"])) > 0.6, d["path"]


def test_pii_pages_contain_the_planted_patterns_and_others_none(site, manifest):
    from dataset_platform.stages.clean.pii import find_pii

    seen: set[str] = set()
    for p in by_kind(manifest, "pii"):
        text = text_of(site, p["path"])
        assert EMAIL.search(text), p["path"]
        found = {name for name, rx in PHONE_FORMATS.items() if rx.search(text)}
        assert found, p["path"]
        seen |= found
        # the pipeline's own patterns find them too
        assert {sp.type for sp in find_pii(text)} >= {"email", "phone"}, p["path"]
        domains = re.findall(r"@([A-Za-z0-9.-]+[A-Za-z0-9])", text)
        assert domains and set(domains) <= {"example.com", "example.org", "example.net"}, domains
    assert seen == set(PHONE_FORMATS)
    for p in by_kind(manifest, "article", "near_duplicate", "exact_duplicate"):
        text = text_of(site, p["path"])
        assert find_pii(text) == [], p["path"]


def test_spam_is_repetitive_and_short_pages_are_short(site, manifest):
    for p in by_kind(manifest, "spam"):
        text = text_of(site, p["path"])
        words = EN_WORD.findall(text.lower()) if p["lang"] == "en" else HAN.findall(text)
        assert len(words) >= 300 and len(set(words)) / len(words) < 0.05, p["path"]
        lines = Counter(parse((site / p["path"].lstrip("/")).read_bytes()).paragraphs)
        assert lines.most_common(1)[0][1] >= 20
    for p in by_kind(manifest, "short"):
        text = text_of(site, p["path"])
        n = len(EN_WORD.findall(text)) if p["lang"] == "en" else len(HAN.findall(text))
        assert 0 < n < 15, (p["path"], n)


def test_binary_files_are_valid(site):
    pdf = (site / "files/annual-report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-1.") and pdf.rstrip().endswith(b"%%EOF")
    startxref = int(re.search(rb"startxref\s+(\d+)", pdf).group(1))
    assert pdf[startxref:startxref + 4] == b"xref"
    offsets = [int(o) for o in re.findall(rb"(\d{10}) 00000 n ", pdf)]
    assert len(offsets) >= 4
    for i, off in enumerate(offsets, 1):
        assert pdf[off:].startswith(b"%d 0 obj" % i)

    png = (site / "img/logo.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + data) & 0xFFFFFFFF, kind
        chunks[kind] = data
        pos += 12 + length
    assert list(chunks)[0] == b"IHDR" and b"IEND" in chunks
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 2)
    assert len(zlib.decompress(chunks[b"IDAT"])) == height * (1 + 3 * width)


# --------------------------------------------------------------------------- server


def test_server_serves_files_with_the_right_headers(server, site):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.base_url) and server.port > 0
    cases = {
        "/": ("text/html; charset=utf-8", site / "index.html"),
        "/index.html": ("text/html; charset=utf-8", site / "index.html"),
        "/zh/": ("text/html; charset=utf-8", site / "zh/index.html"),
        "/topics/science.html?page=1": ("text/html; charset=utf-8", site / "topics/science.html"),
        "/robots.txt": ("text/plain; charset=utf-8", site / "robots.txt"),
        "/files/annual-report.pdf": ("application/pdf", site / "files/annual-report.pdf"),
        "/img/logo.png": ("image/png", site / "img/logo.png"),
    }
    for path, (ctype, file) in cases.items():
        status, headers, body = get(server.base_url + path)
        assert status == 200, path
        assert headers["content-type"] == ctype, path
        assert body == file.read_bytes() and int(headers["content-length"]) == len(body), path
        assert parsedate_to_datetime(headers["last-modified"]).timestamp() == int(file.stat().st_mtime)
    with urllib.request.urlopen(server.base_url + "/") as r:  # and through urllib
        assert r.status == 200 and b"<title>" in r.read()
    # HEAD: same headers, no body; conditional GET
    status, headers, body = get(server.base_url + "/robots.txt", "HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) == (site / "robots.txt").stat().st_size
    mtime = (site / "robots.txt").stat().st_mtime
    status, _, body = get(server.base_url + "/robots.txt", headers={"If-Modified-Since": formatdate(mtime, usegmt=True)})
    assert status == 304 and body == b""


def test_server_404s_missing_pages_and_refuses_traversal(server, generated):
    out, _ = generated
    (out / "secret.txt").write_text("outside the document root")
    for path in ("/articles/en/missing-page.html", "/nope", "/topics", "/../manifest.json", "/%2e%2e/manifest.json",
                 "/..%2fmanifest.json", "/topics/..%2f..%2fsecret.txt", "/%2e%2e/%2e%2e/etc/passwd", "//etc/passwd",
                 "/..\\secret.txt"):
        status, headers, body = get(server.base_url + path)
        assert status == 404, path
        assert headers["content-type"].startswith("text/html") and b"outside the document root" not in body
        assert b'"pages"' not in body
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(server.base_url + "/articles/en/missing-page.html")
    assert e.value.code == 404


def test_server_refuses_non_loopback_addresses(site):
    for host in ("0.0.0.0", "192.168.1.10", "10.0.0.1", "8.8.8.8", "::", "example.com", ""):
        with pytest.raises(ValueError):
            DemoServer(site, host=host)
    with DemoServer(site, host="localhost") as s:
        assert s.base_url.startswith("http://127.0.0.1:")


def test_server_is_quiet_and_stops_cleanly(site, capfd):
    s = DemoServer(site)
    with s:
        assert get(s.base_url + "/")[0] == 200
        assert get(s.base_url + "/nope")[0] == 404
        port = s.port
    s.stop()  # idempotent
    out, err = capfd.readouterr()
    assert err == "" and out == ""
    with pytest.raises(OSError):
        get(f"http://127.0.0.1:{port}/")
    with DemoServer(site, verbose=True) as loud:
        get(loud.base_url + "/robots.txt")
    assert "GET /robots.txt" in capfd.readouterr().err


def test_robots_txt_disallows_the_private_area(server, manifest):
    status, headers, body = get(server.base_url + "/robots.txt")
    text = body.decode("utf-8")
    assert status == 200 and "User-agent: *" in text.splitlines() and "Disallow: /private/" in text.splitlines()
    rp = urllib.robotparser.RobotFileParser()
    rp.parse(text.splitlines())
    private = [p["path"] for p in by_kind(manifest, "private")]
    assert private and all(p.startswith("/private/") for p in private)
    assert not any(rp.can_fetch("dataset-platform", server.base_url + p) for p in private)
    assert all(rp.can_fetch("dataset-platform", server.base_url + p["path"]) for p in by_kind(manifest, "article"))
    links = parse(get(server.base_url + "/")[2]).links
    assert set(private) <= set(links)  # linked, but a polite crawler does not fetch them


def test_every_page_is_reachable_from_the_home_page_within_depth_4(server, manifest):
    rp = urllib.robotparser.RobotFileParser()
    rp.parse(get(server.base_url + "/robots.txt")[2].decode().splitlines())
    depth: dict[str, int] = {"/": 0}
    status: dict[str, int] = {}
    linked: set[str] = set()
    queue = deque(["/"])
    while queue:
        path = queue.popleft()
        code, headers, body = get(server.base_url + path)
        status[path] = code
        if code != 200 or not headers["content-type"].startswith("text/html"):
            continue
        for href in parse(body).links:
            url = urldefrag(urljoin(server.base_url + path, href)).url
            parts = urlsplit(url)
            if parts.netloc != urlsplit(server.base_url).netloc:
                continue
            target = parts.path or "/"
            linked.add(target)
            if target in depth or not rp.can_fetch("dataset-platform", url):
                continue
            depth[target] = depth[path] + 1
            queue.append(target)
    assert status["/"] == 200
    for p in manifest["pages"]:
        path, kind = ("/" if p["path"] == "/index.html" else p["path"]), p["kind"]  # "/" serves index.html
        if kind == "robots":
            continue
        if kind == "private":
            assert path in linked and path not in status, path
            continue
        assert path in depth and depth[path] <= 4, (path, depth.get(path))
        assert status[path] == (404 if kind == "missing" else 200), path
    assert sum(1 for c in status.values() if c == 200) > 230


def test_cli_generates_and_serves_until_interrupted(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dataset_platform.demo.server", str(out), "--port", "0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            m = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
            url = m.group(1) if m else None
        assert url, proc.stderr.read() if proc.poll() is not None else "no URL printed"
        assert (out / "manifest.json").is_file() and (out / "site" / "index.html").is_file()
        status, headers, body = get(url + "/robots.txt")
        assert status == 200 and b"Disallow: /private/" in body
        assert get(url + "/")[0] == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0


# --------------------------------------------------------------------------- with the pipeline's extractor


def test_extractor_keeps_article_text_and_strips_boilerplate(site, manifest):
    from dataset_platform.stages.extract import extract_html

    def extracted(path: str):
        return extract_html((site / path.lstrip("/")).read_text(encoding="utf-8"), "http://demo.test" + path)

    samples = list(by_kind(manifest, "article", "pii"))[::12]
    assert {p["lang"] for p in samples} == {"en", "zh"}
    for p in samples:
        ex = extracted(p["path"])
        assert ex is not None and ex.lang == p["lang"], p["path"]
        for par in parse((site / p["path"].lstrip("/")).read_bytes()).paragraphs:
            assert par[:30] in ex.text, (p["path"], par[:30])
        for boiler in ("©", "Related stories", "相关报道", "Annual report", "年度报告"):
            assert boiler not in ex.text, (p["path"], boiler)
    for d in by_kind(manifest, "exact_duplicate")[:3]:
        assert extracted(d["path"]).text == extracted(d["duplicate_of"]).text
    for p in by_kind(manifest, "spam"):
        words = re.findall(r"[\u4e00-\u9fff]|[^\W_]+", extracted(p["path"]).text.lower())
        assert len(words) >= 50 and len(set(words)) / len(words) < 0.3, p["path"]
    for p in by_kind(manifest, "short"):
        ex = extracted(p["path"])
        assert ex is None or len(re.findall(r"[\u4e00-\u9fff]|[^\W_]+", ex.text)) < 50, p["path"]
