"""Small blocklists written by the tests, a plain-Python reference of the matching rules, and
a documents-only job spec with the stage enabled."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.core import columns as cols
from tests.helpers import job_dict


def write_ut1(root: Path, categories: dict[str, dict[str, list[str]]]) -> Path:
    """A UT1-style directory: ``root/<category>/domains`` and ``root/<category>/urls``."""
    for category, files in categories.items():
        (root / category).mkdir(parents=True, exist_ok=True)
        for name, lines in files.items():
            (root / category / name).write_text("".join(f"{line}\n" for line in lines))
    return root


def url_docs(urls: list[str | None]) -> pa.Table:
    n = len(urls)
    return pa.table(
        {
            cols.ID: [f"d{i}" for i in range(n)],
            cols.TEXT: [f"document {i}" for i in range(n)],
            cols.DOMAIN: pa.nulls(n, pa.string()),
            cols.URL: pa.array(urls, pa.string()),
            cols.SHARD: ["s"] * n,
            cols.ROW: list(range(n)),
            cols.TEXT_BYTES: [len(f"document {i}") for i in range(n)],
        },
        schema=cols.BASE_SCHEMA,
    )


def documents_spec(input_uri: str, out: str, url_blocklist: dict) -> dict:
    """A documents-only job with only this stage enabled among the capabilities."""
    spec = job_dict(
        input_uri,
        out,
        "unused",
        output={"kind": "documents"},
        stages={
            "language": {"enabled": False},
            "quality": {"enabled": False},
            "exact_dedup": {"enabled": False},
            "near_dedup": {"enabled": False},
            "url_blocklist": {"enabled": True, **url_blocklist},
        },
    )
    del spec["stages"]["tokenize"]
    return spec


@pytest.fixture
def tiny_input(tmp_path) -> Path:
    path = tmp_path / "input" / "part-0.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"id": ["a"], "text": ["a document"], "url": ["http://example.com/"]}), path)
    return path.parent


# --- the reference: the same rules, one URL at a time, with sets ---------------------------------

_HOSTNAME = re.compile(r"^(?:[a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63}$")


def _reference_host(raw: str) -> str | None:
    host = raw.strip().lower().rstrip(".")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
        return host
    if not host.isascii():
        try:
            host = host.encode("idna").decode().lower()
        except UnicodeError:
            return None
    return host if _HOSTNAME.match(host) and len(host) <= 253 else None


class ReferenceBlocklist:
    """Domains and URL prefixes in dicts, each kept under its first category; public suffixes
    decided by tldextract itself (bundled snapshot, never fetched)."""

    def __init__(self, lists: list[tuple[str, str, list[str]]]) -> None:
        import tldextract

        extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
        self.categories: list[str] = []
        self.domains: dict[str, int] = {}
        self.urls: dict[str, int] = {}
        for category, kind, lines in lists:
            if category not in self.categories:
                self.categories.append(category)
            code = self.categories.index(category)
            for line in lines:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                if kind == "domains":
                    host = _reference_host(line)
                    if host is None or "." not in host and ":" not in host or extract(host).suffix == host:
                        continue
                    self.domains.setdefault(host, code)
                else:
                    line = re.sub(r"^[a-z][a-z0-9+.-]*://", "", line.lower())
                    host, _, path = re.split(r"[?#]", line)[0].partition("/")
                    host = _reference_host(host)
                    if host is None or re.search(r"\s", line):
                        continue
                    host = host.removeprefix("www.")
                    if host:
                        self.urls.setdefault((host + "/" + path).rstrip("/") if path else host, code)

    def match(self, url: str | None) -> str | None:
        if url is None:
            return None
        try:
            parts = urlsplit(url.strip())
            raw = parts.hostname
        except ValueError:
            return None
        host = _reference_host(raw) if raw else None
        if not host:
            return None
        codes = []
        if re.search(r"(^|\.)[0-9]+$|:", host):
            codes.append(self.domains.get(host))
        else:
            labels = host.split(".")
            codes += [self.domains.get(".".join(labels[i:])) for i in range(len(labels) - 1)]
        if self.urls:
            full = host.removeprefix("www.") + parts.path.lower()
            ends = [m.start() for m in re.finditer("/", full)] + [len(full)]
            codes += [self.urls.get(full[:end]) for end in ends]
        found = [c for c in codes if c is not None]
        return self.categories[min(found)] if found else None
