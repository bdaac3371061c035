"""The checks of the layers one asset step writes run as one step (defs/quality.py): each still
reports its own result (with ``check_seconds``), a check that raises is reported as failed (ERROR
when blocking, and what is below stays blocked) while the others of its step still run, and any
subset of them can run. Real Dagster materialisations."""

from __future__ import annotations

import dagster as dg

from dataset_platform.config import demo_config_path
from dataset_platform.defs.quality import Check, _definition, build_checks
from dataset_platform.defs.resources import PlatformResource

LAYER = "layer_x"


def _checks(*, raising_blocking: bool) -> list[Check]:
    def fine(context, platform):
        return dg.AssetCheckResult(passed=True, metadata={"looked_at": 3})

    def broken(context, platform):
        raise RuntimeError("the manifest is unreadable")

    return [Check(dg.AssetCheckSpec("broken", asset=LAYER, blocking=raising_blocking), broken),
            Check(dg.AssetCheckSpec("fine", asset=LAYER, blocking=True), fine)]


def _run(tmp_path, checks: list[Check], selection=None):
    @dg.asset(name=LAYER)
    def layer() -> None:
        return None

    @dg.asset(deps=[layer])
    def below() -> None:
        return None

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [layer, below, _definition("layer_x_checks", checks)], instance=instance, raise_on_error=False,
            selection=selection,
            resources={"platform": PlatformResource(config_path=str(demo_config_path()), workdir=str(tmp_path / "w"))})
        evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
        done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    return evaluations, done


def test_a_blocking_check_that_raises_fails_blocks_below_and_the_others_still_run(tmp_path):
    ev, done = _run(tmp_path, _checks(raising_blocking=True))
    assert not ev["broken"].passed and ev["broken"].severity == dg.AssetCheckSeverity.ERROR
    assert "RuntimeError: the manifest is unreadable" in ev["broken"].metadata["error"].value
    assert ev["fine"].passed and ev["fine"].metadata["looked_at"].value == 3
    assert ev["fine"].metadata["check_seconds"].value >= 0
    assert done == {LAYER}  # below is blocked


def test_a_warning_check_that_raises_warns_and_does_not_block(tmp_path):
    ev, done = _run(tmp_path, _checks(raising_blocking=False))
    assert not ev["broken"].passed and ev["broken"].severity == dg.AssetCheckSeverity.WARN
    assert ev["fine"].passed and done == {LAYER, "below"}


def test_a_subset_of_a_steps_checks_runs_alone(tmp_path):
    only = dg.AssetCheckKey(dg.AssetKey(LAYER), "fine")
    ev, done = _run(tmp_path, _checks(raising_blocking=True),
                    selection=dg.AssetSelection.assets(LAYER).without_checks() | dg.AssetSelection.checks(only))
    assert set(ev) == {"fine"} and done == {LAYER}


def test_the_platforms_checks_run_as_one_step_per_writing_step():
    steps = {d.node_def.name: {k.to_user_string() for k in d.check_keys} for d in build_checks()}
    assert steps["raw_layer_checks"] == {"raw_pages:gx_suite", "crawl_log:gx_suite", "raw_pages:reconciles_with_crawl_log",
                                         "raw_pages:no_refused_inbox_files"}
    assert steps["deduplicated_documents_checks"] >= {"deduplicated_documents:gx_suite", "duplicate_clusters:gx_suite",
                                                      "deduplicated_documents:accounting"}
    every = [k for d in build_checks(grouped=False) for k in d.check_keys]
    assert len(every) == len(set(every)) == sum(len(v) for v in steps.values()) and len(steps) < len(every)
