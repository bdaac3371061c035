"""What the benchmark scripts share: the synthetic vocabulary, a generated news-like page, and
a one-line description of the machine for BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import random
import time
from pathlib import Path
from typing import Self

_SYLLABLES = "ka lo mi ne ru sa ti vo be da fe gu hi jo ku la ma no pe ri so tu ve wa ya zo".split()
#: 4000 pseudo-words drawn with Zipf-like weights: word statistics close to natural text
VOCAB = sorted({"".join(random.Random(i).choices(_SYLLABLES, k=2 + i % 3)) for i in range(6000)})[:4000]
WEIGHTS = [1.0 / (rank + 1) for rank in range(len(VOCAB))]


def paragraphs(rng: random.Random) -> list[str]:
    """3-8 paragraphs of 40-90 Zipf-distributed words."""
    return [
        " ".join(rng.choices(VOCAB, weights=WEIGHTS, k=rng.randint(40, 90))).capitalize() + "."
        for _ in range(rng.randint(3, 8))
    ]


def page(rng: random.Random, i: int, *, charset_meta: bool = False) -> str:
    """A news-sized HTML page: navigation, an article of paragraphs, a footer."""
    pars = "".join(f"<p>{p}</p>" for p in paragraphs(rng))
    nav = "".join(f'<li><a href="/c/{w}">{w}</a></li>' for w in VOCAB[:8])
    meta = '<meta charset="utf-8">' if charset_meta else ""
    return (
        f"<!doctype html><html lang=\"en\"><head>{meta}<title>Page {i}</title></head><body>"
        f"<nav><ul>{nav}</ul></nav><article><h1>Page {i}</h1>{pars}</article>"
        "<footer>Copyright Bench Site. All rights reserved.</footer></body></html>"
    )


def machine() -> str:
    """CPU model, core count and Python version."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


# ---------------------------------------------------------------- peak memory, honestly measured
# ru_maxrss of a child counts the pages it shared with its parent between fork and exec, so a
# worker spawned by a large process "peaks" at the parent's size. VmHWM (/proc/<pid>/status) is
# reset by exec: it is the process's own high-water mark.


def vm_hwm_mb(pid: int | str = "self") -> float:
    """Peak resident set (VmHWM) of a live process in MB; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


class _Sampler:
    """Calls ``_sample()`` every ``interval`` seconds on a thread between ``__enter__`` and
    ``__exit__`` (the samplers below)."""

    def __init__(self, interval: float) -> None:
        import threading

        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self._interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class DescendantPeak(_Sampler):
    """Samples the VmHWM of every descendant process (workers) every ``interval`` seconds in a
    thread; ``peak_mb`` is the largest seen (a worker's last growth before it exits may be missed)."""

    def __init__(self, interval: float = 0.25) -> None:
        super().__init__(interval)
        self.peak_mb = 0.0
        self._root = os.getpid()

    def _sample(self) -> None:
        for pid in _descendants(self._root):
            self.peak_mb = max(self.peak_mb, vm_hwm_mb(pid))


def vm_rss_mb(pid: int) -> float:
    """Current resident set (VmRSS) of a live process in MB; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class TreePeak(_Sampler):
    """Peak resident memory and CPU time of a whole process tree, sampled every ``interval``
    seconds. ``peak_mb``: the largest sum of VmRSS over ``root`` and all its descendants (shared
    pages count once per process, as in ``ps``; a spike shorter than the interval may be missed).
    ``cpu_s``: user + system seconds of every process seen in the tree, each at its last sample
    (a process's last moments before it exits, and processes shorter than the interval, are
    missed); unlike the parent's rusage of its children it also counts descendants nobody reaps
    (forkserver workers). ``timeline``: (epoch seconds, cumulative ``cpu_s``) at every sample."""

    def __init__(self, root: int, interval: float = 0.2, extra: tuple[int, ...] = ()) -> None:
        super().__init__(interval)
        self.root = root
        self.extra = tuple(extra)  # processes outside the tree that serve it (a warm GX service), and theirs
        self._base: dict[int, int] = {}  # their CPU ticks before: only what they spend meanwhile counts
        self.peak_mb = 0.0
        self.samples = 0
        self._cpu_ticks: dict[int, int] = {}
        self.timeline: list[tuple[float, float]] = []

    @property
    def cpu_s(self) -> float:
        return sum(self._cpu_ticks.values()) / os.sysconf("SC_CLK_TCK")

    def _sample(self) -> None:
        total = 0.0
        tree = [self.root, *_descendants(self.root)]
        served = [p for e in self.extra for p in (e, *_descendants(e)) if p not in tree]
        for pid in [*tree, *served]:
            total += vm_rss_mb(pid)
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
            except (OSError, IndexError, ValueError):
                continue
            if pid in served:
                ticks -= self._base.setdefault(pid, ticks)
            self._cpu_ticks[pid] = max(self._cpu_ticks.get(pid, 0), ticks)
        self.peak_mb = max(self.peak_mb, total)
        self.timeline.append((time.time(), self.cpu_s))
        self.samples += 1


def write_table(table, path: Path) -> Path:
    """Write an Arrow table to ``path`` as Parquet, atomically (the benches' generated inputs)."""
    import duckdb

    from dataset_platform import atomic

    con = duckdb.connect()
    con.register("t", table)
    with atomic.replacing(path) as tmp:
        con.sql(f"COPY t TO '{tmp}' (FORMAT parquet)")
    con.close()
    return path
