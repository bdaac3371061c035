"""The one error the inspection commands raise for a user mistake (exit code 2)."""

from __future__ import annotations

from pathlib import Path

from dataset_platform.workdir import DEFAULT_WORKDIR, Workdir


class InspectError(Exception):
    """What is wrong and what to do, for the user (the CLI prints it and exits with code 2)."""


def existing_workdir(path: str | Path | None) -> Workdir:
    """The work folder at ``path`` (the default one when None); an error if there is none."""
    wd = Workdir.at(path)
    if not wd.root.is_dir():
        raise InspectError(
            f"work folder {wd.root} does not exist: run `dataset-platform demo` or `dataset-platform run --config "
            f"sources.yaml` first, or pass the work folder of an earlier run with --workdir (default ./{DEFAULT_WORKDIR}, "
            "or $DATASET_PLATFORM_WORKDIR)")
    if not wd.layers.is_dir():
        raise InspectError(f"{wd.root} is not a dataset-platform work folder (it has no layers/ folder): "
                           "pass the folder a run wrote with --workdir")
    return wd
