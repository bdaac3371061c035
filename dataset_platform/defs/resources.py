"""The one resource every asset uses: where the config and the workdir are."""

from __future__ import annotations

from functools import cached_property

import dagster as dg

from dataset_platform.config import PlatformConfig, load_config
from dataset_platform.workdir import Workdir


class PlatformResource(dg.ConfigurableResource):
    """Paths of ``sources.yaml`` and of the workdir (warehouse, layers, releases)."""

    config_path: str
    workdir: str

    @cached_property
    def config(self) -> PlatformConfig:
        return load_config(self.config_path)

    @cached_property
    def wd(self) -> Workdir:
        return Workdir.at(self.workdir).ensure()

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Every run ends in suite checks: start GX's worker (its import) now (checks/gx_worker.py),
        and warm the stages up. The process's heap so far (Dagster, the definitions) is frozen out
        of the garbage collector's full collections (``procs.freeze_start_up_heap``: done already
        in ``dataset-platform run``; here for a run Dagster launched)."""
        from dataset_platform import procs
        from dataset_platform.checks import gx_worker
        from dataset_platform.runner import warm_up

        procs.freeze_start_up_heap()
        gx_worker.start()
        warm_up(self.config)  # the stages' first-use costs, on a thread (runner.warm_up)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """A run ends once the Data Docs pages its checks queued are written (checks/gx_worker.py);
        checks started ahead that no check took are dropped (checks/ahead.py)."""
        import sys

        ahead = sys.modules.get("dataset_platform.checks.ahead")
        if ahead is not None:
            ahead.forget()

        worker = sys.modules.get("dataset_platform.checks.gx_worker")
        if worker is not None:
            for message in worker.drain():
                context.log.warning(message)
