"""Metadata every materialisation carries in the UI."""

from __future__ import annotations

import dagster as dg

from dataset_platform import schema
from dataset_platform.pipeline import LayerResult


def md_table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def column_schema(layer: str) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(n, t) for n, t in schema.LAYERS[layer]])


def layer_metadata(result: LayerResult) -> dict:
    md: dict = {
        "dagster/row_count": result.rows,
        "dagster/column_schema": column_schema(result.layer),
        "path": dg.MetadataValue.path(str(result.path)),
        "duration_s": round(result.seconds, 3),
    }
    st = result.stage
    if st is not None:
        md.update({
            "input_rows": st.input_rows,
            "kept_rows": st.kept_rows,
            "rejected_rows": st.rejected_rows,
            "docs_per_s": round(result.docs_per_s, 1),
            "drop_reasons": dg.MetadataValue.md(
                md_table(["rule", "documents"], [[k, v] for k, v in sorted(st.reasons.items())]) if st.reasons else "none"
            ),
        })
        for k, v in st.extra.items():
            md[k] = v
    return md
