"""Where every phase reads and writes under the output URI.

Names are deterministic, so a retried task overwrites its own file with the same bytes
and a re-run finds the committed work of the previous one.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass

from pipeline import storage


def shard_key(input_root: str, shard_uri: str) -> str:
    """A readable, filesystem-safe, stable name for an input shard.

    Built from the shard's path relative to the input root plus a short hash of that
    path, so ``a/b.parquet`` and ``a_b.parquet`` never collide.
    """
    root = storage.normalize_uri(input_root)
    uri = storage.normalize_uri(shard_uri)
    relative = uri[len(root):].lstrip("/") if uri.startswith(root) and uri != root else posixpath.basename(uri)
    stem = relative[: -len(".parquet")] if relative.endswith(".parquet") else relative
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", stem.replace("/", "__"))[:80]
    return f"{readable}-{hashlib.sha256(relative.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class OutputLayout:
    root: str

    def _path(self, *parts: str) -> str:
        return storage.join(self.root, *parts)

    # annotate phase
    def annotated(self, key: str) -> str:
        return self._path("work", "annotate", f"{key}.parquet")

    def annotate_marker(self, key: str) -> str:
        return self._path("work", "annotate", "_markers", f"{key}.json")

    def annotate_rejects(self, key: str) -> str:
        return self._path("rejects", "annotate", f"{key}.parquet")

    def quarantine(self, key: str) -> str:
        return self._path("quarantine", f"{key}.parquet")

    # dedup phase
    @property
    def dedup_dir(self) -> str:
        return self._path("work", "dedup")

    @property
    def dedup_removals(self) -> str:
        return self._path("work", "dedup", "removed")

    def dedup_removals_of(self, key: str) -> str:
        return self._path("work", "dedup", "removed", f"shard_key={key}")

    @property
    def dedup_marker(self) -> str:
        return self._path("work", "dedup", "_COMMITTED.json")

    def dedup_rejects(self, key: str) -> str:
        return self._path("rejects", "dedup", f"{key}.parquet")

    # dedup index: kept documents' dedup columns, for later runs on a grown input
    @property
    def index_dir(self) -> str:
        return self._path("index")

    def index_shard(self, key: str) -> str:
        return self._path("index", "shards", f"{key}.parquet")

    @property
    def index_manifest(self) -> str:
        return self._path("index", "_INDEX.json")

    # pack phase
    def token_bin(self, key: str) -> str:
        return self._path("tokens", f"{key}.bin")

    def token_idx(self, key: str) -> str:
        return self._path("tokens", f"{key}.idx")

    def pack_marker(self, key: str) -> str:
        return self._path("work", "pack", "_markers", f"{key}.json")

    # run outputs
    @property
    def manifest(self) -> str:
        return self._path("manifest.json")

    @property
    def report_json(self) -> str:
        return self._path("report.json")

    @property
    def report_md(self) -> str:
        return self._path("report.md")
