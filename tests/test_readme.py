"""Every shell and Python block of README.md, run as a newcomer would run it, so that no documented
path can break again.

The blocks run in order in one folder (the newcomer's project folder), with the commands on PATH
as installed. What a block needs that the README leaves to the reader is put there first: the
WARC and the evaluation set from the shared corpus, a gold file and JSONL exports written here
(our own text). Three commands are checked rather than run again: ``pip install ...`` (the package
must be installed from this checkout, with the extras the block names: `.ci/run` installs them
with the very same command) and ``pytest ...`` (this suite is that command's run). A
``<head-node>`` placeholder is a Ray head started here on 127.0.0.1. ``dataset-platform ui`` runs
until its web server answers, then is stopped as Ctrl-C would.

YAML blocks are checked too: a complete ``sources.yaml`` must load as it is, a fragment (only
``pipeline:`` or only ``sources:``) must load inside a minimal one.

A new block the handlers below do not know fails the test: give it a handler.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import shared_corpus
from graphkit import document

from dataset_platform.config import load_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def readme_blocks() -> list[tuple[str, str, str]]:
    """(language, code, the heading above it) of every fenced block, in order."""
    text = README.read_text(encoding="utf-8")
    out = []
    for m in BLOCK.finditer(text):
        heading = next((ln for ln in reversed(text[: m.start()].splitlines()) if ln.startswith("#")), "")
        out.append((m.group(1), m.group(2), heading.lstrip("# ").strip()))
    return out


def _env(folder: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATASET_PLATFORM_", "DAGSTER_HOME"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = env.get("HOME", str(folder))
    return env


def _installed_from_this_checkout(extras: str) -> None:
    """The package is installed, and the code that runs is this checkout's."""
    import dataset_platform

    dist = importlib.metadata.distribution("dataset_platform")
    assert Path(dataset_platform.__file__).resolve().is_relative_to(REPO), (
        f"dataset_platform runs from {dataset_platform.__file__}, not from this checkout {REPO}")
    assert shutil.which("dataset-platform", path=_env(REPO)["PATH"]), "the dataset-platform command is not installed"
    for extra in filter(None, (e.strip() for e in extras.split(","))):
        wanted = [r for r in dist.requires or [] if f'extra == "{extra}"' in r]
        assert wanted, f"no extra [{extra}] in pyproject.toml"
        for req in wanted:
            name = re.split(r"[\[<>=!;~ ]", req, maxsplit=1)[0]
            importlib.metadata.version(name)  # raises PackageNotFoundError when the extra is not installed


def _prepare_commands(code: str) -> tuple[str, list[str]]:
    """The block's shell text with ``pip install`` and ``pytest`` checked instead of run; the notes say what."""
    notes = []

    def pip(m: re.Match) -> str:
        extras = re.search(r"\[([^\]]+)\]", m.group(0))
        _installed_from_this_checkout(extras.group(1) if extras else "")
        notes.append(f"checked: {m.group(0).strip()}")
        return ": "

    def pytest_cmd(m: re.Match) -> str:
        notes.append(f"not run again (this suite is its run): {m.group(0).strip()}")
        return ": "

    code = re.sub(r"pip install [^&\n#]*", pip, code)
    code = re.sub(r"(?m)(?<![\w-])pytest\b[^&\n#]*", pytest_cmd, code)
    return code, notes


def _run_shell(code: str, cwd: Path, env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    r = subprocess.run(["bash", "-eo", "pipefail", "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"README block failed (rc {r.returncode}):\n{code}\n--- stdout\n{r.stdout[-3000:]}\n" \
                              f"--- stderr\n{r.stderr[-3000:]}"
    return r


def _inputs(folder: Path, own_site_yaml: str) -> None:
    """What the README's blocks name and leave to the reader, in the reader's project folder."""
    warc = shared_corpus("warc")
    bench = shared_corpus("benchmark")
    (folder / "dumps").mkdir(exist_ok=True)
    shutil.copy(warc / "cc-sample-resiliparse.warc.gz", folder / "dumps" / "cc-sample-resiliparse.warc.gz")
    shutil.copy(warc / "cc-sample-resiliparse.warc.gz", folder / "crawl.warc.gz")
    shutil.copy(bench / "mmlu_test_subset.jsonl", folder / "mmlu.jsonl")
    rng = random.Random(11)
    (folder / "exports").mkdir(exist_ok=True)
    with gzip.open(folder / "exports" / "forum-2026-11.jsonl.gz", "wt", encoding="utf-8") as f:
        for i in range(40):
            f.write(json.dumps({"body": document(rng, ("garden", "harbour", "school")[i % 3]),
                                "permalink": f"http://forum.test/t/{i}", "subject": f"Thread {i}",
                                "created": f"2026-11-{1 + i % 28:02d}T08:00:00Z"}) + "\n")
    with open(folder / "quality_gold.jsonl", "w", encoding="utf-8") as f:
        for i in range(12):
            good = i % 2 == 0
            text = document(rng, "harbour") if good else " ".join(["Home", "Login", "Cart", "Sale"] * 12)
            f.write(json.dumps({"id": f"q{i}", "text": text, "quality": "good" if good else "bad"}) + "\n")
    sets = yaml.safe_load(own_site_yaml)["pipeline"]["labels"]["sets"]
    values = sets[0]["values"]
    with open(folder / "gold.jsonl", "w", encoding="utf-8") as f:
        for i in range(12):
            f.write(json.dumps({"id": f"g{i}", "text": f"Gold example {i}: " + document(rng, "garden"),
                                sets[0]["name"]: values[i % len(values)]}) + "\n")


def _check_yaml(code: str, folder: Path) -> None:
    data = yaml.safe_load(code)
    path = folder / "readme-block.yaml"
    if "requests" in data:  # a takedowns.yaml: read as the takedown code reads it
        from dataset_platform.stages.takedown import parse_file

        path.write_text(code, encoding="utf-8")
        assert parse_file(path), "a takedowns example with no request"
        return
    if "sources" not in data:  # a pipeline fragment: inside a minimal sources.yaml
        data = {"sources": [{"name": "site", "kind": "crawl", "start_urls": ["http://127.0.0.2/"],
                             "allowed_domains": ["127.0.0.2"]}], **data}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    load_config(path)


def _run_ui(code: str, folder: Path, env: dict) -> None:
    from dataset_platform.cluster.local_head import free_port

    port = free_port()
    cmd = code.split("#", 1)[0].strip() + f" --port {port}"
    proc = subprocess.Popen(["bash", "-c", f"exec {cmd}"], cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, ok = time.monotonic() + 180, False
        while time.monotonic() < deadline and proc.poll() is None and not ok:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as r:
                    ok = r.status == 200
            except OSError:
                time.sleep(1)
        assert ok, f"`{cmd}` did not serve the UI: {proc.stdout.read(3000) if proc.poll() is not None else ''}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_every_readme_block_runs_as_written(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    env = _env(folder)
    blocks = readme_blocks()
    own_site = next(code for lang, code, _ in blocks if lang == "yaml" and "start_urls" in code)
    _inputs(folder, own_site)
    # "Write a sources.yaml": the own-site example's settings, with the dumps example's sources (never a
    # request off this machine)
    dumps = next(code for lang, code, _ in blocks if lang == "yaml" and "kind: warc" in code)
    mine = yaml.safe_load(own_site)
    mine["sources"] = yaml.safe_load(dumps)["sources"]
    (folder / "sources.yaml").write_text(yaml.safe_dump(mine, sort_keys=False), encoding="utf-8")
    head = None
    done = []
    try:
        for lang, code, heading in blocks:
            where = f"README block under '{heading}'"
            if lang == "" or lang == "text":
                continue  # diagrams
            if lang == "yaml":
                _check_yaml(code, folder)
                if "kind: warc" in code or "kind: jsonl" in code:  # the dumps example, run as written
                    (folder / "dumps.yaml").write_text(code, encoding="utf-8")
                    r = _run_shell("dataset-platform run --config dumps.yaml --workdir dumps-work", folder, env)
                    assert "release: " in r.stdout, r.stdout[-2000:]
                    done.append(f"{where}: yaml run as a sources.yaml")
                else:
                    done.append(f"{where}: yaml loaded")
                continue
            if lang == "python":
                r = subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True,
                                   timeout=600)
                assert r.returncode == 0, f"{where} failed:\n{code}\n{r.stderr[-3000:]}"
                done.append(f"{where}: python")
                continue
            assert lang == "bash", f"{where}: a ```{lang} block has no handler in tests/test_readme.py"
            shell, notes = _prepare_commands(code)
            if re.search(r"(?m)^\s*dataset-platform ui\b", shell):
                _run_ui(shell, folder, env)
            elif "<head-node>" in shell:  # in a second project folder with the same inputs
                from dataset_platform.cluster.local_head import start_head

                other = tmp_path / "ray-project"
                shutil.copytree(folder, other, ignore=shutil.ignore_patterns(".dataset_platform", "*-work", "splits"))
                head = head or start_head(2, Path(f"/tmp/dp-readme-{os.getpid()}"))
                r = _run_shell(shell.replace("<head-node>:6379", head.address), other, env)
                assert "release: " in r.stdout, r.stdout[-2000:]
            else:
                _run_shell(shell, REPO if heading == "Contributing" else folder, env)  # (ruff reads the checkout)
            done.append(f"{where}: bash ({'; '.join(notes) or 'run'})")
    finally:
        if head is not None:
            head.stop()
    assert len(done) == sum(1 for lang, _, _ in blocks if lang not in ("", "text"))
    print("\n".join(done))
