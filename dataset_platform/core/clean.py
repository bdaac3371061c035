"""Cleaning: Unicode/whitespace normalisation, PII redaction and basic quality rules.

Normalisation (ftfy) is per document over bounded Arrow batches; redaction, counting and every
quality rule are one set-based DuckDB pass. Each rule has a name (recorded in
``rejected_documents.rule``) and records its measured value.

Rules, in the order they are applied (the first that fails names the rejection):

==========================  ===========================================================  =========
rule                        measured value                                               default
==========================  ===========================================================  =========
``language_not_wanted``     detected language, when ``clean.languages`` is not empty     (all)
``too_few_words``           words (whitespace words; each CJK character counts as one)   < 50
``too_many_words``          words                                                        > 100000
``repetitive``              distinct words / words                                       < 0.3
``too_many_symbols``        symbol characters / characters                               > 0.25
==========================  ===========================================================  =========
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

import duckdb
import pyarrow as pa

from dataset_platform.config import CleanSettings
from dataset_platform.core.stage import StageResult, finish_stage
from dataset_platform.storage import sql_str

STAGE = "clean"

# RE2 patterns (DuckDB). Kept simple on purpose; the PII issue deepens them.
EMAIL_RE = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
PHONE_RE = (
    r"(\+\d{1,3}[ .-]?)?(\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]\d{3,4}"  # international / NANP
    r"|(\+?86[ -]?)?1[3-9]\d([ -]?\d{4}){2}"  # mainland-China mobile
)
PII_TYPES = {"email": (EMAIL_RE, "<EMAIL>"), "phone": (PHONE_RE, "<PHONE>")}
# A "word": one CJK ideograph / kana, or a run of letters and digits.
WORD_RE = r"[\p{Han}\p{Hiragana}\p{Katakana}]|[\p{L}\p{N}]+"
SYMBOL_RE = r"[^\p{L}\p{N}\p{P}\s]"

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0\u3000]+")
_BLANKS = re.compile(r"\n{3,}")


def normalise_text(text: str) -> str:
    """Repair mojibake (ftfy), NFC, drop control characters, fold spaces, trim lines."""
    import ftfy

    t = ftfy.fix_text(text, normalization="NFC")
    t = unicodedata.normalize("NFC", t).replace("\r\n", "\n").replace("\r", "\n")
    t = _CONTROL.sub("", t)
    lines = [_SPACES.sub(" ", ln).strip() for ln in t.split("\n")]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


def _normalise_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    ids = batch.column("id")
    texts = [normalise_text(t) if t is not None else None for t in batch.column("text").to_pylist()]
    titles = [normalise_text(t) if t else None for t in batch.column("title").to_pylist()]
    return pa.RecordBatch.from_arrays(
        [ids, pa.array(titles, pa.string()), pa.array(texts, pa.string())], names=["id", "title", "text"]
    )


def run_clean(
    con: duckdb.DuckDBPyConnection,
    extracted_sql: str,
    settings: CleanSettings = CleanSettings(),
    *,
    batch_size: int = 2000,
    log: Callable[[str], None] | None = None,
) -> StageResult:
    """Clean every extracted document; leaves ``kept`` and ``rejected`` on ``con``.

    ``extracted_sql`` is FROM-able with at least id, text (and optionally source, url, title, lang).
    """
    con.sql(f"CREATE OR REPLACE TABLE _in AS SELECT * FROM {extracted_sql}")
    cols = {r[0] for r in con.sql("DESCRIBE _in").fetchall()}
    for col, default in (("source", "NULL"), ("url", "NULL"), ("title", "NULL"), ("lang", "NULL")):
        if col not in cols:
            con.sql(f"ALTER TABLE _in ADD COLUMN {col} VARCHAR DEFAULT {default}")
    n = con.sql("SELECT count(*) FROM _in").fetchall()[0][0]

    con.sql("CREATE OR REPLACE TABLE _norm (id VARCHAR, title VARCHAR, text VARCHAR)")
    cur = con.cursor()
    done = 0
    for b in cur.sql("SELECT id, title, text FROM _in ORDER BY id").to_arrow_reader(batch_size):
        con.register("_batch", _normalise_batch(b))
        con.sql("INSERT INTO _norm SELECT * FROM _batch")
        con.unregister("_batch")
        done += b.num_rows
        if log:
            log(f"clean: normalised {done}/{n} documents")
    cur.close()

    redact = "n.text"
    counts = []
    for kind, (pattern, placeholder) in PII_TYPES.items():
        counts.append(f"len(regexp_extract_all(n.text, {sql_str(pattern)})) AS pii_{kind}")
        if settings.redact_pii:
            redact = f"regexp_replace({redact}, {sql_str(pattern)}, {sql_str(placeholder)}, 'g')"
    langs = ", ".join(sql_str(x) for x in settings.languages)
    lang_rule = (
        f"WHEN coalesce(lang, 'und') NOT IN ({langs}) THEN 'language_not_wanted'" if settings.languages else ""
    )
    lang_value = f"WHEN coalesce(lang, 'und') NOT IN ({langs}) THEN coalesce(lang, 'und')" if settings.languages else ""
    con.sql(
        f"""
        CREATE OR REPLACE TABLE _measured AS
        WITH red AS (
          SELECT i.id, i.source, i.url, n.title, i.lang, {redact} AS text, {", ".join(counts)}
          FROM _in i JOIN _norm n USING (id)
        ), tok AS (
          SELECT *, regexp_extract_all(lower(coalesce(text, '')), {sql_str(WORD_RE)}) AS words
          FROM red
        )
        SELECT id, source, url, title, text, lang, pii_email, pii_phone,
               length(coalesce(text, '')) AS n_chars,
               len(words) AS n_words,
               CASE WHEN len(words) = 0 THEN 0.0 ELSE len(list_distinct(words)) / len(words) END AS unique_ratio,
               CASE WHEN length(coalesce(text, '')) = 0 THEN 0.0
                    ELSE len(regexp_extract_all(text, {sql_str(SYMBOL_RE)})) / length(text) END AS symbol_ratio
        FROM tok
        """
    )
    s = settings
    con.sql(
        f"""
        CREATE OR REPLACE TABLE _ruled AS
        SELECT *,
          CASE {lang_rule}
            WHEN n_words < {s.min_words} THEN 'too_few_words'
            WHEN n_words > {s.max_words} THEN 'too_many_words'
            WHEN unique_ratio < {s.min_unique_word_ratio} THEN 'repetitive'
            WHEN symbol_ratio > {s.max_symbol_ratio} THEN 'too_many_symbols'
          END AS rule,
          CASE {lang_value}
            WHEN n_words < {s.min_words} OR n_words > {s.max_words} THEN CAST(n_words AS VARCHAR)
            WHEN unique_ratio < {s.min_unique_word_ratio} THEN printf('%.4f', unique_ratio)
            WHEN symbol_ratio > {s.max_symbol_ratio} THEN printf('%.4f', symbol_ratio)
          END AS value
        FROM _measured
        """
    )
    con.sql(
        """
        CREATE OR REPLACE TABLE kept AS
        SELECT id, source, url, title, text, lang, n_chars, n_words, pii_email, pii_phone
        FROM _ruled WHERE rule IS NULL ORDER BY id
        """
    )
    con.sql(
        f"""
        CREATE OR REPLACE TABLE rejected AS
        SELECT id, source, url, '{STAGE}' AS stage, rule, value FROM _ruled WHERE rule IS NOT NULL ORDER BY id
        """
    )
    result = finish_stage(con, STAGE, input_rows=n)
    pii = con.sql("SELECT coalesce(sum(pii_email), 0), coalesce(sum(pii_phone), 0) FROM _ruled").fetchall()[0]
    result.extra.update({"pii_email": int(pii[0]), "pii_phone": int(pii[1])})
    return result
