"""A stage's materialisation as a Ray job, the other end of Dagster Pipes (``pipeline.ray.submit: job``).

The Dagster step submits this module as a Ray job (``defs/ray_jobs.py``, with dagster-ray's
``PipesRayJobClient``); on the cluster it runs the same ``runner.materialise`` a local step runs
(the job's driver submits the stage's parts, or dedup's shards, as Ray tasks, as with
``submit: driver``), sends its log lines back as Dagster log messages, and ends with the
:class:`~dataset_platform.runner.LayerResult` as a Pipes custom message, from which the step
writes the materialisation's metadata and runs its checks as it does for a local run.

    python -m dataset_platform.cluster.ray_job      (started by the Ray job; Pipes passes the rest)

The job reads the same ``sources.yaml`` and work folder as the Dagster process: both are on a
path every node of the cluster sees. Nothing here imports Dagster itself (only its small
``dagster-pipes`` protocol package).
"""

from __future__ import annotations

from pathlib import Path


def run_stage(stage: str, config_path: str, workdir: str, log) -> dict:
    """``runner.materialise`` of ``stage`` with the config at ``config_path`` (its executor: ray),
    as JSON-ready data."""
    from dataset_platform.config import load_config
    from dataset_platform.runner import materialise
    from dataset_platform.workdir import Workdir

    cfg = load_config(config_path)
    cfg = cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(update={"executor": "ray"})})
    result = materialise(stage, cfg, Workdir.at(Path(workdir)).ensure(), log=log)
    return result.to_json()


def main() -> None:
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        extras = pipes.extras
        result = run_stage(extras["stage"], extras["config_path"], extras["workdir"], pipes.log.info)
        pipes.report_custom_message(result)


if __name__ == "__main__":
    main()
