"""Killing a refresh at any point and running it again gives what an uninterrupted refresh gives,
and the previous release stays published until the new one commits.

A refresh changes files only by renames (every write is a temporary file renamed into place, every
commit a manifest renamed over the old one, a release a folder renamed into place). A child
process runs the refresh and SIGKILLs itself at its k-th rename - k spread over the whole refresh,
first rename to last - so every kind of interruption is met: mid-layer, between a layer's commit
and its moves, between dedup's index and its layer, between the release folder and LATEST.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from graphkit import parts, refresh
from test_incremental import World

from dataset_platform.workdir import Workdir

HERE = Path(__file__).resolve().parent
CHILD = r"""
import json, os, signal, sys
from pathlib import Path
args = json.loads(sys.argv[1])
sys.path.insert(0, args["tests"])
calls = 0

def hook(real):
    def call(*a, **k):
        global calls
        calls += 1
        if calls == args["kill_at"]:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*a, **k)
    return call

os.replace, os.rename = hook(os.replace), hook(os.rename)
import graphkit
from dataset_platform.workdir import Workdir
cfg = graphkit.config(Path(args["root"]), **args["settings"])
graphkit.refresh(cfg, Workdir.at(args["wd"]))
print(json.dumps({"renames": calls}))
"""


def _child(root: Path, wd: Path, settings: dict, kill_at: int = 0) -> subprocess.CompletedProcess:
    arg = json.dumps({"tests": str(HERE), "root": str(root), "wd": str(wd), "settings": settings, "kill_at": kill_at})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(HERE.parent), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-c", CHILD, arg], capture_output=True, text=True, timeout=600, env=env)


def _state(wd: Workdir) -> dict:
    """What a refresh leaves: every layer's rows part by part, the duplicate clusters, the release."""
    out = {layer: parts(wd, layer) for layer in ("raw_pages", "extracted_documents", "cleaned_documents",
                                                 "deduplicated_documents", "labelled_documents",
                                                 "decontaminated_documents")}
    out["rejected"] = {layer: parts(wd, layer, "rejected.parquet") for layer in ("extracted_documents",
                                                                                 "cleaned_documents")}
    out["clusters"] = pq.read_table(wd.layer("duplicate_clusters")).to_pylist()
    out["release"] = _latest(wd)
    return out


def _latest(wd: Workdir) -> str:
    folder = wd.releases / "incremental-test"
    version = (folder / "LATEST").read_text().strip()
    manifest = json.loads((folder / version / "manifest.json").read_text())
    for name, _f in manifest["files"].items():  # the published release is whole
        assert (folder / version / name).exists(), name
    return version


@pytest.mark.slow
def test_a_refresh_killed_at_any_point_ends_as_an_uninterrupted_one(tmp_path):
    w = World(tmp_path, 11)
    base = Workdir.at(tmp_path / "base").ensure()
    w.new(base)
    w.step = 1
    w.crawl(base)
    refresh(w.config(), base)
    before = _latest(base)
    # the refresh to interrupt: new and changed documents, a crawl where pages change and go
    w.step = 2
    w.new(base)
    w.step = 3
    w.crawl(base)
    w.step = 4
    w.changed(base)
    reference = tmp_path / "reference"
    shutil.copytree(base.root, reference, copy_function=shutil.copy2)
    done = _child(tmp_path, reference, w.settings)
    assert done.returncode == 0, done.stderr[-3000:]
    total = json.loads(done.stdout.strip().splitlines()[-1])["renames"]
    expected = _state(Workdir.at(reference))
    assert expected["release"] != before
    points = sorted({1, *(round(total * i / 7) for i in range(1, 7)), total})
    for k in points:
        wd = tmp_path / f"killed-{k}"
        shutil.copytree(base.root, wd, copy_function=shutil.copy2)
        killed = _child(tmp_path, wd, w.settings, kill_at=k)
        assert killed.returncode == -9, (k, killed.stderr[-2000:])
        # killed: the release published is the previous one or, if it had committed, the new one
        assert _latest(Workdir.at(wd)) in (before, expected["release"]), k
        again = _child(tmp_path, wd, w.settings)
        assert again.returncode == 0, (k, again.stderr[-3000:])
        assert _state(Workdir.at(wd)) == expected, k
        shutil.rmtree(wd)
