"""The whole graph with ``--executor ray`` on a Ray head of 1 and of 2 CPUs on this machine, next
to the local executor, on the JSONL dump of ``bench/graph.py`` (generated there if missing).

    python bench/ray_workers.py --docs 10000

Each build starts from an empty work folder; the Ray head (``ray start --head``, every process on
127.0.0.1) is started before the build and stopped after it. Printed: wall seconds of the whole
run and of the per-batch stages' steps (the work that runs as Ray tasks), and the speed-up of 2
CPUs over 1. The peak RSS is the ``run`` process tree's: Ray's workers are the raylet's children,
not counted there. Results in ``bench/out/ray-<docs>/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from graph import _free_port, generate, graph_run, write_config

PER_BATCH = ("extracted_documents", "cleaned_documents", "labelled_documents", "decontaminated_documents")
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _ray(*args: str) -> None:
    exe = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    r = subprocess.run([exe, *args], capture_output=True, text=True, env={**os.environ, **RAY_ENV}, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"ray {' '.join(args)}: {r.stdout[-1500:]}{r.stderr[-1500:]}")


def build(name: str, out: Path, docs: int, cpus: int | None) -> dict:
    work = out / f"work-{name}"
    shutil.rmtree(work, ignore_errors=True)
    saved = dict(os.environ)
    try:
        if cpus is None:
            os.environ.pop("DATASET_PLATFORM_EXECUTOR", None)
        else:
            port = _free_port()
            _ray("start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", f"--num-cpus={cpus}",
                 "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir=/tmp/dp-ray-bench-{os.getpid()}")
            os.environ.update(RAY_ENV, DATASET_PLATFORM_EXECUTOR="ray", RAY_ADDRESS=f"127.0.0.1:{port}")
        res = graph_run(name, out, work, docs, os.cpu_count() or 1)
    finally:
        if cpus is not None:
            _ray("stop", "--force")
        os.environ.clear()
        os.environ.update(saved)
    steps = {s["step"]: s["seconds"] for s in res["timeline"]["steps"]}
    res["per_batch_steps_s"] = round(sum(steps.get(k) or 0 for k in PER_BATCH), 2)
    res["steps"] = steps
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
    args = ap.parse_args()
    src = HERE / "out" / f"graph-{args.docs}"
    generate(args.docs, src)
    out = HERE / "out" / f"ray-{args.docs}"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "dump.jsonl", out / "dump.jsonl")
    write_config(out, settings_change=False)
    runs = [build("local", out, args.docs, None), build("ray-1cpu", out, args.docs, 1),
            build("ray-2cpu", out, args.docs, 2)]
    print("\n| executor | docs | run s | per-batch steps s | docs/s | peak tree RSS MB | CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        print(f"| {r['name']} | {args.docs} | {r['seconds']:.1f} | {r['per_batch_steps_s']:.1f} | "
              f"{r['docs_per_s']:.0f} | {r['peak_tree_rss_mb']:.0f} | {r['cpu_s']:.0f} |")
    digests = {r["name"]: release_digest(out / f"work-{r['name']}") for r in runs}
    print("\nreleases (version, digest of every file): " + ", ".join(f"{k} {v[0]} {v[1]}" for k, v in digests.items())
          + ("; identical" if len(set(digests.values())) == 1 else "; DIFFERENT"))
    one, two = runs[1], runs[2]
    print(f"\nray 2 CPUs against 1: whole run {one['seconds'] / two['seconds']:.2f}x, "
          f"per-batch steps {one['per_batch_steps_s'] / two['per_batch_steps_s']:.2f}x")
    (out / "results.json").write_text(json.dumps({"docs": args.docs, "runs": runs, "releases": digests}, indent=1,
                                                 default=str))


if __name__ == "__main__":
    main()
