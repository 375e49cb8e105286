"""Clean documents for the contamination stage's false-positive rate: real third-party text
from ../shared/data that holds no eval item, cut into documents of about a page.

- wikitext: WikiText-2 paragraphs (Wikipedia articles), one per document;
- python_docs: the Python 3.11 documentation sources, one document per section (numbered
  lists, tables, code samples: the technical text that shares generic runs with eval items);
- nltk: US inaugural and State of the Union speeches, ABC broadcast news, forum posts and
  chat (webtext), cut at blank lines into documents of about 1.5 KB;
- web_like: pages built by benchmarks/web_like.py (Wikipedia, forum posts, web sentences and
  Common Crawl page furniture).
"""

from __future__ import annotations

import re
import tarfile
import zipfile
from pathlib import Path

from benchmarks.web_like import _wikitext_paragraphs, web_like_documents

_HEADING = re.compile(r"\n(?=[^\n]+\n[=\-~^\"*#+]{3,}\n)")


def _chunks(paragraphs: list[str], size: int = 1500) -> list[str]:
    """Consecutive paragraphs joined until a document reaches ``size`` characters."""
    docs, current = [], []
    for paragraph in paragraphs:
        current.append(paragraph)
        if sum(map(len, current)) >= size:
            docs.append("\n\n".join(current))
            current = []
    if current:
        docs.append("\n\n".join(current))
    return docs


def python_docs_sections(root: Path) -> list[str]:
    files = {}
    with tarfile.open(root / "python_docs" / "python311_rst.tar.gz") as archive:
        for member in archive:  # in archive order: a gzip stream does not seek back cheaply
            if member.isfile():
                files[member.name] = archive.extractfile(member).read().decode("utf-8", errors="replace")
    return [
        section.strip()
        for name in sorted(files)
        for section in _HEADING.split(files[name])
        if len(section.strip()) >= 200
    ]


def nltk_documents(root: Path) -> list[str]:
    docs = []
    for corpus in ("inaugural", "state_union", "abc", "webtext"):
        with zipfile.ZipFile(root / "nltk" / f"{corpus}.zip") as archive:
            for name in sorted(archive.namelist()):
                if not name.endswith(".txt"):
                    continue
                text = archive.read(name).decode("utf-8", errors="replace")
                separator = "\n" if corpus == "webtext" else "\n\n"
                docs += _chunks([p.strip() for p in text.split(separator) if p.strip()])
    return docs


def clean_documents(root: Path, web_like: int = 5_000, seed: int = 5) -> dict[str, list[str]]:
    """Per source, its documents (see the module's docstring)."""
    return {
        "wikitext": _wikitext_paragraphs(root),
        "python_docs": python_docs_sections(root),
        "nltk": nltk_documents(root),
        "web_like": web_like_documents(root, web_like, 0.0, seed=seed),
    }
