"""The column contract of every layer.

These table names and columns are what users query in ``<workdir>/warehouse.duckdb``.
Each stage writes its layer with exactly these columns, in this order; the GX suites in
``expectations/`` and the tests are checked against this module.
"""

from __future__ import annotations

# layer name -> ordered (column, DuckDB type) pairs
LAYERS: dict[str, list[tuple[str, str]]] = {
    "raw_pages": [
        # one row per URL (or dump record) whose body is stored: the newest crawl of a crawl source
        # (fetched now, or not_modified since an earlier crawl), every ingested record of a dump source
        ("id", "VARCHAR"),  # 16 hex chars: first 64 bits of md5(source || ' ' || recorded url)
        ("source", "VARCHAR"),  # source name from sources.yaml (the Dagster partition)
        ("crawl_id", "VARCHAR"),  # batch that stored this body: <source>-<UTC time>Z (crawl) or <source>-<sha256[:16]> (file)
        ("url", "VARCHAR"),  # recorded (canonical) url
        ("fetch_url", "VARCHAR"),  # url actually fetched (differs when record_base_url is set)
        ("status", "INTEGER"),  # HTTP status
        ("content_type", "VARCHAR"),  # lower-cased media type, no parameters
        ("charset", "VARCHAR"),  # encoding used to decode the body (after detection)
        ("fetched_at", "TIMESTAMP WITH TIME ZONE"),  # UTC (WARC-Date for WARC records)
        ("depth", "INTEGER"),  # link depth from a start url (NULL for dumps)
        ("referer", "VARCHAR"),
        ("body_bytes", "BIGINT"),
        ("content_hash", "VARCHAR"),  # md5 hex of the undecoded body (of the UTF-8 text for text dumps)
        ("etag", "VARCHAR"),  # response validators, sent back on the next crawl
        ("last_modified", "VARCHAR"),
        ("headers", "VARCHAR"),  # JSON object of the response headers (lower-case names)
        ("title", "VARCHAR"),  # dumps: title given by the dump
        ("text", "VARCHAR"),  # dumps: already-extracted text (html is then NULL)
        ("html", "VARCHAR"),  # decoded HTML body
    ],
    "crawl_log": [
        # one row per URL (or dump record) each batch considered, whatever happened to it
        ("id", "VARCHAR"),  # as raw_pages.id
        ("source", "VARCHAR"),
        ("crawl_id", "VARCHAR"),
        ("seq", "BIGINT"),  # record number within the batch (line of a JSONL dump); (crawl_id, seq) is the key
        ("url", "VARCHAR"),
        ("fetch_url", "VARCHAR"),
        ("outcome", "VARCHAR"),  # fetched | not_modified | redirected | robots_disallowed | filtered_by_rule | off_domain | too_large | not_html | blocked_address | failed:<reason>
        ("detail", "VARCHAR"),  # rule, address, limit or error behind the outcome
        ("status", "INTEGER"),
        ("content_type", "VARCHAR"),
        ("fetched_at", "TIMESTAMP WITH TIME ZONE"),
        ("depth", "INTEGER"),
        ("referer", "VARCHAR"),
        ("body_bytes", "BIGINT"),
        ("content_hash", "VARCHAR"),
    ],
    "extracted_documents": [
        ("id", "VARCHAR"),
        ("source", "VARCHAR"),
        ("crawl_id", "VARCHAR"),
        ("url", "VARCHAR"),
        ("title", "VARCHAR"),
        ("date", "VARCHAR"),  # publication date YYYY-MM-DD from the page's metadata, NULL when absent
        ("text", "VARCHAR"),  # main text, paragraphs separated by "\n"
        ("lang", "VARCHAR"),  # ISO 639-1 code, "und" when unknown
        ("lang_score", "DOUBLE"),  # 0..1 confidence of the language guess
        ("extractor", "VARCHAR"),  # which extractor of the chain produced the text ('text': a text dump)
    ],
    "cleaned_documents": [
        ("id", "VARCHAR"),
        ("source", "VARCHAR"),
        ("url", "VARCHAR"),
        ("title", "VARCHAR"),
        ("text", "VARCHAR"),  # normalised, PII redacted
        ("lang", "VARCHAR"),
        ("n_chars", "BIGINT"),
        ("n_words", "BIGINT"),  # words of the language's tokeniser (jieba for zh, characters for ja), punctuation excluded
        ("pii_email", "INTEGER"),  # structured PII spans redacted, per type (core/pii.py)
        ("pii_phone", "INTEGER"),
        ("pii_ip", "INTEGER"),
        ("pii_card", "INTEGER"),
        ("pii_iban", "INTEGER"),
        ("pii_cn_id", "INTEGER"),
        ("quality", "VARCHAR"),  # JSON object: quality rule -> measured value, keys sorted (core/quality/rules.py)
        ("annotations", "VARCHAR[]"),  # annotate-only rules the document fails (it is kept), sorted
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
        ("pii_ip", "INTEGER"),
        ("pii_card", "INTEGER"),
        ("pii_iban", "INTEGER"),
        ("pii_cn_id", "INTEGER"),
        ("quality", "VARCHAR"),
        ("annotations", "VARCHAR[]"),
        ("content_hash", "VARCHAR"),  # md5 of the whitespace-folded, lower-cased text
    ],
    "duplicate_clusters": [
        ("cluster_id", "VARCHAR"),  # = keeper_id's content hash for exact clusters
        ("doc_id", "VARCHAR"),  # a dropped document
        ("keeper_id", "VARCHAR"),  # the document kept in its place
        ("similarity", "DOUBLE"),  # 1.0 for exact duplicates; estimated Jaccard with the keeper for near
        ("kind", "VARCHAR"),  # 'exact' (same normalised text or URL) | 'near' (MinHash-LSH, verified)
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
        ("rule", "VARCHAR"),  # named rule, e.g. 'not_html', 'gopher_quality.word_count', 'exact_duplicate'
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
