"""Materialise any registered stage over its input layer, part by part.

``materialise(stage, cfg, wd)`` is all a Dagster asset, the CLI or a test calls. It reads the
input layer's parts (the raw layer's: one folder per source), and:

* a **per-batch** stage runs on each input part that is new or changed and on nothing else: a
  part whose expected chain (the stage's fingerprint over the input part's chain) and input ids
  are what its output part records is skipped; one whose chain is the same but whose input gained
  or lost ids is completed (only the new ids run; rows of ids that left are dropped); any other is
  computed whole. Output parts of input parts that are gone are dropped.
* a **global** stage (dedup) runs once over the whole input layer and hands back which ids stay
  (with the columns it adds); each input part's output part is rewritten only when the ids it
  keeps changed, or its input part's chain did.

Each part's files are staged and the layer committed once (``storage.batched``): a killed run
leaves the layer as it was, and a run of the same work later adopts the parts it had staged.
Nothing here imports Dagster.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa

from dataset_platform import procs
from dataset_platform.config import PlatformConfig
from dataset_platform.contracts.schema import LABELLED_LAYERS
from dataset_platform.stages import takedown
from dataset_platform.stages.base import (
    AccountingError,
    Prepared,
    Stage,
    StageContext,
    StageResult,
    available_cpus,
    chain_of,
)
from dataset_platform.stages.registry import STAGES
from dataset_platform.stages.registry import stage as stage_named
from dataset_platform.storage import (
    empty_layer_query,
    ensure_view,
    files_sql,
    layer_view_sql,
    memory_connection,
    parquet_rows,
    sql_str,
    write_parquet,
)
from dataset_platform.storage.batched import DATA, NO_IDS, REJECTED, BatchedLayer, PartInfo, ids_fingerprint
from dataset_platform.workdir import Workdir

Log = Callable[[str], None]
#: the chain of a global stage's parts does not hold its settings (they decide which rows stay,
#: not what a row holds): membership is tracked by the part's input ids
GLOBAL_CHAIN_VERSION = "1"
#: a stage with ``parallel_parts`` runs its parts on worker processes from this many rows to do
#: (starting a worker costs about a second of imports)
PARALLEL_MIN_ROWS = 20_000


def _noop(_m: str) -> None:
    pass


def throttled(log: Log, every_s: float = 10.0) -> Log:
    """``log`` for a stage's own lines: a line that repeats an earlier one with other numbers (a
    progress line) passes at most every ``every_s`` seconds; any other line passes. (Each line
    is an event in Dagster's event log: ~15 ms each, and a 1 M-document run printed thousands.)"""
    import re

    last: dict[str, float] = {}

    def emit(msg: str) -> None:
        kind = re.sub(r"\d+(\.\d+)?", "#", msg)
        now = time.monotonic()
        if now - last.get(kind, -every_s) >= every_s:
            last[kind] = now
            log(msg)

    return emit


@dataclass
class LayerResult:
    """What a materialisation wrote: ``rows`` of the layer, ``stage`` the totals over the whole
    layer (every part), ``counters`` this run's work (parts computed, completed, reused, dropped;
    rows computed) and the stage's own counters."""

    layer: str
    rows: int
    path: Path
    stage: StageResult | None = None
    counters: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def processed_rows(self) -> int:
        return int(self.counters.get("rows_computed", self.stage.input_rows if self.stage else self.rows))

    @property
    def docs_per_s(self) -> float:
        return self.processed_rows / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict:
        """As plain JSON data (a materialisation run as a Ray job sends it back this way)."""
        return {"layer": self.layer, "rows": self.rows, "path": str(self.path),
                "stage": _jsonable(asdict(self.stage)) if self.stage is not None else None,
                "counters": _jsonable(self.counters), "seconds": self.seconds}

    @classmethod
    def from_json(cls, data: dict) -> LayerResult:
        stage = StageResult(**data["stage"]) if data.get("stage") else None
        return cls(data["layer"], int(data["rows"]), Path(data["path"]), stage, dict(data.get("counters") or {}),
                   float(data.get("seconds") or 0.0))


# ------------------------------------------------------------------ inputs


@dataclass(frozen=True)
class InputPart:
    key: str  # <source>/<part>
    info: PartInfo
    file: Path


@contextlib.contextmanager
def open_input(cfg: PlatformConfig, wd: Workdir, layer: str):
    """The live parts of ``layer`` by key, holding the layer's writer lock(s) (a writer of the
    input waits until this stage has read it; the raw layer: one lock per configured source)."""
    with contextlib.ExitStack() as stack:
        parts: dict[str, InputPart] = {}
        if layer == "raw_pages":
            for source in sorted(s.name for s in cfg.sources):
                folder = wd.raw_source(source)
                if not (folder / "manifest.json").exists():
                    continue
                bl = stack.enter_context(BatchedLayer(folder, f"raw_pages/{source}").locked())
                for k, info in bl.parts.items():
                    parts[f"{source}/{k}"] = InputPart(f"{source}/{k}", info, bl.file(k))
        else:
            folder = wd.layer_dir(layer)
            if (folder / "manifest.json").exists():
                bl = stack.enter_context(BatchedLayer(folder, layer).locked())
                for k, info in bl.parts.items():
                    parts[k] = InputPart(k, info, bl.file(k))
        yield dict(sorted(parts.items()))


def input_sql(parts: dict[str, InputPart], layer: str, label_sets=()) -> str:
    files = [p.file for p in parts.values()]
    return files_sql(files) if files else f"({empty_layer_query(layer, label_sets)})"


# ------------------------------------------------------------------ materialise


def warm_up(cfg: PlatformConfig) -> threading.Thread:
    """Run every stage's ``warm`` (first-use costs) on a daemon thread, in graph order: started when
    a run begins, it overlaps the waits of the raw layer and of the first checks. With the Ray
    executor the thread connects to the cluster and warms its workers instead (``ray_tasks.warm``).
    A warm-up that fails changes nothing: the stage pays the cost itself when it runs."""

    def warm() -> None:
        if cfg.pipeline.executor == "ray":  # the stages run on the cluster: warm its workers
            from dataset_platform.cluster import ray_tasks

            with contextlib.suppress(Exception):  # (unreachable: the first step says so, with what to do)
                ray_tasks.warm(cfg)
            return  # (their costs are the workers', not this process's)
        for st in STAGES:
            if st.warm is not None:
                with contextlib.suppress(Exception):
                    st.warm(st.settings(cfg.pipeline))
        # what the warm-up imported stays, as the start-up's heap: out of full collections too
        # (at 100k one took 0.04-0.05 s of a +1 % refresh's dedup step without this)
        procs.freeze_start_up_heap("warm-up")

    th = threading.Thread(target=warm, name="stage-warm-up", daemon=True)
    th.start()
    return th


def materialise(stage: Stage | str, cfg: PlatformConfig, wd: Workdir, log: Log = _noop,
                on_commit: Callable[[], None] | None = None) -> LayerResult:
    """Bring ``stage``'s output layer up to date with its input layer (see the module docstring).
    ``on_commit``: called once the output layer's parts are committed (or found up to date), before
    the stage's ``finish`` and the warehouse views: work on the committed files starts there (the
    asset step starts its layers' suite checks, which then overlap the rest of the step)."""
    stage = stage_named(stage) if isinstance(stage, str) else stage
    t0 = time.monotonic()
    wd.ensure()
    settings = stage.settings(cfg.pipeline)
    limit = stage.memory_limit(settings) if stage.memory_limit and settings is not None else cfg.pipeline.memory_limit
    spill = wd.spill(stage.name)
    spill.mkdir(parents=True, exist_ok=True)  # DuckDB does not create the parent of its spill folder
    con = memory_connection(memory_limit=limit, temp_dir=spill)
    ctx = StageContext(con, settings, cfg, throttled(log), batch_size=cfg.pipeline.batch_size, workdir=wd,
                       pool_factory=_pool_factory(stage, settings))
    label_sets = cfg.label_set_names if stage.output in LABELLED_LAYERS else ()
    try:
        with open_input(cfg, wd, stage.input) as inputs, \
                BatchedLayer(wd.layer_dir(stage.output), stage.output).locked() as out:
            prepared = stage.prepare(ctx) if stage.prepare else Prepared()
            ctx.state = prepared.state
            takedowns = ""
            if stage.per_batch:
                counters, global_result = _per_batch(stage, ctx, inputs, out, prepared, label_sets), None
                # takedown requests: a filter over the parts, outside the chain (stages/takedown.py)
                counters["takedown"], takedowns = takedown.enforce(stage, ctx, out, label_sets,
                                                                   first=stage.name == STAGES[0].name, inputs=inputs)
            else:
                counters, global_result = _global(stage, ctx, inputs, out, label_sets)
            counters["prepared"] = prepared.counters
            extra = {"stage": stage.name, "prepared": _jsonable(prepared.counters)}
            if takedowns:
                extra["takedowns"] = takedowns
            if global_result is not None:
                extra["result"] = {"input": global_result.input_rows, "kept": global_result.kept_rows,
                                   "rejected": global_result.rejected_rows, "reasons": global_result.reasons,
                                   "extra": global_result.extra}
            if out.pending or not out.exists() or out.extra != extra:
                out.commit(extra=extra)
            if on_commit is not None:
                try:  # (a head start for the caller: its failure must not fail the committed stage)
                    on_commit()
                except Exception as e:
                    log(f"{stage.name}: on_commit failed ({type(e).__name__}: {e}); the layer is committed")
            if stage.finish:
                counters["finish"] = stage.finish(ctx, out)
            total = _totals(stage, out, global_result)
    finally:
        ctx.close()
        con.close()
    seconds = time.monotonic() - t0
    log(f"{stage.name}: {counters['parts_computed']} part(s) computed, {counters['parts_completed']} completed, "
        f"{counters['parts_reused']} unchanged, {counters['parts_dropped']} dropped; "
        f"{counters['rows_computed']} rows computed in {seconds:.1f}s; {total.summary()}"
        + (f"; {r['tasks']} Ray task(s) on {r['workers']} worker(s) of {r['nodes']} node(s), "
           f"peak RSS of a task {r['peak_task_rss_mb']:.0f} MB (task memory {r['task_memory_mb']:.0f} MB; "
           f"{r.get('peak_task', '')}; {r.get('peak_task_held_mb', 0):.0f} MB held when it started)"
           if (r := counters.get("ray")) else ""))
    result = LayerResult(stage.output, total.kept_rows, wd.layer_dir(stage.output), stage=total, counters=counters,
                         seconds=seconds)
    publish_views(wd, stage, label_sets)
    return result


def publish_views(wd: Workdir, stage: Stage, label_sets=()) -> None:
    ensure_view(wd, stage.output, layer_view_sql(wd, stage.output, label_sets))
    for name in stage.also_writes:
        if wd.layer(name).exists():
            ensure_view(wd, name, f"read_parquet({sql_str(wd.layer(name))})")


def _pool_factory(stage: Stage, settings):
    """The stage's shared pool, started on first use (``Stage.new_pool``); None with one worker."""
    workers = getattr(settings, "workers", None) or available_cpus()
    if stage.new_pool is None or settings is None or workers <= 1:
        return None
    return lambda: stage.new_pool(settings)


# ------------------------------------------------------------------ per-batch stages


def _per_batch(stage: Stage, ctx: StageContext, inputs: dict[str, InputPart], out: BatchedLayer,
               prepared: Prepared, label_sets) -> dict:
    fp = stage.fingerprint(ctx.settings, prepared.fingerprint)
    c = {"parts_computed": 0, "parts_completed": 0, "parts_reused": 0, "parts_adopted": 0, "parts_dropped": 0,
         "rows_computed": 0}
    todo = []
    for key, part in inputs.items():
        chain = chain_of(fp, part.info.chain)
        old = out.parts.get(key)
        if old is not None and old.chain == chain and old.input_ids == part.info.ids:
            c["parts_reused"] += 1
        elif out.adopt(key, chain, part.info.ids) is not None:
            c["parts_adopted"] += 1
        else:
            todo.append((part, chain, old if old is not None and old.chain == chain else None))
    rows = sum(part.info.rows for part, _c, _o in todo)
    workers = min(len(todo), available_cpus()) if stage.parallel_parts and rows >= PARALLEL_MIN_ROWS else 1
    placement: dict | None = None  # (pipeline.executor: ray) where each part ran
    if todo and ctx.config is not None and ctx.config.pipeline.executor == "ray":  # each part a Ray task
        from dataset_platform.cluster.ray_tasks import run_parts

        placement = {}
        results = run_parts(stage.name, ctx.config, str(ctx.workdir.root), str(out.folder), label_sets, ctx.state,
                            todo, placement)
    elif workers > 1:  # the parts on worker processes, each with its own DuckDB (the stage is single-threaded)
        results = _parts_on_workers(stage, ctx, out, todo, label_sets, workers)
    else:
        results = (_write_part(stage, ctx, out, part, chain, old, label_sets) for part, chain, old in todo)
    for i, ((part, _chain, old), (info, n)) in enumerate(zip(todo, results, strict=True), 1):
        out.staged(info)
        c["rows_computed"] += n
        c["parts_completed" if old is not None else "parts_computed"] += 1
        ctx.log(f"{stage.name}: part {i}/{len(todo)} {part.key}: {n} rows computed"
                + (" (completing a part whose input changed)" if old is not None else ""))
    if placement is not None:
        from dataset_platform.cluster.ray_tasks import placement_summary

        c["ray"] = placement_summary(placement, ctx.config.pipeline.ray)
    for key in list(out.parts):
        if key not in inputs:
            out.drop(key)
            c["parts_dropped"] += 1
    return c


def _write_part(stage: Stage, ctx: StageContext, out: BatchedLayer, part: InputPart, chain: str,
                old: PartInfo | None, label_sets) -> tuple[PartInfo, int]:
    """Compute one part (or complete it: ``old`` is its current version, computed the same way)
    into the staging area; returns what the part records and the rows the stage ran on (the
    caller records it as staged)."""
    con = ctx.con
    src = f"read_parquet({sql_str(part.file)})"
    con.sql(f"CREATE OR REPLACE TEMP VIEW _part_in AS SELECT * FROM {src}")
    old_files = {}
    if old is not None:
        old_files = {name: out.file(part.key, name) for name in (DATA, REJECTED, *_extra_files(stage))}
        old_ids = " UNION ALL ".join(f"SELECT id FROM read_parquet({sql_str(f)})"
                                     for n, f in old_files.items() if n in (DATA, REJECTED) and f.exists())
        con.sql(f"CREATE OR REPLACE TEMP TABLE _part_old_ids AS {old_ids or 'SELECT NULL::VARCHAR AS id WHERE false'}")
        con.sql("CREATE OR REPLACE TEMP VIEW _part_todo AS SELECT * FROM _part_in p "
                "ANTI JOIN _part_old_ids o ON o.id = p.id")
    todo = "_part_todo" if old is not None else "_part_in"
    n_todo = int(con.sql(f"SELECT count(*) FROM {todo}").fetchall()[0][0])
    staging = out.stage(part.key)
    outputs = {}
    if n_todo:
        res = stage.run(ctx, todo)
        outputs = {DATA: res.kept, REJECTED: res.rejected, **{f"{k}.parquet": v for k, v in res.extra.items()}}
    for name in (DATA, REJECTED, *_extra_files(stage)):
        layer = stage.output if name == DATA else ("rejected_documents" if name == REJECTED else None)
        parts_sql = []
        if name in outputs:
            parts_sql.append(f"SELECT * FROM ({outputs[name].sql_query()})")
        if old is not None and old_files.get(name) is not None and old_files[name].exists():
            parts_sql.append(f"SELECT o.* FROM read_parquet({sql_str(old_files[name])}) o "
                             "SEMI JOIN _part_in p ON p.id = o.id")
        if not parts_sql:
            if name == DATA:
                parts_sql.append(empty_layer_query(stage.output, label_sets))
            elif name == REJECTED:
                parts_sql.append(empty_layer_query("rejected_documents"))
            else:
                continue  # (an extra file the stage did not return)
        order = "id, rule" if name == REJECTED else "id" if name == DATA else "ALL"
        query = " UNION ALL BY NAME ".join(f"({q})" for q in parts_sql) + f" ORDER BY {order}"
        write_parquet(con, query, staging / name, layer=layer, label_sets=label_sets if layer else ())
    kept = parquet_rows(staging / DATA)
    rejected_sql = f"read_parquet({sql_str(staging / REJECTED)})"
    reasons = dict(con.sql(f"SELECT rule, count(*) FROM {rejected_sql} GROUP BY 1 ORDER BY 1").fetchall())
    rejected = sum(reasons.values())
    if kept + rejected != part.info.rows:
        raise AccountingError(f"{stage.name}: part {part.key}: {part.info.rows} documents in, but {kept} kept + "
                              f"{rejected} rejected")
    extra = stage.summarise(con, f"read_parquet({sql_str(staging / DATA)})", rejected_sql) if stage.summarise else {}
    info = PartInfo(
        part.key, chain=chain, ids=ids_fingerprint(con, f"SELECT id FROM read_parquet({sql_str(staging / DATA)})"),
        input_ids=part.info.ids, rows=kept,
        counters={"input": part.info.rows, "kept": kept, "rejected": rejected,
                  "reasons": {k: int(v) for k, v in reasons.items()}, "extra": extra},
    )
    return info, n_todo


def _parts_on_workers(stage: Stage, ctx: StageContext, out: BatchedLayer, todo: list, label_sets, workers: int):
    """Results of :func:`_write_part` for each part of ``todo``, in order, computed by ``workers``
    spawned processes (each part is a task: the unit of work a cluster scheduler would take)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from dataset_platform.stages.base import exit_with_parent

    common = (stage.name, ctx.config, str(ctx.workdir.root), str(out.folder), label_sets, ctx.state)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=exit_with_parent) as pool:
        futures = [pool.submit(part_task, *common, part, chain, old) for part, chain, old in todo]
        for f in futures:
            yield f.result()


def part_task(stage_name: str, cfg: PlatformConfig, root: str, folder: str, label_sets, state, part: InputPart,
              chain: str, old: PartInfo | None) -> tuple[PartInfo, int]:
    """One part of a per-batch stage, in a process of its own: its own DuckDB connection, the
    state the stage prepared, the part's files staged in the layer's staging area."""
    stage = stage_named(stage_name)
    wd = Workdir(Path(root))
    settings = stage.settings(cfg.pipeline)
    con = memory_connection(available_cpus(), memory_limit=cfg.pipeline.memory_limit, temp_dir=wd.spill(stage.name))
    ctx = StageContext(con, settings, cfg, _noop, batch_size=cfg.pipeline.batch_size, state=state, workdir=wd)
    try:
        return _write_part(stage, ctx, BatchedLayer(Path(folder), stage.output), part, chain, old, label_sets)
    finally:
        con.close()


def _extra_files(stage: Stage) -> tuple[str, ...]:
    return tuple(f"{k}.parquet" for k in stage.extra_outputs) if stage.per_batch else ()


# ------------------------------------------------------------------ global stages


def _global(stage: Stage, ctx: StageContext, inputs: dict[str, InputPart], out: BatchedLayer,
            label_sets) -> tuple[dict, StageResult]:
    con, wd = ctx.con, ctx.workdir
    placement: dict | None = None  # (pipeline.executor: ray) where each of the stage's tasks ran
    if ctx.config is not None and ctx.config.pipeline.executor == "ray":
        from dataset_platform.cluster.ray_tasks import tasks

        placement = {}
        ctx.tasks = tasks(ctx.config, stage.name, placement)
    ctx.input_files = [str(p.file) for p in inputs.values()]
    res = stage.run(ctx, input_sql(inputs, stage.input))
    con.sql(f"CREATE OR REPLACE TEMP TABLE _decision AS SELECT * FROM ({res.kept.sql_query()})")
    write_parquet(con, f"SELECT * FROM ({res.rejected.sql_query()}) ORDER BY id, rule", wd.rejects(stage.name),
                  layer="rejected_documents", unless_same=True)
    for name, rel in res.extra.items():
        write_parquet(con, f"SELECT * FROM ({rel.sql_query()}) ORDER BY ALL", wd.layer(name), layer=name,
                      unless_same=True)
    # which part each input id is in, and the fingerprint of the ids each part keeps
    paths = pa.table({"filename": [str(p.file) for p in inputs.values()], "key": list(inputs)})
    con.register("_part_files", paths)
    if inputs:
        con.sql(f"CREATE OR REPLACE TEMP TABLE _kept_by_part AS SELECT f.key, d.* FROM "
                f"read_parquet([{', '.join(sql_str(p.file) for p in inputs.values())}], filename = true) i "
                "JOIN _part_files f ON f.filename = i.filename JOIN _decision d ON d.id = i.id")
    else:
        con.sql("CREATE OR REPLACE TEMP TABLE _kept_by_part AS SELECT NULL::VARCHAR AS key, * FROM _decision WHERE false")
    con.unregister("_part_files")
    from dataset_platform.storage.batched import ids_fingerprints

    kept_ids = ids_fingerprints(con, "SELECT key, id FROM _kept_by_part")
    version = chain_of(stage.name, GLOBAL_CHAIN_VERSION + ":" + stage.version)
    c = {"parts_computed": 0, "parts_completed": 0, "parts_reused": 0, "parts_adopted": 0, "parts_dropped": 0,
         "rows_computed": res.result.input_rows}
    added = [col for col in con.sql("SELECT * FROM _decision LIMIT 0").columns if col != "id"]
    todo = []  # (key, input part, chain, kept ids): the output parts to write
    for key, part in inputs.items():
        chain, want = chain_of(version, part.info.chain), kept_ids.get(key, NO_IDS)
        old = out.parts.get(key)
        if old is not None and old.chain == chain and old.input_ids == want:
            c["parts_reused"] += 1
            continue
        if out.adopt(key, chain, want) is not None:
            c["parts_adopted"] += 1
            continue
        todo.append((key, part, chain, want))
    # each a task of the stage's Tasks when they run on a cluster (the decision applied to a part
    # where the part is read, not in this process), else here
    on_cluster = ctx.tasks is not None and ctx.tasks.where != "local" and len(todo) > 1
    kept_of = lambda key: f"(SELECT * EXCLUDE (key) FROM _kept_by_part WHERE key = {sql_str(key)})"
    dests = {key: str(out.stage(key) / DATA) for key, *_ in todo}
    if on_cluster:
        written = ctx.tasks.run(apply_decision, [
            (str(part.file), con.sql(f"SELECT * FROM {kept_of(key)}").to_arrow_table(), added, dests[key], stage.output,
             tuple(label_sets or ()), ctx.tasks.memory_bytes) for key, part, _c, _w in todo])
    else:
        written = (_apply_decision(con, kept_of(key), str(part.file), added, dests[key], stage.output, label_sets)
                   for key, part, _c, _w in todo)
    for (key, part, chain, want), rows in zip(todo, written, strict=True):
        out.staged(PartInfo(key, chain=chain, ids=want, input_ids=want, rows=rows,
                            counters={"input": part.info.rows, "kept": rows, "rejected": part.info.rows - rows}))
        c["parts_computed"] += 1
    for key in list(out.parts):
        if key not in inputs:
            out.drop(key)
            c["parts_dropped"] += 1
    if res.commit is not None:
        res.commit()  # the stage's own state, before the layer: a rerun finds the same decision
    if placement:
        from dataset_platform.cluster.ray_tasks import placement_summary

        c["ray"] = placement_summary(placement, ctx.config.pipeline.ray)
    return c, res.result


def _apply_decision(con, kept: str, input_file: str, added: list[str], dest: str, layer: str, label_sets) -> int:
    """Write the rows of ``input_file`` whose ids ``kept`` (id and the ``added`` columns) holds,
    with those columns, into ``dest`` (id order); returns the rows written."""
    select = ", ".join(f'k."{a}"' for a in added)
    return write_parquet(
        con, f"SELECT i.*{', ' + select if select else ''} FROM read_parquet({sql_str(input_file)}) i "
             f"JOIN {kept} k ON k.id = i.id ORDER BY i.id", Path(dest), layer=layer, label_sets=label_sets)


def apply_decision(item: tuple) -> int:
    """:func:`_apply_decision` as a task (``item``: the input part's file, its kept rows as an
    Arrow table, the added columns, the destination, the layer, its label sets, the task's memory
    in bytes), on a DuckDB connection of its own."""
    input_file, kept, added, dest, layer, label_sets, memory_bytes = item
    con = memory_connection(threads=1, memory_limit=f"{max(memory_bytes // 10**6, 100)}MB")
    try:
        # a table, as in the run's process (DuckDB writes a column without NULLs in a table as a
        # required Parquet field; from the Arrow table it would be an optional one)
        con.register("_kept_arrow", kept)
        con.sql("CREATE TEMP TABLE _kept AS SELECT * FROM _kept_arrow")
        con.unregister("_kept_arrow")
        return _apply_decision(con, "_kept", input_file, added, dest, layer, label_sets)
    finally:
        con.close()


# ------------------------------------------------------------------ totals


def _totals(stage: Stage, out: BatchedLayer, global_result: StageResult | None) -> StageResult:
    """The stage's counters over the whole layer, from what each part records."""
    if not stage.per_batch:
        r = out.extra.get("result") or {}
        return StageResult(stage.name, int(r.get("input", 0)), out.rows(), int(r.get("rejected", 0)),
                           dict(r.get("reasons", {})), dict(r.get("extra", {})))
    inp = kept = rej = 0
    reasons: dict[str, int] = {}
    extra: dict[str, float] = {}
    for p in out.parts.values():
        pc = p.counters
        inp += int(pc.get("input", 0))
        kept += int(pc.get("kept", 0))
        rej += int(pc.get("rejected", 0))
        for k, v in pc.get("reasons", {}).items():
            reasons[k] = reasons.get(k, 0) + int(v)
        for k, v in pc.get("extra", {}).items():
            extra[k] = extra.get(k, 0) + v
    return StageResult(stage.name, inp, kept, rej, dict(sorted(reasons.items())), dict(sorted(extra.items())))


def layer_totals(wd: Workdir, stage: Stage | str) -> StageResult | None:
    """The totals of a stage's layer as its manifest records them (None before its first run)."""
    stage = stage_named(stage) if isinstance(stage, str) else stage
    folder = wd.layer_dir(stage.output)
    if not (folder / "manifest.json").exists():
        return None
    bl = BatchedLayer(folder, stage.output)
    meta = bl._read_manifest()
    bl.parts = {k: PartInfo.from_json({**v, "key": k}) for k, v in meta.get("parts", {}).items()}
    bl.extra = meta.get("extra", {})
    return _totals(stage, bl, None)


def layer_extra(wd: Workdir, layer: str) -> dict:
    """What a layer's manifest records beside its parts (the stage's prepared counters, ...)."""
    import json

    f = wd.layer_dir(layer) / "manifest.json"
    return json.loads(f.read_text(encoding="utf-8")).get("extra", {}) if f.exists() else {}


def _jsonable(obj):
    import json

    return json.loads(json.dumps(obj, default=str))




# ------------------------------------------------------------------ the rejects of every stage


def rejected_files(wd: Workdir) -> list[str]:
    """Patterns of every stage's rejects: per-batch stages keep theirs in each part, a global
    stage in one file."""
    out = []
    for st in STAGES:
        if st.per_batch:
            if wd.layer_files(st.output, REJECTED):
                out.append(wd.layer_glob(st.output, REJECTED))
        elif wd.rejects(st.name).exists():
            out.append(str(wd.rejects(st.name)))
    return out


def rejected_sql(wd: Workdir) -> str:
    """The rejected_documents relation (every stage's rejects), or an empty one."""
    files = rejected_files(wd)
    if not files:
        return f"({empty_layer_query('rejected_documents')})"
    return "read_parquet([" + ", ".join(sql_str(f) for f in files) + "])"


def materialise_rejected(cfg: PlatformConfig, wd: Workdir, log: Log = _noop) -> LayerResult:
    """rejected_documents: a view over every stage's rejects (nothing is copied); its counts come
    from the layers' manifests."""
    from dataset_platform.stages.registry import order_of

    t0 = time.monotonic()
    reasons = []
    for st in STAGES:
        t = layer_totals(wd, st)
        if t is not None:
            reasons += [[st.name, rule, int(n)] for rule, n in sorted(t.reasons.items())]
    reasons.sort(key=lambda r: (order_of(r[0]), r[1]))
    rows = sum(r[2] for r in reasons)
    ensure_view(wd, "rejected_documents", rejected_sql(wd))
    log(f"rejected_documents: {rows} documents dropped, " + ", ".join(f"{s}.{r} {n}" for s, r, n in reasons))
    return LayerResult("rejected_documents", rows, wd.layers, counters={"reasons": reasons},
                       seconds=time.monotonic() - t0)
