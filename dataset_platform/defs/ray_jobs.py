"""A stage's step as a Ray job through Dagster Pipes (``pipeline.executor: ray`` with
``pipeline.ray.submit: job``): dagster-ray's ``PipesRayJobClient`` submits
``cluster/ray_job.py`` to the cluster's job API, the job's log lines arrive as the step's log
messages, and its :class:`~dataset_platform.runner.LayerResult` as a Pipes message, from which
the step writes the materialisation as a local step does (the checks then run on the layer, on
the shared work folder).
"""

from __future__ import annotations

import os
import shlex
import time

import dagster as dg

from dataset_platform.runner import LayerResult
from dataset_platform.stages.base import Stage

#: where the job API is when ``pipeline.ray.job_address`` is unset (Ray's own variable)
JOB_ADDRESS_ENV = "RAY_API_SERVER_ADDRESS"
#: what Ray's job API answers (HTTP 500) while the head's job agent is not up yet, and how long a
#: step submits again before it fails with that answer
NO_AGENT = "No available agent to submit job"
AGENT_WAIT_S = 60.0


def materialise_as_ray_job(context: dg.AssetExecutionContext, stage: Stage, config_path: str,
                           workdir: str, cfg) -> LayerResult:
    from dataset_platform.cluster.ray_tasks import RayUnavailable, is_loopback

    try:
        from dagster_ray.core.pipes import PipesRayJobClient
    except ImportError as e:
        raise RayUnavailable("pipeline.ray.submit is 'job', but dagster-ray is not installed: "
                             "pip install 'dataset-platform[ray]'") from e
    settings = cfg.pipeline.ray
    address = settings.job_address or os.environ.get(JOB_ADDRESS_ENV)
    if not address:
        raise RayUnavailable(f"pipeline.ray.submit is 'job', but no job API address: set pipeline.ray.job_address "
                             f"(e.g. http://127.0.0.1:8265, the head's dashboard port) or ${JOB_ADDRESS_ENV}")
    env = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"} if is_loopback(address) else {}
    client = PipesRayJobClient(address=address, poll_interval=0.5, forward_termination=True)
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            done = client.run(
                context=context,
                submit_job_params={"entrypoint": f"{shlex.quote(settings.job_python)} -m dataset_platform.cluster.ray_job",
                                   "runtime_env": {"env_vars": env},
                                   "entrypoint_num_cpus": 0},  # (the driver waits; the CPUs are the tasks')
                extras={"stage": stage.name, "config_path": str(config_path), "workdir": str(workdir)},
            )
            break
        except ConnectionError as e:
            raise RayUnavailable(f"pipeline.ray.submit is 'job', but the Ray job API at {address} cannot be reached: "
                                 f"{e}. Start the head with its dashboard (ray start --head --include-dashboard=true) "
                                 "or fix pipeline.ray.job_address") from e
        except RuntimeError as e:
            # the job API answers before the head's agent that runs jobs is up (seconds after
            # `ray start`, longer on a loaded machine); Ray's own message says to try again
            if NO_AGENT not in str(e) or time.monotonic() > deadline:
                raise
            context.log.info(f"Ray job API at {address}: no agent to run the job yet; submitting again")
            time.sleep(1.0)
    results = [m for m in done.get_custom_messages() if isinstance(m, dict) and m.get("layer") == stage.output]
    if not results:
        raise RuntimeError(f"the Ray job of {stage.name} ended without reporting its layer; see its log above")
    return LayerResult.from_json(results[-1])
