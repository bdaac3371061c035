"""What Dagster itself costs per asset check: one asset step with N checks that do nothing, on the
SQLite instance ``dataset-platform`` sets up for a work folder (its ``dagster.yaml``).

For N checks, with Dagster's own SQLite storage and with the pooled one a work folder gets
(``defs/instance_storage.py``; ``--storage``), it reports the whole ``materialize()``, the time Dagster takes to write the planned
events before the run starts (one per asset and one per check), and the time between consecutive
check evaluation events (each check's result stored, with the step output that carries it). The graph has 33 checks (``defs/quality.py``):
this is the floor of their cost in every run, whatever the data.

    python bench/dagster_checks.py [--checks 1,11,33] [--runs 3] [--storage dagster,workfolder]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _asset(n: int):
    import dagster as dg

    specs = [dg.AssetCheckSpec(f"check_{i}", asset="layer", blocking=i % 2 == 0) for i in range(n)]

    @dg.asset(name="layer", check_specs=specs)
    def layer():
        yield dg.MaterializeResult(metadata={"rows": 1})
        for i in range(n):
            yield dg.AssetCheckResult(check_name=f"check_{i}", passed=True, metadata={"check_seconds": 0.0})

    return layer


def measure(n: int, runs: int, storage: str = "workfolder") -> dict:
    import dagster as dg

    from dataset_platform.cli import STORAGE_YAML, _prepare_instance
    from dataset_platform.workdir import Workdir

    with tempfile.TemporaryDirectory() as tmp:
        saved = os.environ.pop("DAGSTER_HOME", None)
        try:
            home = _prepare_instance(Workdir.at(tmp))  # the instance a work folder gets (sets DAGSTER_HOME)
            if storage == "dagster":  # without its storage block: Dagster's own SQLite storage
                yaml = home / "dagster.yaml"
                yaml.write_text(yaml.read_text().replace(STORAGE_YAML, ""))
            instance = dg.DagsterInstance.get()
            asset = _asset(n)
            dg.materialize([asset], instance=instance)  # (first run: tables created)
            totals, planned, per_check = [], [], []
            for _ in range(runs):
                t0 = time.perf_counter()
                result = dg.materialize([asset], instance=instance)
                totals.append(time.perf_counter() - t0)
                records = instance.get_records_for_run(result.run_id, limit=10_000).records
                stamps = {}
                for r in records:
                    ev = r.event_log_entry
                    if ev.dagster_event is not None:
                        stamps.setdefault(ev.dagster_event.event_type_value, []).append(ev.timestamp)
                # the planned events (one per asset and per check) are written before the run starts
                planned.append(min(stamps["PIPELINE_START"]) - min(stamps["ASSET_MATERIALIZATION_PLANNED"]))
                ev = sorted(stamps.get("ASSET_CHECK_EVALUATION", []))
                if len(ev) > 1:
                    per_check.append((ev[-1] - ev[0]) / (len(ev) - 1))
        finally:
            if saved is not None:
                os.environ["DAGSTER_HOME"] = saved
    return {"storage": storage, "checks": n, "run_s": round(statistics.median(totals), 3),
            "planned_s": round(statistics.median(planned), 3),
            "ms_between_check_results": round(1000 * statistics.median(per_check), 1) if per_check else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checks", default="1,11,33")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--storage", default="dagster,workfolder",
                    help="dagster (its own SQLite storage), workfolder (pooled: defs/instance_storage.py)")
    args = ap.parse_args()
    import dagster

    rows = [measure(int(n), args.runs, st) for n in args.checks.split(",") for st in args.storage.split(",")]
    print(f"dagster {dagster.__version__}")
    print("| storage | checks | materialize() s | planned events s | ms between check results |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['storage']} | {r['checks']} | {r['run_s']} | {r['planned_s']} | {r['ms_between_check_results']} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
