"""Planted near duplicates with known edits and their true shingle Jaccard similarity.

Originals go to shard ``a_originals``, edited copies to ``b_copies``, so every survivor
is an original and the documents that should be removed are exactly the copies whose
true Jaccard similarity to their original reaches the threshold.
"""

from __future__ import annotations

import random
import unicodedata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

EDITS = ("substitute", "insert", "delete", "reorder", "boilerplate")
FILLER = "the of and a new old small large early late first last major minor local national".split()
BOILERPLATE = (
    "Share this article on social media . Subscribe to our newsletter for daily updates . "
    "All rights reserved . Cookie policy and privacy notice apply to this page ."
).split()


def shingles(words: list[str], n: int = 5) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)} if len(words) >= n else {tuple(words)}


def words_of(text: str) -> list[str]:
    """The documented normalization, written independently of the pipeline's: NFKC, lower
    case, anything but letters, digits, marks and whitespace becomes a space, then words."""
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(c if unicodedata.category(c)[0] in "LNM" or c.isspace() else " " for c in text).split()


def true_jaccard(a: str, b: str, n: int = 5) -> float:
    sa, sb = shingles(words_of(a), n), shingles(words_of(b), n)
    return len(sa & sb) / len(sa | sb)


def edit(rng: random.Random, text: str, kind: str, strength: float) -> str:
    words = text.split(" ")
    k = max(1, int(len(words) * strength))
    if kind == "substitute":
        for i in rng.sample(range(len(words)), k):
            words[i] = rng.choice(FILLER)
    elif kind == "insert":
        for _ in range(k):
            words.insert(rng.randrange(len(words) + 1), rng.choice(FILLER))
    elif kind == "delete":
        for i in sorted(rng.sample(range(len(words)), min(k, len(words) - 5)), reverse=True):
            del words[i]
    elif kind == "reorder":
        cut = rng.randrange(len(words) // 4, 3 * len(words) // 4)
        words = words[cut:] + words[:cut]
        for i in rng.sample(range(len(words)), max(0, k // 4)):
            words[i] = rng.choice(FILLER)
    else:
        extra = BOILERPLATE[: max(5, min(len(BOILERPLATE), k))]
        words = extra + words + extra[::-1]
    return " ".join(words)


def build(originals: list[str], out_dir: Path, seed: int = 0, copies: int | None = None) -> list[dict]:
    """Write the two shards; return one record per copy with its edit and true Jaccard."""
    rng = random.Random(seed)
    copies = len(originals) // 2 if copies is None else copies
    planted = []
    for i in range(copies):
        kind = EDITS[i % len(EDITS)]
        text = edit(rng, originals[i], kind, strength=rng.uniform(0.0, 0.12))
        planted.append(
            {
                "id": f"copy-{i}",
                "of": f"orig-{i}",
                "edit": kind,
                "text": text,
                "jaccard": true_jaccard(originals[i], text),
            }
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table({"id": [f"orig-{i}" for i in range(len(originals))], "text": originals}),
        out_dir / "a_originals.parquet",
    )
    pq.write_table(
        pa.table({"id": [p["id"] for p in planted], "text": [p["text"] for p in planted]}), out_dir / "b_copies.parquet"
    )
    return planted


def precision_recall(removed_ids: set[str], planted: list[dict], threshold: float) -> dict:
    truth = {p["id"] for p in planted if p["jaccard"] >= threshold}
    hits = len(removed_ids & truth)
    return {
        "truth": len(truth),
        "removed": len(removed_ids),
        "hits": hits,
        "precision": hits / len(removed_ids) if removed_ids else 1.0,
        "recall": hits / len(truth) if truth else 1.0,
    }


def wikitext_paragraphs(path: Path, min_words: int = 60, limit: int = 1200) -> list[str]:
    paragraphs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("=") and len(line.split()) >= min_words:
            paragraphs.append(line)
        if len(paragraphs) >= limit:
            break
    return sorted(set(paragraphs), key=paragraphs.index)
