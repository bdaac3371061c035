"""Shared fixtures: the shared corpus path, and a demo workdir materialised once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gx_processes import private_tmp  # noqa: F401  (a fixture: GX service tests start services in it)

REPO = Path(__file__).resolve().parents[1]
SHARED_CORPUS = REPO.parent / "shared" / "corpus"


def shared_corpus(sub: str) -> Path:
    """A folder of the shared third-party corpus; skip (or fail in CI) when it is absent."""
    p = SHARED_CORPUS / sub
    if not p.exists():
        msg = f"shared corpus folder {p} is absent (it lives beside the project as ../shared/corpus)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg + "; CI must have it")
        pytest.skip(msg)
    return p


# A `dataset-platform run` keeps GX warm for the next run in a service that outlives it
# (checks/gx_service.py). Tests start no such service unless they ask for one (tests/test_gx_daemon.py):
# each run starts and ends a GX worker of its own, and a test leaves no process behind.
os.environ["DATASET_PLATFORM_GX_IDLE"] = "0"
