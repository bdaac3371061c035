"""The checks of the layers an asset step writes run at the end of that step (defs/quality.py):
each still reports its own result (with ``check_seconds``), a check that raises is reported as
failed (ERROR when blocking, and what is below stays blocked) while the others of its step still
run, and a check can run alone, without materialising its asset. Real Dagster materialisations."""

from __future__ import annotations

import dagster as dg

from dataset_platform.config import demo_config_path
from dataset_platform.defs.quality import Check, materialise_and_check, step_check_specs
from dataset_platform.defs.resources import PlatformResource

LAYER = "layer_x"
SIDE = "layer_x_side"  # a second layer the same step writes (as dedup writes duplicate_clusters)


def _checks(*, raising_blocking: bool) -> list[Check]:
    def fine(context, platform):
        return dg.AssetCheckResult(passed=True, metadata={"looked_at": 3})

    def broken(context, platform):
        raise RuntimeError("the manifest is unreadable")

    return [Check(dg.AssetCheckSpec("broken", asset=LAYER, blocking=raising_blocking), broken),
            Check(dg.AssetCheckSpec("fine", asset=LAYER, blocking=True), fine)]


def _run(tmp_path, checks: list[Check], selection=None):
    """A stand-in layer whose step runs ``checks`` at its end, as the platform's assets do."""
    written = []

    def write():
        written.append(LAYER)
        return [dg.MaterializeResult(asset_key=LAYER), dg.MaterializeResult(asset_key=SIDE)]

    @dg.multi_asset(name=LAYER, specs=[dg.AssetSpec(LAYER), dg.AssetSpec(SIDE)], check_specs=[c.spec for c in checks],
                    can_subset=True)
    def layer(context, platform: PlatformResource):
        yield from materialise_and_check(context, platform, checks, write)

    @dg.asset(deps=[LAYER])
    def below() -> None:
        return None

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [layer, below], instance=instance, raise_on_error=False, selection=selection,
            resources={"platform": PlatformResource(config_path=str(demo_config_path()), workdir=str(tmp_path / "w"))})
        evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
        done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    return evaluations, done, written


def test_a_blocking_check_that_raises_fails_blocks_below_and_the_others_still_run(tmp_path):
    ev, done, _w = _run(tmp_path, _checks(raising_blocking=True))
    assert not ev["broken"].passed and ev["broken"].severity == dg.AssetCheckSeverity.ERROR
    assert "RuntimeError: the manifest is unreadable" in ev["broken"].metadata["error"].value
    assert ev["fine"].passed and ev["fine"].metadata["looked_at"].value == 3
    assert ev["fine"].metadata["check_seconds"].value >= 0
    assert done == {LAYER, SIDE}  # the step's layers are materialised; below is blocked


def test_a_warning_check_that_raises_warns_and_does_not_block(tmp_path):
    ev, done, _w = _run(tmp_path, _checks(raising_blocking=False))
    assert not ev["broken"].passed and ev["broken"].severity == dg.AssetCheckSeverity.WARN
    assert ev["fine"].passed and done == {LAYER, SIDE, "below"}


def test_a_check_runs_alone_without_materialising_its_layer(tmp_path):
    only = dg.AssetCheckKey(dg.AssetKey(LAYER), "fine")
    ev, done, written = _run(tmp_path, _checks(raising_blocking=True), selection=dg.AssetSelection.checks(only))
    assert set(ev) == {"fine"} and ev["fine"].passed
    assert done == set() and written == []


def test_the_layer_without_its_checks(tmp_path):
    ev, done, written = _run(tmp_path, _checks(raising_blocking=True),
                             selection=dg.AssetSelection.assets(LAYER, "below").without_checks())
    assert ev == {} and done == {LAYER, "below"} and written == [LAYER]  # (written whole, reported as selected)


def test_every_check_of_the_platform_is_a_check_of_the_asset_step_that_writes_its_layer():
    from dataset_platform.definitions import build_definitions

    defs = build_definitions(demo_config_path())
    steps = {a.node_def.name: {k.to_user_string() for k in a.check_keys} for a in defs.assets}
    assert steps["raw_layer"] == {"raw_pages:gx_suite", "crawl_log:gx_suite", "raw_pages:reconciles_with_crawl_log",
                                  "raw_pages:no_refused_inbox_files"}
    assert steps["deduplicated_documents"] >= {"deduplicated_documents:gx_suite", "duplicate_clusters:gx_suite",
                                               "deduplicated_documents:accounting"}
    assert steps["dataset_release"] >= {"dataset_release:gx_suite", "dataset_release:no_split_leakage"}
    assert not list(defs.asset_checks or [])  # no check step of its own
    every = [k for ks in steps.values() for k in ks]
    assert len(every) == len(set(every)) == 33
    assert {k for ks in steps.values() for k in ks} == {
        f"{s.asset_key.to_user_string()}:{s.name}" for st in steps for s in step_check_specs(st)}


def test_a_run_of_one_of_a_steps_layers_reports_that_layer_and_its_checks(tmp_path):
    ev, done, written = _run(tmp_path, _checks(raising_blocking=False),
                             selection=dg.AssetSelection.assets(SIDE))
    assert done == {SIDE} and written == [LAYER] and ev == {}  # (the checks are LAYER's: not selected)
