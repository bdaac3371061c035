"""What the Dagster UI shows a newcomer: no community dialog, column descriptions, rounded numbers,
the dataset card as Markdown (the browser test, tests/test_ui_browser.py, shows the same on screen)."""

from __future__ import annotations


def test_a_work_folders_dagster_instance_shows_no_community_dialog(tmp_path, monkeypatch):
    from dataset_platform.cli import _prepare_instance
    from dataset_platform.defs.instance_storage import instance_at
    from dataset_platform.workdir import Workdir

    monkeypatch.setenv("DAGSTER_HOME", "")  # (restored after the test: _prepare_instance sets it)
    home = _prepare_instance(Workdir.at(tmp_path / "w").ensure())
    with instance_at(str(home)) as instance:
        assert instance.nux_enabled is False and not instance.telemetry_enabled
    # a dagster.yaml an earlier version wrote gets the key; one the user wrote is left alone
    old = ("# written by dataset-platform; edit freely\ntelemetry:\n  enabled: false\n"
           "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n")
    (home / "dagster.yaml").write_text(old, encoding="utf-8")
    monkeypatch.setenv("DAGSTER_HOME", "")
    _prepare_instance(Workdir.at(tmp_path / "w"))
    assert (home / "dagster.yaml").read_text(encoding="utf-8").startswith(old)
    with instance_at(str(home)) as instance:
        assert instance.nux_enabled is False
        from dagster._core.run_coordinator import DefaultRunCoordinator

        assert isinstance(instance.run_coordinator, DefaultRunCoordinator)  # (the rest of the file stays)
    own = tmp_path / "own"
    own.mkdir()
    (own / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    monkeypatch.setenv("DAGSTER_HOME", str(own))
    assert _prepare_instance(Workdir.at(tmp_path / "w")) == own.resolve()
    assert (own / "dagster.yaml").read_text(encoding="utf-8") == "telemetry:\n  enabled: false\n"


def test_every_assets_column_schema_carries_the_contracts_descriptions():
    from dataset_platform.contracts import schema
    from dataset_platform.defs.metadata import column_schema

    raw = {c.name: c.description for c in column_schema("raw_pages").columns}
    # the comment beside the column in contracts/schema.py, word for word
    assert raw["id"] == "16 hex chars: first 64 bits of md5(source || ' ' || recorded url)"
    assert raw["html"] == "decoded HTML body"
    cleaned = {c.name: c.description for c in column_schema("cleaned_documents").columns}
    assert cleaned["pii_iban"] == cleaned["pii_email"] == "structured PII spans redacted, per type (stages/clean/pii.py)"
    assert cleaned["id"] == raw["id"]  # carried over from the layer it comes from
    labelled = {c.name: c.description for c in column_schema("labelled_documents", ["topic"]).columns}
    assert labelled["content_hash"] == "md5 of the whitespace-folded, lower-cased text"  # the dedup layer's, not the raw body's
    assert labelled["topic_source"] == "label set topic: human | rule | model | rule+model | default"
    release = {c.name: c.description for c in column_schema("dataset_release", ["topic"]).columns}
    assert release["split"] == "train | validation | test" and release["text"] == "normalised, PII redacted"
    extracted = {c.name: c.description for c in column_schema("extracted_documents").columns}
    assert extracted["title"] is None  # the raw layer's "dumps: title given by the dump" is not carried over
    for layer in schema.LAYERS:
        cols = column_schema(layer, ["topic"] if layer in schema.LABELLED_LAYERS else []).columns
        described = [c for c in cols if c.description]
        assert len(described) >= 0.75 * len(cols), (layer, [c.name for c in cols if not c.description])
    # computed once per layer (a derived layer reads its parents'): a caller's changes stay its own
    from dataset_platform.contracts.descriptions import column_descriptions

    mine = column_descriptions("dataset_release", ["topic"])
    mine["split"] = "changed"
    assert column_descriptions("dataset_release", ["topic"])["split"] == "train | validation | test"


def test_metadata_floats_are_rounded_for_the_ui():
    import dagster as dg

    from dataset_platform.defs.metadata import md_table, round_float, round_floats

    assert round_float(0.13333333333333333 - 0.1) == 0.03333  # (was shown as 0.033333333333333326)
    assert round_float(12345.678) == 12346.0 and round_float(1.23456) == 1.235 and round_float(0.0) == 0.0
    assert round_float(-0.000123456) == -0.0001235
    schema_value = dg.TableSchema(columns=[dg.TableColumn("a", "DOUBLE")])
    md = round_floats({"rate": 2 / 3, "rows": 7, "ok": True, "json": {"shares": [1 / 3, 2]},
                       "f": dg.MetadataValue.float(1 / 7), "table": dg.MetadataValue.md("x"), "schema": schema_value})
    assert md["rate"] == 0.6667 and md["rows"] == 7 and md["ok"] is True and md["json"] == {"shares": [0.3333, 2]}
    assert md["f"].value == 0.1429 and md["table"].value == "x" and md["schema"] is schema_value
    assert md_table(["k", "v"], [["a", 1 / 3]]).splitlines()[-1] == "| a | 0.3333 |"


def test_the_dataset_card_is_markdown_with_its_yaml_header_as_a_code_block(tmp_path):
    from dataset_platform.defs.metadata import card_markdown

    card = tmp_path / "README.md"
    card.write_text("---\nlicense: cc-by-4.0\nlanguage:\n- en\n---\n\n# demo (abc123)\n\nText.\n", encoding="utf-8")
    md = card_markdown(card).value
    assert md == "```yaml\nlicense: cc-by-4.0\nlanguage:\n- en\n```\n\n# demo (abc123)\n\nText.\n"
    card.write_text("# no header\n" + "x" * 60_000, encoding="utf-8")
    md = card_markdown(card).value
    assert md.startswith("# no header\n") and len(md) < 51_000 and str(card) in md
