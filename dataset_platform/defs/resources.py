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
