"""What every stage shares: the :class:`Stage` it is declared as, the context it runs in, what it
hands back, and the accounting of every document.

A stage is a function over a DuckDB relation: ``run(ctx, input_sql) -> StageOutput``. It works on
``ctx.con`` (a private DuckDB connection) and hands back two relations, ``kept`` (the documents
that go on) and ``rejected`` (id, source, url, stage, rule, value), plus its counters. Nothing is
dropped without a row in ``rejected``: ``input_rows == kept_rows + rejected_rows`` is checked here
(:func:`finish_stage`) and again as a Dagster asset check.

A **per-batch** stage (``per_batch=True``) is a pure function of each document and the stage's
settings (and of what :attr:`Stage.prepare` returns once per materialisation, e.g. a trained
model): the runner (``dataset_platform.runner``) calls it on each part of its input layer that is
new or changed, and on nothing else. A **global** stage (dedup) sees the whole layer; what it keeps
is applied to each part. Nothing here imports Dagster.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import duckdb

Log = Callable[[str], None]


class AccountingError(RuntimeError):
    """A stage lost or invented documents."""


@dataclass
class StageResult:
    stage: str
    input_rows: int
    kept_rows: int
    rejected_rows: int
    reasons: dict[str, int] = field(default_factory=dict)  # rule -> rejected count
    extra: dict[str, int | float] = field(default_factory=dict)  # stage-specific counters

    @property
    def balanced(self) -> bool:
        return self.input_rows == self.kept_rows + self.rejected_rows

    def summary(self) -> str:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.reasons.items())) or "none"
        return f"{self.stage}: in {self.input_rows}, kept {self.kept_rows}, rejected {self.rejected_rows} ({reasons})"


@dataclass
class StageContext:
    """What a stage runs with. ``settings`` is the stage's own part of ``pipeline`` (see
    :attr:`Stage.settings`); ``config`` the whole config when there is one (the CLI on files may
    have none); ``state`` what :attr:`Stage.prepare` returned; ``pool`` a process pool shared by
    every part of one materialisation (see :meth:`pool`)."""

    con: duckdb.DuckDBPyConnection
    settings: Any = None
    config: Any = None
    log: Log = lambda _m: None
    batch_size: int = 2000
    state: Any = None
    workdir: Any = None  # dataset_platform.workdir.Workdir, for stages keeping state beside their layer
    #: makes the shared process pool on first use (None: stages start their own when they need one)
    pool_factory: Callable[[], Executor] | None = None
    #: where a global stage runs its independent tasks (None: in this process, see :class:`Tasks`)
    tasks: Tasks | None = None
    #: the input layer's part files, in the order the stage's input reads them (a global stage
    #: whose tasks run on a cluster may read them there; None: not from parts)
    input_files: list[str] | None = None
    _pool: Executor | None = field(default=None, repr=False)

    def pool(self) -> Executor | None:
        """The process pool shared by every part of this materialisation (started on first use)."""
        if self._pool is None and self.pool_factory is not None:
            self._pool = self.pool_factory()
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


@dataclass(frozen=True)
class Tasks:
    """How a global stage runs work it has cut into independent tasks (dedup's shards of band
    keys): ``run(fn, items)`` yields ``fn(item)`` for each item, in order; each task may use
    ``memory_bytes`` and ``threads``. By default the tasks run one after another in this process
    with every CPU; with ``pipeline.executor: ray`` each is a Ray task
    (``cluster.ray_tasks.tasks``). ``fn`` is a module-level function and the items plain data,
    so that a task can run in another process or on another machine."""

    memory_bytes: int
    threads: int
    run: Callable[[Callable[[Any], Any], list], Iterator[Any]] = lambda fn, items: map(fn, items)
    #: cut the work into at least this many tasks (the CPUs of a cluster; the cut never changes
    #: the result)
    min_tasks: int = 1
    where: str = "local"


@dataclass
class StageOutput:
    """What a stage hands back: relations on ``ctx.con`` (read them before the next stage call).

    ``kept``: the output layer's rows (any extra columns are dropped on write; a global stage
    returns its decision: the ids it keeps, with the columns it adds); ``rejected``: the rejected
    rows; ``extra``: further outputs, by name (per part files of a per-batch stage, e.g. the label
    stage's ``details``; layers of a global stage, e.g. ``duplicate_clusters``); ``commit``: called
    once every output is written (a global stage's own state, e.g. dedup's MinHash index)."""

    kept: duckdb.DuckDBPyRelation
    rejected: duckdb.DuckDBPyRelation
    result: StageResult
    extra: dict[str, duckdb.DuckDBPyRelation] = field(default_factory=dict)
    commit: Callable[[], None] | None = None


@dataclass(frozen=True)
class Prepared:
    """What a stage computes once per materialisation before its parts (a trained model, a
    benchmark index): ``state`` goes to every part's context; ``fingerprint`` enters every part's
    chain, so a different model reprocesses every part and the same one none."""

    state: Any = None
    fingerprint: str = ""
    counters: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CliOption:
    """A flag of the stage's ``dataset-platform stage <name>`` command beyond --input, --output,
    --rejected and --config: argparse keyword arguments, and (``output``) the name of an extra
    output of ``run`` that the flag names a file for."""

    flag: str
    kwargs: dict = field(default_factory=dict)
    output: str | None = None


#: settings that change how fast a stage runs, never what it writes (left out of fingerprints)
NOT_IN_FINGERPRINT = frozenset({"workers", "chunk_size", "memory_limit", "batch_size"})


@dataclass(frozen=True)
class Stage:
    """One step of the document graph: the registry (``stages/registry.py``) lists them in order,
    and the assets, the checks, the ``stage`` CLI commands and ``bench/`` loop over it."""

    name: str  # also rejected_documents.stage
    input: str  # the input layer
    output: str  # the layer it writes (stored by batch, like its input)
    settings: Callable[[Any], Any]  # PipelineSettings -> the stage's settings model
    run: Callable[[StageContext, str], StageOutput]  # (context, FROM-able input SQL) -> output
    per_batch: bool = True
    #: bump when the stage writes something else for the same input and settings
    version: str = "1"
    #: packages whose version enters the fingerprint (a new trafilatura may extract differently)
    libraries: tuple[str, ...] = ()
    prepare: Callable[[StageContext], Prepared] | None = None
    #: once every part is written: (context, output layer) -> counters for the layer's metadata
    finish: Callable[[StageContext, Any], dict] | None = None
    #: counters of one part from its written files: (con, kept SQL, rejected SQL) -> {name: number}
    summarise: Callable[[duckdb.DuckDBPyConnection, str, str], dict] | None = None
    #: further outputs ``run`` returns in ``extra``: per-part files of a per-batch stage (the label
    #: stage's ``details``), layers of a global stage (dedup's ``duplicate_clusters``)
    extra_outputs: tuple[str, ...] = ()
    #: further layers (assets) a materialisation of the stage writes, besides ``output``
    also_writes: tuple[str, ...] = ()
    #: columns the input must have (the CLI checks a file against them)
    requires: tuple[str, ...] = ("id", "text")
    description: str = ""
    #: DuckDB memory limit of the stage's connection, from its settings (beyond it: spill to disk)
    memory_limit: Callable[[Any], str | None] | None = None
    #: output columns copied from the input (NULL when it lacks them: a file of documents may
    #: carry only id and text, and the CLI then leaves them out of what it writes)
    passthrough: tuple[str, ...] = ()
    #: the CLI command's own flags, and how they change the settings: (args, settings) -> settings
    cli_options: tuple[CliOption, ...] = ()
    cli_settings: Callable[[Any, Any], Any] | None = None
    #: the CLI command needs --config (its settings have nothing useful by default)
    cli_needs_config: bool = False
    #: parts run on worker processes side by side (for a stage whose own work is single-threaded;
    #: a stage with its own process pool, as extract and clean, runs its parts one after another)
    parallel_parts: bool = False
    #: (settings) -> the worker processes the stage's parts share (``StageContext.pool``), for a
    #: stage that spreads its own work over processes (extract, clean); None: no shared pool
    new_pool: Callable[[Any], Any] | None = None
    #: (settings) -> None: pay the stage's first-use costs (imports, dictionaries, compiled patterns)
    #: ahead of time; the runner calls it on a background thread when a run starts (``warm_up``)
    warm: Callable[[Any], None] | None = None

    def fingerprint(self, settings: Any, prepared: str = "") -> str:
        """How this stage computes, as a string: name, version, settings (those that change the
        output), library versions and the prepared state's fingerprint."""
        return _digest({
            "stage": self.name, "version": self.version, "settings": settings_dict(settings),
            "libraries": {lib: _version_of(lib) for lib in self.libraries}, "prepared": prepared,
        })


def settings_dict(settings: Any) -> Any:
    if settings is None:
        return None
    data = settings.model_dump(mode="json") if hasattr(settings, "model_dump") else settings
    if isinstance(data, dict):
        return {k: v for k, v in sorted(data.items()) if k not in NOT_IN_FINGERPRINT}
    return data


def chain_of(stage_fingerprint: str, input_chain: str) -> str:
    """A part's chain: how it was computed, recursively up to the landed batch."""
    return _digest([stage_fingerprint, input_chain])


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _version_of(lib: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(lib)
    except PackageNotFoundError:
        return "absent"


def finish_stage(con: duckdb.DuckDBPyConnection, stage: str, *, input_rows: int,
                 kept_rows: int | None = None, kept: str = "kept", rejected: str = "rejected") -> StageResult:
    """Account for the stage (``kept_rows``: the kept count, when counting ``kept`` would cost a scan)."""
    n_kept = con.sql(f"SELECT count(*) FROM {kept}").fetchall()[0][0] if kept_rows is None else kept_rows
    reasons = dict(con.sql(f"SELECT rule, count(*) FROM {rejected} GROUP BY rule ORDER BY rule").fetchall())
    result = StageResult(stage, int(input_rows), int(n_kept), int(sum(reasons.values())), reasons)
    if not result.balanced:
        raise AccountingError(
            f"{stage}: {input_rows} documents in, but {n_kept} kept + {result.rejected_rows} rejected; "
            "a rule dropped documents without recording them"
        )
    return result


def exit_with_parent() -> None:
    """Initializer of every worker process: the worker dies with the process that started it.

    A killed stage (SIGKILL, the OOM killer, a container stop) must not leave its workers behind:
    an idle worker of a process pool holds both ends of its task queue, so it never sees the end
    of it (see :mod:`dataset_platform.procs`)."""
    from dataset_platform.procs import die_with_parent

    die_with_parent()


#: at most this many CPUs for this process's work (set for a Ray task: the CPUs Ray gave it)
CPUS_ENV = "DATASET_PLATFORM_CPUS"


def available_cpus() -> int:
    """The CPUs this process may use (its affinity mask, all of them off Linux; at most
    ``$DATASET_PLATFORM_CPUS``): the default number of worker processes of every stage."""
    try:
        n = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        n = max(1, os.cpu_count() or 1)
    cap = os.environ.get(CPUS_ENV, "")
    return min(n, int(cap)) if cap.isdigit() and int(cap) >= 1 else n


def streamable_view(con: duckdb.DuckDBPyConnection, name: str, select_sql: str) -> None:
    """Create view ``name`` as ``select_sql`` so that a second cursor of ``con`` can stream it;
    when the query reads objects registered on ``con`` (which other cursors cannot see), the rows
    are copied into a table first."""
    con.sql(f"CREATE OR REPLACE VIEW {name} AS {select_sql}")
    probe = con.cursor()
    try:
        probe.sql(f"SELECT * FROM {name} LIMIT 0").fetchall()
    except duckdb.Error:
        con.sql(f"CREATE OR REPLACE TABLE {name}_t AS {select_sql}")
        con.sql(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {name}_t")
    finally:
        probe.close()


def stored_model(path, log: Callable[[str], None], reused: str, unreadable: str) -> Any:
    """A model an earlier run pickled at ``path`` (its name is the fingerprint of what trained it), or
    None when there is none or it cannot be read (then it is trained again). ``reused`` is logged on a
    hit; ``unreadable`` starts the line logged for a damaged file."""
    import pickle

    if not path.exists():
        return None
    try:
        model = pickle.loads(path.read_bytes())
    except Exception as e:  # a damaged file: trained again
        log(f"{unreadable} {path.name} unreadable ({type(e).__name__}); training again")
        return None
    log(reused)
    return model
