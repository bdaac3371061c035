"""What the Dagster UI shows a newcomer: no community dialog, column descriptions, rounded numbers,
the dataset card as Markdown (the browser test, tests/test_ui_browser.py, shows the same on screen)."""

from __future__ import annotations


def test_a_work_folders_dagster_instance_shows_no_community_dialog(tmp_path, monkeypatch):
    import dagster as dg

    from dataset_platform.cli import _prepare_instance
    from dataset_platform.workdir import Workdir

    monkeypatch.setenv("DAGSTER_HOME", "")  # (restored after the test: _prepare_instance sets it)
    home = _prepare_instance(Workdir.at(tmp_path / "w").ensure())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.nux_enabled is False and not instance.telemetry_enabled
    # a dagster.yaml an earlier version wrote gets the key; one the user wrote is left alone
    old = ("# written by dataset-platform; edit freely\ntelemetry:\n  enabled: false\n"
           "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n")
    (home / "dagster.yaml").write_text(old, encoding="utf-8")
    monkeypatch.setenv("DAGSTER_HOME", "")
    _prepare_instance(Workdir.at(tmp_path / "w"))
    assert (home / "dagster.yaml").read_text(encoding="utf-8").startswith(old)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.nux_enabled is False
        from dagster._core.run_coordinator import DefaultRunCoordinator

        assert isinstance(instance.run_coordinator, DefaultRunCoordinator)  # (the rest of the file stays)
    own = tmp_path / "own"
    own.mkdir()
    (own / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    monkeypatch.setenv("DAGSTER_HOME", str(own))
    assert _prepare_instance(Workdir.at(tmp_path / "w")) == own.resolve()
    assert (own / "dagster.yaml").read_text(encoding="utf-8") == "telemetry:\n  enabled: false\n"
