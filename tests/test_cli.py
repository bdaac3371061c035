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
    assert "leaked semaphore" not in first.stderr  # the GX worker is stopped before the process ends
    assert "documents per stage:" in first.stdout and "drop reasons:" in first.stdout and "release: " in first.stdout
    assert (a / "dagster_home" / "dagster.yaml").exists()  # runs persist under the workdir
    # the second work folder's first run is killed mid-crawl, its main process alone (as the OOM killer or a
    # container stop does): nothing it started survives 5 s, and the next run gives the same release
    proc = subprocess.Popen([sys.executable, "-m", "dataset_platform.cli", "demo", "--workdir", str(b)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "DAGSTER_HOME": ""})
    deadline, started = time.monotonic() + 300, set()
    while time.monotonic() < deadline and not any(b"crawlers" in _cmdline(p) for p in started):
        started = _descendants(proc.pid)
        time.sleep(0.05)
    assert proc.poll() is None and started, "the run ended before its crawl could be caught"
    started = _descendants(proc.pid)
    proc.kill()
    proc.wait(timeout=30)
    killed_at = time.monotonic()
    while time.monotonic() - killed_at < 5 and any(_alive(p) for p in started):
        time.sleep(0.05)
    survivors = [(p, _cmdline(p)[:120]) for p in started if _alive(p)]
    assert not survivors, f"processes of the killed run still alive 5 s later: {survivors}"
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


# --- label / decontaminate / split on files -------------------------------------------------------

GARDEN = ["The tomatoes in the east bed ripened early, and the beans climbed the trellis after the rain.",
          "Compost the leaves in autumn; the worms turn them into soil for the spring seedlings.",
          "Prune the roses in late winter, just above an outward-facing bud, to keep the centre open.",
          "Sow the carrots thinly in rows and water the seedlings every evening during the dry weeks."]
HARBOUR = ["The ferry leaves the harbour at seven, and the evening crossing returns before the tide turns.",
           "Fishing boats unloaded their catch at the quay while the harbour master checked the moorings.",
           "The lighthouse keeper logged the passing ships and the wind on the pier through the night.",
           "A second ferry will serve the islands in summer, the harbour office said on Monday."]


def _label_config(tmp_path: Path, **splits) -> Path:
    cfg = tmp_path / "sources.yaml"
    split_yaml = "".join(f"    {k}: {json.dumps(v)}\n" for k, v in splits.items())
    cfg.write_text(
        "sources:\n  - name: notes\n    kind: jsonl\n"
        "pipeline:\n  labels:\n    sets:\n      - name: topic\n        values: [garden, harbour, other]\n"
        "        default: other\n        rules:\n          - value: garden\n            keywords: [tomatoes, compost, seedlings]\n"
        "          - value: harbour\n            keywords: [ferry, harbour, quay]\n"
        + (f"  splits:\n{split_yaml}" if split_yaml else ""))
    return cfg


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def test_stage_label_with_rules_and_gold(tmp_path):
    import pyarrow.parquet as pq

    cfg = _label_config(tmp_path)
    docs = _jsonl(tmp_path / "docs.jsonl", [
        {"id": 1, "text": GARDEN[0]},  # a rule fires: tomatoes
        {"id": 2, "text": HARBOUR[2]},  # no rule fires (lighthouse): only the classifier knows
        {"id": 3, "text": "Nothing here is about either of them at all, it is a note on taxes."},
    ])
    gold = _jsonl(tmp_path / "gold.jsonl", [{"id": f"{topic}{i}", "text": t, "topic": topic}
                                            for topic, texts in (("garden", GARDEN), ("harbour", HARBOUR))
                                            for i, t in enumerate(texts) if t != HARBOUR[2]])
    out = tmp_path / "labelled.parquet"
    r = cli("stage", "label", "--input", str(docs), "--output", str(out), "--config", str(cfg), "--gold", str(gold))
    assert r.returncode == 0, r.stderr
    t = pq.read_table(out)
    assert t.column_names == ["id", "text", "topic", "topic_source", "topic_confidence"]
    rows = {row["id"]: row for row in t.to_pylist()}
    assert rows["1"]["topic"] == "garden" and rows["1"]["topic_source"] in ("rule", "rule+model")
    assert rows["2"]["topic"] == "harbour" and rows["2"]["topic_source"] == "model"
    assert all(0 <= row["topic_confidence"] <= 1 for row in rows.values())

    # a label value the config does not declare is a clear error naming the file
    bad = _jsonl(tmp_path / "bad_gold.jsonl", [{"id": "x", "text": GARDEN[0], "topic": "gardening"}])
    r = cli("stage", "label", "--input", str(docs), "--output", str(out), "--config", str(cfg), "--gold", str(bad))
    assert r.returncode == 2 and "gardening" in r.stderr and "bad_gold.jsonl" in r.stderr


def test_stage_decontaminate_removes_a_planted_item(tmp_path):
    import pyarrow.parquet as pq

    question = ("A gardener plants seven rows of carrots with twelve seeds in each row and three seeds fail "
                "to sprout in every row; how many carrots come up in the whole bed?")
    bench = _jsonl(tmp_path / "eval.jsonl", [
        {"id": "eval/1", "question": question, "answer": "63"},
        {"id": "eval/2", "question": "天气很好的时候，我们去港口看渔船卸货，然后沿着码头走到灯塔，一共走了多少米？", "answer": "900"},
    ])
    docs = _jsonl(tmp_path / "docs.jsonl", [
        {"id": "a", "text": GARDEN[1] + " " + question + " The answer is in the back of the book."},
        {"id": "b", "text": " ".join(GARDEN)},
        {"id": "c", "text": "周末的日记：天气很好的时候，我们去港口看渔船卸货，然后沿着码头走到灯塔，一共走了多少米？"},
    ])
    out, rej = tmp_path / "clean.parquet", tmp_path / "rej.jsonl"
    r = cli("stage", "decontaminate", "--input", str(docs), "--output", str(out), "--benchmark", str(bench),
            "--rejected", str(rej))
    assert r.returncode == 0, r.stderr
    assert pq.read_table(out).column("id").to_pylist() == ["b"]
    dropped = {d["id"]: d for d in map(json.loads, rej.read_text().splitlines())}
    assert set(dropped) == {"a", "c"} and all(d["stage"] == "decontaminate" for d in dropped.values())
    assert "eval/1" in dropped["a"]["value"] and "eval/2" in dropped["c"]["value"]

    # --fields restricts what is matched: the answers alone match nothing
    r = cli("stage", "decontaminate", "--input", str(docs), "--output", str(out), "--benchmark", str(bench),
            "--fields", "answer")
    assert r.returncode == 0, r.stderr
    assert pq.read_table(out).column("id").to_pylist() == ["a", "b", "c"]


def test_stage_split_keeps_urls_together_and_old_documents_in_place(tmp_path):
    import pyarrow.parquet as pq

    cfg = _label_config(tmp_path, train=0.6, validation=0.2, test=0.2, group_by=["url"], stratify_by="topic",
                        tolerance=0.15, salt="cli-test")
    topics = ["garden", "harbour"]
    first = _jsonl(tmp_path / "first.jsonl", [
        {"id": f"d{i:03d}", "url": f"http://notes.test/p{i // 2}", "topic": topics[i % 2]} for i in range(200)])
    out1 = tmp_path / "out1"
    r = cli("stage", "split", "--input", str(first), "--output-dir", str(out1), "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    parts = {s: pq.read_table(out1 / f"{s}.parquet").to_pylist() for s in ("train", "validation", "test")}
    assert sum(map(len, parts.values())) == 200
    split_of_url: dict[str, set] = {}
    for s, rows in parts.items():
        for row in rows:
            split_of_url.setdefault(row["url"], set()).add(s)
    assert all(len(v) == 1 for v in split_of_url.values())  # a URL never straddles splits
    assert abs(len(parts["train"]) / 200 - 0.6) <= 0.15

    before = {row["id"]: row["split"] for row in pq.read_table(out1 / "assignments.parquet").to_pylist()}
    second = _jsonl(tmp_path / "second.jsonl", [
        {"id": f"d{i:03d}", "url": f"http://notes.test/p{i // 2}", "topic": topics[i % 2]} for i in range(400)])
    out2 = tmp_path / "out2"
    r = cli("stage", "split", "--input", str(second), "--output-dir", str(out2), "--config", str(cfg),
            "--previous", str(out1 / "assignments.parquet"))
    assert r.returncode == 0, r.stderr
    after = {row["id"]: row["split"] for row in pq.read_table(out2 / "assignments.parquet").to_pylist()}
    assert len(after) == 400 and all(after[k] == v for k, v in before.items())
    assert "kept from previous 200" in r.stderr

    # stratifying by a column the input lacks says which columns there are
    r = cli("stage", "split", "--input", str(_jsonl(tmp_path / "no_topic.jsonl", [{"id": 1, "url": "http://x.test/"}])),
            "--output-dir", str(tmp_path / "o3"), "--config", str(cfg))
    assert r.returncode == 2 and "stratify_by is 'topic'" in r.stderr


def test_a_new_work_folders_dagster_instance_launches_requested_runs_at_once(tmp_path, monkeypatch):
    import dagster as dg

    from dataset_platform.cli import _prepare_instance
    from dataset_platform.defs.instance_storage import instance_at
    from dataset_platform.workdir import Workdir

    # setenv records the variable's state, so the value _prepare_instance sets is undone after the
    # test (delenv of an unset variable records nothing: it leaked into every later test)
    monkeypatch.setenv("DAGSTER_HOME", "")
    home = _prepare_instance(Workdir.at(tmp_path / "w").ensure())
    assert home == (tmp_path / "w" / "dagster_home").resolve()
    with instance_at(str(home)) as instance:
        # an inbox file's run is launched when the sensor asks, not at the queue's next look
        from dagster._core.run_coordinator import DefaultRunCoordinator

        assert isinstance(instance.run_coordinator, DefaultRunCoordinator)
        assert not isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
        assert not instance.telemetry_enabled


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def _cmdline(pid: int) -> bytes:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_ui_stopped_with_sigterm_stops_dagster_dev_and_everything_it_started(tmp_path):
    """A service manager stops `dataset-platform ui` with SIGTERM: dagster dev (which ignores
    SIGTERM) and its webserver, daemon and code server must not outlive it."""
    import signal
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started: set[int] = set()
    proc = subprocess.Popen([sys.executable, "-m", "dataset_platform.cli", "ui", "--workdir", str(tmp_path / "w"),
                             "--port", str(port)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "DAGSTER_HOME": ""}, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2).read()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "the UI did not come up"
                time.sleep(1)
        started = _descendants(proc.pid)
        assert len(started) >= 3  # dagster dev, its webserver, daemon, code server
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
        deadline = time.monotonic() + 30
        while [p for p in started if _alive(p)] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not [p for p in started if _alive(p)]
    finally:  # (what a failed stop left behind was reparented: kill it by the pids seen)
        for p in {proc.pid, *_descendants(proc.pid), *started}:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_version_and_every_option_has_help():
    import argparse

    from dataset_platform.cli import build_parser

    r = cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("dataset-platform ") and len(r.stdout.split()) >= 2

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, f"{path} {name}")
            elif action.option_strings and not isinstance(action, argparse._HelpAction):
                yield path, action

    missing = [f"{path} {a.option_strings[0]}" for path, a in walk(build_parser(), "dataset-platform")
               if not (a.help or "").strip()]
    assert not missing, f"options without help: {missing}"


def test_stage_ingest_fails_when_every_record_failed_and_names_the_field_to_map(tmp_path):
    inp = tmp_path / "export.jsonl"
    inp.write_text("".join(json.dumps({"body": f"Note {i} about the harbour ferry and the tide.", "link": f"http://x.test/{i}"})
                           + "\n" for i in range(3)))
    out = tmp_path / "pages.parquet"
    r = cli("stage", "ingest", "--input", str(inp), "--output", str(out))
    assert r.returncode == 1, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: every record of") and "--field text=body --field url=link" in last
    # mapped as it suggests, the same file lands
    r = cli("stage", "ingest", "--input", str(inp), "--output", str(out), "--field", "text=body", "--field", "url=link")
    assert r.returncode == 0, r.stderr
    import pyarrow.parquet as pq

    assert pq.read_table(out, columns=["text"]).column("text").null_count == 0


def test_stage_clean_refuses_records_without_any_text(tmp_path):
    inp = tmp_path / "pages.jsonl"
    inp.write_text("".join(json.dumps({"id": f"p{i}", "text": None, "html": "<p>x</p>"}) + "\n" for i in range(2)))
    r = cli("stage", "clean", "--input", str(inp), "--output", str(tmp_path / "clean.parquet"))
    assert r.returncode == 2
    assert "field text is empty (NULL) in all 2 rows" in r.stderr and "stage extract" in r.stderr
    assert not (tmp_path / "clean.parquet").exists()
