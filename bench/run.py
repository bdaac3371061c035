"""Stage throughput benchmark: synthetic pages through every stage of the registry, as the graph runs them.

    python bench/run.py --docs 20000            # generate (cached) and time every stage
    python bench/run.py --docs 20000 --stages clean,dedup

The generated pages are one JSONL dump file (``bench/out/pages-<n>.jsonl.gz``: url and html per
line, deterministic, fixed seed; about 1 in 10 an exact copy of another page, 1 in 20 too short,
so every rule has work to do) of a dump source ``bench``. A work folder per size
(``bench/out/run-<n>/``, git-ignored) gets its raw layer from that file the way a refresh of the
raw layer makes it (``materialise_raw``: the file landed as a batch, then loaded); then every
stage of ``stages/registry.py``'s ``STAGES``, in graph order, runs through
``runner.materialise(stage, cfg, wd)`` in a child process of its own, over the layer the stage
before it wrote. A stage run here starts cold: its output layer and its state (the dedup index,
the label models, its rejects) are removed first, so every part is computed. A stage added to the
registry shows up here by itself, with its default settings.

The config (``run-<n>/bench-sources.yaml``, written here) is the defaults plus what gives the
later stages work: the rule ``gopher_quality.stop_words`` in annotate mode (measured, not
dropping: the generated pseudo-words hold none of Gopher's English stop words, so it would drop
every page and leave the later stages nothing), a ``topic`` label set with keyword rules over the generated vocabulary (no
gold: rules only) and, for decontamination, generated evaluation sets of benchmark size
(``--benchmark-items`` English multiple-choice items and 0.8 times as many Chinese ones, as
bench/decontam.py makes them), whose index the stage builds on each run (counted in its time).

Printed per stage (one Markdown row each): input documents, kept, seconds (the materialisation,
imports of the child process excluded), CPU seconds (user + system of the stage process and its
workers: on a shared machine the steadier figure), docs/s, and peak memory: the stage process's own
high-water mark (VmHWM) and that of its largest worker process (sampled every 0.25 s). The raw
layer's row is printed when it is built (once per work folder).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

from common import VOCAB, DescendantPeak, machine, page, vm_hwm_mb, write_table

OUT = HERE / "out"
SOURCE = "bench"
CONFIG = "bench-sources.yaml"


def _pages(n: int) -> list[str]:
    """The generated pages' HTML (deterministic)."""
    rng = random.Random(7)
    htmls: list[str] = []
    for i in range(n):
        if i % 20 == 19:
            htmls.append(f"<html><body><p>Short page {i}.</p></body></html>")
        elif i % 10 == 9 and i > 10:
            htmls.append(htmls[rng.randrange(0, i - 1)])
        else:
            htmls.append(page(rng, i))
    return htmls


def _url(i: int) -> str:
    return f"http://bench.localhost/p/{i}"


def generate(n: int) -> Path:
    """``bench/out/pages-<n>.parquet`` with the raw_pages columns (cached; bench/extract.py's input)."""
    import pyarrow as pa

    path = OUT / f"pages-{n}.parquet"
    if path.exists():
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    htmls = _pages(n)
    table = pa.table({
        "id": [f"{i:016x}" for i in range(n)],
        "source": [SOURCE] * n,
        "crawl_id": ["bench-1"] * n,
        "url": [_url(i) for i in range(n)],
        "status": pa.array([200] * n, pa.int32()),
        "content_type": ["text/html"] * n,
        "html": htmls,
    })
    return write_table(table, path)


def dump_file(n: int) -> Path:
    """``bench/out/pages-<n>.jsonl.gz``: the same pages as a JSONL dump (url, html; cached)."""
    path = OUT / f"pages-{n}.jsonl.gz"
    if path.exists():
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=1) as f:
        for i, html in enumerate(_pages(n)):
            f.write(json.dumps({"url": _url(i), "html": html}) + "\n")
    os.replace(tmp, path)
    return path


def bench_config(pages: Path, benchmarks: list[Path]) -> dict:
    """sources.yaml of the bench (as data): the dump source, and settings that give later stages work."""
    topics = [{"value": f"topic{t}", "keywords": VOCAB[20 + 10 * t: 30 + 10 * t]} for t in range(5)]
    return {
        "dataset": {"name": "bench"},
        "sources": [{"name": SOURCE, "kind": "jsonl", "paths": [str(pages)]}],
        "pipeline": {
            # the pseudo-words hold none of Gopher's English stop words: measured, not dropping
            "clean": {"rules": {"gopher_quality.stop_words": {"mode": "annotate"}}},
            "labels": {"sets": [{"name": "topic", "values": [f"topic{t}" for t in range(5)] + ["other"],
                                 "default": "other", "rules": topics}]},
            "decontamination": {"benchmarks": [{"path": str(p)} for p in benchmarks]},
        },
    }


# ------------------------------------------------------------------ children (one per measured step)


def _load(workdir: str):
    from dataset_platform.config import load_config
    from dataset_platform.workdir import Workdir

    wd = Workdir.at(workdir)
    return load_config(wd.root / CONFIG), wd


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of its children that have ended (the workers)."""
    import resource

    return sum(resource.getrusage(w).ru_utime + resource.getrusage(w).ru_stime
               for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def _log(t0: float):
    return lambda m: print(f"{time.perf_counter() - t0:8.1f}s {m}", file=sys.stderr, flush=True)


def _raw_child(workdir: str) -> None:
    """Land the dump file and load it into the raw layer, as a refresh of the raw layer does."""
    from dataset_platform.ingest.refresh import materialise_raw

    cfg, wd = _load(workdir)
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    res = materialise_raw(cfg, wd, log=_log(t0), sources=[SOURCE], crawl=False)
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    records = sum(res.counters["sources"][SOURCE]["outcomes"].values())
    print(json.dumps({"input": records, "kept": res.rows, "seconds": seconds, "cpu_seconds": cpu, "rows_computed": records,
                      "stage_rss_mb": vm_hwm_mb(), "worker_rss_mb": 0.0}))


def _stage_child(name: str, workdir: str) -> None:
    """Materialise one registered stage (in this process) and print its figures as JSON."""
    from dataset_platform import runner
    from dataset_platform.stages.registry import stage

    cfg, wd = _load(workdir)
    st = stage(name)
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    with DescendantPeak() as workers_peak:
        res = runner.materialise(st, cfg, wd, log=_log(t0))
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    print(json.dumps({"input": res.stage.input_rows, "kept": res.stage.kept_rows, "seconds": seconds, "cpu_seconds": cpu,
                      "rows_computed": res.processed_rows, "reasons": res.stage.reasons,
                      "stage_rss_mb": vm_hwm_mb(), "worker_rss_mb": workers_peak.peak_mb}))


# ------------------------------------------------------------------ the driver


def _run_child(*args: str) -> dict:
    r = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed with exit code {r.returncode}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p)
    elif p.exists():
        p.unlink()


def _start_cold(st, wd) -> None:
    """Remove what a stage wrote (its layer and state, further layers, rejects): every part is computed."""
    _remove(wd.layer_dir(st.output))
    for name in st.also_writes:
        _remove(wd.layer_dir(name))
    _remove(wd.rejects(st.name))


def _row(what: str, command: str, fig: dict) -> str:
    s = fig["seconds"]
    return (f"| {what} | `{command}` | {fig['input']} | {fig['kept']} | {s:.2f} | {fig['cpu_seconds']:.2f} "
            f"| {fig['rows_computed'] / s:.0f} | {fig['stage_rss_mb']:.0f} / {fig['worker_rss_mb']:.0f} |")


def main(argv: list[str] | None = None) -> int:
    from dataset_platform.stages.registry import STAGES
    from dataset_platform.workdir import Workdir

    names = [s.name for s in STAGES]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=20000, help="synthetic pages to generate (default 20000)")
    ap.add_argument("--stages", default=",".join(names), help="comma-separated subset of " + ",".join(names))
    ap.add_argument("--benchmark-items", type=int, default=15_000,
                    help="English items of the generated evaluation sets (default 15000, as MMLU's test set)")
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        if args._child[0] == "raw_pages":
            _raw_child(args._child[1])
        else:
            _stage_child(*args._child)
        return 0

    wanted = [s for s in args.stages.split(",") if s]
    bad = [s for s in wanted if s not in names]
    if bad:
        ap.error(f"unknown stage(s) {bad}; choose from {names}")
    from decontam import build_benchmarks  # bench/decontam.py's evaluation sets

    print(f"generating {args.docs} pages ...", file=sys.stderr)
    OUT.mkdir(parents=True, exist_ok=True)
    pages = dump_file(args.docs)
    benchmarks = build_benchmarks(args.benchmark_items)
    wd = Workdir.at(OUT / f"run-{args.docs}").ensure()
    (wd.root / CONFIG).write_text(json.dumps(bench_config(pages, benchmarks), indent=1) + "\n", encoding="utf-8")
    print(f"machine: {machine()}; work folder {wd.root}", file=sys.stderr)
    print("| stage | command | input docs | kept | seconds | CPU s | docs/s | peak RSS MB (stage / largest worker) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    cmd = f"python bench/run.py --docs {args.docs}"
    if not (wd.raw_source(SOURCE) / "manifest.json").exists():
        print(_row("raw_pages (land the dump file, load it)", cmd, _run_child("--_child", "raw_pages", str(wd.root))),
              flush=True)
    for st in STAGES:  # each stage reads the layer the previous one wrote
        if st.name not in wanted:
            continue
        if st.input != "raw_pages" and not (wd.layer_dir(st.input) / "manifest.json").exists():
            print(f"stage {st.name}: its input {st.input} is missing in {wd.root}; run the stage writing it once first",
                  file=sys.stderr)
            return 1
        _start_cold(st, wd)
        fig = _run_child("--_child", st.name, str(wd.root))
        print(_row(st.name, f"{cmd} --stages {st.name}", fig), flush=True)
        print(f"{st.name}: rejected {fig['reasons']}", file=sys.stderr)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
