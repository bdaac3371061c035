"""``dataset-platform``: run the graph through Dagster, or one stage's library code on files.

    dataset-platform demo [--workdir DIR]
    dataset-platform run --config FILE [--workdir DIR]
    dataset-platform ui [--config FILE] [--workdir DIR] [--port N]
    dataset-platform sql "SELECT ..." [--workdir DIR] [--csv | --json] [--max-rows N]
    dataset-platform status [--workdir DIR] [--json]
    dataset-platform trace <id | url | text snippet> [--workdir DIR] [--json]
    dataset-platform takedown check --config FILE [--workdir DIR]
    dataset-platform takedown revise --release VERSION [--release VERSION ...] --config FILE [--workdir DIR]
    dataset-platform stage ingest --input FILE --output F [--kind K] [--source NAME] [--field OURS=THEIRS ...]
    dataset-platform stage extract --input F --output F [--rejected F] [--config FILE]
    dataset-platform stage clean --input F --output F [--rejected F] [--config FILE]
    dataset-platform stage redact --input F --output F
    dataset-platform stage dedup --input F --output F --clusters F [--rejected F] [--config FILE]
    dataset-platform stage label --input F --output F --config FILE [--gold F]
    dataset-platform stage decontaminate --input F --output F --benchmark F [F ...] [--fields a,b] [--rejected F]
    dataset-platform stage split --input F --output-dir D --config FILE [--previous F]
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from dataset_platform.config import ConfigError, demo_config_path, load_config
from dataset_platform.workdir import DEFAULT_WORKDIR, Workdir

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: the storage block of the dagster.yaml a work folder gets (without it: Dagster's own SQLite storage)
STORAGE_YAML = ("# Dagster's SQLite storage in this folder, its connections kept open (defs/instance_storage.py)\n"
                "storage:\n  custom:\n    module: dataset_platform.defs.instance_storage\n"
                "    class: WorkFolderSqliteStorage\n    config:\n      base_dir:\n        env: DAGSTER_HOME\n")


def _prepare_instance(wd: Workdir) -> Path:
    """A persistent DAGSTER_HOME under the workdir (unless the user set one)."""
    home = Path(os.environ.get("DAGSTER_HOME") or wd.dagster_home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    yaml_path = home / "dagster.yaml"
    nux = ("# no \"Join the Dagster community\" dialog in the UI of every new work folder\n"
           "nux:\n  enabled: false\n")
    storage = STORAGE_YAML
    if not yaml_path.exists():
        yaml_path.write_text(
            "# written by dataset-platform; edit freely\n"
            "telemetry:\n  enabled: false\n"
            + nux +
            "# a run a sensor or the UI requests is launched at once, not queued for the daemon's next\n"
            "# look (every 5 s by default; runs of one work folder wait for each other on its locks).\n"
            "# For run queues and concurrency limits, use dagster.core.run_coordinator's\n"
            "# QueuedRunCoordinator here (with dequeue_interval_seconds: 1)\n"
            "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n"
            + storage,
            encoding="utf-8",
        )
    else:  # one an earlier version wrote, without the nux or storage key: add them (a file the user wrote stays as it is)
        import re

        from dataset_platform import atomic

        text = yaml_path.read_text(encoding="utf-8")
        if text.startswith("# written by dataset-platform"):
            added = (nux if not re.search(r"(?m)^nux:", text) else "") + (
                storage if not re.search(r"(?m)^storage:", text) else "")
            if added:
                atomic.write_text(yaml_path, text.rstrip("\n") + "\n" + added)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def run_pipeline(config_path: Path, workdir: str | None, *, out=sys.stdout) -> int:
    """Materialise the whole graph (with its checks) through Dagster; print a summary."""
    from dataset_platform import procs

    with procs.start_up():  # (no garbage collection while the modules and definitions load)
        import dagster as dg

        from dataset_platform.defs.ingestion import all_sources_tags

        loaded = _load_job(config_path, workdir)
    if isinstance(loaded, int):
        return loaded
    cfg, wd, job, home = loaded
    print(f"dataset-platform: workdir {wd.root}, runs recorded in DAGSTER_HOME={home}", file=out)
    t0 = time.monotonic()
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
            tags=all_sources_tags(cfg),  # every source partition, in one run
        )
    evaluations = result.get_asset_check_evaluations()
    return _summarise(cfg, wd, result, evaluations, time.monotonic() - t0, out)


def _load_job(config_path: Path, workdir: str | None):
    """``run_pipeline``'s start: the config checked, the GX worker started, the Dagster instance
    prepared and the job built; (config, workdir, job, DAGSTER_HOME), or an exit code."""
    from dataset_platform import preflight

    try:
        cfg = load_config(config_path)
        preflight.check(cfg, config_path)  # what the config points to, before any work starts
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    wd = Workdir.at(workdir).ensure()
    from dataset_platform.checks import gx_service, gx_worker

    try:
        gx_service.daemon()  # the GX service kept warm between runs (checks/gx_service.py), if any
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    gx_worker.start()  # else GX's import on a worker of its own overlaps Dagster's start and the first steps
    os.environ["DATASET_PLATFORM_CONFIG"] = str(Path(config_path).resolve())
    os.environ["DATASET_PLATFORM_WORKDIR"] = str(wd.root)
    home = _prepare_instance(wd)

    from dataset_platform.definitions import build_definitions

    defs = build_definitions(config_path, wd.root)
    return cfg, wd, defs.resolve_job_def("dataset_pipeline"), home


def _summarise(cfg, wd: Workdir, result, evaluations, seconds: float, out) -> int:
    from dataset_platform.ingest.refresh import crawl_log_summary
    from dataset_platform.release.materialise import current_release
    from dataset_platform.runner import STAGES, layer_totals
    from dataset_platform.stages.registry import order_of
    from dataset_platform.storage import count_layer

    print("", file=out)
    print(f"run {result.run_id}: {'succeeded' if result.success else 'FAILED'} in {seconds:.1f}s", file=out)
    print("documents per stage:", file=out)
    try:
        outcomes = crawl_log_summary(wd)
    except FileNotFoundError:
        outcomes = {}
    for source, counts in outcomes.items():
        print(f"  {'newest batch of ' + source:28s} {sum(counts.values()):>8}   URLs: "
              + ", ".join(f"{k} {v}" for k, v in counts.items()), file=out)
    if wd.layer_files("raw_pages"):
        print(f"  {'stored pages (raw_pages)':28s} {count_layer(None, wd, 'raw_pages'):>8}", file=out)
    reasons, emptied = [], []
    for st in STAGES:
        t = layer_totals(wd, st)
        if t is not None:
            print(f"  {st.output:28s} {t.kept_rows:>8}   (in {t.input_rows}, rejected {t.rejected_rows})", file=out)
            reasons += [(st.name, rule, n) for rule, n in t.reasons.items()]
            if t.input_rows and not t.kept_rows and t.reasons:
                rule, n = max(t.reasons.items(), key=lambda kv: (kv[1], kv[0]))
                emptied.append(f"note: {st.name} dropped all {t.input_rows} documents, {n} of them for {rule}; "
                               f"check the pipeline.{st.name} settings ({_RULE_HINTS.get(rule, 'see rejected_documents')})")
    if reasons:
        print("drop reasons:", file=out)
        for stage, rule, n in sorted(reasons, key=lambda r: (order_of(r[0]), r[1])):
            print(f"  {stage:8s} {rule:28s} {n:>8}", file=out)
    for line in emptied:
        print(line, file=out)
    failed_blocking = [
        e for e in evaluations
        if not e.passed and getattr(e.severity, "value", str(e.severity)) == "ERROR"
    ]
    warned = [e for e in evaluations if not e.passed and e not in failed_blocking]
    print(f"checks: {len(evaluations)} evaluated, {len(failed_blocking)} failed (blocking), {len(warned)} warnings", file=out)
    for e in failed_blocking + warned:
        print(f"  {'FAILED' if e in failed_blocking else 'warn  '} {e.asset_key.to_user_string()}:{e.check_name}"
              f"{'' if e in failed_blocking else ' (does not block)'}", file=out)
        for line in _check_reasons(e):
            print(f"      {line}", file=out)
    release = current_release(cfg, wd)
    if release is not None and result.success and not failed_blocking:
        print(f"release: {release}", file=out)
    elif release is not None:
        print(f"release (previous, unchanged by this run): {release}", file=out)
    if not result.success or failed_blocking:
        print("why the run failed:", file=out)
        for line in _failure_reasons(result, failed_blocking, wd):
            print(f"  {line}", file=out)
        return EXIT_FAILED
    return EXIT_OK


_RULE_HINTS = {
    "language_not_wanted": "pipeline.clean.languages takes ISO 639-1 codes such as en, zh",
    "not_html": "the records carry no html or text field; map one with sources[].fields",
}


def _check_reasons(e, limit: int = 6) -> list[str]:
    """Why a check failed, in a few lines: its description (the failed expectations with what was expected and
    observed), else its metadata's error or numbers."""
    if e.description:
        return e.description.splitlines()[:limit]
    md = e.metadata or {}
    lines = []
    for key, v in md.items():
        value = getattr(v, "value", v)
        if key in ("check_seconds",) or isinstance(value, (dict, list)) or value is None:
            continue
        if isinstance(value, float):
            value = f"{value:.4g}"
        text = str(value).replace("\n", " ")
        lines.append(f"{key}: {text[:160]}{'…' if len(text) > 160 else ''}")
    return lines[:limit]


def _error_chain(err) -> list:
    chain = []
    while err is not None:
        chain.append(err)
        err = err.cause
    return chain


def _failure_reasons(result, failed_blocking, wd: Workdir) -> list[str]:
    """The failing steps' own errors (not Dagster's wrapper) and what to do about them."""
    lines = []
    blocking_steps = False
    for ev in result.all_events:
        if not ev.is_step_failure:
            continue
        err = ev.step_failure_data.error
        chain = _error_chain(err)
        if any(c.cls_name == "DagsterAssetCheckFailedError" for c in chain):
            blocking_steps = True
            continue
        own = chain[-1] if chain else None  # the user code's exception, under Dagster's "Error occurred while ..."
        where = ""
        if own is not None and own.stack:
            where = " at " + own.stack[-1].strip().splitlines()[0].strip()
        message = (own.message.strip() if own else "") or "(no message)"
        lines.append(f"step {ev.step_key} raised {message.splitlines()[0][:400]}")
        lines += [f"  {m}" for m in message.splitlines()[1:4]]
        if where:
            lines.append(f"  ({where.strip()})")
    for e in failed_blocking:
        lines.append(f"blocking check {e.asset_key.to_user_string()}:{e.check_name} failed (reasons above): the "
                     "layers below it were not refreshed and the last good release stays published")
    if failed_blocking or blocking_steps:
        lines.append("what to do: fix the settings or the input the reasons point to, then run again; "
                     "`SELECT stage, rule, count(*) FROM rejected_documents GROUP BY ALL` shows what was dropped")
    skipped = [e.step_key for e in result.all_events if e.event_type_value == "STEP_SKIPPED"]
    if skipped:
        lines.append(f"not run because a step above failed: {', '.join(sorted(set(skipped)))}")
    if any(ln.startswith("step ") for ln in lines):
        lines.append(f"what to do: the message above says what went wrong; the full log is above on stderr and in "
                     f"the UI (`dataset-platform ui --workdir {wd.root}`, run {result.run_id[:8]})")
    return lines or ["the run did not succeed (see the log above)"]


def _cmd_ui(args) -> int:
    cfg_path = Path(args.config or demo_config_path()).resolve()
    from dataset_platform import preflight

    try:
        preflight.check(load_config(cfg_path), cfg_path)  # the config, and what it points to
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    wd = Workdir.at(args.workdir).ensure()
    env = dict(os.environ, DATASET_PLATFORM_CONFIG=str(cfg_path), DATASET_PLATFORM_WORKDIR=str(wd.root))
    env["DAGSTER_HOME"] = str(_prepare_instance(wd))
    workspace = Path(__file__).resolve().parents[1] / "workspace.yaml"
    target = ["-w", str(workspace)] if workspace.exists() else ["-m", "dataset_platform.definitions"]
    cmd = ["dagster", "dev", *target, "-h", args.host, "-p", str(args.port)]
    print(" ".join(cmd), file=sys.stderr)
    # its own process group: what it starts (webserver, daemon, code server, runs) can be stopped
    # together, also what it leaves behind
    return _supervise(subprocess.Popen(cmd, env=env, start_new_session=True))


def _supervise(proc: subprocess.Popen, grace_s: float = 60.0) -> int:
    """Wait for ``proc`` (``dagster dev``, leader of its own process group). A SIGTERM (a service
    manager or a container stopping us) or Ctrl-C reaches it as the SIGINT it shuts down on: it
    ignores SIGTERM and would outlive us. It is killed ``grace_s`` after a stop; once it is gone,
    whatever of its group is left (a webserver, daemon or code server still shutting down) gets
    SIGTERM, then SIGKILL 10 s later."""
    import signal

    stopped: list[float] = []  # when a stop was asked for

    def stop(_signum=None, _frame=None) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        stopped.append(time.monotonic())

    signal.signal(signal.SIGTERM, stop)
    while True:
        try:
            rc = proc.wait(timeout=1.0)
            break
        except subprocess.TimeoutExpired:
            if stopped and time.monotonic() - stopped[0] > grace_s:
                proc.kill()
        except KeyboardInterrupt:
            stop()
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            break  # nothing left of the group
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and _group_alive(proc.pid):
            time.sleep(0.2)
    return rc


def _group_alive(pgid: int) -> bool:
    """A process of group ``pgid`` still runs (zombies, which only wait to be reaped, do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():  # (not Linux: any member, zombies included)
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for d in proc.iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


# ------------------------------------------------------------------------ stages on files


def _read_sql(path: str) -> str:
    from dataset_platform.storage import sql_str

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"input file {p} does not exist")
    name = p.name.lower()
    if name.endswith((".parquet", ".pq")):
        return f"read_parquet({sql_str(p)})"
    if name.endswith((".jsonl", ".jsonl.gz", ".json", ".ndjson")):
        return f"read_json({sql_str(p)}, format = 'newline_delimited')"
    raise ValueError(f"input {p}: expected .parquet or .jsonl (optionally .gz)")


def _write(con, query: str, path: str) -> int:
    from dataset_platform.storage import sql_str, write_parquet

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.name.lower().endswith((".parquet", ".pq")):
        return write_parquet(con, query, p)
    if p.name.lower().endswith((".jsonl", ".ndjson")):
        tmp = p.with_name(f".{p.name}.tmp")
        con.sql(f"COPY ({query}) TO {sql_str(tmp)} (FORMAT json)")
        os.replace(tmp, p)
        return int(con.sql(f"SELECT count(*) FROM ({query})").fetchall()[0][0])
    raise ValueError(f"output {p}: expected .parquet or .jsonl")


def _require_columns(con, src: str, needed: list[str], path: str) -> None:
    have = {r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {src}").fetchall()}
    missing = [c for c in needed if c not in have]
    if missing:
        raise ValueError(f"input {path}: missing field(s) {', '.join(missing)} (needs {', '.join(needed)})")


def _require_values(con, src: str, fields: list[str], path: str) -> None:
    """A required field that is NULL in every row would make the stage drop everything for a reason that is
    not the documents' fault: refuse with what to do instead."""
    if not fields:
        return
    counts = con.sql(f"SELECT count(*), {', '.join(f'count({chr(34)}{c}{chr(34)})' for c in fields)} FROM {src}").fetchall()[0]
    empty = [c for c, n in zip(fields, counts[1:]) if n == 0]
    if counts[0] and empty:
        hint = ("; run `dataset-platform stage extract` on it first (it turns html into text), or land the file "
                "with `dataset-platform stage ingest --field text=<its text field>`") if "text" in empty else ""
        what = f"field {empty[0]} is" if len(empty) == 1 else f"fields {', '.join(empty)} are"
        raise ValueError(f"input {path}: {what} empty (NULL) in all {counts[0]} rows{hint}")


def _cmd_ingest(args) -> int:
    """Land one WARC / JSONL / Parquet file: a raw batch (.jsonl.gz), or its rows as .parquet/.jsonl."""
    import shutil
    import tempfile

    from dataset_platform.ingest.files import (
        batch_id_for,
        ingest_file,
        kind_for_path,
        quarantine_path_for,
    )
    from dataset_platform.ingest.load import Batch, batch_sql
    from dataset_platform.storage import memory_connection

    inp, out = Path(args.input), Path(args.output)
    if not inp.is_file():
        raise FileNotFoundError(f"input file {inp} does not exist")
    as_batch = out.name.lower().endswith(".jsonl.gz")
    if not as_batch and not out.name.lower().endswith((".parquet", ".pq", ".jsonl", ".ndjson")):
        raise ValueError(f"output {out}: expected .jsonl.gz (a raw batch), .parquet or .jsonl")
    kind = args.kind or kind_for_path(inp)
    fields: dict[str, str] = {}
    for spec in args.field or []:
        ours, sep, theirs = spec.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise ValueError(f"--field {spec!r}: expected OURS=THEIRS, e.g. --field text=body")
        fields[ours.strip()] = theirs.strip()
    log = (lambda m: print(m, file=sys.stderr))
    # the summary line is printed once the quarantine file is where it stays
    notes = (lambda m: None if " records; " in m else log(m))
    out.parent.mkdir(parents=True, exist_ok=True)
    if as_batch:
        summary = ingest_file(inp, source=args.source, kind=kind, output_path=out, fields=fields or None, log=notes)
    else:
        with tempfile.TemporaryDirectory(prefix=".ingest-", dir=out.parent) as tmp:
            batch_path = Path(tmp) / "batch.parquet"  # the batch format ingest_file lands for the pipeline
            summary = ingest_file(inp, source=args.source, kind=kind, output_path=batch_path, fields=fields or None,
                                  log=notes)
            con = memory_connection()
            try:
                batch = Batch(args.source, batch_id_for(inp, args.source), batch_path)
                _write(con, f"SELECT * FROM ({batch_sql(batch)}) ORDER BY seq", str(out))
            finally:
                con.close()
            if summary.quarantine_path:
                dest = quarantine_path_for(out)
                shutil.move(summary.quarantine_path, dest)
                summary.quarantine_path = str(dest)
    log(f"{args.source}: {summary.line()}")
    failed = sum(n for k, n in summary.outcomes.items() if k.startswith("failed"))
    print(f"wrote {summary.records} records to {out}"
          + (f" ({failed} failed: see {summary.quarantine_path or 'their outcome column'})" if failed else ""),
          file=sys.stderr)
    if summary.records and failed == summary.records:
        hint = _field_hint(inp, kind, summary.quarantine_path) if not fields else None
        print(f"error: every record of {inp} failed ({', '.join(k for k in summary.outcomes if k.startswith('failed'))})"
              + (f"; {hint}" if hint else ""), file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _field_hint(inp: Path, kind: str, quarantine: str | None) -> str | None:
    """When no record had a text: the fields the records do have, and the --field flags that map them."""
    import json

    if kind == "warc":
        return None
    names: list[str] = []
    if kind == "parquet":
        import pyarrow.parquet as pq

        names = pq.read_schema(inp).names
    elif quarantine and Path(quarantine).exists():
        with open(quarantine, encoding="utf-8") as fh:
            try:
                raw = json.loads(json.loads(fh.readline())["raw"])
                names = list(raw) if isinstance(raw, dict) else []
            except (ValueError, KeyError, TypeError):
                names = []
    if not names:
        return None
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    if "text" in names or "html" in names:
        return f"its records have the fields {shown}"
    guesses = {"text": ("body", "content", "contents", "article", "document", "raw_content", "passage"),
               "url": ("link", "permalink", "href", "uri"), "title": ("subject", "headline")}
    flags = [f"--field {ours}={next(g for g in guesses[ours] if g in names)}" for ours in guesses
             if ours not in names and any(g in names for g in guesses[ours])]
    if not any(f.startswith("--field text=") for f in flags):
        flags.insert(0, f"--field text=<one of: {shown}>")
    return f"its records have the fields {shown} but no text or html; map them, e.g. {' '.join(flags)}"


def _cmd_redact(args) -> int:
    """Redact structured PII (stages/clean/pii.py) in ``id, text`` rows; output ``id, text, pii`` where ``pii``
    lists ``{type, start, end}`` as character offsets into the INPUT text. Streams bounded batches."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from dataset_platform.stages.clean.pii import PII_TYPES, find_pii_batch, replace_spans
    from dataset_platform.storage import memory_connection

    out = Path(args.output)
    as_parquet = out.name.lower().endswith((".parquet", ".pq"))
    if not as_parquet and not out.name.lower().endswith((".jsonl", ".ndjson")):
        raise ValueError(f"output {out}: expected .parquet or .jsonl")
    src = _read_sql(args.input)
    con = memory_connection()
    try:
        _require_columns(con, src, ["id", "text"], args.input)
    except ValueError:
        con.close()
        raise
    span_type = pa.list_(pa.struct([("type", pa.string()), ("start", pa.int32()), ("end", pa.int32())]))
    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("pii", span_type)])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    rows, per_type = 0, dict.fromkeys(PII_TYPES, 0)
    reader = con.sql(f"SELECT CAST(id AS VARCHAR) AS id, CAST(text AS VARCHAR) AS text FROM {src}").to_arrow_reader(4096)
    writer = pq.ParquetWriter(tmp, schema) if as_parquet else None
    fh = None if as_parquet else open(tmp, "w", encoding="utf-8")
    try:
        for batch in reader:
            ids = batch.column(0).to_pylist()
            red, spans = [], []
            for t, sp in find_pii_batch(batch.column(1)):
                red.append(replace_spans(t, sp))
                spans.append([{"type": x.type, "start": x.start, "end": x.end} for x in sp])
                for x in sp:
                    per_type[x.type] += 1
            rows += len(ids)
            if writer is not None:
                writer.write_table(pa.table([pa.array(ids, pa.string()), pa.array(red, pa.string()),
                                             pa.array(spans, span_type)], schema=schema))
            else:
                for i, r, sp in zip(ids, red, spans):
                    fh.write(json.dumps({"id": i, "text": r, "pii": sp}, ensure_ascii=False) + "\n")
    finally:
        if writer is not None:
            writer.close()
        if fh is not None:
            fh.close()
        con.close()
    os.replace(tmp, out)
    print(f"redact: {rows} documents, " + ", ".join(f"{t} {n}" for t, n in per_type.items()), file=sys.stderr)
    return EXIT_OK


def _cmd_split(args, con, src: str, log) -> int:
    from dataset_platform.release.split import assign_splits

    _require_columns(con, src, ["id"], args.input)
    settings = load_config(args.config).pipeline.splits
    cols = {r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {src}").fetchall()}
    if "url" not in cols:
        src = f"(SELECT *, NULL::VARCHAR AS url FROM {src})"
    if settings.stratify_by and settings.stratify_by not in cols:
        raise ValueError(f"{args.input}: splits.stratify_by is {settings.stratify_by!r} but the input has no such column "
                         f"(columns: {sorted(cols)})")
    previous = _read_sql(args.previous) if args.previous else None
    stats = assign_splits(con, f"(SELECT * REPLACE (CAST(id AS VARCHAR) AS id) FROM {src})", settings, previous_sql=previous)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    from dataset_platform.contracts import schema

    for split in schema.SPLITS:
        _write(con, f"SELECT * EXCLUDE (group_key) FROM split_docs WHERE split = '{split}' ORDER BY id",
               str(out / f"{split}.parquet"))
    _write(con, "SELECT id, split, group_key FROM split_assignments ORDER BY id", str(out / "assignments.parquet"))
    log(f"split: {stats.rows}; groups {stats.groups}, kept from previous {stats.kept_from_previous}, "
        f"straddling groups {stats.straddling_groups}, largest share deviation {stats.max_share_deviation} "
        f"(assignments for the next run: {out / 'assignments.parquet'}, pass it as --previous)")
    return EXIT_OK


def _cmd_registered(args, stage) -> int:
    """Any registered stage on a file: the same ``run`` the graph calls, on the file's rows (a
    global stage's decision joined back to them), the kept rows to --output, the rejected ones to
    --rejected, extra outputs to the files their flags name."""
    import shutil
    import tempfile

    from dataset_platform.config import PipelineSettings
    from dataset_platform.stages.base import StageContext
    from dataset_platform.storage import memory_connection

    log = (lambda m: print(m, file=sys.stderr))
    cfg = load_config(args.config) if args.config else None
    pipeline = cfg.pipeline if cfg is not None else PipelineSettings()
    settings = stage.settings(pipeline)
    if stage.cli_settings is not None:
        settings = stage.cli_settings(args, settings)
    spill = tempfile.mkdtemp(prefix=f"dataset-platform-{stage.name}-")
    limit = stage.memory_limit(settings) if stage.memory_limit else pipeline.memory_limit
    con = memory_connection(memory_limit=limit, temp_dir=Path(spill))
    try:
        src = _read_sql(args.input)
        _require_columns(con, src, list(stage.requires), args.input)
        _require_values(con, src, [c for c in stage.requires if c != "id"], args.input)
        have = [r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {src}").fetchall()]
        con.sql(f"CREATE OR REPLACE TEMP TABLE _input AS SELECT * REPLACE (CAST(id AS VARCHAR) AS id) FROM {src}")
        ctx = StageContext(con, settings, cfg, log, batch_size=pipeline.batch_size)
        try:
            res = stage.run(ctx, "_input")
        finally:
            ctx.close()
        kept = f"({res.kept.sql_query()})"
        if not stage.per_batch:  # the decision: the input's rows it keeps, with the columns it adds
            con.sql(f"CREATE OR REPLACE TEMP TABLE _decision AS SELECT * FROM {kept}")
            kept = "(SELECT i.*, d.* EXCLUDE (id) FROM _input i JOIN _decision d ON d.id = i.id)"
        cols = [c for c in con.sql(f"SELECT * FROM {kept} LIMIT 0").columns
                if not (c in stage.passthrough and c not in have)]
        _write(con, f"SELECT {', '.join(chr(34) + c + chr(34) for c in cols)} FROM {kept} ORDER BY id", args.output)
        if args.rejected:
            _write(con, f"SELECT id, stage, rule, value FROM ({res.rejected.sql_query()}) ORDER BY id, rule",
                   args.rejected)
        for opt in stage.cli_options:
            if opt.output and getattr(args, _dest(opt.flag)):
                _write(con, f"SELECT * FROM ({res.extra[opt.output].sql_query()}) ORDER BY ALL",
                       getattr(args, _dest(opt.flag)))
        print(res.result.summary(), file=sys.stderr)
        return EXIT_OK
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def _cmd_takedown(args) -> int:
    """``takedown check``: the requests, validated; ``takedown revise``: published versions
    without their documents (``release/revise.py``)."""
    from dataset_platform.stages import takedown

    cfg = load_config(Path(args.config))
    wd = Workdir.at(args.workdir)
    requests = takedown.load(cfg, wd.root)
    if args.takedown_command == "check":
        kinds = {}
        for r in requests.requests:
            kinds[r.kind] = kinds.get(r.kind, 0) + 1
        print(f"{len(requests.requests)} takedown request(s) valid, from {', '.join(requests.files) or 'no file'}"
              + (": " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) if kinds else ""))
        return EXIT_OK
    from dataset_platform.release.revise import revise

    for r in revise(cfg, wd, args.release, log=print):
        if r.new is None or r.note:
            print(f"{r.old}: {r.note}")
        else:
            print(f"{r.old} -> {r.new}: {r.removed} document(s) removed ({', '.join(r.requests)}); {r.old} superseded, "
                  f"{r.deleted_files} data file(s) deleted")
    return EXIT_OK


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _cmd_stage(args) -> int:
    from dataset_platform.stages.registry import BY_NAME

    if args.stage_name in BY_NAME:
        return _cmd_registered(args, BY_NAME[args.stage_name])
    if args.stage_name == "ingest":
        return _cmd_ingest(args)
    if args.stage_name == "redact":
        return _cmd_redact(args)
    from dataset_platform.storage import memory_connection

    con = memory_connection()
    try:
        return _cmd_split(args, con, _read_sql(args.input), lambda m: print(m, file=sys.stderr))
    finally:
        con.close()


def build_parser(stages: bool = True) -> argparse.ArgumentParser:
    """The whole command line; without ``stages`` the registered stages' subcommands of ``stage`` are
    left out (importing the registry costs ~0.3 s, which the other commands, e.g. ``trace``, need not pay)."""
    p = argparse.ArgumentParser(prog="dataset-platform", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}",
                   help="print the installed version and exit")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="materialise the whole graph on the built-in demo site (offline)")
    d.add_argument("--workdir", default=None, help=f"where everything is written (default ./{DEFAULT_WORKDIR})")

    r = sub.add_parser("run", help="materialise the whole graph for your sources.yaml")
    workdir_help = f"the work folder: warehouse, layers, releases, runs (default ./{DEFAULT_WORKDIR})"
    r.add_argument("--config", required=True, help="path to sources.yaml")
    r.add_argument("--workdir", default=None, help=workdir_help)

    u = sub.add_parser("ui", help="open the Dagster UI on this workdir (dagster dev -w workspace.yaml)")
    u.add_argument("--config", default=None, help="path to sources.yaml (default: the built-in demo's)")
    u.add_argument("--workdir", default=None, help=workdir_help)
    for cmd in (d, r, u):
        cmd.add_argument("--executor", choices=("local", "ray"), default=None,
                         help="where the per-batch stages' parts run (overrides pipeline.executor): processes "
                              "of this machine, or tasks on the Ray cluster at pipeline.ray.address / $RAY_ADDRESS")
    u.add_argument("--host", default="127.0.0.1", help="address the web UI listens on (default 127.0.0.1: this machine only)")
    u.add_argument("--port", type=int, default=3000, help="port of the web UI (default 3000)")
    from dataset_platform.inspect.cli import add_inspect_commands

    add_inspect_commands(sub)  # sql, status, trace

    t = sub.add_parser("takedown", help="takedown requests: check them, or revise published versions without "
                                         "their documents")
    ts = t.add_subparsers(dest="takedown_command", required=True)
    tc = ts.add_parser("check", help="validate takedowns.yaml and the files in <workdir>/inbox/takedowns/")
    tr = ts.add_parser("revise", help="write each listed release version again without the documents of the "
                                      "takedown requests (new version ids); the old versions are marked superseded "
                                      "and their data files deleted")
    tr.add_argument("--release", action="append", required=True, metavar="VERSION",
                    help="a published version to revise (repeatable)")
    for cmd in (tc, tr):
        cmd.add_argument("--config", required=True, help="path to sources.yaml (names the takedowns file)")
        cmd.add_argument("--workdir", default=None, help=workdir_help)

    s = sub.add_parser("stage", help="run one stage's library code on files (JSONL or Parquet)")
    ss = s.add_subparsers(dest="stage_name", required=True)
    g = ss.add_parser("ingest", help="land a WARC / JSONL / Parquet file as landed records (dataset_platform/contracts/records.py)")
    g.add_argument("--input", required=True, help=".warc(.gz), .jsonl(.gz) or .parquet file")
    g.add_argument("--output", required=True,
                   help=".parquet/.jsonl: the landed rows with source, crawl_id, seq and id (input of "
                        "`stage extract`; the pipeline lands a file as such a .parquet batch); .jsonl.gz: "
                        "the gzip JSON Lines batch earlier versions landed")
    g.add_argument("--kind", choices=("warc", "jsonl", "parquet"), default=None,
                   help="file kind (default: from the input's name)")
    g.add_argument("--source", default="local", help="source name used in the batch id and document ids")
    g.add_argument("--field", action="append", metavar="OURS=THEIRS",
                   help="JSONL/Parquet field mapping, e.g. --field text=body --field url=link (repeatable)")
    if stages:
        from dataset_platform.stages.registry import STAGES
    for st in STAGES if stages else ():
        x = ss.add_parser(st.name, help=f"{st.description} Input fields: {', '.join(st.requires)}"
                                        + (f" (optional: {', '.join(st.passthrough)})" if st.passthrough else ""))
        x.add_argument("--input", required=True, help=".parquet or .jsonl (optionally .gz)")
        x.add_argument("--output", required=True, help="the kept rows: .parquet or .jsonl")
        x.add_argument("--rejected", default=None, help="write dropped documents with stage, rule, value")
        x.add_argument("--config", required=st.cli_needs_config, default=None,
                       help="sources.yaml whose pipeline settings to use" + ("" if st.cli_needs_config else
                                                                              " (default: the defaults)"))
        for opt in st.cli_options:
            x.add_argument(opt.flag, **opt.kwargs)
    x = ss.add_parser("split", help="input fields: id, url (optional: cluster_id or content_hash, the stratify_by "
                                    "label column); writes train/validation/test.parquet and assignments.parquet")
    x.add_argument("--input", required=True, help=".parquet or .jsonl (optionally .gz)")
    x.add_argument("--output-dir", required=True, help="folder for train/validation/test.parquet and assignments.parquet")
    x.add_argument("--config", required=True, help="sources.yaml whose pipeline.splits to use")
    x.add_argument("--previous", default=None, help="assignments.parquet of an earlier run: those documents keep their split")
    x = ss.add_parser("redact", help="input fields: id, text; output id, text (PII redacted) and "
                                     "pii: [{type, start, end}] (character offsets into the input text)")
    x.add_argument("--input", required=True, help=".parquet or .jsonl (optionally .gz) with id, text")
    x.add_argument("--output", required=True, help=".parquet or .jsonl (format chosen by the extension)")
    return p


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dataset_platform")
    except PackageNotFoundError:  # run from a checkout that was not installed
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    """The ``dataset-platform`` command. Called without ``argv`` (the installed command), the
    process ends as soon as the command is done: Python's own shutdown would free every object of
    GX, Dagster, scikit-learn and pandas one by one (5-6 s after a run) and make compiled
    extensions print "leaked instance" noise; output and logs are flushed first."""
    rc = _main(argv)
    if argv is not None:
        return rc
    import logging as _logging

    worker = sys.modules.get("dataset_platform.checks.gx_worker")
    if worker is not None:  # stop it cleanly once its queued pages are written
        worker.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    _logging.shutdown()
    os._exit(rc)


def _main(argv: list[str] | None) -> int:
    words = sys.argv[1:] if argv is None else argv
    args = build_parser(stages=bool(words) and words[0] == "stage").parse_args(argv)
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    try:
        if getattr(args, "executor", None):
            from dataset_platform.config import EXECUTOR_ENV

            os.environ[EXECUTOR_ENV] = args.executor  # (Dagster's code server and its runs inherit it)
        if args.command == "demo":
            return run_pipeline(demo_config_path(), args.workdir)
        if args.command == "run":
            return run_pipeline(Path(args.config), args.workdir)
        if args.command == "ui":
            return _cmd_ui(args)
        if args.command == "takedown":
            return _cmd_takedown(args)
        if args.command in ("sql", "status", "trace"):
            from dataset_platform.inspect.cli import run_inspect_command

            return run_inspect_command(args)
        return _cmd_stage(args)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    main()
