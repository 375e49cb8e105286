"""Reference and lower-quality documents from the real third-party text in ../shared/data,
for training and measuring a quality classifier.

Reference (well-edited): Wikipedia paragraphs (WikiText-2, de-tokenized), the Python 3.11
documentation sources cut at blank lines, and the US inaugural and State of the Union
speeches (NLTK) cut at paragraphs. Lower quality: runs of forum posts, reviews and chat
lines (NLTK webtext), Wikipedia paragraphs with their words shuffled (the other half of the
paragraphs, so no text is on both sides), and the boilerplate-heavy pages of
``refinery sample``'s web generator. Each document is at most about ``CHUNK_CHARS``.
"""

from __future__ import annotations

import random
import tarfile
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.web_like import _wikitext_paragraphs
from pipeline.tools.sample import build_sample_documents

CHUNK_CHARS = 1500


def _chunks(text: str, separator: str = "\n\n") -> list[str]:
    """Consecutive paragraphs joined up to about CHUNK_CHARS each."""
    out, current = [], ""
    for part in (p.strip() for p in text.split(separator)):
        if not part:
            continue
        if current and len(current) + len(part) > CHUNK_CHARS:
            out.append(current)
            current = ""
        current = f"{current}\n\n{part}" if current else part
    if current:
        out.append(current)
    return [c for c in out if len(c) >= 200]


def _zip_texts(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return [
            archive.read(name).decode("utf-8", errors="replace")
            for name in sorted(archive.namelist())
            if name.endswith(".txt")
        ]


def reference_documents(root: Path) -> dict[str, list[str]]:
    paragraphs = _wikitext_paragraphs(root)
    python_docs = []
    with tarfile.open(root / "python_docs" / "python311_rst.tar.gz") as archive:
        for member in sorted(archive.getmembers(), key=lambda m: m.name):
            if member.isfile() and member.name.endswith(".txt"):
                python_docs += _chunks(archive.extractfile(member).read().decode("utf-8", errors="replace"))
    speeches = []
    for name in ("inaugural.zip", "state_union.zip"):
        for text in _zip_texts(root / "nltk" / name):
            speeches += _chunks(text.replace("\r\n", "\n"))
    return {"wikipedia": paragraphs[0::2], "python_docs": python_docs, "speeches": speeches}


def lower_quality_documents(root: Path, seed: int = 0) -> dict[str, list[str]]:
    rng = random.Random(seed)
    posts = []
    for text in _zip_texts(root / "nltk" / "webtext.zip"):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        posts += ["\n".join(lines[i : i + 12]) for i in range(0, len(lines), 12)]
    shuffled = []
    for paragraph in _wikitext_paragraphs(root)[1::2]:
        words = paragraph.split()
        rng.shuffle(words)
        shuffled.append(" ".join(words))
    rows, _ = build_sample_documents(6000, seed=seed + 17)
    boilerplate = [r["text"] for r in rows if r["domain"] == "web" and len(r["text"]) >= 200]
    return {"webtext": posts, "shuffled_wikipedia": shuffled, "generated_web_pages": boilerplate}


def write_corpora(root: Path, out: Path, seed: int = 0) -> dict[str, dict[str, int]]:
    """``out/reference/`` and ``out/lower/`` as Parquet (one file per source, a ``text``
    column); returns the documents per source."""
    counts = {}
    for side, sources in (("reference", reference_documents(root)), ("lower", lower_quality_documents(root, seed))):
        (out / side).mkdir(parents=True, exist_ok=True)
        for name, texts in sources.items():
            pq.write_table(pa.table({"text": texts}), out / side / f"{name}.parquet")
        counts[side] = {name: len(texts) for name, texts in sources.items()}
    return counts
