"""The stage registry: one entry per stage, each with its contract and suite; fingerprints that
move with what changes the output and only with that; workers that die with their stage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dataset_platform.config import PipelineSettings
from dataset_platform.contracts.schema import BATCHED_LAYERS, LAYERS
from dataset_platform.stages.base import chain_of
from dataset_platform.stages.registry import BY_NAME, STAGES

REPO = Path(__file__).resolve().parents[1]


def test_every_stage_has_its_contract_and_suite_and_inputs_come_first():
    seen = {"raw_pages"}
    for st in STAGES:
        assert st.input in seen, f"{st.name} reads {st.input} before it is written"
        for layer in (st.output, *st.also_writes):
            assert layer in LAYERS, f"{layer}: no contract entry in contracts/schema.py"
            assert (REPO / "expectations" / f"{layer}.json").exists(), f"{layer}: no suite in expectations/"
        assert st.output in BATCHED_LAYERS, f"{st.output}: not in contracts/schema.py BATCHED_LAYERS"
        seen |= {st.output, *st.also_writes}
        assert st.description and st.settings(PipelineSettings()) is not None
    assert len(BY_NAME) == len(STAGES)
    # every stage may drop documents: the rejected layer's suite must accept its name (a stage it does not
    # list would fail that blocking suite the first time the stage drops something)
    suite = json.loads((REPO / "expectations" / "rejected_documents.json").read_text())
    (stages,) = [e["kwargs"]["value_set"] for e in suite["expectations"]
                 if e["type"] == "expect_column_values_to_be_in_set" and e["kwargs"]["column"] == "stage"]
    assert {st.name for st in STAGES} | {"release", "takedown"} <= set(stages)


def test_a_fingerprint_moves_with_what_changes_the_output_and_only_with_it():
    clean = BY_NAME["clean"]
    base = PipelineSettings().clean
    fp = clean.fingerprint(base)
    assert fp == clean.fingerprint(PipelineSettings().clean)  # deterministic
    stricter = base.model_copy(update={"languages": ["en"]})
    assert clean.fingerprint(stricter) != fp
    extract = BY_NAME["extract"]
    e = PipelineSettings().extract
    assert extract.fingerprint(e.model_copy(update={"workers": 7})) == extract.fingerprint(e)  # speed, not output
    assert extract.fingerprint(e, prepared="model-a") != extract.fingerprint(e, prepared="model-b")
    assert chain_of(fp, "raw:a") != chain_of(fp, "raw:b")


CHILD = r"""
import json, os, sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from dataset_platform.stages.base import exit_with_parent
pool = ProcessPoolExecutor(2, mp_context=get_context("spawn"), initializer=exit_with_parent)
futures = [pool.submit(os.getpid) for _ in range(8)]
print(json.dumps(sorted({f.result() for f in futures})), flush=True)
import time
time.sleep(600)
"""


def test_workers_die_with_a_killed_stage_process():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True, env=env)
    try:
        workers = json.loads(child.stdout.readline())
        assert workers and all(_alive(p) for p in workers)
        os.kill(child.pid, signal.SIGKILL)  # as the OOM killer or a container stop would
        child.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in workers if _alive(p)], "orphaned workers"
    finally:
        if child.poll() is None:
            child.kill()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_warming_up_pays_a_stage_s_first_use_costs_and_never_fails_the_run(monkeypatch):
    import dataclasses

    from dataset_platform import runner
    from dataset_platform.config import demo_config_path, load_config
    from dataset_platform.stages.clean import text

    cfg = load_config(demo_config_path())
    runner.warm_up(cfg).join(timeout=120)
    assert text._ZH_CUT is not None  # the cleaner's Chinese word dictionary is loaded
    calls = []

    def broken(settings):
        calls.append(settings)
        raise RuntimeError("a warm-up that fails")

    monkeypatch.setattr(runner, "STAGES", [dataclasses.replace(s, warm=broken) for s in STAGES])
    th = runner.warm_up(cfg)
    th.join(timeout=60)
    assert not th.is_alive() and len(calls) == len(STAGES)  # every one tried, none raised
