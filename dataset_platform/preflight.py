"""Pre-flight: what can be known to fail before a run starts, checked before any work starts.

``sources.yaml`` validation (``config.py``) checks the file itself: fields, types, bounds,
language codes, source names. This checks what the file points to, as the run would later read
it, and reports every problem at once in the form of the config errors (file, field, what is
wrong, what to do)::

    sources.yaml: sources[1].paths[0]: 'dumps/*.warc.gz' matches no file (looked in /data/dumps); ...
    sources.yaml: pipeline.labels.gold: gold.jsonl: file not found; ...

- ``sources[].paths`` of dump sources: a path that does not exist, a pattern that matches no file,
  a folder given as a file, a file that cannot be read;
- ``pipeline.labels.gold``: read and validated as the label stage reads it (id, text, the label
  sets' values);
- ``pipeline.decontamination.benchmarks``: each file read as the decontamination stage reads it
  (a JSON object per line, the configured ``fields`` present), and two benchmarks of one name;
- ``pipeline.augmentation.synonyms`` (when augmentation is on): a JSON object of word -> [words];
- ``pipeline.extract.blocklist``: its lists and word files, read as the extract stage reads them;
- ``pipeline.executor: ray``: the ``ray`` extra is installed.

A plain library module: ``cli.py`` calls :func:`check` for ``run``, ``ui`` and ``demo`` right
after loading the config, before the work folder is touched.
"""

from __future__ import annotations

import glob
import importlib.util
import os
from pathlib import Path

from dataset_platform.config import ConfigError, DumpSource, PlatformConfig


def check(cfg: PlatformConfig, config_path: str | Path) -> None:
    """Raise :class:`ConfigError` listing every problem :func:`problems` finds (nothing when none)."""
    found = problems(cfg, config_path)
    if found:
        raise ConfigError("\n".join(found))


def problems(cfg: PlatformConfig, config_path: str | Path) -> list[str]:
    """Every problem found, one line each: ``<config file>: <field>: <what is wrong>; <what to do>``.

    ``cfg`` is the config as :func:`config.load_config` returns it (relative paths resolved
    against the config file's folder)."""
    origin = str(config_path)
    base = Path(config_path).resolve().parent
    out: list[str] = []
    for i, src in enumerate(cfg.sources):
        if isinstance(src, DumpSource):
            for j, pattern in enumerate(src.paths):
                msg = _dump_path(pattern, base, src.name)
                if msg:
                    out.append(f"{origin}: sources[{i}].paths[{j}]: {msg}")
    out += [f"{origin}: {field}: {msg}" for field, msg in _gold(cfg, base)]
    out += [f"{origin}: {field}: {msg}" for field, msg in _benchmarks(cfg, base)]
    out += [f"{origin}: {field}: {msg}" for field, msg in _synonyms(cfg, base)]
    out += [f"{origin}: {field}: {msg}" for field, msg in _blocklists(cfg)]
    if cfg.pipeline.executor == "ray" and importlib.util.find_spec("ray") is None:
        out.append(f"{origin}: pipeline.executor: 'ray' needs Ray, which is not installed: "
                   "pip install 'dataset_platform[ray]' (or run with --executor local)")
    return out


def _shown(path: str, base: Path) -> str:
    """``path`` as the user wrote it: relative to the config's folder when it is under it."""
    try:
        return str(Path(path).relative_to(base))
    except ValueError:
        return path


def _dump_path(pattern: str, base: Path, source: str) -> str | None:
    """What is wrong with one entry of a dump source's ``paths`` (as ``ingest/refresh.py`` globs it)."""
    shown = _shown(pattern, base)
    if not glob.has_magic(pattern):
        p = Path(pattern)
        if not p.exists():
            return f"{shown!r}: file not found ({p}); fix the path (relative to the config file's folder)"
        if p.is_dir():
            return f"{shown!r} is a folder; give the files in it, e.g. {str(Path(shown) / '*.jsonl')!r}"
        if not os.access(p, os.R_OK):
            return f"{shown!r} cannot be read (permissions); make it readable by this user"
        return None
    matches = [Path(m) for m in glob.glob(pattern)]
    files = [m for m in matches if m.is_file()]
    if not files:
        what = f"matches {len(matches)} folder(s) but no file" if matches else "matches no file"
        return (f"{shown!r} {what} (looked in {Path(pattern).parent}); put the files there or fix the pattern, "
                f"or remove it and drop the files into <workdir>/inbox/{source}/")
    unreadable = [m for m in files if not os.access(m, os.R_OK)]
    if unreadable:
        return (f"{shown!r}: {len(unreadable)} of {len(files)} file(s) cannot be read (permissions), e.g. "
                f"{unreadable[0]}; make them readable by this user")
    return None


def _gold(cfg: PlatformConfig, base: Path) -> list[tuple[str, str]]:
    labels = cfg.pipeline.labels
    if not labels.gold:
        return []
    from dataset_platform.stages.label.stage import GoldError, read_gold

    field = "pipeline.labels.gold"
    shown = _shown(labels.gold, base)
    if not Path(labels.gold).is_file():
        return [(field, f"{shown!r}: file not found ({labels.gold}); create it (JSONL: id, text and one field per "
                        "label set) or fix the path (relative to the config file's folder)")]
    try:
        read_gold(Path(labels.gold), labels.sets)  # the label stage's own reading, whole
    except GoldError as e:
        return [(field, f"{e}; fix the file (JSONL: one object per line with id, text and one field per label set, "
                        "named like the set)")]
    except OSError as e:
        return [(field, f"{shown!r} cannot be read ({e.strerror or e}); make it readable by this user")]
    return []


def _benchmarks(cfg: PlatformConfig, base: Path) -> list[tuple[str, str]]:
    benchmarks = cfg.pipeline.decontamination.benchmarks
    if not benchmarks:
        return []
    from dataset_platform.stages.decontaminate import BenchmarkError, _read_items

    out: list[tuple[str, str]] = []
    names: dict[str, int] = {}
    for i, bench in enumerate(benchmarks):
        field = f"pipeline.decontamination.benchmarks[{i}]"
        name = bench.name or Path(bench.path).stem
        if name in names:
            out.append((field, f"two benchmarks are named {name!r} (benchmarks[{names[name]}] and [{i}]); give one "
                               "of them another `name`"))
        names.setdefault(name, i)
        if not Path(bench.path).is_file():
            out.append((f"{field}.path", f"{_shown(bench.path, base)!r}: file not found ({bench.path}); fix the path "
                                         "(relative to the config file's folder)"))
            continue
        try:
            _read_items(bench, name)  # the decontamination stage's own reading (without the n-grams)
        except BenchmarkError as e:
            where = f"{field}.fields" if "has the field" in str(e) else f"{field}.path"
            out.append((where, f"{e}; fix the file or the `fields` (an item is a JSON object per line; a field "
                               "holds a string or a list of strings)"))
        except OSError as e:
            out.append((f"{field}.path", f"{_shown(bench.path, base)!r} cannot be read ({e.strerror or e})"))
    return out


def _synonyms(cfg: PlatformConfig, base: Path) -> list[tuple[str, str]]:
    aug = cfg.pipeline.augmentation
    if not (aug.enabled and aug.synonyms):
        return []
    from dataset_platform.release.augment import synonyms_of

    try:
        synonyms_of(aug)  # the release's own reading
    except ValueError as e:
        msg = str(e).removeprefix("augmentation.synonyms: ")
        return [("pipeline.augmentation.synonyms", f"{msg}; fix the file or the path (relative to the config file's "
                                                   "folder), e.g. {\"big\": [\"large\", \"major\"]}")]
    return []


def _blocklists(cfg: PlatformConfig) -> list[tuple[str, str]]:
    """The extract stage's blocklists and word files, read as the stage reads them."""
    from dataset_platform.stages.blocklist import check as check_blocklist

    return check_blocklist(cfg.pipeline.extract.blocklist)
