"""Reading blocklist files: domain lines and UT1 URL lines, checked and normalized with
Arrow, malformed lines counted (never an error); and the public suffixes an entry must not be.

A domain line is a hostname (labels of letters, digits, ``-`` and ``_``, at most 63 bytes
each and 253 in all, after IDNA-encoding an internationalized name), an IPv4 address or an
IPv6 address. A URL line is ``host/path`` (a scheme is tolerated): the host as above with
a leading ``www.`` removed, the path with its query, fragment and trailing ``/`` removed.
Everything is lower-cased. Blank lines and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

HOSTNAME = r"^(?:[a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63}$"
MAX_HOST_BYTES = 253
SHOWN_LINES = 5
"""Malformed line numbers kept per file."""
_HOSTNAME = re.compile(HOSTNAME)


@dataclass
class ParsedFile:
    """The entries of one list file, and what was left out of it."""

    entries: pa.Array
    """Normalized domains (``example.com``) or URL prefixes (``example.com/some/path``)."""
    hosts: pa.Array
    """URL files: each prefix's host (``example.com``); domain files: the entries."""
    lines: int = 0
    malformed: int = 0
    malformed_lines: list[int] = field(default_factory=list)
    public_suffixes: int = 0
    public_suffix_examples: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "entries": len(self.entries),
            "malformed": self.malformed,
            "malformed_lines": self.malformed_lines,
            "public_suffixes": self.public_suffixes,
        }


def _lines(data: bytes) -> tuple[pa.Array, np.ndarray | None, int]:
    """The lower-cased, trimmed lines of a file that are neither blank nor comments, their
    1-based line numbers (None: every line), and the number of lines. Bytes that are not
    UTF-8 become U+FFFD."""
    try:
        text = pa.array([data], pa.large_binary()).cast(pa.large_string())
    except pa.ArrowInvalid:
        text = pa.array([data.decode("utf-8", errors="replace")], pa.large_string())
    if not data:
        return pa.array([], pa.large_string()), None, 0
    lines = pc.split_pattern(text, "\n").flatten()
    if data.endswith(b"\n"):
        lines = lines.slice(0, len(lines) - 1)
    count = len(lines)
    ascii = pc.all(pc.string_is_ascii(lines)).as_py()
    lines = pc.utf8_trim_whitespace(lines)
    keep = pc.and_(pc.greater(pc.binary_length(lines), 0), pc.invert(pc.starts_with(lines, "#")))
    numbers = None
    if not pc.all(keep).as_py():
        numbers = np.flatnonzero(np.asarray(keep)) + 1
        lines = lines.filter(keep)
    return (pc.ascii_lower(lines) if ascii else pc.utf8_lower(lines)), numbers, count


def _valid_hosts(hosts: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Hosts with a trailing dot removed, internationalized names IDNA-encoded, and which of
    them are well formed (a hostname or an IP address)."""
    trailing_dot = pc.ends_with(hosts, ".")
    if pc.any(trailing_dot).as_py():
        hosts = pc.if_else(trailing_dot, pc.utf8_slice_codeunits(hosts, 0, -1), hosts)
    ok = np.asarray(
        pc.and_(
            pc.match_substring_regex(hosts, HOSTNAME),
            pc.less_equal(pc.binary_length(hosts), MAX_HOST_BYTES),
        )
    ).copy()
    odd = np.flatnonzero(~ok)
    if len(odd):  # an internationalized name or an IPv6 address may still be one
        values = hosts.to_pylist()
        for i in odd:
            values[i], ok[i] = _odd_host(values[i])
        hosts = pa.array(values, pa.large_string())
    return hosts, ok


def _odd_host(host: str) -> tuple[str, bool]:
    """An internationalized name, IDNA-encoded, or an IPv6 address; (host, well formed)."""
    if host.isascii() and ":" not in host:
        return host, False
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return host, False
        return host, True
    if "\ufffd" in host:
        return host, False
    try:
        encoded = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return host, False
    return encoded, bool(_HOSTNAME.match(encoded)) and len(encoded) <= MAX_HOST_BYTES


def _malformed(parsed: ParsedFile, numbers: np.ndarray | None, ok: np.ndarray) -> None:
    bad = np.flatnonzero(~ok) + 1 if numbers is None else numbers[~ok]
    parsed.malformed = len(bad)
    parsed.malformed_lines = bad[:SHOWN_LINES].tolist()


def parse_domains(data: bytes) -> ParsedFile:
    """The domains of a ``domains`` file (public suffixes included: see ``drop_public_suffixes``)."""
    lines, numbers, count = _lines(data)
    hosts, ok = _valid_hosts(lines)
    entries = hosts.filter(pa.array(ok))
    parsed = ParsedFile(entries, entries, lines=count)
    _malformed(parsed, numbers, ok)
    return parsed


_URL_LINE = r"^(?:[a-z][a-z0-9+.\-]*://)?(?P<host>[^/?#]*)(?P<path>[^?#]*)"


def parse_urls(data: bytes) -> ParsedFile:
    """The URL prefixes of a UT1 ``urls`` file."""
    lines, numbers, count = _lines(data)
    host, path = pc.extract_regex(lines, _URL_LINE).flatten()
    host, ok = _valid_hosts(host)
    host = pc.replace_substring_regex(host, r"^www\.", "", max_replacements=1)
    ok &= ~np.asarray(pc.match_substring_regex(lines, r"\s")) & np.asarray(pc.greater(pc.utf8_length(host), 0))
    path = pc.replace_substring_regex(path, r"/+$", "")
    keep = pa.array(ok)
    host = host.filter(keep)
    parsed = ParsedFile(
        pc.binary_join_element_wise(host, path.filter(keep), pa.scalar("", host.type)), host, lines=count
    )
    _malformed(parsed, numbers, ok)
    return parsed


@functools.cache
def public_suffix_rules() -> tuple[pa.Array, pa.Array, pa.Array]:
    """The ICANN public-suffix rules of tldextract's bundled snapshot (never fetched), IDNA-
    encoded: (exact suffixes, wildcard parents (``*.ck`` gives ``ck``), exceptions)."""
    import pkgutil

    from tldextract.suffix_list import extract_tlds_from_suffix_list

    snapshot = pkgutil.get_data("tldextract", ".tld_set_snapshot")
    icann, _private = extract_tlds_from_suffix_list(snapshot.decode("utf-8"))
    exact, wildcard, exception = set(), set(), set()
    for rule in icann:
        kind = exact
        if rule.startswith("!"):
            kind, rule = exception, rule[1:]
        elif rule.startswith("*."):
            kind, rule = wildcard, rule[2:]
        try:
            kind.add(rule.encode("idna").decode("ascii").lower())
        except UnicodeError:
            continue
    return tuple(pa.array(sorted(s), pa.large_string()) for s in (exact, wildcard, exception))


@functools.cache
def _wildcard_children() -> str:
    """RE2 pattern of the names a wildcard rule makes public suffixes (one label more)."""
    parents = "|".join(re.escape(parent) for parent in public_suffix_rules()[1].to_pylist())
    return rf"^[^.]+\.(?:{parents})$"


def is_public_suffix(domains: pa.Array) -> np.ndarray:
    """Which domains are public suffixes under the ICANN rules: a listed suffix, a child of
    a wildcard rule that no exception names, or a single label (the list's implicit ``*``).
    IP addresses never are."""
    exact, _, exception = public_suffix_rules()
    public = pc.or_(pc.is_in(domains, value_set=exact), pc.invert(pc.match_substring(domains, ".")))
    wildcard_child = pc.match_substring_regex(domains, _wildcard_children())
    if pc.any(wildcard_child).as_py():
        wildcard_child = pc.and_(wildcard_child, pc.invert(pc.is_in(domains, value_set=exception)))
        public = pc.or_(public, wildcard_child)
    public = np.asarray(public).copy()
    found = np.flatnonzero(public)
    if len(found):  # an IPv6 address has no dot
        public[found[np.asarray(pc.match_substring(domains.take(pa.array(found)), ":"))]] = False
    return public


def drop_public_suffixes(parsed: ParsedFile) -> ParsedFile:
    """The file's domains without the public suffixes (which would block whole TLDs), counted."""
    public = is_public_suffix(parsed.entries)
    if public.any():
        skipped = parsed.entries.filter(pa.array(public))
        parsed.public_suffixes = len(skipped)
        parsed.public_suffix_examples = skipped.slice(0, SHOWN_LINES).to_pylist()
        parsed.entries = parsed.hosts = parsed.entries.filter(pa.array(~public))
    return parsed
