"""The JSONL-of-objects reader shared by gold labels and benchmark sets."""

from __future__ import annotations

import pytest

from dataset_platform.text.jsonl import json_objects


class Bad(ValueError):
    pass


def test_objects_with_their_lines_and_errors_naming_file_and_line(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text('{"a": 1}\n\n  \n{"a": 2}\n', encoding="utf-8")
    assert [(no, where.rsplit("/", 1)[1], obj) for no, where, obj in json_objects(good, Bad)] == [
        (1, "good.jsonl:1", {"a": 1}), (4, "good.jsonl:4", {"a": 2})]
    with pytest.raises(Bad, match=r"^x: .*missing\.jsonl: file not found$"):
        list(json_objects(tmp_path / "missing.jsonl", Bad, prefix="x: "))
    arr = tmp_path / "arr.jsonl"
    arr.write_text('{"a": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(Bad, match=r"arr\.jsonl:2: an item must be a JSON object, not list"):
        list(json_objects(arr, Bad, what="an item"))
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"a": 1}\n{"a": "caf\xe9"}\n')
    with pytest.raises(Bad, match=r"latin\.jsonl:2: not UTF-8"):
        list(json_objects(latin, Bad))
