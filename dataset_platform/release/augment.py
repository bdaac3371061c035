"""EDA-style augmentation of the train split: synonym replacement, random swap, random deletion.

Off by default (``pipeline.augmentation.enabled``). Only documents already assigned to ``train``
are copied, and every copy carries ``augmented_from`` (the original's id) and stays in train, so
no augmented text can reach validation or test. Each copy is deterministic: its random generator
is seeded from the settings' seed, the original's id and the copy number.

Operations work on the words of each line (whitespace-separated; lines of Chinese or Japanese text
without spaces are left as they are, since swapping or deleting characters breaks words there).
Synonyms come from a small built-in English list plus ``synonyms`` (a JSON file of word -> list
of words) when configured.

The release (``release/shards.py``) calls :func:`augment_batch` on each batch of train documents it
writes and puts each copy right after its original, in the original's shard: a shard reused by a
later release keeps its copies, so only new or changed documents are augmented again.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

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


def synonyms_of(settings: AugmentSettings) -> dict[str, list[str]]:
    """The synonym table the settings use (the built-in list + the ``synonyms`` file)."""
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


def augment_batch(ids: list[str], texts: list[str | None], settings: AugmentSettings,
                  synonyms: dict[str, list[str]]) -> tuple[list[int], list[str], list[str], list[str]]:
    """The augmented copies of a batch of train documents, in order (each original's copies in copy
    order): the position of the original in the batch, the copy's id (16 hex of md5 of
    ``<id>:aug:<k>``), its text, and the operations that changed it (comma-separated). A copy that
    no operation changed is not made."""
    pos, out_ids, out_texts, ops = [], [], [], []
    for i, (doc_id, text) in enumerate(zip(ids, texts)):
        for k in range(settings.copies):
            new, applied = augment_text(text or "", settings, _rng(settings.seed, doc_id, k), synonyms)
            if not applied:
                continue  # nothing changed: not a new example
            pos.append(i)
            out_ids.append(hashlib.md5(f"{doc_id}:aug:{k}".encode()).hexdigest()[:16])
            out_texts.append(new)
            ops.append(",".join(applied))
    return pos, out_ids, out_texts, ops
