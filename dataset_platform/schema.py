"""The column contract of every layer.

These table names and columns are what users query in ``<workdir>/warehouse.duckdb``.
Each stage writes its layer with exactly these columns, in this order; the GX suites in
``expectations/`` and the tests are checked against this module.
"""

from __future__ import annotations

# layer name -> ordered (column, DuckDB type) pairs
LAYERS: dict[str, list[tuple[str, str]]] = {
    "raw_pages": [
        ("id", "VARCHAR"),  # 16 hex chars: first 64 bits of md5(source || ' ' || recorded url)
        ("source", "VARCHAR"),  # source name from sources.yaml
        ("crawl_id", "VARCHAR"),  # one per crawl batch: <source>-<UTC yyyymmddThhmmss + microseconds>Z
        ("url", "VARCHAR"),  # recorded (canonical) url
        ("fetch_url", "VARCHAR"),  # url actually fetched (differs when record_base_url is set)
        ("status", "INTEGER"),  # HTTP status
        ("content_type", "VARCHAR"),  # lower-cased media type, no parameters
        ("charset", "VARCHAR"),  # encoding used to decode the body
        ("fetched_at", "TIMESTAMP WITH TIME ZONE"),  # UTC
        ("depth", "INTEGER"),  # link depth from a start url
        ("referer", "VARCHAR"),
        ("body_bytes", "BIGINT"),
        ("html", "VARCHAR"),  # decoded body for HTML responses, NULL otherwise
    ],
    "extracted_documents": [
        ("id", "VARCHAR"),
        ("source", "VARCHAR"),
        ("crawl_id", "VARCHAR"),
        ("url", "VARCHAR"),
        ("title", "VARCHAR"),
        ("text", "VARCHAR"),  # main text, paragraphs separated by "\n"
        ("lang", "VARCHAR"),  # ISO 639-1 code, "und" when unknown
        ("lang_score", "DOUBLE"),  # 0..1 confidence of the language guess
    ],
    "cleaned_documents": [
        ("id", "VARCHAR"),
        ("source", "VARCHAR"),
        ("url", "VARCHAR"),
        ("title", "VARCHAR"),
        ("text", "VARCHAR"),  # normalised, PII redacted
        ("lang", "VARCHAR"),
        ("n_chars", "BIGINT"),
        ("n_words", "BIGINT"),  # whitespace words; each CJK character counts as one
        ("pii_email", "INTEGER"),  # redactions made, per type
        ("pii_phone", "INTEGER"),
    ],
    "deduplicated_documents": [
        ("id", "VARCHAR"),
        ("source", "VARCHAR"),
        ("url", "VARCHAR"),
        ("title", "VARCHAR"),
        ("text", "VARCHAR"),
        ("lang", "VARCHAR"),
        ("n_chars", "BIGINT"),
        ("n_words", "BIGINT"),
        ("pii_email", "INTEGER"),
        ("pii_phone", "INTEGER"),
        ("content_hash", "VARCHAR"),  # md5 of the whitespace-folded, lower-cased text
    ],
    "duplicate_clusters": [
        ("cluster_id", "VARCHAR"),  # = keeper_id's content hash for exact clusters
        ("doc_id", "VARCHAR"),  # a dropped document
        ("keeper_id", "VARCHAR"),  # the document kept in its place
        ("similarity", "DOUBLE"),  # 1.0 for exact duplicates
        ("kind", "VARCHAR"),  # 'exact' (later: 'near')
    ],
    "labelled_documents": [
        ("id", "VARCHAR"),
        ("source", "VARCHAR"),
        ("url", "VARCHAR"),
        ("title", "VARCHAR"),
        ("text", "VARCHAR"),
        ("lang", "VARCHAR"),
        ("n_chars", "BIGINT"),
        ("n_words", "BIGINT"),
        ("content_hash", "VARCHAR"),
        ("topic", "VARCHAR"),  # one of the configured topics, or 'other'
        ("topic_source", "VARCHAR"),  # e.g. 'rule:keywords'
        ("topic_confidence", "DOUBLE"),  # 0..1
    ],
    "rejected_documents": [
        ("id", "VARCHAR"),
        ("source", "VARCHAR"),
        ("url", "VARCHAR"),
        ("stage", "VARCHAR"),  # extract | clean | dedup | ...
        ("rule", "VARCHAR"),  # named rule, e.g. 'not_html', 'too_few_words', 'exact_duplicate'
        ("value", "VARCHAR"),  # the measured value (or the keeper id for duplicates)
    ],
    "dataset_release": [
        ("id", "VARCHAR"),
        ("source", "VARCHAR"),
        ("url", "VARCHAR"),
        ("title", "VARCHAR"),
        ("text", "VARCHAR"),
        ("lang", "VARCHAR"),
        ("topic", "VARCHAR"),
        ("topic_source", "VARCHAR"),
        ("topic_confidence", "DOUBLE"),
        ("split", "VARCHAR"),  # train | validation | test
    ],
}

SPLITS = ("train", "validation", "test")


def columns(layer: str) -> list[str]:
    """Column names of a layer, in order."""
    return [name for name, _ in LAYERS[layer]]


def select_list(layer: str) -> str:
    """A SQL select list that casts to the contract's types, in the contract's order."""
    return ", ".join(f'CAST("{name}" AS {typ}) AS "{name}"' for name, typ in LAYERS[layer])
