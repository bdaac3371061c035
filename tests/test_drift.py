"""Drop-rate drift: the rule, and the `drop_rate_stable` check over real Dagster materialisations."""

from __future__ import annotations

import dagster as dg
import pytest

from dataset_platform.checks.drift import drop_rate_change
from dataset_platform.config import demo_config_path
from dataset_platform.defs.quality import check_definition
from dataset_platform.defs.resources import PlatformResource


def test_the_rule():
    first = drop_rate_change(None, (1000, 100), 0.15)
    assert (first.comparable, first.ok, first.rate) == (False, True, 0.1)
    steady = drop_rate_change((1000, 100), (2000, 260), 0.15)
    assert steady.comparable and steady.ok and steady.change == pytest.approx(0.03)
    jump = drop_rate_change((1000, 100), (1000, 400), 0.15)
    assert not jump.ok and jump.change == pytest.approx(0.3) and "+30.0%" in jump.reason and "beyond" in jump.reason
    fall = drop_rate_change((1000, 500), (1000, 100), 0.15)
    assert not fall.ok and fall.change == pytest.approx(-0.4)  # a sudden drop in drops is as suspicious
    small = drop_rate_change((1000, 100), (40, 30), 0.15)
    assert not small.comparable and small.ok and "too noisy" in small.reason


def _run(instance, tmp_path, inp: int, rejected: int):
    """A stand-in cleaned_documents records its counts; the real check compares with the last run."""
    @dg.asset(name="cleaned_documents")
    def cleaned_documents() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"input_rows": inp, "kept_rows": inp - rejected,
                                              "rejected_rows": rejected})

    check = check_definition("cleaned_documents", "drop_rate_stable")
    result = dg.materialize([cleaned_documents, check], instance=instance,
                            resources={"platform": PlatformResource(config_path=str(demo_config_path()),
                                                                    workdir=str(tmp_path / "w"))})
    (ev,) = result.get_asset_check_evaluations()
    return ev


def test_the_check_warns_on_a_jump_between_materialisations(tmp_path):
    with dg.instance_for_test() as instance:
        first = _run(instance, tmp_path, 1000, 100)
        assert first.passed and "first materialisation" in first.description
        steady = _run(instance, tmp_path, 1200, 130)
        assert steady.passed and steady.metadata["previous_drop_rate"].value == pytest.approx(0.1)
        jump = _run(instance, tmp_path, 1000, 450)
        assert not jump.passed and jump.severity == dg.AssetCheckSeverity.WARN
        # (the UI's metadata keeps 4 significant digits: defs/metadata.round_floats)
        assert jump.metadata["change"].value == pytest.approx(0.45 - 130 / 1200, rel=1e-3)
        assert jump.metadata["change"].value == 0.3417
        assert "beyond the allowed ±15%" in jump.metadata["verdict"].value
