"""The compiled blocklist on disk: compiled once per job into the work directory, named by
what it is built from, and memory-mapped by every worker.

``blocklist-<key>.npy`` is one uint8 array holding the ``Blocklist`` arrays back to back
(each at an 8-byte aligned offset); ``blocklist-<key>.json`` beside it says where each
array lies, the category names and the lists' summary, and is written last. Workers map
the ``.npy`` read-only (``np.load(mmap_mode="r")``), so the workers of a node share its
pages through the page cache instead of each holding a copy; a list on an object store is
first copied once per node to a local cache directory.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
import time
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.core import storage
from pipeline.core.hashing import short_hash
from pipeline.core.progress import plural
from pipeline.stages.url_blocklist.blocklist import Blocklist, compile_blocklist

if TYPE_CHECKING:
    from pipeline.config import JobSpec
    from pipeline.core.progress import Progress
    from pipeline.stages.url_blocklist.config import UrlBlocklistConfig

FORMAT = 1
STAGE = "url_blocklist"
CACHE_DIR = "refinery-cache"


def blocklist_key(config: UrlBlocklistConfig) -> str:
    """Names the compiled file by what it is built from: the lists' settings, every file
    read (by size and change token) and the public-suffix snapshot's version."""
    import tldextract

    payload = {
        "format": FORMAT,
        "tldextract": tldextract.__version__,
        "lists": [source.model_dump(mode="json") for source in config.lists],
        "files": [
            [path, category, kind, uri, storage.file_info(uri, config.storage_options)]
            for path, category, kind, uri in config.list_files()
        ],
    }
    return short_hash(payload)


def compiled_uri(spec: JobSpec) -> str:
    from pipeline.core.layout import OutputLayout

    key = blocklist_key(spec.stages.url_blocklist)
    return OutputLayout(spec.output.uri).stage_work(STAGE, f"blocklist-{key}.npy")


def _sidecar(uri: str) -> str:
    return uri.removesuffix(".npy") + ".json"


def save_blocklist(blocklist: Blocklist, uri: str, options: storage.StorageOptions | None = None) -> None:
    sections, parts, offset = {}, [], 0
    for name in Blocklist.ARRAYS:
        array = np.ascontiguousarray(getattr(blocklist, name))
        raw = array.view(np.uint8)
        padding = -len(raw) % 8
        sections[name] = {"offset": offset, "count": len(array), "dtype": array.dtype.str}
        parts += [raw, np.zeros(padding, np.uint8)]
        offset += len(raw) + padding
    with storage.atomic_writer(uri, options) as handle:
        np.save(handle, np.concatenate(parts), allow_pickle=False)
    meta = {
        "format": FORMAT,
        "categories": blocklist.categories,
        "url_max_bytes": blocklist.url_max_bytes,
        "sections": sections,
        "summary": blocklist.summary,
    }
    storage.write_json(_sidecar(uri), meta, options)


def local_copy(uri: str, options: storage.StorageOptions | None = None) -> str:
    """A local path of the file: itself, or for an object store a copy in this node's cache
    (``<tmp>/refinery-cache/``), made once and atomically; its name holds the blocklist key,
    so a copy never goes stale."""
    if storage.is_local(uri):
        return storage.filesystem(uri, options)[1]
    path = os.path.join(tempfile.gettempdir(), CACHE_DIR, f"{STAGE}-{posixpath.basename(uri)}")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        partial = f"{path}.tmp-{uuid.uuid4().hex}"
        try:
            fs, remote = storage.filesystem(uri, options)
            fs.get_file(remote, partial)
            os.replace(partial, path)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
    return path


def load_blocklist(uri: str, options: storage.StorageOptions | None = None) -> Blocklist:
    """The compiled blocklist at ``uri``, its arrays mapped read-only from the file."""
    try:
        meta = storage.read_json(_sidecar(uri), options)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"url_blocklist: the compiled lists '{uri}' are missing; a job compiles them before annotate"
        ) from None
    blob = np.load(local_copy(uri, options), mmap_mode="r")
    arrays = {}
    for name, section in meta["sections"].items():
        dtype = np.dtype(section["dtype"])
        start = section["offset"]
        arrays[name] = np.asarray(blob[start : start + section["count"] * dtype.itemsize]).view(dtype)
    return Blocklist(
        categories=meta["categories"], url_max_bytes=meta["url_max_bytes"], summary=meta["summary"], **arrays
    )


def prepare_blocklist(spec: JobSpec, progress: Progress | None = None) -> dict[str, Any]:
    """Compiles the job's lists once into the work directory (kept for later runs with the
    same files); returns their summary."""
    config = spec.stages.url_blocklist
    uri, options = compiled_uri(spec), spec.output.storage_options
    if storage.exists(_sidecar(uri), options):
        summary = storage.read_json(_sidecar(uri), options)["summary"]
        if progress is not None:
            progress.log(f"url_blocklist: {describe(summary)}; compiled by an earlier run, reused")
        return summary
    started = time.perf_counter()
    blocklist = compile_blocklist(config)
    save_blocklist(blocklist, uri, options)
    if progress is not None:
        progress.log(f"url_blocklist: {describe(blocklist.summary)}; compiled in {time.perf_counter() - started:.1f} s")
        for line in problems(blocklist.summary):
            progress.log(f"url_blocklist: {line}")
    return blocklist.summary


def describe(summary: dict[str, Any]) -> str:
    return (
        f"{summary['domains']:,} domains and {summary['urls']:,} URL prefixes in "
        f"{len(summary['categories'])} categories, {summary['bytes'] / 1e6:.1f} MB"
    )


def problems(summary: dict[str, Any]) -> list[str]:
    """What was left out of the lists, one line per kind and per file."""
    lines = []
    skipped = summary["public_suffixes_skipped"]
    if skipped:
        examples = ", ".join(summary["public_suffix_examples"])
        lines.append(
            f"skipped {skipped:,} public-suffix {'entry' if skipped == 1 else 'entries'}, which would block "
            f"every domain under them: {examples}"
        )
    for entry in summary["files"]:
        if entry["malformed"]:
            shown = ", ".join(str(n) for n in entry["malformed_lines"])
            more = ", ..." if entry["malformed"] > len(entry["malformed_lines"]) else ""
            where = "line" if entry["malformed"] == 1 else "lines"
            lines.append(
                f"{entry['uri']}: skipped {plural(entry['malformed'], 'malformed line')} ({where} {shown}{more})"
            )
    return lines
