"""When layers refresh by themselves, and how fresh the release must be.

Every layer below the raw layer carries ``refresh_after_upstream()``: the automation sensor
(declared in ``automation.py``, running by default) requests it once an upstream layer has a new
materialisation *and* every blocking check of its upstream layers passed - a raw batch that fails
a critical expectation refreshes nothing downstream, and the last release stays as it was.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from dataset_platform.config import PlatformConfig


def refresh_after_upstream() -> dg.AutomationCondition:
    """Like ``eager()``, but waits for upstream blocking checks and never for never-crawled sources.

    ``eager()`` also holds while *any* upstream partition is missing: one source that has never
    been refreshed would stop every other source's data from flowing down, so that clause is left out.
    """
    a = dg.AutomationCondition
    return (
        a.in_latest_time_window()
        & a.any_deps_updated().since_last_handled()
        & ~a.any_deps_in_progress()
        & ~a.in_progress()
        & a.all_deps_blocking_checks_passed()
    ).with_label("upstream updated, its blocking checks passed")


def release_freshness(cfg: PlatformConfig) -> dg.FreshnessPolicy:
    r = cfg.pipeline.release
    return dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=r.freshness_fail_hours),
                                          warn_window=dt.timedelta(hours=r.freshness_warn_hours))
