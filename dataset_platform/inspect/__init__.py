"""Inspection commands over a work folder, for people at a shell: ``sql`` (the warehouse,
read-only), ``status`` (last runs, layer counts, checks, the current release) and ``trace`` (one
document's journey through every layer, the rule that dropped it, its labels, split and releases).

Plain library code: nothing here writes to the work folder or takes one of its locks, so it can run
beside a pipeline run. Only :mod:`dataset_platform.inspect.status` imports Dagster (lazily, to read
the run history of the work folder's ``DAGSTER_HOME``). ``cli.add_inspect_commands`` adds the
three subcommands to ``dataset-platform``.
"""

from __future__ import annotations

from dataset_platform.inspect.errors import InspectError

__all__ = ["InspectError"]
