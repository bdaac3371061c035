"""What each column of the contract means: the comments of ``contracts/schema.py``, as data.

``schema.py`` documents a column with a comment after its ``(name, type)`` pair. This module reads
those comments from its source (one place to write them), so the UI (the ``dagster/column_schema``
of every asset) and any other reader get the same text:

- a layer's own comment on a column wins;
- a column without one takes the comment of the column before it when they share a prefix (the
  ``pii_*`` counts are documented once);
- otherwise it takes the description of the same column in the layer it comes from (``DERIVED``:
  e.g. ``labelled_documents.content_hash`` is the deduplicated layer's), for the columns listed;
- the label columns of a label set (``schema.label_columns``) take the comments there, with the set's
  name.

Nothing here imports Dagster.
"""

from __future__ import annotations

import ast
import functools
import inspect
import io
import tokenize

from dataset_platform.contracts import schema

#: layer -> (the layer its rows come from, the columns carried over from it; None: every column)
DERIVED: dict[str, tuple[str, frozenset[str] | None]] = {
    "crawl_log": ("raw_pages", None),
    "extracted_documents": ("raw_pages", frozenset({"id", "source", "crawl_id", "url"})),
    "cleaned_documents": ("extracted_documents", frozenset({"id", "source", "crawl_id", "url", "title", "lang"})),
    "scored_documents": ("cleaned_documents", None),
    "deduplicated_documents": ("scored_documents", None),
    "labelled_documents": ("deduplicated_documents", None),
    "decontaminated_documents": ("labelled_documents", None),
    "dataset_release": ("decontaminated_documents", None),
    "rejected_documents": ("raw_pages", frozenset({"id", "source", "url"})),
}


@functools.cache
def _comments() -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """(layer -> column -> its comment in ``LAYERS``, label column suffix -> comment)."""
    src = inspect.getsource(schema)
    at_line = {tok.start[0]: tok.string.lstrip("#").strip()
               for tok in tokenize.generate_tokens(io.StringIO(src).readline) if tok.type == tokenize.COMMENT}
    tree = ast.parse(src)
    assigned: dict[str, ast.AST] = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if isinstance(target, ast.Name) and getattr(node, "value", None) is not None:
            assigned[target.id] = node.value

    def pairs(node: ast.AST, seen: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
        """(column, comment) of the (name, type) pairs written in ``node`` or a list it names."""
        out = []
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and n.id in assigned and n.id not in seen:
                out += pairs(assigned[n.id], seen | {n.id})
            elif (isinstance(n, ast.Tuple) and len(n.elts) == 2 and isinstance(n.elts[1], ast.Constant)
                  and isinstance(n.elts[1].value, str)):
                first = n.elts[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    out.append((first.value, at_line.get(n.end_lineno, "")))
                elif isinstance(first, ast.Name):  # the label set's own column
                    out.append(("", at_line.get(n.end_lineno, "")))
                elif isinstance(first, ast.JoinedStr):  # f"{name}_source"
                    suffix = "".join(v.value for v in first.values if isinstance(v, ast.Constant))
                    out.append((suffix, at_line.get(n.end_lineno, "")))
        return out

    layers: dict[str, dict[str, str]] = {}
    table = assigned.get("LAYERS")
    if not isinstance(table, ast.Dict):
        raise RuntimeError("contracts/schema.py no longer writes LAYERS as a dict literal: "
                           "update contracts/descriptions.py, which reads its column comments")
    for key, value in zip(table.keys, table.values):
        if isinstance(key, ast.Constant):
            layers[key.value] = {}
            for name, text in pairs(value):
                if text and name not in layers[key.value]:
                    layers[key.value][name] = text
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "label_columns")
    label = {suffix: text for suffix, text in pairs(fn) if text}
    return layers, label


def column_descriptions(layer: str, label_sets: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """Column -> what it holds, for every column of ``layer`` that ``schema.py`` documents."""
    return dict(_described(layer, tuple(label_sets)))


@functools.lru_cache(maxsize=256)
def _described(layer: str, label_sets: tuple[str, ...]) -> dict[str, str]:
    """``column_descriptions``, computed once per layer and label sets: a derived layer looks up
    its parent's for each column (the release's took 0.33 s each time, at the end of every run)."""
    layers, label = _comments()
    cols = schema.columns(layer, label_sets)
    own = layers.get(layer, {})
    out: dict[str, str] = {}
    previous = ""
    for c in cols:
        text = own.get(c)
        if text is None and previous in own and "_" in c and c.split("_")[0] == previous.split("_")[0]:
            text = own[previous]  # (a comment for a run of columns: pii_email, pii_phone, ...)
        if text is None and layer in DERIVED:
            parent, carried = DERIVED[layer]
            if carried is None or c in carried:
                text = _described(parent, ()).get(c) if c in schema.columns(parent) else None
        if text:
            out[c] = text
            if c not in own:
                own = {**own, c: text}  # (a run goes on: pii_phone -> pii_ip)
        previous = c
    for name in label_sets:
        if name in cols:
            for suffix, text in label.items():
                if f"{name}{suffix}" in cols:
                    out[f"{name}{suffix}"] = f"label set {name}: {text}"
    return out
