"""Checks started ahead (checks/ahead.py): a check takes the value started ahead only when what it
reads is as it was then; otherwise, or when the head start raised, it computes its own."""

from __future__ import annotations

import threading

import pytest

from dataset_platform.checks import ahead
from dataset_platform.checks import invariants as inv
from dataset_platform.workdir import Workdir


class Calls:
    def __init__(self, fail_first: bool = False) -> None:
        self.threads: list[str] = []
        self.fail_first = fail_first

    def __call__(self, x: int) -> int:
        self.threads.append(threading.current_thread().name)
        if self.fail_first and len(self.threads) == 1:
            raise RuntimeError("broken head start")
        return x * 2


def test_the_value_started_ahead_is_taken_on_the_same_state():
    calls = Calls()
    ahead.start(("t", "same"), ("state", 1), calls, 21)
    assert ahead.result(("t", "same"), ("state", 1), calls, 21) == 42
    assert len(calls.threads) == 1 and calls.threads[0].startswith("checks-ahead")  # not computed again
    assert ahead.pending() == 0


def test_a_head_start_on_another_state_is_computed_again():
    calls = Calls()
    ahead.start(("t", "stale"), ("state", 1), calls, 1)
    assert ahead.result(("t", "stale"), ("state", 2), calls, 5) == 10  # now's arguments, now
    assert len(calls.threads) == 2 and calls.threads[1] == threading.current_thread().name


def test_a_head_start_that_raised_is_computed_again_and_raises_as_the_check_would():
    calls = Calls(fail_first=True)
    ahead.start(("t", "raised"), "s", calls, 3)
    assert ahead.result(("t", "raised"), "s", calls, 3) == 6 and len(calls.threads) == 2

    def always(x):
        raise ValueError("bad data")

    ahead.start(("t", "raises"), "s", always, 1)
    with pytest.raises(ValueError, match="bad data"):
        ahead.result(("t", "raises"), "s", always, 1)


def test_without_a_head_start_the_check_computes_and_forget_drops_the_untaken():
    calls = Calls()
    assert ahead.result(("t", "none"), "s", calls, 4) == 8
    ahead.start(("t", "untaken"), "s", calls, 1)
    assert ahead.pending() == 1
    ahead.forget()
    assert ahead.pending() == 0


def test_commit_points_change_with_a_layer_and_with_the_release(tmp_path):
    wd = Workdir.at(tmp_path / "wd").ensure()
    (wd.layers / "cleaned_documents").mkdir()
    manifest = wd.layers / "cleaned_documents" / "manifest.json"
    manifest.write_text('{"parts": {}}')
    before = inv.commit_points(wd)
    assert inv.commit_points(wd) == before
    manifest.write_text('{"parts": {"a": {}}}')
    after_layer = inv.commit_points(wd)
    assert after_layer != before
    (wd.releases / "demo").mkdir()
    (wd.releases / "demo" / "LATEST").write_text("v1")
    assert inv.commit_points(wd) != after_layer
