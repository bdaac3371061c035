"""`dataset-platform stage redact` as a user runs it (real subprocess, real DuckDB / Parquet)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]

ROWS = [
    {"id": 7, "text": "Write to ann.lee@example.net or call +44 20 7946 0958 before noon."},
    {"id": 8, "text": "没有个人信息，只有日期 2024-01-15 和版本 3.11.7。"},
    {"id": 9, "text": "手机13812345678，身份证11010519491231002X，卡号4539 1488 0343 6467，IP 10.0.0.9"},
    {"id": 10, "text": None},
]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dataset_platform.cli", *args], capture_output=True, text=True, check=False,
                          timeout=300, cwd=REPO, env=dict(os.environ))


def _check(rows: list[dict]) -> None:
    assert [r["id"] for r in rows] == ["7", "8", "9", "10"]  # input order kept
    by_id = {r["id"]: r for r in rows}
    assert by_id["7"]["text"] == "Write to <EMAIL> or call <PHONE> before noon."
    assert by_id["8"]["text"] == ROWS[1]["text"] and by_id["8"]["pii"] == []
    assert by_id["9"]["text"] == "手机<PHONE>，身份证<CN_ID>，卡号<CARD>，IP <IP_ADDRESS>"
    assert by_id["10"]["text"] is None and by_id["10"]["pii"] == []
    for r, src in zip(rows, ROWS):
        for span in r["pii"]:
            assert set(span) == {"type", "start", "end"}
        # offsets point into the INPUT text
        got = [src["text"][s["start"]:s["end"]] for s in r["pii"]]
        if r["id"] == "7":
            assert got == ["ann.lee@example.net", "+44 20 7946 0958"]
            assert [s["type"] for s in r["pii"]] == ["email", "phone"]
        if r["id"] == "9":
            assert got == ["13812345678", "11010519491231002X", "4539 1488 0343 6467", "10.0.0.9"]
            assert [s["type"] for s in r["pii"]] == ["phone", "cn_id", "card", "ip"]


def test_stage_redact_jsonl_to_jsonl(tmp_path):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    r = cli("stage", "redact", "--input", str(inp), "--output", str(out))
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    _check(rows)
    assert "redact: 4 documents" in r.stderr and "email 1" in r.stderr and "phone 2" in r.stderr


def test_stage_redact_parquet_to_parquet_and_is_deterministic(tmp_path):
    inp = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [r["id"] for r in ROWS], "text": [r["text"] for r in ROWS],
                             "extra": ["x"] * len(ROWS)}), inp)
    outs = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    for out in outs:
        r = cli("stage", "redact", "--input", str(inp), "--output", str(out))
        assert r.returncode == 0, r.stderr
    table = pq.read_table(outs[0])
    assert table.column_names == ["id", "text", "pii"]
    _check(table.to_pylist())
    assert outs[0].read_bytes() == outs[1].read_bytes()


def test_stage_redact_clear_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "body": "a@b.io"}\n', encoding="utf-8")
    r = cli("stage", "redact", "--input", str(bad), "--output", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2
    assert "missing field(s) text" in r.stderr and "needs id, text" in r.stderr
    assert not (tmp_path / "o.jsonl").exists()
    r = cli("stage", "redact", "--input", str(tmp_path / "absent.jsonl"), "--output", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = cli("stage", "redact", "--input", str(bad), "--output", str(tmp_path / "o.csv"))
    assert r.returncode == 2 and "expected .parquet or .jsonl" in r.stderr
