"""The whole asset graph as a user runs it: ``dataset-platform run`` on a JSONL dump, end to end.

    python bench/graph.py --docs 10000 --runs full,refresh,settings --datatrove-sample 2000
    python bench/graph.py --docs 100000 --runs full,refresh --datatrove-sample 2000
    python bench/graph.py --docs 10000 --runs full --datatrove-sample 0     # no datatrove

Data (deterministic, fixed seed; written once to ``bench/out/graph-<n>/`` and reused): ``dump.jsonl``
with ``--docs`` records (``text``, ``url``, ``title``, ``date``) built from real text of the shared
corpus: the BBC articles (``neardup/bbc_news``) and the webextract ground truths (English, Chinese
and the other languages; new documents 89 % English, 10 % Chinese, 1 % the rest). Each new
document gathers runs of 1-3 consecutive paragraphs (long ones cut into parts of a few sentences)
of random source texts of one language, so that every document is a new combination and
accidental near-duplicates stay rare; then ``make_doc`` of bench/clean.py keeps a run of them and
turns about 40 % into low-quality variants (repeated lines, boilerplate, bullet lists, short texts,
code, lorem ipsum, teasers, hashtags, menus, paragraphs scraped twice). Planted on top: exact
duplicates (~5 %, same text, new URL), near-duplicates (~3 %, 2-4 words or characters changed) and
documents with an evaluation item pasted in (~0.3 %). ``plus1.jsonl`` holds 1 % more documents
(new URLs; 10 % exact and 5 % near copies of old documents) for the refresh.

``sources.yaml`` (written beside the data): one ``kind: jsonl`` source, a ``topic`` label set with
keyword rules, decontamination against the shared corpus's ``benchmark/*.jsonl``, splits
stratified by topic; everything else at its defaults.

Runs (``--runs``), each ``dataset-platform run --config sources.yaml --workdir work`` in a fresh
process, on one work folder (``bench/out/graph-<n>/work``, emptied before ``full``):

* ``full``: the whole graph from nothing;
* ``refresh``: ``plus1.jsonl`` copied into ``work/inbox/news/``, then ``run`` again;
* ``sensor`` (instead of ``refresh``): ``dataset-platform ui`` (Dagster's webserver and daemon) is
  started on the work folder and ``plus1.jsonl`` is dropped into the inbox; the inbox sensor
  launches the run. Measured: the seconds from the drop until the run is requested, started and
  ended, the run's steps, and any other run launched in the minute after it;
* ``settings``: ``pipeline.clean.rules: {gopher_quality.word_count: {min: 60}}`` added to
  sources.yaml (edited in place, as a user would; ``full`` writes the original again), then ``run``.

Measured per run:

* wall seconds of the ``dataset-platform`` process (started after ``sync``: the previous run's
  writes do not land in the next one's time), input documents/s and per core
  (``os.cpu_count()``);
* peak resident memory of its whole process tree: VmRSS of the process and every descendant,
  summed every 0.2 s; a warm GX service that an earlier run started (``checks/gx_service.py``:
  ``full`` starts it, ``refresh`` and ``settings`` find it) counts as part of the tree, and so
  does the CPU it spends during the run (``gx_service`` in the results says which it was;
  ``DATASET_PLATFORM_GX_IDLE=0`` runs every run with a GX worker of its own);
* CPU seconds (user + system) of every process of the tree, sampled with the memory: wall times
  depend on what else shares the cores, so the load average before and after is printed too;
* from the Dagster run's event log (DAGSTER_HOME is ``work/dagster_home``): the wall seconds of
  every step (each asset step, in two parts: the stage up to its materialisations, then the checks
  of the layers it wrote, which run at its end) with the tree's CPU seconds
  meanwhile, the time from process start to the run's start and to its first step, the gaps
  between steps and the time after the last one.

The code measured is this checkout's: its root goes first on the child's PYTHONPATH.

datatrove 0.10.1 on the same input, in the same invocation: ``JsonlReader`` ->
``GopherRepetitionFilter`` -> ``GopherQualityFilter`` -> ``C4QualityFilter`` ->
``FineWebQualityFilter`` -> ``JsonlWriter`` (English defaults) under
``LocalPipelineExecutor(tasks=2, workers=2)``, in a child process timed the same way, on the
first ``--datatrove-sample`` documents (default: all of them; 0: skip) written as one file per
task (its reader gives each task whole files). Needs the ``bench`` extra (datatrove, spacy) and
the shared corpus (``DATASET_PLATFORM_CORPUS`` or ``../shared/corpus`` next to the repo).

Prints two Markdown tables (runs; seconds per step) and writes everything to
``bench/out/graph-<n>/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))  # bench/common.py, bench/clean.py

from clean import corpus_dir, make_doc, source_texts
from common import TreePeak, machine

#: bump when the generated data changes (a cached dump of another version is rebuilt)
DATA_VERSION = 3
SOURCE = "news"
RUNS = ("full", "refresh", "settings", "sensor")
SETTINGS_CHANGE = {"gopher_quality.word_count": {"min": 60}}
TOPICS = {
    "business": ["economy", "market", "shares", "profit", "bank", "company", "investors", "sales"],
    "politics": ["government", "minister", "election", "parliament", "party", "labour", "tory", "vote"],
    "sport": ["match", "season", "coach", "championship", "tournament", "olympic", "football", "rugby"],
    "tech": ["software", "computer", "internet", "mobile", "digital", "technology", "online", "users"],
    "entertainment": ["film", "music", "album", "actor", "festival", "award", "band", "star"],
}
#: characters gathered per new document, by language group, before make_doc cuts a run of them
TARGET_CHARS = {"en": (2500, 6000), "zh": (1000, 3000), "other": (1500, 4000)}
CJK_FILL = "的一是在不了有和人这中大为上个国我以要他"
SWAP_WORDS = ["also", "however", "recently", "major", "local", "several", "new", "former", "city", "week"]


# ---------------------------------------------------------------------------------------- data


_SENTENCE = re.compile(r".+?(?:[.!?\u3002\uff01\uff1f]+[\"'\u201d\u2019)]*\s*|$)", re.DOTALL)


def _units(paragraph: str, max_chars: int = 300) -> list[str]:
    """A long paragraph cut at sentence ends into parts of at most about ``max_chars``: the BBC
    paragraphs run to 200 words, and two documents that drew the same one or two of them (out of
    ~1 800) would often be near-duplicates by accident."""
    if len(paragraph) <= max_chars:
        return [paragraph]
    out, cur = [], ""
    for sentence in _SENTENCE.findall(paragraph):
        if cur and len(cur) + len(sentence) > max_chars:
            out.append(cur.strip())
            cur = ""
        cur += sentence
    if cur.strip():
        out.append(cur.strip())
    return out


def text_pools(corpus: Path) -> dict[str, list[list[str]]]:
    """Paragraph lists of the source texts by language group: ``en`` (bench/clean.py's
    source_texts: BBC + English webextract), ``zh`` and ``other`` (the other webextract languages);
    long paragraphs cut into parts of a few sentences (``_units``)."""
    pools: dict[str, list[list[str]]] = {"en": source_texts(corpus), "zh": [], "other": []}
    with open(corpus / "webextract" / "groundtruth.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            lang, text = r.get("lang"), r.get("text")
            if lang == "en" or not text or len(text) < 200:
                continue
            paras = [p.strip() for p in text.split("\n") if p.strip()]
            pools["zh" if lang == "zh" else "other"].append(paras)
    return {k: [[u for p in paras for u in _units(p)] for paras in texts] for k, texts in pools.items()}


def benchmark_items(corpus: Path) -> dict[str, list[str]]:
    """Evaluation questions long enough to be caught by 13-gram matching (words; CJK characters)."""
    out: dict[str, list[str]] = {"en": [], "zh": []}
    for f in sorted((corpus / "benchmark").glob("*.jsonl")):
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                q = json.loads(line).get("question") or ""
                if f.name.startswith("cmmlu"):
                    if len(q) >= 30:
                        out["zh"].append(q)
                elif len(q.split()) >= 20:
                    out["en"].append(q)
    return out


def _mixed(rng: random.Random, pool: list[list[str]], target_chars: int) -> list[str]:
    """Runs of 1-3 consecutive paragraphs from random source texts of one pool until about
    ``target_chars``: every document a new combination (two documents seldom share enough
    paragraphs to be near-duplicates by accident, even at a million documents)."""
    paras: list[str] = []
    size = 0
    while size < target_chars:
        src = rng.choice(pool)
        k = rng.randint(1, 3)
        s = rng.randrange(max(1, len(src) - k + 1))
        paras += src[s : s + k]
        size += sum(len(p) for p in src[s : s + k])
    return paras


def _perturb(rng: random.Random, text: str) -> str:
    """A near-duplicate: 2-4 words (characters, for text without spaces) replaced."""
    words = text.split(" ")
    if len(words) >= 20:
        for _ in range(rng.randint(2, 4)):
            i = rng.randrange(len(words))
            words[i] = rng.choice(SWAP_WORDS)
        return " ".join(words)
    chars = list(text)
    for _ in range(rng.randint(2, 4)):
        chars[rng.randrange(len(chars))] = rng.choice(CJK_FILL)
    return "".join(chars)


def _title(text: str) -> str:
    first = text.strip().split("\n", 1)[0]
    words = first.split()
    return " ".join(words[:10])[:80] if len(words) > 3 else first[:30]


class _Generator:
    def __init__(self, seed: int, pools: dict[str, list[list[str]]], items: dict[str, list[str]]) -> None:
        self.rng = random.Random(seed)
        self.pools, self.items = pools, items
        self.seen: list[tuple[str, str]] = []  # reservoir of (title, text) to copy from
        self.n_seen = 0
        self.counts: dict[str, int] = {}

    def _count(self, k: str) -> None:
        self.counts[k] = self.counts.get(k, 0) + 1

    def remember(self, title: str, text: str) -> None:
        self.n_seen += 1
        if len(self.seen) < 20_000:
            self.seen.append((title, text))
        else:
            j = self.rng.randrange(self.n_seen)
            if j < len(self.seen):
                self.seen[j] = (title, text)

    def doc(self, exact: float, near: float) -> tuple[str, str]:
        rng = self.rng
        r = rng.random()
        if self.seen and r < exact:
            self._count("exact_duplicate")
            return rng.choice(self.seen)
        if self.seen and r < exact + near:
            self._count("near_duplicate")
            title, text = rng.choice(self.seen)
            return title, _perturb(rng, text)
        g = rng.random()
        lang = "en" if g < 0.89 else "zh" if g < 0.99 else "other"
        self._count(f"new_{lang}")
        target = rng.randint(*TARGET_CHARS[lang])  # make_doc then keeps a run of 1/3 to all of it
        text = make_doc(rng, [_mixed(rng, self.pools[lang], target)])
        if rng.random() < 0.003:
            lines = text.split("\n")
            lines.insert(rng.randint(0, len(lines)), rng.choice(self.items["zh" if lang == "zh" else "en"]))
            text = "\n".join(lines)
            self._count("contaminated")
        return _title(text), text


def _write_jsonl(path: Path, records) -> int:
    tmp = path.with_name(path.name + ".part")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def generate(n: int, out: Path) -> dict:
    """``dump.jsonl`` (n documents) and ``plus1.jsonl`` (n/100 more) in ``out``; cached."""
    meta_path = out / "data.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("version") == DATA_VERSION and (out / "dump.jsonl").exists() and (out / "plus1.jsonl").exists():
            return meta
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "datatrove", ignore_errors=True)  # its input is cut from the old dump
    t0 = time.monotonic()
    corpus = corpus_dir()
    gen = _Generator(7, text_pools(corpus), benchmark_items(corpus))
    epoch = datetime(2024, 1, 1, 8, tzinfo=UTC)

    def records(start: int, count: int, exact: float, near: float, day0: int):
        for i in range(start, start + count):
            title, text = gen.doc(exact, near)
            gen.remember(title, text)
            date = (epoch + timedelta(days=day0 + (i - start) * 700 // max(count, 1), minutes=i % 1440))
            yield {"text": text, "url": f"https://news.example.org/{i}", "title": title,
                   "date": date.strftime("%Y-%m-%dT%H:%M:%SZ")}

    n_dump = _write_jsonl(out / "dump.jsonl", records(0, n, 0.05, 0.03, 0))
    dump_counts, gen.counts = gen.counts, {}
    m = max(1, n // 100)
    n_plus = _write_jsonl(out / "plus1.jsonl", records(n, m, 0.10, 0.05, 700))
    meta = {"version": DATA_VERSION, "docs": n_dump, "plus1_docs": n_plus, "dump": dump_counts,
            "plus1": gen.counts, "bytes": (out / "dump.jsonl").stat().st_size,
            "seconds": round(time.monotonic() - t0, 1)}
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta


def write_config(out: Path, *, settings_change: bool) -> Path:
    """``sources.yaml`` beside the data; checked with ``load_config``."""
    import yaml

    from dataset_platform.config import load_config

    bench_dir = corpus_dir() / "benchmark"
    benchmarks = []
    for f in sorted(bench_dir.glob("*.jsonl")):
        fields = ["question"] if f.name.startswith("gsm8k") else ["question", "choices"]
        benchmarks.append({"path": os.path.relpath(f, out), "fields": fields})
    pipeline: dict = {
        "labels": {"sets": [{
            "name": "topic",
            "values": [*TOPICS, "other"],
            "default": "other",
            "rules": [{"value": v, "keywords": kw} for v, kw in TOPICS.items()],
        }]},
        "decontamination": {"benchmarks": benchmarks},
        "splits": {"train": 0.8, "validation": 0.1, "test": 0.1, "stratify_by": "topic"},
    }
    if settings_change:
        pipeline = {"clean": {"rules": SETTINGS_CHANGE}, **pipeline}
    cfg = {
        "dataset": {"name": "bench-news", "license": "other", "language": ["en", "zh"]},
        "sources": [{"name": SOURCE, "kind": "jsonl", "paths": ["dump.jsonl"], "fields": {"fetched_at": "date"}}],
        "pipeline": pipeline,
    }
    path = out / "sources.yaml"
    tmp = path.with_name(".sources.yaml.tmp")
    tmp.write_text("# written by bench/graph.py\n" + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    load_config(tmp)  # raises ConfigError with the field if the schema moved
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------------ measuring


def warm_gx_service() -> int | None:
    """The pid of the GX service that a ``dataset-platform run`` of this code would use now
    (``checks/gx_service.daemon``: started by an earlier run, outside the new run's process tree),
    or None when there is none (the run then starts one, in its tree)."""
    from dataset_platform.checks import gx_service

    if gx_service.idle_seconds() == 0:
        return None
    address = str(Path(tempfile.gettempdir()) / f"dpgx-{os.getuid()}" / f"{gx_service.fingerprint()}.sock")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"dataset_platform.checks.gx_service" in argv and address.encode() in argv:
            return int(proc.name)
    return None


def _timed(cmd: list[str], log: Path, env: dict[str, str]) -> dict:
    """Run ``cmd`` with stdout+stderr to ``log``: wall seconds, peak tree RSS, exit code, CPU
    seconds of the tree (the larger of the sampled figure and the rusage of the reaped
    descendants; less sensitive to other load than wall time). A warm GX service that the run
    will use counts as part of its tree: its memory, and the CPU it spends meanwhile."""
    import resource

    os.sync()  # the previous run's (or the data's) writes reach the disk before this one starts
    time.sleep(1)
    load = os.getloadavg()[0]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    service = warm_gx_service()
    with open(log, "w", encoding="utf-8") as fh:
        t_epoch = time.time()
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        with TreePeak(proc.pid, interval=0.2, extra=(service,) if service else ()) as peak:
            rc = proc.wait()
        seconds = time.monotonic() - t0
    times = [t for t, _ in peak.timeline]
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    reaped = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    return {"returncode": rc, "seconds": round(seconds, 2), "started_at": t_epoch,
            "cpu_s": round(max(peak.cpu_s, reaped), 1), "cpu_sampled_s": round(peak.cpu_s, 1),
            "cpu_reaped_s": round(reaped, 1), "cpu_timeline": peak.timeline, "_times": times,
            "load_avg_before": round(load, 2), "load_avg_after": round(os.getloadavg()[0], 2),
            "peak_tree_rss_mb": round(peak.peak_mb, 1), "rss_samples": peak.samples,
            "gx_service": "warm (started by an earlier run)" if service else "none: the run starts it"
            if os.environ.get("DATASET_PLATFORM_GX_IDLE", "").strip() not in ("0", "0.0") else "off"}


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DAGSTER_HOME", None)  # the CLI then uses <workdir>/dagster_home
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


_STAGE_LINE = re.compile(r"^\s+(\w+)\s+(\d+)\s+\(in (\d+), rejected (\d+)\)")


def _parse_log(text: str) -> dict:
    out: dict = {"layers": {}, "drop_reasons": [], "checks": None}
    m = re.search(r"^run (\S+): (succeeded|FAILED) in ([\d.]+)s", text, re.MULTILINE)
    if m:
        out.update(run_id=m.group(1), status=m.group(2), inner_seconds=float(m.group(3)))
    for line in text.splitlines():
        s = _STAGE_LINE.match(line)
        if s:
            out["layers"][s.group(1)] = {"kept": int(s.group(2)), "input": int(s.group(3)), "rejected": int(s.group(4))}
    m = re.search(r"^drop reasons:\n((?:  .*\n)+)", text, re.MULTILINE)
    if m:
        out["drop_reasons"] = [ln.split() for ln in m.group(1).splitlines()]
    m = re.search(r"^checks: .*$", text, re.MULTILINE)
    if m:
        out["checks"] = m.group(0)
        out["check_problems"] = re.findall(r"^  (FAILED|warn  ) (\S+)$", text, re.MULTILINE)
    return out


def event_log_timeline(home: Path, run_id: str | None) -> dict:
    """Steps of the Dagster run (newest, or ``run_id``) from its event log: seconds per step and
    what happened in it, and the time outside steps."""
    from dataset_platform.defs.instance_storage import instance_at

    with instance_at(str(home)) as instance:
        run = instance.get_run_by_id(run_id) if run_id else None
        if run is None:
            runs = instance.get_runs(limit=1)
            if not runs:
                return {}
            run = runs[0]
        entries = instance.all_logs(run.run_id)
    steps: dict[str, dict] = {}
    run_start = run_end = None
    kinds: dict[str, int] = {}
    resource_init: dict[str, float] = {}
    for e in entries:
        ev = e.dagster_event
        kind = ev.event_type_value if ev is not None else "LOG_MESSAGE"
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind in ("RUN_START", "PIPELINE_START"):
            run_start = e.timestamp
        elif kind in ("RUN_SUCCESS", "RUN_FAILURE", "RUN_CANCELED", "PIPELINE_SUCCESS", "PIPELINE_FAILURE",
                      "PIPELINE_CANCELED"):
            run_end = e.timestamp
        elif kind in ("RESOURCE_INIT_STARTED", "RESOURCE_INIT_SUCCESS"):
            resource_init[kind] = e.timestamp
        if not e.step_key:
            continue
        s = steps.setdefault(e.step_key, {"step": e.step_key, "start": None, "end": None, "status": None,
                                          "assets": [], "checks": [], "first_log": None, "last_user_event": None,
                                          "events": {}, "log": []})
        s["events"][kind] = s["events"].get(kind, 0) + 1
        if kind == "STEP_START":
            s["start"] = e.timestamp
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"):
            s["end"], s["status"] = e.timestamp, kind[5:].lower()
        elif kind == "ASSET_MATERIALIZATION":
            s["assets"].append(ev.asset_key.to_user_string())
            s["last_user_event"] = s["materialised_at"] = e.timestamp
        elif kind == "ASSET_CHECK_EVALUATION":
            d = ev.event_specific_data
            sev = getattr(d.severity, "value", str(d.severity))
            took = d.metadata.get("check_seconds")  # (the check's own time within its step)
            s["checks"].append({"check": f"{d.asset_key.to_user_string()}:{d.check_name}", "passed": d.passed,
                                "severity": sev, "at": e.timestamp,
                                "seconds": None if took is None else float(took.value)})
            s["last_user_event"] = e.timestamp
        elif kind == "LOG_MESSAGE":
            s["first_log"] = s["first_log"] or e.timestamp
            s["log"].append([e.timestamp, e.user_message[:4000]])  # (a stage's summary line names every rule)
    ordered = []
    for s in sorted((s for s in steps.values() if s["start"] is not None), key=lambda s: s["start"]):
        # an asset step runs the checks of its layers at its end, after its materialisations: its
        # two parts are reported apart, `<step>` (the stage) and `<step> (checks)`
        at = s.get("materialised_at")
        if s["checks"] and s["assets"] and at is not None and s["end"] is not None:
            late = [[t, m] for t, m in s["log"] if t >= at]
            checks = dict(s, step=f"{s['step']} (checks)", start=at, assets=[], events={}, log=late,
                          first_log=late[0][0] if late else None)
            stage = dict(s, end=at, checks=[], last_user_event=at, log=[[t, m] for t, m in s["log"] if t < at])
            ordered += [stage, checks]
        else:
            ordered.append(s)
    prev_end = None
    for s in ordered:
        s["seconds"] = round((s["end"] or s["start"]) - s["start"], 3)
        s["kind"] = "check" if s["checks"] and not s["assets"] else "asset"
        s["gap_before"] = round(s["start"] - prev_end, 3) if prev_end is not None else None
        s["head"] = round(s["first_log"] - s["start"], 3) if s["first_log"] else None
        s["tail"] = round(s["end"] - s["last_user_event"], 3) if s["end"] and s["last_user_event"] else None
        s["log"] = [[round(t - s["start"], 3), m] for t, m in s["log"]]  # seconds into the step
        prev_end = s["end"] or prev_end
    init = resource_init.get("RESOURCE_INIT_SUCCESS", 0) - resource_init.get("RESOURCE_INIT_STARTED", 0)
    return {
        "resource_init_s": round(init, 3),
        "run_id": run.run_id, "status": str(run.status.value), "run_start": run_start, "run_end": run_end,
        "first_step_start": ordered[0]["start"] if ordered else None,
        "last_step_end": max((s["end"] for s in ordered if s["end"]), default=None),
        "steps": ordered, "event_kinds": kinds,
    }


def _cpu_at(timeline: list[tuple[float, float]], times: list[float]):
    """Cumulative tree CPU seconds at an epoch time (the last sample before it)."""
    import bisect

    def at(t: float) -> float:
        i = bisect.bisect_right(times, t) - 1
        return timeline[i][1] if i >= 0 else 0.0

    return at


def graph_run(name: str, out: Path, work: Path, docs: int, cores: int) -> dict:
    exe = shutil.which("dataset-platform")
    cmd = [exe, "run", "--config", str(out / "sources.yaml"), "--workdir", str(work)] if exe else \
        [sys.executable, "-m", "dataset_platform.cli", "run", "--config", str(out / "sources.yaml"), "--workdir", str(work)]
    log = out / f"run-{name}.log"
    print(f"[{name}] {' '.join(cmd[1:])}", file=sys.stderr)
    res = _timed(cmd, log, _child_env())
    text = log.read_text(encoding="utf-8", errors="replace")
    res.update(_parse_log(text))
    res["log_tail"] = text.splitlines()[-40:]
    tl = event_log_timeline(work / "dagster_home", res.get("run_id"))
    res["timeline"] = tl
    t0 = res["started_at"]
    if tl.get("first_step_start"):
        res["before_run_start_s"] = round(tl["run_start"] - t0, 2) if tl.get("run_start") else None
        res["before_first_step_s"] = round(tl["first_step_start"] - t0, 2)
        res["after_last_step_s"] = round(t0 + res["seconds"] - tl["last_step_end"], 2)
        if tl.get("run_start") and tl.get("run_end"):
            res["run_start_to_first_step_s"] = round(tl["first_step_start"] - tl["run_start"], 2)
            res["last_step_to_run_end_s"] = round(tl["run_end"] - tl["last_step_end"], 2)
            res["run_end_to_exit_s"] = round(t0 + res["seconds"] - tl["run_end"], 2)
        res["between_steps_s"] = round(sum(s["gap_before"] or 0 for s in tl["steps"]), 2)
    cpu_at = _cpu_at(res.pop("cpu_timeline"), res.pop("_times"))
    for s in tl.get("steps", []):  # the tree's CPU seconds while the step ran (0.2 s resolution)
        s["cpu_s"] = round(cpu_at(s["end"] or s["start"]) - cpu_at(s["start"]), 2)
    if tl.get("first_step_start"):
        res["cpu_before_first_step_s"] = round(cpu_at(tl["first_step_start"]), 1)
        res["cpu_after_last_step_s"] = round(res["cpu_sampled_s"] - cpu_at(tl["last_step_end"]), 1)
    res.update(name=name, input_docs=docs, docs_per_s=round(docs / res["seconds"], 1),
               docs_per_s_per_core=round(docs / res["seconds"] / cores, 1))
    print(f"[{name}] exit {res['returncode']} in {res['seconds']:.1f}s, peak tree RSS "
          f"{res['peak_tree_rss_mb']:.0f} MB; GX service: {res['gx_service']}", file=sys.stderr)
    return res


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sensor_run(out: Path, work: Path, docs: int, cores: int, timeout: float = 900,
               plus: str = "plus1.jsonl") -> dict:
    """The +1 % file (``plus``, in ``out``) dropped into the inbox while ``dataset-platform ui``
    (Dagster's webserver and daemon) runs on the work folder: the inbox sensor launches the run
    (a work folder that took in ``plus1.jsonl`` already is given another). Measured from the drop:
    until the sensor requested the run, until the run started (its process launched), until it
    ended; the run's steps from its event log; and every other run launched meanwhile (the
    automation sensor's, if it adds any) in the following 60 s."""
    import signal
    import urllib.request

    import dagster as dg

    from dataset_platform.defs.instance_storage import instance_at

    port = _free_port()
    exe = shutil.which("dataset-platform")
    cmd = [exe] if exe else [sys.executable, "-m", "dataset_platform.cli"]
    cmd += ["ui", "--config", str(out / "sources.yaml"), "--workdir", str(work), "--port", str(port)]
    log = open(out / "run-sensor.log", "w", encoding="utf-8")
    print(f"[sensor] {' '.join(cmd[1:])}", file=sys.stderr)
    ui = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_child_env(), cwd=REPO,
                          start_new_session=True)
    home = work / "dagster_home"
    res: dict = {"name": "sensor", "input_docs": docs}
    try:
        deadline = time.monotonic() + 120
        while True:  # the webserver answers once the code location is loaded
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline or ui.poll() is not None:
                    raise RuntimeError(f"dagster dev did not come up on port {port}: see {log.name}") from None
                time.sleep(1)
        time.sleep(5)  # the daemon's first sensor ticks (nothing in the inbox yet)
        with instance_at(str(home)) as instance:
            before = {r.run_id for r in instance.get_runs()}
        os.sync()
        inbox = work / "inbox" / SOURCE
        inbox.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / plus, inbox / f".{plus}.part")
        dropped = time.time()
        os.replace(inbox / f".{plus}.part", inbox / plus)  # appears whole, as a user's mv
        deadline = time.monotonic() + timeout
        inbox_run, quiet_since = None, None
        while time.monotonic() < deadline:
            time.sleep(1)
            with instance_at(str(home)) as instance:
                runs = [r for r in instance.get_runs() if r.run_id not in before]
                if any(not r.is_finished for r in runs):
                    quiet_since = None
                    continue
                inbox_run = next((r for r in runs if r.tags.get("dataset_platform/trigger") == "inbox"), None)
                if inbox_run is None:
                    continue
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= 60:  # no other run followed it
                    records = {r.run_id: instance.get_run_record_by_id(r.run_id) for r in runs}
                    break
        if inbox_run is None:
            raise RuntimeError(f"no inbox run within {timeout:.0f} s: see {log.name}")
        rec = records[inbox_run.run_id]
        tl = event_log_timeline(home, inbox_run.run_id)
        res.update(
            returncode=0 if inbox_run.status == dg.DagsterRunStatus.SUCCESS else 1,
            status=str(inbox_run.status.value), run_id=inbox_run.run_id, timeline=tl,
            requested_after_s=round(rec.create_timestamp.timestamp() - dropped, 2),
            started_after_s=round(rec.start_time - dropped, 2), ended_after_s=round(rec.end_time - dropped, 2),
            run_seconds=round(rec.end_time - rec.start_time, 2),
            launch_s=round(rec.start_time - rec.create_timestamp.timestamp(), 2),
            other_runs=[{"run_id": r.run_id, "job": r.job_name, "status": str(r.status.value),
                         "seconds": round((records[r.run_id].end_time or 0) - (records[r.run_id].start_time or 0), 2)}
                        for r in runs if r.run_id != inbox_run.run_id],
        )
        # comparable with `run`: from the run's start (its process is launched before) to its end
        res["seconds"] = res["run_seconds"]
        res["docs_per_s"] = round(docs / res["seconds"], 1)
        res["docs_per_s_per_core"] = round(docs / res["seconds"] / cores, 1)
    finally:
        ui.send_signal(signal.SIGTERM)  # `dataset-platform ui` stops dagster dev and what it started
        try:
            ui.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
        log.close()
    print(f"[sensor] inbox run {res.get('status')}: requested {res.get('requested_after_s')} s after the drop, "
          f"started {res.get('started_after_s')} s, ended {res.get('ended_after_s')} s (the run: "
          f"{res.get('run_seconds')} s); other runs: {res.get('other_runs')}", file=sys.stderr)
    return res


# ------------------------------------------------------------------------------------ datatrove


def _datatrove_child(inp: str, outp: str, logs: str, tasks: int, workers: int) -> None:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    LocalPipelineExecutor(
        pipeline=[JsonlReader(inp), GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(),
                  FineWebQualityFilter(), JsonlWriter(outp)],
        tasks=tasks, workers=workers, logging_dir=logs,
    ).run()


def datatrove_run(out: Path, sample: int | None, docs: int, cores: int, tasks: int = 2) -> dict:
    k = min(sample or docs, docs)
    base = out / "datatrove"
    inp = base / f"input-{k}-{tasks}"
    done = base / f"input-{k}-{tasks}.v{DATA_VERSION}.done"
    if not done.exists():  # the first k documents, one file per task (contiguous parts)
        shutil.rmtree(inp, ignore_errors=True)
        inp.mkdir(parents=True)
        per = -(-k // tasks)
        with open(out / "dump.jsonl", encoding="utf-8") as src:
            for t in range(tasks):
                with open(inp / f"part-{t}.jsonl", "w", encoding="utf-8") as f:
                    f.writelines(src.readline() for _ in range(min(per, k - t * per)))
        done.write_text("")
    outp, logs = base / "output", base / "logs"
    shutil.rmtree(outp, ignore_errors=True)
    shutil.rmtree(logs, ignore_errors=True)  # else its executor skips the tasks completed before
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_datatrove", str(inp), str(outp), str(logs),
           str(tasks), str(tasks)]
    print(f"[datatrove] {k} documents, tasks={tasks} workers={tasks}", file=sys.stderr)
    res = _timed(cmd, base / "run.log", _child_env())
    res.pop("cpu_timeline"), res.pop("_times")
    kept = 0
    for f in outp.glob("*.jsonl.gz"):
        import gzip

        with gzip.open(f, "rt", encoding="utf-8") as fh:
            kept += sum(1 for _ in fh)
    try:  # its own time per pipeline step (summed over tasks)
        res["step_seconds"] = {" ".join(re.sub(r"[^\x20-\x7e]", "", st["name"]).replace(" - ", " ").split()):
                               round(st["time_stats"]["total"], 2)
                               for st in json.loads((logs / "stats.json").read_text())}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    res.update(name="datatrove", input_docs=k, kept=kept, tasks=tasks, workers=tasks,
               docs_per_s=round(k / res["seconds"], 1), docs_per_s_per_core=round(k / res["seconds"] / cores, 1))
    print(f"[datatrove] exit {res['returncode']} in {res['seconds']:.1f}s, kept {kept}", file=sys.stderr)
    return res


# ---------------------------------------------------------------------------------------- report


def _commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "dataset_platform"],
                               capture_output=True, text=True, check=False).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def print_tables(results: dict) -> None:
    mach = results["machine"]
    print(f"\nmachine: {mach}; code {results['commit']}; load avg {results['load_avg_start']} at start, "
          f"{results['load_avg_end']} at end")
    d = results["data"]
    print(f"data: {d['docs']} docs ({d['bytes'] / 1e6:.0f} MB JSONL) {d['dump']}; +1 %: {d['plus1_docs']} docs "
          f"{d['plus1']}\n")
    print("| run | command | input docs | seconds | docs/s | docs/s per core | peak tree RSS MB | machine "
          "| CPU s (tree) | load avg before/after |")
    print("|---|---|---:|---:|---:|---:|---:|---|---:|---|")
    what = {"full": "`dataset-platform run` (whole graph, empty workdir)",
            "refresh": "+1 % file in inbox, `dataset-platform run`",
            "settings": "`gopher_quality.word_count: {min: 60}`, `dataset-platform run`",
            "sensor": "+1 % file dropped in the inbox under `dataset-platform ui`: the inbox sensor's run "
                      "(run start to end)"}
    def rate(v: float) -> str:
        return f"{v:.0f}" if v >= 10 else f"{v:.1f}"

    for r in results["runs"]:
        flag = "" if r["returncode"] == 0 else f" (exit {r['returncode']})"
        docs = str(r["input_docs"])
        if r["name"] in ("refresh", "sensor"):
            docs += f" new ({r['docs_in_workdir']} in all)"
        if r["name"] == "sensor":
            print(f"| {r['name']}{flag} | {what[r['name']]} | {docs} | {r['seconds']:.1f} | {rate(r['docs_per_s'])} | "
                  f"{rate(r['docs_per_s_per_core'])} | - | {mach} | - | - |")
            continue
        print(f"| {r['name']}{flag} | {what[r['name']]} | {docs} | {r['seconds']:.1f} | {rate(r['docs_per_s'])} | "
              f"{rate(r['docs_per_s_per_core'])} | {r['peak_tree_rss_mb']:.0f} | {mach} | {r['cpu_s']:.0f} | "
              f"{r['load_avg_before']}/{r['load_avg_after']} |")
    dt = results.get("datatrove")
    if dt:
        print(f"| datatrove 0.10.1 | JsonlReader, GopherRep, GopherQual, C4, FineWeb, JsonlWriter (tasks=2, workers=2) | "
              f"{dt['input_docs']} | {dt['seconds']:.1f} | {dt['docs_per_s']:.0f} | {dt['docs_per_s_per_core']:.1f} | "
              f"{dt['peak_tree_rss_mb']:.0f} | {mach} | {dt['cpu_s']:.0f} | {dt['load_avg_before']}/{dt['load_avg_after']} |")
        if dt.get("step_seconds"):
            print("\ndatatrove's own seconds per step (summed over tasks): "
                  + ", ".join(f"{k} {v}" for k, v in dt["step_seconds"].items()))
        full = next((r for r in results["runs"] if r["name"] == "full"), None)
        if full and dt["docs_per_s_per_core"]:
            print(f"\nours (full graph) / datatrove (4 filters) docs/s per core: "
                  f"{full['docs_per_s_per_core'] / dt['docs_per_s_per_core']:.1f}x")
    for r in results["runs"]:
        if r["name"] == "sensor":
            print(f"\nsensor: the file dropped at 0 s; run requested at {r['requested_after_s']} s (the sensor's "
                  f"interval: 30 s), its process launched and the run started at {r['started_after_s']} s (launch "
                  f"{r['launch_s']} s), ended at {r['ended_after_s']} s; other runs launched meanwhile: "
                  f"{r['other_runs'] or 'none'}")
    print("\ndocuments per CPU second of the tree (less sensitive to other load than wall time): " + ", ".join(
        f"{r['name']} {r['input_docs'] / r['cpu_s']:.0f}" for r in [*results["runs"], dt] if r and r.get("cpu_s")))
    full = next((r for r in results["runs"] if r["name"] == "full"), None)
    if dt and full and dt.get("cpu_s") and full.get("cpu_s"):
        print(f"ours (full graph) / datatrove per CPU second: "
              f"{(full['input_docs'] / full['cpu_s']) / (dt['input_docs'] / dt['cpu_s']):.1f}x")

    runs = [r for r in results["runs"] if r.get("timeline", {}).get("steps")]
    if not runs:
        return
    order: list[str] = []
    for r in runs:
        for s in r["timeline"]["steps"]:
            if s["step"] not in order:
                order.append(s["step"])
    print("\nSeconds per step: wall from the Dagster event log (STEP_START to STEP_SUCCESS; an asset step in "
          "two parts: `<step>` up to its last materialisation, `<step> (checks)` from there to its end, where the "
          "checks of the layers it wrote run) and, in brackets, the CPU seconds the "
          "process tree used meanwhile (sampled every 0.2 s)\n")
    print("| step | kind | " + " | ".join(r["name"] for r in runs) + " |")
    print("|---|---|" + "---:|" * len(runs))

    def cell(v) -> str:
        return "" if v is None else f"{v:.2f}"

    def row(label: str, values) -> None:
        print(f"| ({label}) | - | " + " | ".join(cell(v) for v in values) + " |")

    def cpu(v) -> str:
        return "" if v is None else f" ({v:.1f})"

    row("process start to run start: imports, config, definitions", [r.get("before_run_start_s") for r in runs])
    row("run start to first step", [r.get("run_start_to_first_step_s") for r in runs])
    row("of which resource init", [r["timeline"].get("resource_init_s") for r in runs])
    for key in order:
        cells, kind = [], ""
        for r in runs:
            s = next((x for x in r["timeline"]["steps"] if x["step"] == key), None)
            if s:
                kind = s["kind"]
                bad = [c["check"].split(":")[1] + ("" if c["passed"] else f" {c['severity']}") for c in s["checks"]
                       if not c["passed"]]
                cells.append(cell(s["seconds"]) + cpu(s.get("cpu_s"))
                             + (f" {s['status']}" if s["status"] != "success" else "")
                             + (f" failed: {', '.join(bad)}" if bad else ""))
            else:
                cells.append("")
        print(f"| {key} | {kind} | " + " | ".join(cells) + " |")
    row("sum of gaps between steps", [r.get("between_steps_s") for r in runs])
    row("last step to run end", [r.get("last_step_to_run_end_s") for r in runs])
    row("run end to process exit: summary, interpreter exit", [r.get("run_end_to_exit_s") for r in runs])
    print("| **process wall (CPU)** | - | " + " | ".join(cell(r["seconds"]) + cpu(r.get("cpu_s")) for r in runs) + " |")
    print("\nprocess start to first step: " + ", ".join(
        f"{r['name']} {cell(r.get('before_first_step_s'))}{cpu(r.get('cpu_before_first_step_s'))} s" for r in runs)
          + "; last step to process exit: " + ", ".join(
        f"{r['name']} {cell(r.get('after_last_step_s'))}{cpu(r.get('cpu_after_last_step_s'))} s" for r in runs))

    def total(r: dict, kind: str, key: str) -> float:
        return sum(s.get(key) or 0 for s in r["timeline"]["steps"] if s["kind"] == kind)

    print("sum of asset steps / check steps, wall (CPU): " + "; ".join(
        f"{r['name']} {total(r, 'asset', 'seconds'):.1f} ({total(r, 'asset', 'cpu_s'):.1f}) / "
        f"{total(r, 'check', 'seconds'):.1f} ({total(r, 'check', 'cpu_s'):.1f}) s "
        f"({sum(1 for s in r['timeline']['steps'] if s['kind'] == 'asset')} / "
        f"{sum(1 for s in r['timeline']['steps'] if s['kind'] == 'check')} steps)" for r in runs))
    for r in runs:
        if r.get("layers"):
            print(f"{r['name']}: " + ", ".join(f"{k} {v['kept']} (in {v['input']})" for k, v in r["layers"].items())
                  + f"; {r.get('checks')}")

    checks: list[str] = []
    for r in runs:
        for s in r["timeline"]["steps"]:
            checks += [c["check"] for c in s["checks"] if c["check"] not in checks]
    if not any(c.get("seconds") is not None for r in runs for s in r["timeline"]["steps"] for c in s["checks"]):
        return
    print("\nSeconds per check: each check's own time within its step (its `check_seconds` metadata)\n")
    print("| check | " + " | ".join(r["name"] for r in runs) + " |")
    print("|---|" + "---:|" * len(runs))
    for name in checks:
        cells = []
        for r in runs:
            c = next((c for s in r["timeline"]["steps"] for c in s["checks"] if c["check"] == name), None)
            cells.append("" if c is None or c.get("seconds") is None else f"{c['seconds']:.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=10_000, help="documents in the dump (10000, 100000, 1000000)")
    ap.add_argument("--runs", default="full,refresh,settings", help=f"comma-separated, in order, of {','.join(RUNS)}")
    ap.add_argument("--datatrove-sample", type=int, default=None,
                    help="run datatrove on the first K documents (default: all; 0: do not run it)")
    ap.add_argument("--_datatrove", nargs=5, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._datatrove:
        inp, outp, logs, tasks, workers = args._datatrove
        _datatrove_child(inp, outp, logs, int(tasks), int(workers))
        return
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    bad = sorted(set(runs) - set(RUNS))
    if bad:
        ap.error(f"--runs: unknown {bad}; choose from {list(RUNS)}")

    cores = os.cpu_count() or 1
    out = HERE / "out" / f"graph-{args.docs}"
    work = out / "work"
    data = generate(args.docs, out)
    print(f"data: {data}", file=sys.stderr)
    results: dict = {"docs": args.docs, "machine": machine(), "cores": cores, "commit": _commit(),
                     "load_avg_start": round(os.getloadavg()[0], 2), "data": data, "runs": []}
    if not (out / "sources.yaml").exists():
        write_config(out, settings_change=False)
    for name in runs:
        if name == "full":
            shutil.rmtree(work, ignore_errors=True)
            write_config(out, settings_change=False)
            docs = in_workdir = data["docs"]
        elif name == "sensor":  # (instead of refresh: the same file, landed by the inbox sensor)
            docs = data["plus1_docs"]
            results["runs"].append(sensor_run(out, work, docs, cores)
                                   | {"docs_in_workdir": data["docs"] + data["plus1_docs"]})
            continue
        elif name == "refresh":
            inbox = work / "inbox" / SOURCE
            inbox.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out / "plus1.jsonl", inbox / "plus1.jsonl")
            docs = data["plus1_docs"]
            in_workdir = data["docs"] + data["plus1_docs"]
        else:
            write_config(out, settings_change=True)
            landed = (work / "inbox" / SOURCE / "processed" / "plus1.jsonl").exists()
            docs = in_workdir = data["docs"] + (data["plus1_docs"] if landed else 0)
        results["runs"].append(graph_run(name, out, work, docs, cores) | {"docs_in_workdir": in_workdir})
    if args.datatrove_sample != 0:
        results["datatrove"] = datatrove_run(out, args.datatrove_sample, data["docs"], cores)
    results["load_avg_end"] = round(os.getloadavg()[0], 2)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print_tables(results)
    print(f"\nresults: {out / 'results.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
