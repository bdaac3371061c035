"""The document stages, in graph order: the one list that the assets, the checks, the
``dataset-platform stage`` commands and the benchmarks loop over.

A new stage is one module (its function and a :class:`~dataset_platform.stages.base.Stage`
named ``STAGE``), one entry here, one suite (``expectations/<its output layer>.json``) and one
contract entry (``contracts/schema.py``: its output layer's columns).
"""

from __future__ import annotations

from dataset_platform.stages import decontaminate, extract, quality_model
from dataset_platform.stages.base import Stage
from dataset_platform.stages.clean import stage as clean
from dataset_platform.stages.dedup import stage as dedup
from dataset_platform.stages.label import stage as label

STAGES: tuple[Stage, ...] = (extract.STAGE, clean.STAGE, quality_model.STAGE, dedup.STAGE, label.STAGE,
                             decontaminate.STAGE)
BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
BY_OUTPUT: dict[str, Stage] = {s.output: s for s in STAGES}


def stage(name: str) -> Stage:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(BY_NAME)}") from None


def order_of(name: str) -> int:
    """Graph position of a stage (for sorting rejects); unknown names last."""
    return next((i for i, s in enumerate(STAGES) if s.name == name), len(STAGES))
