"""Web-like documents from the real third-party text in ../shared/data, with PII planted at
a chosen rate, for the PII benchmark.

A document is a title, body text and page furniture, all real: Wikipedia paragraphs
(WikiText-2, de-tokenized), forum posts, bug reports, reviews and overheard chat (NLTK
webtext), web sentences (Leipzig), and lines of real Common Crawl pages (navigation,
bylines, dates and times). A share ``pii_rate`` of the documents gets one contact line
holding one to three values: an email address, a phone number in one of the default
Presidio regions' formats, an IP address, a card number, an IBAN or an SSN, each with
random digits so that no two documents repeat a value by design.
"""

from __future__ import annotations

import json
import random
import re
import zipfile
from pathlib import Path

_FIRST = ["jordan", "maria", "wei", "amelie", "oliver", "priya", "lucas", "fatima", "noah", "sofia"]
_LAST = ["lee", "garcia", "chen", "dubois", "smith", "patel", "muller", "haddad", "kim", "rossi"]
_DOMAINS = ["example.org", "example.com", "mail.example.net", "example.co.uk"]


def _wikitext_paragraphs(root: Path) -> list[str]:
    out = []
    for name in ("valid.txt", "test.txt"):
        for line in (root / "wikitext2" / name).read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if len(line) < 200 or line.startswith("="):
                continue
            line = line.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
            line = re.sub(r" ([.,;:!?)'])", r"\1", line).replace("( ", "(")
            out.append(line)
    return out


def _webtext_lines(root: Path) -> list[str]:
    lines = []
    with zipfile.ZipFile(root / "nltk" / "webtext.zip") as archive:
        for name in archive.namelist():
            if name.endswith(".txt"):
                text = archive.read(name).decode("utf-8", errors="replace")
                lines += [line.strip() for line in text.splitlines() if len(line.strip()) > 20]
    return lines


def _common_crawl_lines(root: Path) -> list[str]:
    lines = []
    for path in sorted((root / "cc_samples").glob("*.jsonl")):
        for record in path.read_text(encoding="utf-8").splitlines():
            if record.strip():
                lines += [line.strip() for line in json.loads(record)["text"].splitlines() if line.strip()]
    return lines


def _digits(rng: random.Random, n: int) -> str:
    return "".join(str(rng.randrange(10)) for _ in range(n))


def _pii_value(rng: random.Random) -> str:
    kind = rng.choice(["email", "email", "phone", "phone", "phone", "ip", "card", "iban", "ssn"])
    if kind == "email":
        return f"{rng.choice(_FIRST)}.{rng.choice(_LAST)}{rng.randrange(100)}@{rng.choice(_DOMAINS)}"
    if kind == "phone":
        return rng.choice(
            [
                f"({rng.randrange(201, 990)}) 555-{_digits(rng, 4)}",
                f"+1 {rng.randrange(201, 990)}-555-{_digits(rng, 4)}",
                f"+44 20 7946 {_digits(rng, 4)}",
                f"020 7946 {_digits(rng, 4)}",
                f"+49 30 {_digits(rng, 7)}",
                f"+33 1 {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)}",
                f"+91 98{_digits(rng, 3)} {_digits(rng, 5)}",
            ]
        )
    if kind == "ip":
        return f"{rng.choice(['192.0.2', '198.51.100', '203.0.113'])}.{rng.randrange(1, 255)}"
    if kind == "card":
        return rng.choice(["4111 1111 1111 1111", "5500 0000 0000 0004", "3782 822463 10005"])
    if kind == "iban":
        return rng.choice(
            ["DE89 3704 0044 0532 0130 00", "GB82 WEST 1234 5698 7654 32", "FR14 2004 1010 0505 0001 3M02 606"]
        )
    return f"{rng.randrange(100, 899)}-{_digits(rng, 2)}-{_digits(rng, 4)}"


_CONTACT = [
    "Contact us at {}.",
    "For questions write to {} or call {}.",
    "Reach {} ({}) any weekday.",
    "Posted by {} | reply",
    "Billing details: {}, {} and {}.",
]


def web_like_documents(root: Path, n: int, pii_rate: float, seed: int = 0) -> list[str]:
    """``n`` documents of about 1.5 KB; a share ``pii_rate`` of them carries a contact line."""
    rng = random.Random(seed)
    paragraphs, posts, furniture = _wikitext_paragraphs(root), _webtext_lines(root), _common_crawl_lines(root)
    sentences = (root / "lingua_sentences" / "en.txt").read_text(encoding="utf-8").splitlines()
    docs = []
    for _ in range(n):
        lines = [rng.choice(posts)[:90]]
        if rng.random() < 0.5:
            body = rng.choice(paragraphs)[:1200]
            lines += [body] + rng.sample(sentences, 2)
        else:
            lines += rng.sample(posts, rng.randint(6, 14))
        lines += rng.sample(furniture, rng.randint(2, 6))
        rng.shuffle(lines[1:])
        if rng.random() < pii_rate:
            template = rng.choice(_CONTACT)
            line = template.format(*(_pii_value(rng) for _ in range(template.count("{}"))))
            lines.insert(rng.randrange(1, len(lines) + 1), line)
        docs.append("\n".join(lines))
    return docs
