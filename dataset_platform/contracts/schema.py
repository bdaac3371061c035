"""The column contract of every layer.

These table names and columns are what users query in ``<workdir>/warehouse.duckdb``.
Each stage writes its layer with exactly these columns, in this order; the GX suites in
``expectations/`` and the tests are checked against this module.
"""

from __future__ import annotations

#: the fixed columns of the labelled layers (the label columns of each configured set follow)
_LABELLED_BASE: list[tuple[str, str]] = [
    ("id", "VARCHAR"),
    ("source", "VARCHAR"),
    ("url", "VARCHAR"),
    ("title", "VARCHAR"),  # page or record title (extracted from the HTML, or given by the dump)
    ("text", "VARCHAR"),
    ("lang", "VARCHAR"),
    ("n_chars", "BIGINT"),  # characters of text
    ("n_words", "BIGINT"),
    ("content_hash", "VARCHAR"),
]

#: the cleaned layer's columns (the deduplicated layer's derive from them)
_CLEANED: list[tuple[str, str]] = [
    ("id", "VARCHAR"),
    ("source", "VARCHAR"),
    ("url", "VARCHAR"),
    ("title", "VARCHAR"),  # page or record title (extracted from the HTML, or given by the dump)
    ("text", "VARCHAR"),  # normalised, PII redacted
    ("lang", "VARCHAR"),
    ("n_chars", "BIGINT"),  # characters of text
    ("n_words", "BIGINT"),  # words of the language's tokeniser (jieba for zh, characters for ja), punctuation excluded
    ("pii_email", "INTEGER"),  # structured PII spans redacted, per type (stages/clean/pii.py)
    ("pii_phone", "INTEGER"),
    ("pii_ip", "INTEGER"),
    ("pii_card", "INTEGER"),
    ("pii_iban", "INTEGER"),
    ("pii_cn_id", "INTEGER"),
    ("quality", "VARCHAR"),  # JSON object: quality rule -> measured value, keys sorted (contracts/rules.py)
    ("annotations", "VARCHAR[]"),  # annotate-only rules the document fails (it is kept), sorted
    ("text_hash", "UBIGINT"),  # DuckDB hash(text): dedup tells new or changed texts without reading them
]

#: layers stored by batch, one part per landed batch (``layers/<layer>/<source>/<part>/``): the raw
#: layer and the output of every stage in ``stages/registry.py`` (a new stage's layer goes here
#: with its columns below; tests/test_stage_registry.py checks both)
BATCHED_LAYERS = ("raw_pages", "extracted_documents", "cleaned_documents", "scored_documents", "deduplicated_documents",
                  "labelled_documents", "decontaminated_documents")

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
        ("referer", "VARCHAR"),  # page whose link led here (NULL for start urls and dumps)
        ("body_bytes", "BIGINT"),  # size of the stored body in bytes, as received
        ("content_hash", "VARCHAR"),  # md5 hex of the undecoded body (of the UTF-8 text for text dumps)
        ("etag", "VARCHAR"),  # response validators, sent back on the next crawl
        ("last_modified", "VARCHAR"),  # the Last-Modified response header, sent back on the next crawl
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
    "cleaned_documents": _CLEANED,
    # the cleaned documents the quality model kept (all of them in annotate mode or without a model)
    "scored_documents": _CLEANED + [
        ("quality_score", "DOUBLE"),  # the quality model's P(good) in 0..1; NULL when no model is trained
    ],
    # the cleaned columns (text_hash stays behind), + the normalised text's hash
    "deduplicated_documents": [c for c in _CLEANED if c[0] != "text_hash"]
    + [("content_hash", "VARCHAR")],  # md5 of the whitespace-folded, lower-cased text
    "duplicate_clusters": [
        ("cluster_id", "VARCHAR"),  # = keeper_id's content hash for exact clusters
        ("doc_id", "VARCHAR"),  # a dropped document
        ("keeper_id", "VARCHAR"),  # the document kept in its place
        ("similarity", "DOUBLE"),  # 1.0 for exact duplicates; estimated Jaccard with the keeper for near
        ("kind", "VARCHAR"),  # 'exact' (same normalised text or URL) | 'near' (MinHash-LSH, verified)
    ],
    # deduplicated documents with one value, source and confidence per configured label set:
    # the columns of label_columns(set names) follow these (see layer_columns)
    "labelled_documents": list(_LABELLED_BASE),
    # labelled documents sharing no n-gram with a configured evaluation set (+ label columns)
    "decontaminated_documents": list(_LABELLED_BASE),
    "human_annotations": [
        # every label a person gave in an imported Label Studio export (disagreements kept)
        ("doc_id", "VARCHAR"),  # our document id (task data field doc_id)
        ("label_set", "VARCHAR"),  # the Choices control's name = the label set
        ("annotator", "VARCHAR"),  # Label Studio's completed_by (user id, or e-mail when exported so)
        ("value", "VARCHAR"),  # the chosen value
        ("annotation_id", "BIGINT"),  # Label Studio's annotation id
        ("task_id", "BIGINT"),  # Label Studio's task id
        ("updated_at", "VARCHAR"),  # as exported (ISO 8601)
        ("file", "VARCHAR"),  # the export file it came from
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
        # + the label columns of every label set, then split (see layer_columns)
        ("id", "VARCHAR"),
        ("source", "VARCHAR"),
        ("url", "VARCHAR"),
        ("title", "VARCHAR"),
        ("text", "VARCHAR"),
        ("lang", "VARCHAR"),
        ("augmented_from", "VARCHAR"),  # NULL, or the train document an augmented copy was made from
        ("split", "VARCHAR"),  # train | validation | test
    ],
}

#: layers that carry the label columns of the configured label sets, and before which column
LABELLED_LAYERS = {"labelled_documents": None, "decontaminated_documents": None, "dataset_release": "augmented_from"}


SPLITS = ("train", "validation", "test")


def label_columns(label_sets: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """The three columns of each label set: value, where it came from, how sure."""
    out: list[tuple[str, str]] = []
    for name in label_sets:
        out += [
            (name, "VARCHAR"),  # one of the set's values
            (f"{name}_source", "VARCHAR"),  # human | rule | model | rule+model | default
            (f"{name}_confidence", "DOUBLE"),  # 0..1
        ]
    return out


def layer_columns(layer: str, label_sets: list[str] | tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(column, type) of a layer, with the label columns of ``label_sets`` where the layer has them."""
    cols = list(LAYERS[layer])
    if layer not in LABELLED_LAYERS or not label_sets:
        return cols
    before = LABELLED_LAYERS[layer]
    at = len(cols) if before is None else [n for n, _ in cols].index(before)
    return cols[:at] + label_columns(label_sets) + cols[at:]


def columns(layer: str, label_sets: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Column names of a layer, in order."""
    return [name for name, _ in layer_columns(layer, label_sets)]


def select_list(layer: str, label_sets: list[str] | tuple[str, ...] = ()) -> str:
    """A SQL select list that casts to the contract's types, in the contract's order."""
    return ", ".join(f'CAST("{name}" AS {typ}) AS "{name}"' for name, typ in layer_columns(layer, label_sets))
