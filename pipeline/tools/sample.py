"""``refinery sample``: a multi-domain Parquet corpus from text on any Python 3.11 machine.

Sources: docstrings and function sources of the Python standard library (read with
``ast``, nothing imported), web-like pages composed from them, and short non-English
passages bundled with the package. Planted on purpose, and listed in ``_plants.json``
so tests can check each stage finds them: exact duplicates (some differing only in
case and whitespace), near duplicates (a few words edited), non-English documents,
documents with PII (reserved example values only), and empty or junk documents.
"""

from __future__ import annotations

import ast
import importlib.resources
import random
import re
import sysconfig
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core import storage

SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "turtledemo", "__pycache__", "ensurepip"}


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for path in sorted(root.rglob("*.py")):
        if not SKIP_DIRS.intersection(path.relative_to(root).parts):
            files.append(path)
    return files


def _harvest(limit_docs: int, limit_code: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(source name, text) pairs of long docstrings and of function sources."""
    docs: list[tuple[str, str]] = []
    code: list[tuple[str, str]] = []
    for path in _stdlib_files():
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        name = path.stem
        lines = source.splitlines(keepends=True)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= 200 and len(docs) < limit_docs:
                    docs.append((f"{name}.{getattr(node, 'name', 'module')}", doc))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and len(code) < limit_code:
                segment = "".join(lines[node.lineno - 1 : node.end_lineno])
                if 400 <= len(segment) <= 6000:
                    code.append((f"{name}.{node.name}", segment))
        if len(docs) >= limit_docs and len(code) >= limit_code:
            break
    return docs, code


def multilingual_sentences() -> dict[str, list[str]]:
    by_lang: dict[str, list[str]] = {}
    text = importlib.resources.files("pipeline").joinpath("resources", "multilingual.tsv").read_text("utf-8")
    for line in text.splitlines():
        lang, sentence = line.split("\t", 1)
        by_lang.setdefault(lang, []).append(sentence)
    return by_lang


def _pii_line(rng: random.Random, n: int) -> str:
    # Reserved or documented example values: example.org mail, 555-01xx phones, TEST-NET IPs,
    # card-network test numbers, the IBAN registry's example IBAN, SSA's voided sample SSN.
    choices = [
        f"Contact: jordan.lee{n}@example.org or call +1 (415) 555-01{n % 100:02d}.",
        f"Server logs show requests from 192.0.2.{n % 250 + 1} and 198.51.100.{(n * 7) % 250 + 1}.",
        "Payment card on file: 4111 1111 1111 1111, expiry 12/29.",
        "Please wire the deposit to IBAN DE89 3704 0044 0532 0130 00 before Friday.",
        "Applicant SSN: 078-05-1120 (as printed on the form).",
    ]
    return " ".join(rng.sample(choices, k=rng.randint(1, 3)))


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if len(s.strip()) > 30]


def _near_duplicate(rng: random.Random, text: str) -> str:
    words = text.split(" ")
    for _ in range(max(1, len(words) // 40)):
        i = rng.randrange(len(words))
        words[i] = rng.choice(["very", "quite", "the", "new", "old", "main"])
    return " ".join(words)


def _unique_texts(pool: list[tuple[str, str]], rng: random.Random):
    """Every text of the pool once, then distinct pairs of them joined, so no accidental duplicates."""
    yield from pool
    used = set()
    while True:
        a, b = rng.randrange(len(pool)), rng.randrange(len(pool))
        if a != b and (a, b) not in used:
            used.add((a, b))
            yield f"{pool[a][0]}+{pool[b][0]}", pool[a][1] + "\n\n" + pool[b][1]


JUNK = [
    "",
    "   ",
    "\n\n\t ",
    "!!!! ???? #### $$$$ %%%%",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "0 0 0 0 0 0 0 0 0 0",
]


def random_prose(rng: random.Random, size: int) -> str:
    """``size`` characters of sentences over a random 5,000-word vocabulary plus common
    function words, about 15% of them ending a line: long documents of a realistic shape."""
    vocabulary = ["".join(rng.choices("etaoinshrdlucmfwyp", k=rng.randint(1, 9))) for _ in range(5000)]
    vocabulary += ["the", "of", "and", "to", "with"] * 200
    parts, length = [], 0
    while length < size:
        sentence = " ".join(rng.choices(vocabulary, k=rng.randint(5, 25))).capitalize() + rng.choice(".!?,;")
        sentence += "\n" if rng.random() < 0.15 else " "
        parts.append(sentence)
        length += len(sentence)
    return "".join(parts)[:size]


def build_sample_documents(num_docs: int, seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rng = random.Random(seed)
    plants: dict[str, Any] = {"exact_duplicates": [], "near_duplicates": [], "non_english": [], "pii": [], "junk": []}
    base_count = int(num_docs * 0.86)
    docs_pool, code_pool = _harvest(limit_docs=max(200, base_count), limit_code=max(100, base_count // 3))
    sentences = [s for _, text in docs_pool for s in _sentences(text)]
    languages = multilingual_sentences()
    rows: list[dict[str, Any]] = []

    def add(text: str, domain: str, url: str) -> dict[str, Any]:
        row = {"id": f"sample-{len(rows):07d}", "text": text, "domain": domain, "url": url}
        rows.append(row)
        return row

    docs_iter, code_iter = _unique_texts(docs_pool, rng), _unique_texts(code_pool, rng)
    while len(rows) < base_count:
        n = len(rows)
        roll = rng.random()
        if roll < 0.40:
            name, text = next(docs_iter)
            add(text, "docs", f"https://docs.example.org/3.11/{name}")
        elif roll < 0.62:
            name, text = next(code_iter)
            add(text, "code", f"https://code.example.org/cpython/{name}.py")
        elif roll < 0.92:
            title = rng.choice(sentences)[:60]
            body = " ".join(rng.sample(sentences, k=min(len(sentences), rng.randint(4, 9))))
            page = f"{title}\n\n{body}\n\nHome | About | Archive | Contact"
            if rng.random() < 0.2:
                page += "\n" + _pii_line(rng, n)
                plants["pii"].append(f"sample-{n:07d}")
            add(page, "web", f"https://site{n % 97}.example.com/post/{n}")
        else:
            lang = sorted(languages)[n % len(languages)]
            text = " ".join(rng.sample(languages[lang], k=min(3, len(languages[lang]))))
            plants["non_english"].append({"id": f"sample-{n:07d}", "lang": lang})
            add(text, "web", f"https://{lang}.example.net/a/{n}")
    originals = [r for r in rows if r["domain"] in ("docs", "web") and len(r["text"]) > 200]
    while len(rows) < num_docs:
        roll = rng.random()
        original = rng.choice(originals)
        if roll < 0.45:
            text = original["text"]
            if rng.random() < 0.3:
                text = "  " + text.upper().replace(" ", "   ") + "\n"
            row = add(text, original["domain"], original["url"] + "?copy")
            plants["exact_duplicates"].append({"id": row["id"], "of": original["id"]})
        elif roll < 0.85:
            row = add(_near_duplicate(rng, original["text"]), original["domain"], original["url"] + "?mirror")
            plants["near_duplicates"].append({"id": row["id"], "of": original["id"]})
        else:
            row = add(JUNK[len(rows) % len(JUNK)], "web", f"https://junk.example.com/{len(rows)}")
            plants["junk"].append(row["id"])
    return rows, plants


def write_sample_corpus(
    out_uri: str,
    num_docs: int = 5000,
    num_shards: int = 8,
    seed: int = 0,
    options: storage.StorageOptions | None = None,
) -> dict[str, Any]:
    rows, plants = build_sample_documents(num_docs, seed)
    order = list(range(len(rows)))
    random.Random(seed + 1).shuffle(order)
    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("domain", pa.string()), ("url", pa.string())])
    shards = []
    for shard in range(num_shards):
        chunk = [rows[i] for i in order[shard::num_shards]]
        uri = storage.join(out_uri, f"part-{shard:05d}.parquet")
        with storage.atomic_writer(uri, options) as sink:
            pq.write_table(pa.Table.from_pylist(chunk, schema=schema), sink, row_group_size=512)
        shards.append(uri)
    summary = {
        "documents": len(rows),
        "shards": shards,
        "seed": seed,
        "planted": {k: len(v) for k, v in plants.items()},
    }
    storage.write_json(storage.join(out_uri, "_plants.json"), plants, options)
    storage.write_json(storage.join(out_uri, "_SUCCESS"), summary, options)
    return summary
