"""The compiled blocklist: sorted 64-bit hashes of every blocked domain and URL prefix with
their categories, and the lookup of a batch of URLs in it.

A URL's host (``urls.url_hosts``) is blocked when it or one of its parent domains is listed
(``example.com`` blocks ``a.b.example.com``); an IP address (or a name ending in a numeric
label) only when it is listed whole. List entries that are public suffixes are skipped when
compiling (``lists.drop_public_suffixes``), so no lookup matches at or above one. A URL is
also blocked when its ``host + path`` (``www.`` stripped from the host, lower case, query
and fragment dropped) starts with a listed URL prefix at a ``/`` boundary. Categories rank
by where they first appear: lists in order, then a ut1 list's categories.

Lookups compare 64-bit FNV-1a hashes only, never the strings: with 5 million entries a
lookup matches a name that is not listed with probability about 5e6 / 2^64 = 3e-13.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core import storage
from pipeline.core.bloom import bitmap_of, in_bitmap
from pipeline.stages.url_blocklist.hashing import (
    DOT,
    SLASH,
    byte_matrix,
    running_fnv1a,
    string_bytes,
    strings_fnv1a,
)
from pipeline.stages.url_blocklist.lists import (
    MAX_HOST_BYTES,
    SHOWN_LINES,
    drop_public_suffixes,
    parse_domains,
    parse_urls,
)
from pipeline.stages.url_blocklist.urls import url_hosts, url_paths

if TYPE_CHECKING:
    from pipeline.stages.url_blocklist.config import UrlBlocklistConfig

NO_MATCH = np.iinfo(np.int32).max
COLON = ord(":")


def _first_category(hashes: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each distinct hash once, sorted, with the lowest category code it was listed under."""
    if len(hashes) == 0:
        return hashes, codes
    if codes.min() == codes.max():  # one category: a plain sort, twice as fast as argsort
        hashes = np.sort(hashes)
        distinct = hashes[np.r_[True, hashes[1:] != hashes[:-1]]]
        return distinct, codes[: len(distinct)]
    order = np.argsort(hashes)
    hashes, codes = hashes[order], codes[order]
    starts = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]])
    if len(starts) == len(hashes):
        return hashes, codes
    return hashes[starts], np.minimum.reduceat(codes, starts)


def _found(table: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which of ``values`` are in the sorted ``table``, and where."""
    if len(table) == 0 or len(values) == 0:
        return np.zeros(len(values), bool), np.zeros(len(values), np.int64)
    at = np.minimum(np.searchsorted(table, values), len(table) - 1)
    return table[at] == values, at


@dataclass
class Blocklist:
    categories: list[str]
    domain_hashes: np.ndarray
    """uint64, sorted, distinct: FNV-1a of each blocked domain's bytes in reverse."""
    domain_codes: np.ndarray
    """uint16: each domain's category (index into ``categories``)."""
    domain_bitmap: np.ndarray
    """uint64 words: a one-hash Bloom filter of ``domain_hashes`` (``pipeline.core.bloom``), which
    most hosts and parent domains that are not listed stop at."""
    url_host_hashes: np.ndarray
    """uint64, sorted, distinct: reversed FNV-1a of the host of each URL prefix."""
    url_hashes: np.ndarray
    """uint64, sorted, distinct: FNV-1a of each URL prefix (``example.com/some/path``)."""
    url_codes: np.ndarray
    """uint16: each URL prefix's category."""
    url_max_bytes: int
    summary: dict[str, Any]

    ARRAYS: ClassVar[tuple[str, ...]] = (
        "domain_hashes",
        "domain_bitmap",
        "url_host_hashes",
        "url_hashes",
        "domain_codes",
        "url_codes",
    )

    @property
    def nbytes(self) -> int:
        return int(sum(getattr(self, name).nbytes for name in self.ARRAYS))

    def match(self, urls: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Per URL, the code of the first category that blocks it, or ``NO_MATCH``."""
        hosts = url_hosts(urls)
        best = np.full(len(hosts), NO_MATCH, np.int32)
        data, starts, lengths = string_bytes(hosts)
        lengths[lengths > MAX_HOST_BYTES] = 0
        if not lengths.any():
            return best
        matrix = byte_matrix(data, starts, lengths, int(lengths.max()), reverse=True)
        hashes = running_fnv1a(matrix)
        dots = matrix == DOT
        after_dot = np.logical_or.accumulate(dots, axis=0)  # bytes at or past the last label's dot
        positions = np.arange(matrix.shape[0])[:, None]
        at_end = positions == (lengths - 1)[None, :]
        before_dot = np.zeros_like(dots)
        before_dot[:-1] = dots[1:]
        # the host and each parent domain; a single label (a TLD) is never listed
        candidate = (at_end | before_dot) & after_dot
        # an IP address, or a name whose last label is a number (no TLD is), only whole
        digit = (matrix >= ord("0")) & (matrix <= ord("9"))
        numeric_tld = np.all(digit | after_dot | (positions >= lengths[None, :]), axis=0)
        address = (lengths > 0) & (numeric_tld | np.any(matrix == COLON, axis=0))
        if address.any():
            candidate[:, address] = at_end[:, address]
        positions, rows = np.nonzero(candidate)
        values = hashes[positions, rows]
        maybe = in_bitmap(self.domain_bitmap, values)
        self._lookup(self.domain_hashes, self.domain_codes, values[maybe], rows[maybe], best)
        if len(self.url_hashes):
            self._match_prefixes(urls, hosts, hashes, lengths, best)
        return best

    @staticmethod
    def _lookup(table: np.ndarray, codes: np.ndarray, values: np.ndarray, rows: np.ndarray, best: np.ndarray) -> None:
        order = np.argsort(values)  # sorted needles: searchsorted walks the table once
        hit, at = _found(table, values[order])
        if hit.any():
            np.minimum.at(best, rows[order][hit], codes[at[hit]].astype(np.int32))

    def _match_prefixes(
        self,
        urls: pa.Array | pa.ChunkedArray,
        hosts: pa.Array,
        host_hashes: np.ndarray,
        lengths: np.ndarray,
        best: np.ndarray,
    ) -> None:
        """URL prefixes, for the URLs whose host (``www.`` stripped) some prefix names."""
        www = np.asarray(pc.fill_null(pc.starts_with(hosts, "www."), False))
        end = lengths - 1 - 4 * www
        rows = np.flatnonzero(end >= 0)
        hit, _ = _found(self.url_host_hashes, np.ascontiguousarray(host_hashes[end[rows], rows]))
        rows = rows[hit]
        if not len(rows):
            return
        taken = pa.array(rows)
        host = hosts.take(taken)
        host = pc.if_else(pa.array(www[rows]), pc.utf8_slice_codeunits(host, 4), host)
        data, starts, lengths = string_bytes(
            pc.binary_join_element_wise(host, url_paths(urls.take(taken)), pa.scalar("", host.type))
        )
        width = min(int(lengths.max()), self.url_max_bytes)
        matrix = byte_matrix(data, starts, lengths, width + 1, reverse=False)
        hashes = running_fnv1a(matrix[:width])
        at_end = np.arange(width)[:, None] == (lengths - 1)[None, :]
        positions, found = np.nonzero(at_end | (matrix[1:] == SLASH))
        self._lookup(self.url_hashes, self.url_codes, hashes[positions, found], rows[found], best)


def compile_blocklist(config: UrlBlocklistConfig) -> Blocklist:
    """Reads every list file, in precedence order, into a ``Blocklist``; a hash listed under
    several categories keeps the first."""
    categories: list[str] = []
    domain_parts, domain_code_parts, url_parts, url_code_parts, url_host_parts = [], [], [], [], []
    files, url_max_bytes = [], 0
    for path, category, kind, uri in config.list_files():
        if category not in categories:
            categories.append(category)
        code = categories.index(category)
        data = storage.read_bytes(uri, config.storage_options)
        if kind == "urls":
            parsed = parse_urls(data)
            url_parts.append(strings_fnv1a(parsed.entries))
            url_code_parts.append(np.full(len(parsed.entries), code, np.uint16))
            url_host_parts.append(strings_fnv1a(parsed.hosts, reverse=True))
            if len(parsed.entries):
                url_max_bytes = max(url_max_bytes, int(pc.max(pc.binary_length(parsed.entries)).as_py()))
        else:
            parsed = drop_public_suffixes(parse_domains(data))
            domain_parts.append(strings_fnv1a(parsed.entries, reverse=True))
            domain_code_parts.append(np.full(len(parsed.entries), code, np.uint16))
        files.append({"key": path, "uri": uri, "category": category, "kind": kind, **parsed.summary()})
        files[-1]["public_suffix_examples"] = parsed.public_suffix_examples
        del data, parsed

    def joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype)

    domain_hashes, domain_codes = _first_category(joined(domain_parts, np.uint64), joined(domain_code_parts, np.uint16))
    url_hashes, url_codes = _first_category(joined(url_parts, np.uint64), joined(url_code_parts, np.uint16))
    blocklist = Blocklist(
        categories=categories,
        domain_hashes=domain_hashes,
        domain_bitmap=bitmap_of(domain_hashes),
        domain_codes=domain_codes,
        url_host_hashes=np.unique(joined(url_host_parts, np.uint64)),
        url_hashes=url_hashes,
        url_codes=url_codes,
        url_max_bytes=url_max_bytes,
        summary={},
    )
    blocklist.summary = _summary(blocklist, files)
    return blocklist


def _summary(blocklist: Blocklist, files: list[dict[str, Any]]) -> dict[str, Any]:
    """Entries per category (each counted under the category that keeps it), what was
    skipped, and every file's counts."""
    n = len(blocklist.categories)
    domains = np.bincount(blocklist.domain_codes, minlength=n).tolist()
    urls = np.bincount(blocklist.url_codes, minlength=n).tolist()
    return {
        "categories": {c: {"domains": domains[i], "urls": urls[i]} for i, c in enumerate(blocklist.categories)},
        "domains": len(blocklist.domain_hashes),
        "urls": len(blocklist.url_hashes),
        "public_suffixes_skipped": sum(f["public_suffixes"] for f in files),
        "public_suffix_examples": [e for f in files for e in f.pop("public_suffix_examples")][:SHOWN_LINES],
        "malformed_lines": sum(f["malformed"] for f in files),
        "files": files,
        "bytes": blocklist.nbytes,
    }
