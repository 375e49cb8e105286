"""The host and path of each URL of a batch, with Arrow kernels.

Most URLs are ``scheme://host/...``: their authority (what follows ``//`` up to the first
``/``, ``?`` or ``#``) is the host, found with one cheap RE2 pass. The few whose authority
holds userinfo, a port, brackets (IPv6) or anything odd are parsed again with the full
pattern, which also rejects what is not a URL.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

AUTHORITY = r"^(?:(?:[A-Za-z][A-Za-z0-9+.\-]*:)?//)?(?P<authority>[^/?#]*)"
PLAIN_HOST = r"^[^@:\[\]\s]*$"
"""An authority that is only a host: no userinfo, port, brackets or blanks."""
URL_PARTS = (
    r"^(?:(?:[A-Za-z][A-Za-z0-9+.\-]*:)?//)?(?:[^/?#]*@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]*\]|[^/?#:@\[\]\s]*)(?::[0-9]*)?(?P<path>/[^?#]*)?(?:[?#].*)?$"
)


def _trimmed(urls: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(urls, pa.ChunkedArray):
        urls = urls.combine_chunks() if urls.num_chunks else pa.array([], pa.string())
    return pc.utf8_trim_whitespace(urls)


def url_hosts(urls: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each URL's host: lower case; scheme, userinfo, port, path, query, fragment, IPv6
    brackets and a trailing dot removed; an internationalized name IDNA-encoded. Null when
    the URL is null or not parseable."""
    urls = _trimmed(urls)
    (host,) = pc.extract_regex(urls, AUTHORITY).flatten()
    odd = np.flatnonzero(~np.asarray(pc.fill_null(pc.match_substring_regex(host, PLAIN_HOST), True)))
    if len(odd):
        (parsed, _) = pc.extract_regex(urls.take(pa.array(odd)), URL_PARTS).flatten()
        mask = np.zeros(len(host), bool)
        mask[odd] = True
        host = pc.replace_with_mask(host, pa.array(mask), parsed)
    host = pc.utf8_rtrim(pc.utf8_trim(pc.ascii_lower(host), "[]"), ".")
    foreign = np.flatnonzero(~np.asarray(pc.fill_null(pc.string_is_ascii(host), True)))
    if len(foreign):
        values = host.to_pylist()
        for i in foreign:
            try:
                values[i] = values[i].lower().encode("idna").decode("ascii").lower()
            except UnicodeError:
                values[i] = None
        host = pa.array(values, host.type)
    return host


def url_paths(urls: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each URL's path, lower case, without query and fragment ("" when it has none)."""
    (_, path) = pc.extract_regex(_trimmed(urls), URL_PARTS).flatten()
    return pc.utf8_lower(pc.fill_null(path, ""))
