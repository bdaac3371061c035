"""The whole graph with ``--executor ray`` on a Ray head of 1 and of 2 CPUs on this machine, next
to the local executor, on the JSONL dump of ``bench/graph.py`` (generated there if missing).

    python bench/ray_workers.py --docs 100000
    python bench/ray_workers.py --docs 1000000 --builds ray-2cpu     # the task memory at 1M
    python bench/ray_workers.py --docs 100000 --builds ray-1cpu,ray-2cpu --repeat 3   # the speed-up, in turns

Each build starts from an empty work folder; the Ray head (``ray start --head``, every process on
127.0.0.1) is started before the build and stopped after it. Printed: wall seconds of the whole
run and of the per-batch stages' steps (the work that runs as Ray tasks), and the speed-up of 2
CPUs over 1; per step that ran Ray tasks (the per-batch stages' parts, dedup's shards), the tasks,
the worker processes and the largest peak RSS of a task (and which) against the task memory. The
peak RSS of the run is the ``run`` process tree's: Ray's workers are the raylet's children, not
counted there. Results in ``bench/out/ray-<docs>/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

from graph import generate, graph_run, write_config

from dataset_platform.cluster.local_head import RAY_ENV, start_head

PER_BATCH = ("extracted_documents", "cleaned_documents", "scored_documents", "labelled_documents",
             "decontaminated_documents")


def build(name: str, out: Path, docs: int, cpus: int | None) -> dict:
    work = out / f"work-{name}"
    shutil.rmtree(work, ignore_errors=True)
    saved = dict(os.environ)
    head = None
    try:
        if cpus is None:
            os.environ.pop("DATASET_PLATFORM_EXECUTOR", None)
        else:  # (stopped after the build: its own processes only, not other Ray clusters of the machine)
            head = start_head(cpus, Path(f"/tmp/dp-ray-bench-{os.getpid()}"))
            os.environ.update(RAY_ENV, DATASET_PLATFORM_EXECUTOR="ray", RAY_ADDRESS=head.address)
        res = graph_run(name, out, work, docs, os.cpu_count() or 1)
    finally:
        if head is not None:
            head.stop()
        os.environ.clear()
        os.environ.update(saved)
    steps = {s["step"]: s["seconds"] for s in res["timeline"]["steps"]}
    res["per_batch_steps_s"] = round(sum(steps.get(k) or 0 for k in PER_BATCH), 2)
    res["steps"] = steps
    # what each step's summary line says of its Ray tasks: "... N Ray task(s) on W worker(s) of
    # K node(s), peak RSS of a task M MB (task memory T MB; the task; H MB held when it started)"
    res["ray_tasks"] = {}
    for step in res["timeline"]["steps"]:
        for _t, line in step.get("log") or []:
            m = re.search(r"(\d+) Ray task\(s\) on (\d+) worker\(s\) of (\d+) node\(s\), peak RSS of a task "
                          r"(\d+) MB \(task memory (\d+) MB; ([^;)]*)(?:; (\d+) MB held when it started)?\)", line)
            if m:
                res["ray_tasks"][step["step"]] = {
                    **dict(zip(("tasks", "workers", "nodes", "peak_task_rss_mb", "task_memory_mb"),
                               map(int, m.groups()[:5]), strict=True)), "peak_task": m.group(6),
                    "held_at_start_mb": int(m.group(7)) if m.group(7) else None}
    return res


def release_digest(work: Path) -> tuple[str, str]:
    """The published version and a sha256 over every file of it (the manifest without its
    lineage, which holds the Dagster run ids): equal digests mean byte-identical releases."""
    import hashlib

    latest = next((work / "releases").glob("*/LATEST"))
    version = latest.read_text().strip()
    h = hashlib.sha256()
    for f in sorted((latest.parent / version).rglob("*")):
        if f.is_file():
            data = f.read_bytes()
            if f.name == "manifest.json":
                manifest = json.loads(data)
                manifest.pop("lineage", None)
                data = json.dumps(manifest, sort_keys=True).encode()
            h.update(f.name.encode() + b"\0" + hashlib.sha256(data).digest())
    return version, h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=10_000)
    ap.add_argument("--builds", default="local,ray-1cpu,ray-2cpu",
                    help="which builds, in order: local, ray-1cpu, ray-2cpu (at 1M, ray-2cpu alone measures the "
                         "task memory)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the builds in turn this many times (1 CPU, 2 CPUs, 1 CPU, ...): the speed-up is "
                         "then each pair's, and their median")
    args = ap.parse_args()
    cpus_of = {"local": None, "ray-1cpu": 1, "ray-2cpu": 2}
    names = [b.strip() for b in args.builds.split(",") if b.strip()]
    if set(names) - set(cpus_of):
        ap.error(f"--builds: choose from {', '.join(cpus_of)}")
    names = names * max(1, args.repeat)
    src = HERE / "out" / f"graph-{args.docs}"
    generate(args.docs, src)
    out = HERE / "out" / f"ray-{args.docs}"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "dump.jsonl", out / "dump.jsonl")
    write_config(out, settings_change=False)
    runs = []
    for i, name in enumerate(names):
        runs.append(build(name, out, args.docs, cpus_of[name]))
        runs[-1]["turn"] = i // (len(names) // max(1, args.repeat))
        runs[-1]["release"] = release_digest(out / f"work-{name}")
    print("\n| executor | docs | run s | per-batch steps s | docs/s | peak tree RSS MB | CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        print(f"| {r['name']} | {args.docs} | {r['seconds']:.1f} | {r['per_batch_steps_s']:.1f} | "
              f"{r['docs_per_s']:.0f} | {r['peak_tree_rss_mb']:.0f} | {r['cpu_s']:.0f} |")
    digests = {f"{r['name']}#{r['turn'] + 1}": tuple(r["release"]) for r in runs}
    print("\nreleases (version, digest of every file): " + ", ".join(f"{k} {v[0]} {v[1]}" for k, v in digests.items())
          + ("; identical" if len(set(digests.values())) == 1 else "; DIFFERENT"))
    for r in runs:
        for step, t in r["ray_tasks"].items():
            print(f"{r['name']}: {step}: {t['tasks']} Ray task(s) on {t['workers']} worker(s), peak RSS of a task "
                  f"{t['peak_task_rss_mb']} MB ({t['peak_task']}; task memory {t['task_memory_mb']} MB; "
                  f"{t.get('held_at_start_mb')} MB held when it started)")
    pairs = []
    for turn in sorted({r["turn"] for r in runs}):
        by = {r["name"]: r for r in runs if r["turn"] == turn}
        if "ray-1cpu" in by and "ray-2cpu" in by:
            one, two = by["ray-1cpu"], by["ray-2cpu"]
            pairs.append((one["seconds"] / two["seconds"], one["per_batch_steps_s"] / two["per_batch_steps_s"]))
            print(f"\nray 2 CPUs against 1 (turn {turn + 1}): whole run {pairs[-1][0]:.2f}x "
                  f"({one['seconds']:.1f} against {two['seconds']:.1f} s), per-batch steps {pairs[-1][1]:.2f}x")
    if len(pairs) > 1:
        import statistics

        print(f"median of {len(pairs)} turns: whole run {statistics.median(p[0] for p in pairs):.2f}x, "
              f"per-batch steps {statistics.median(p[1] for p in pairs):.2f}x")
    (out / "results.json").write_text(json.dumps({"docs": args.docs, "runs": runs, "releases": digests}, indent=1,
                                                 default=str))


if __name__ == "__main__":
    main()
