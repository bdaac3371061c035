"""The CLI as a user runs it: real subprocesses, real crawl, real Dagster."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dataset_platform.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO, env={**os.environ, **(env or {})},
    )


def release_dir(workdir: Path) -> Path:
    latest = next((workdir / "releases").glob("*/LATEST"))
    return latest.parent / latest.read_text().strip()


def release_files(workdir: Path) -> dict[str, str]:
    rel = release_dir(workdir)
    return {str(p.relative_to(rel)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(rel.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_demo_twice_is_byte_identical_and_a_killed_run_keeps_the_last_release(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    first = cli("demo", "--workdir", str(a), env={"DAGSTER_HOME": ""})
    assert first.returncode == 0, first.stderr[-3000:]
    assert "documents per stage:" in first.stdout and "drop reasons:" in first.stdout and "release: " in first.stdout
    assert (a / "dagster_home" / "dagster.yaml").exists()  # runs persist under the workdir
    second = cli("demo", "--workdir", str(b), env={"DAGSTER_HOME": ""})
    assert second.returncode == 0, second.stderr[-3000:]
    files_a, files_b = release_files(a), release_files(b)
    differing = sorted(k for k in files_a.keys() | files_b.keys() if files_a.get(k) != files_b.get(k))
    # the manifest records the run ids of the upstream materialisations (lineage): everything else
    # in it, and every other file, is the same byte for byte
    assert differing in ([], ["manifest.json"]), f"release files differ between two runs: {differing}"
    man_a, man_b = (json.loads((release_dir(w) / "manifest.json").read_text()) for w in (a, b))
    assert man_a.pop("lineage") != man_b.pop("lineage") and man_a == man_b
    assert any(k.endswith(".parquet") for k in files_a)

    # kill a third run mid-way (once its crawl batch has landed): the last release stays intact
    def crawl_batches():  # a crawl batch, not the list of known pages written before the crawl starts
        return {p for p in (a / "raw" / "demo").glob("*.jsonl.gz") if not p.name.startswith("known-")}

    batches_before = crawl_batches()
    proc = subprocess.Popen([sys.executable, "-m", "dataset_platform.cli", "demo", "--workdir", str(a)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "DAGSTER_HOME": ""}, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and crawl_batches() == batches_before:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert release_files(a) == files_a
    versions = [p for p in (a / "releases").glob("*/v*") if p.is_dir()]
    assert len(versions) == 1

    # and the next run recovers to the very same release
    third = cli("demo", "--workdir", str(a), env={"DAGSTER_HOME": ""})
    assert third.returncode == 0, third.stderr[-3000:]
    assert release_files(a) == files_a
    assert not list((a / "releases").glob("*/.tmp-*"))


def test_run_with_bad_config_names_file_and_field(tmp_path):
    cfg = tmp_path / "sources.yaml"
    cfg.write_text("sources:\n  - name: x\n    kind: crawl\n    start_urls: [http://e.org/]\n"
                   "    allowed_domains: [e.org]\n    max_depth: -1\n")
    r = cli("run", "--config", str(cfg), "--workdir", str(tmp_path / "w"))
    assert r.returncode == 2
    assert f"{cfg}: sources[0].max_depth:" in r.stderr and "greater than or equal to 0" in r.stderr


def test_stage_extract_on_jsonl(tmp_path):
    inp = tmp_path / "pages.jsonl"
    good = ("<html><head><title>Garden notes</title></head><body><nav>Home | About</nav><article><h1>Garden notes</h1>"
            + "".join(f"<p>Paragraph {i}: the tomatoes in the east bed ripened early this year, and the beans followed "
                      f"a week later after the warm rain.</p>" for i in range(4))
            + "</article><footer>Copyright</footer></body></html>")
    rows = [{"id": "p1", "url": "http://site.test/garden", "html": good},
            {"id": "p2", "url": "http://site.test/blank", "html": ""}]
    inp.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out, rej = tmp_path / "docs.parquet", tmp_path / "rej.jsonl"
    r = cli("stage", "extract", "--input", str(inp), "--output", str(out), "--rejected", str(rej))
    assert r.returncode == 0, r.stderr
    import pyarrow.parquet as pq

    t = pq.read_table(out)
    assert t.column_names == ["id", "url", "title", "date", "text", "lang", "lang_score", "extractor"]
    assert t.column("id").to_pylist() == ["p1"] and t.column("lang").to_pylist() == ["en"]
    assert "tomatoes" in t.column("text")[0].as_py() and "Copyright" not in t.column("text")[0].as_py()
    dropped = [json.loads(x) for x in rej.read_text().splitlines()]
    assert dropped == [{"id": "p2", "stage": "extract", "rule": "empty_body", "value": "0"}]


def test_stage_clean_on_jsonl_with_rejects(tmp_path):
    inp = tmp_path / "docs.jsonl"
    # a short written article: passes every quality rule
    long_text = "\n".join([
        "The ferry between Aldmouth and the outer islands will run twice a day from next month, the operator said.",
        "Residents had asked for a second crossing for years, because the single morning boat left no time for visits.",
        "The new timetable adds an evening departure and a larger vessel that can carry twelve cars and forty bicycles.",
        "Fares stay the same for island residents, while visitors will pay a small surcharge during the summer season.",
        "Questions about the timetable go to the harbour office.",
    ])
    rows = [{"id": 1, "text": long_text + " Mail me at someone@example.org."},
            {"id": 2, "text": "Too short."},
            {"id": 3, "text": "spam " * 300}]
    inp.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out, rej = tmp_path / "clean.jsonl", tmp_path / "rej.parquet"
    r = cli("stage", "clean", "--input", str(inp), "--output", str(out), "--rejected", str(rej))
    assert r.returncode == 0, r.stderr
    kept = [json.loads(x) for x in out.read_text().splitlines()]
    assert [k["id"] for k in kept] == ["1"] and "<EMAIL>" in kept[0]["text"] and kept[0]["pii_email"] == 1
    import pyarrow.parquet as pq

    dropped = {r["id"]: (r["stage"], r["rule"]) for r in pq.read_table(rej).to_pylist()}
    # datatrove's order: Gopher repetition first (one 2-gram is 90 % of "Too short." and ~180 % of the spam)
    assert dropped == {"2": ("clean", "gopher_repetition.top_2gram_char_frac"),
                       "3": ("clean", "gopher_repetition.top_2gram_char_frac")}


def test_stage_with_missing_field_says_what_is_needed(tmp_path):
    inp = tmp_path / "x.jsonl"
    inp.write_text('{"id": 1, "body": "no text field"}\n')
    r = cli("stage", "clean", "--input", str(inp), "--output", str(tmp_path / "o.parquet"))
    assert r.returncode == 2 and "missing field(s) text" in r.stderr
