"""EDA-style augmentation of the train split: synonym replacement, random swap, random deletion.

Off by default (``pipeline.augmentation.enabled``). Only documents already assigned to ``train``
are copied, and every copy carries ``augmented_from`` (the original's id) and stays in train, so
no augmented text can reach validation or test. Each copy is deterministic: its random generator
is seeded from the settings' seed, the original's id and the copy number.

Operations work on the words of each line (whitespace-separated; lines of Chinese or Japanese text
without spaces are left as they are, since swapping or deleting characters breaks words there).
Synonyms come from a small built-in English list plus ``synonyms`` (a JSON file of word -> list
of words) when configured.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import duckdb
import pyarrow as pa

from dataset_platform.config import AugmentSettings

#: a small English synonym list written for this project (common news words)
BUILTIN_SYNONYMS: dict[str, list[str]] = {
    "big": ["large", "major"], "large": ["big", "sizeable"], "small": ["little", "minor"],
    "said": ["stated", "reported"], "says": ["states", "reports"], "new": ["fresh", "recent"],
    "important": ["significant", "key"], "quickly": ["rapidly", "swiftly"], "fast": ["rapid", "quick"],
    "slow": ["gradual", "unhurried"], "begin": ["start", "commence"], "began": ["started", "commenced"],
    "start": ["begin", "launch"], "end": ["finish", "close"], "help": ["assist", "support"],
    "show": ["reveal", "demonstrate"], "shows": ["reveals", "demonstrates"], "buy": ["purchase", "acquire"],
    "many": ["numerous", "several"], "often": ["frequently", "regularly"], "people": ["residents", "individuals"],
    "city": ["town", "municipality"], "plan": ["scheme", "proposal"], "goal": ["aim", "target"],
    "increase": ["rise", "growth"], "decrease": ["drop", "decline"], "rose": ["climbed", "increased"],
    "fell": ["dropped", "declined"], "change": ["shift", "alteration"], "problem": ["issue", "difficulty"],
    "answer": ["reply", "response"], "build": ["construct", "erect"], "built": ["constructed", "erected"],
    "happy": ["glad", "pleased"], "difficult": ["hard", "tough"], "easy": ["simple", "straightforward"],
    "expert": ["specialist", "authority"], "study": ["research", "analysis"], "result": ["outcome", "finding"],
    "team": ["squad", "side"], "win": ["victory", "triumph"], "company": ["firm", "business"],
    "market": ["marketplace", "trade"], "report": ["account", "statement"], "think": ["believe", "consider"],
}


def _synonyms(settings: AugmentSettings) -> dict[str, list[str]]:
    table = dict(BUILTIN_SYNONYMS)
    if settings.synonyms:
        path = Path(settings.synonyms)
        try:
            extra = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"augmentation.synonyms: {path} is not a readable JSON object of word -> [words] ({e})") from None
        if not isinstance(extra, dict) or not all(isinstance(v, list) for v in extra.values()):
            raise ValueError(f"augmentation.synonyms: {path} must map each word to a list of words")
        table.update({str(k).lower(): [str(x) for x in v] for k, v in extra.items()})
    return table


def _rng(seed: int, doc_id: str, copy: int) -> random.Random:
    return random.Random(int(hashlib.md5(f"{seed}:{doc_id}:{copy}".encode()).hexdigest()[:16], 16))


def augment_text(text: str, settings: AugmentSettings, rng: random.Random, synonyms: dict[str, list[str]]) -> tuple[str, list[str]]:
    """One augmented copy of ``text`` and the operations that changed it."""
    applied: set[str] = set()
    out_lines = []
    for line in text.split("\n"):
        words = line.split(" ")
        if len(words) < 4:
            out_lines.append(line)
            continue
        n = max(1, round(settings.alpha * len(words)))
        for op in settings.operations:
            if op == "synonym":
                spots = [i for i, w in enumerate(words) if w.lower() in synonyms]
                for i in rng.sample(spots, min(n, len(spots))):
                    choice = rng.choice(synonyms[words[i].lower()])
                    words[i] = choice.capitalize() if words[i][:1].isupper() else choice
                    applied.add("synonym")
            elif op == "swap":
                for _ in range(n):
                    i, j = rng.randrange(len(words)), rng.randrange(len(words))
                    if i != j:
                        words[i], words[j] = words[j], words[i]
                        applied.add("swap")
            elif op == "delete" and len(words) > n + 1:
                drop = set(rng.sample(range(len(words)), n))
                words = [w for k, w in enumerate(words) if k not in drop]
                applied.add("delete")
        out_lines.append(" ".join(words))
    return "\n".join(out_lines), sorted(applied)


def augment_train(con: duckdb.DuckDBPyConnection, settings: AugmentSettings, *, batch_size: int = 2000) -> dict:
    """Append augmented copies of the train rows of ``split_docs`` (in place); returns counters."""
    synonyms = _synonyms(settings)
    cols = con.sql("SELECT * FROM split_docs LIMIT 0").columns
    reader = con.cursor().sql(
        "SELECT id, text FROM split_docs WHERE split = 'train' AND augmented_from IS NULL ORDER BY id"
    ).to_arrow_reader(batch_size)
    # the copies of each batch go to a table as the batch is done: no list of the whole split in Python
    con.sql("CREATE OR REPLACE TEMP TABLE _aug (_id VARCHAR, _from VARCHAR, _text VARCHAR)")
    ops_count: dict[str, int] = {}
    rows = 0
    for batch in reader:
        ids, orig, texts = [], [], []
        for doc_id, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
            for k in range(settings.copies):
                new, applied = augment_text(text or "", settings, _rng(settings.seed, doc_id, k), synonyms)
                if not applied:
                    continue  # nothing changed: not a new example
                ids.append(hashlib.md5(f"{doc_id}:aug:{k}".encode()).hexdigest()[:16])
                orig.append(doc_id)
                texts.append(new)
                for op in applied:
                    ops_count[op] = ops_count.get(op, 0) + 1
        con.register("_aug_batch", pa.table({"_id": pa.array(ids, pa.string()), "_from": pa.array(orig, pa.string()),
                                             "_text": pa.array(texts, pa.string())}))
        con.sql("INSERT INTO _aug SELECT * FROM _aug_batch")
        con.unregister("_aug_batch")
        rows += len(ids)
    select = ", ".join(
        {"id": "a._id AS id", "text": "a._text AS text", "augmented_from": "a._from AS augmented_from"}.get(c, f'd."{c}"')
        for c in cols)
    con.sql(f"INSERT INTO split_docs SELECT {select} FROM _aug a JOIN split_docs d ON d.id = a._from")
    con.sql("DROP TABLE _aug")
    return {"rows": rows, "operations": sorted(ops_count), "per_operation": ops_count}
