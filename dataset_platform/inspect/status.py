"""``dataset-platform status``: the last runs, the rows of each layer, the latest result of every
check and the current release of a work folder, without the UI.

Fast by construction: the layer counts come from the layers' manifests (``runner.layer_totals``:
what each part recorded when it was committed) and Parquet footers, never from a scan of the rows;
the runs and check results come from the run history of the work folder's ``DAGSTER_HOME``
through the Dagster instance API (imported here only, and only when that history exists).
Nothing is written: the instance is opened on its existing storage and disposed of.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

from dataset_platform.inspect.errors import existing_workdir
from dataset_platform.inspect.table import render
from dataset_platform.workdir import Workdir

#: runs listed
RUNS = 5
#: runs read (newest first) for the latest evaluation of every check
CHECK_RUNS = 20


def dagster_home(wd: Workdir) -> Path:
    """Where the CLI records runs of this work folder (``$DAGSTER_HOME`` when set, as the CLI does)."""
    return Path(os.environ.get("DAGSTER_HOME") or wd.dagster_home).resolve()


def collect(workdir) -> dict:
    """Everything ``status`` shows, as plain data."""
    wd = existing_workdir(workdir)
    runs, checks, home = _runs_and_checks(wd)
    return {"workdir": str(wd.root), "dagster_home": str(home), "runs": runs, "layers": layer_counts(wd),
            "checks": checks, "releases": releases(wd)}


# ------------------------------------------------------------------ layers


def layer_counts(wd: Workdir) -> list[dict]:
    """Rows per layer, from manifests and Parquet footers (no row is read)."""
    from dataset_platform.runner import STAGES, layer_totals
    from dataset_platform.storage import parquet_rows

    out: list[dict] = []
    log_files = wd.layer_files("crawl_log")
    if log_files:
        out.append({"layer": "crawl_log", "rows": sum(parquet_rows(f) for f in log_files),
                    "note": f"{len(log_files)} landed batch(es)"})
    raw = 0
    sources = sorted(p.parent.name for p in (wd.layers / "raw_pages").glob("*/manifest.json"))
    for s in sources:
        raw += int(json.loads((wd.raw_source(s) / "manifest.json").read_text(encoding="utf-8")).get("rows", 0))
    if sources:
        out.append({"layer": "raw_pages", "rows": raw, "note": f"sources: {', '.join(sources)}"})
    for st in STAGES:
        t = layer_totals(wd, st)
        if t is None:
            continue
        top = sorted(t.reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        note = f"in {t.input_rows}, rejected {t.rejected_rows}"
        if top:
            note += " (" + ", ".join(f"{r} {n}" for r, n in top) + (", …" if len(t.reasons) > 3 else "") + ")"
        out.append({"layer": st.output, "rows": t.kept_rows, "input": t.input_rows, "rejected": t.rejected_rows,
                    "reasons": dict(sorted(t.reasons.items())), "note": note})
        for extra in st.also_writes:
            files = wd.layer_files(extra)
            if files:
                out.append({"layer": extra, "rows": sum(parquet_rows(f) for f in files), "note": ""})
    return out


# ------------------------------------------------------------------ releases


def releases(wd: Workdir) -> list[dict]:
    """The current (``LATEST``) release of each dataset, with its rows per split."""
    out = []
    for pointer in sorted(wd.releases.glob("*/LATEST")):
        version = pointer.read_text(encoding="utf-8").strip()
        path = pointer.parent / version
        entry: dict = {"dataset": pointer.parent.name, "version": version, "path": str(path)}
        try:
            m = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            entry["error"] = f"{path / 'manifest.json'} is missing or unreadable"
        else:
            entry.update(rows=m.get("rows", {}), total_rows=m.get("total_rows"), previous_version=m.get("previous_version"),
                         diff=m.get("diff", {}))
        entry["versions"] = sum(1 for p in pointer.parent.iterdir() if p.is_dir() and not p.name.startswith("."))
        out.append(entry)
    return out


# ------------------------------------------------------------------ runs and checks (Dagster)


def _runs_and_checks(wd: Workdir) -> tuple[list[dict], list[dict], Path]:
    home = dagster_home(wd)
    if not (home / "history").is_dir() and not (home / "dagster.yaml").exists():
        return [], [], home  # no run was recorded here: no need to start Dagster
    from dagster import DagsterEventType

    from dataset_platform.defs.instance_storage import instance_at

    with instance_at(home) as instance:
        records = instance.get_run_records(limit=max(RUNS, CHECK_RUNS))
        runs = []
        for r in records[:RUNS]:
            run = r.dagster_run
            tags = run.tags or {}
            partitions = (tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end"))
            runs.append({
                "run_id": run.run_id, "job": run.job_name, "status": run.status.value,
                "started": _iso(r.start_time), "seconds": round(r.end_time - r.start_time, 1)
                if r.start_time and r.end_time else None,
                "partitions": (partitions[0] if partitions[0] == partitions[1] else f"{partitions[0]}…{partitions[1]}")
                if partitions[0] else tags.get("dagster/partition"),
                "failure": tags.get("dagster/failure_reason"),
            })
        checks: dict[tuple[str, str], dict] = {}
        for r in records:  # newest first: the first evaluation of a check seen is its latest
            for entry in instance.all_logs(r.dagster_run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
                ev = entry.dagster_event.event_specific_data
                key = (ev.asset_key.to_user_string(), ev.check_name)
                if key in checks:
                    continue
                severity = getattr(ev.severity, "value", str(ev.severity))
                checks[key] = {"asset": key[0], "check": key[1],
                               "result": "pass" if ev.passed else ("FAIL" if severity == "ERROR" else "warn"),
                               "severity": severity, "run_id": r.dagster_run.run_id,
                               "when": _iso(entry.timestamp), "detail": "" if ev.passed else _detail(ev.metadata)}
        return runs, sorted(checks.values(), key=lambda c: (c["result"] == "pass", c["asset"], c["check"])), home


def _detail(metadata: dict) -> str:
    """A failed check's own words: its error, description or failed expectations, shortly."""
    for key in ("error", "failed", "failed_expectations", "reason", "description", "note"):
        if key in metadata:
            v = getattr(metadata[key], "value", metadata[key])
            if v not in (None, "", [], {}):
                return " ".join(str(v).split())[:160]
    return ""


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, tz=_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# ------------------------------------------------------------------ output


def render_text(s: dict) -> str:
    lines = [f"work folder {s['workdir']}"]
    if s["runs"]:
        lines += ["", f"last runs (DAGSTER_HOME={s['dagster_home']}):",
                  _indent(render(["run", "job", "status", "started", "seconds", "partitions"],
                                 [[r["run_id"], r["job"], r["status"], r["started"], r["seconds"], r["partitions"]]
                                  for r in s["runs"]]))]
    else:
        lines += ["", f"no run recorded in {s['dagster_home']} (runs of `dataset-platform demo/run/ui` are)"]
    lines += ["", "rows per layer (from the layers' manifests):"]
    if s["layers"]:
        lines.append(_indent(render(["layer", "rows", ""], [[x["layer"], x["rows"], x["note"]] for x in s["layers"]],
                                    max_width=100)))
    else:
        lines.append("  no layer materialised yet")
    if s["checks"]:
        counts = {k: sum(c["result"] == k for c in s["checks"]) for k in ("pass", "warn", "FAIL")}
        lines += ["", f"checks (latest result of each): {counts['pass']} pass, {counts['warn']} warn, "
                      f"{counts['FAIL']} FAIL"]
        lines.append(_indent(render(["result", "asset", "check", "when", "detail"],
                                    [[c["result"], c["asset"], c["check"], c["when"], c["detail"]] for c in s["checks"]],
                                    max_width=90)))
    lines.append("")
    if not s["releases"]:
        lines.append("release: none yet (a run publishes one when every blocking check passes)")
    for r in s["releases"]:
        if "error" in r:
            lines.append(f"release {r['dataset']} {r['version']}: {r['error']}")
            continue
        splits = ", ".join(f"{k} {v}" for k, v in r["rows"].items())
        diff = r.get("diff") or {}
        lines.append(f"release {r['dataset']} {r['version']} ({r['versions']} version(s)): {r['total_rows']} rows "
                     f"({splits}); vs previous {r['previous_version'] or '-'}: +{diff.get('added', 0)} "
                     f"-{diff.get('removed', 0)} ~{diff.get('changed', 0)}")
        lines.append(f"  {r['path']}")
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
