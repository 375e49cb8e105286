"""Where every phase reads and writes under the output URI.

Names are deterministic, so a retried task overwrites its own file with the same bytes
and a re-run finds the committed work of the previous one.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass

from pipeline.core import storage


def input_relative_path(input_root: str, shard_uri: str) -> str:
    """The shard's path relative to ``input.uri`` (its base name when outside it)."""
    root = storage.normalize_uri(input_root.split("*", 1)[0].rsplit("/", 1)[0] if "*" in input_root else input_root)
    uri = storage.normalize_uri(shard_uri)
    return uri[len(root) :].lstrip("/") if uri.startswith(root) and uri != root else posixpath.basename(uri)


def shard_key(input_root: str, shard_uri: str) -> str:
    """A readable, filesystem-safe, stable name for an input shard.

    Built from the shard's path relative to the input root plus a short hash of that
    path, so ``a/b.parquet`` and ``a_b.parquet`` never collide.
    """
    relative = input_relative_path(input_root, shard_uri)
    stem = relative[: -len(".parquet")] if relative.endswith(".parquet") else relative
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", stem.replace("/", "__"))[:80]
    return f"{readable}-{hashlib.sha256(relative.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class OutputLayout:
    root: str

    def _path(self, *parts: str) -> str:
        return storage.join(self.root, *parts)

    # generate phase
    @property
    def generated_dir(self) -> str:
        """Generated records, one Parquet file per round: a generation job's input."""
        return self._path("generated")

    def generated_round(self, round_number: int) -> str:
        return self._path("generated", f"round-{round_number:05d}.parquet")

    def generate_marker(self, round_number: int) -> str:
        return self._path("work", "generate", "_markers", f"round-{round_number:05d}.json")

    def generate_cache(self, round_number: int) -> str:
        """The round's answered requests (``pipeline.generation.cache``)."""
        return self._path("work", "generate", "cache", f"round-{round_number:05d}")

    # annotate phase
    def annotated(self, key: str) -> str:
        return self._path("work", "annotate", f"{key}.parquet")

    def annotate_marker(self, key: str) -> str:
        return self._path("work", "annotate", "_markers", f"{key}.json")

    def annotate_progress(self, key: str) -> str:
        """How far a running unit has read; written by its worker now and then, for the console."""
        return self._path("work", "annotate", "_progress", f"{key}.json")

    @property
    def annotate_progress_dir(self) -> str:
        return self._path("work", "annotate", "_progress")

    def annotate_rejects(self, key: str) -> str:
        return self._path("rejects", "annotate", f"{key}.parquet")

    def quarantine(self, key: str) -> str:
        return self._path("quarantine", f"{key}.parquet")

    def stage_work(self, stage: str, name: str) -> str:
        """A file a capability keeps for later runs (e.g. its index), under ``work/<stage>/``."""
        return self._path("work", stage, name)

    def report_file(self, name: str) -> str:
        """A report section's own file at the output's root (``contamination.json``)."""
        return self._path(name)

    # dedup phase
    @property
    def dedup_dir(self) -> str:
        return self._path("work", "dedup")

    @property
    def dedup_removals(self) -> str:
        return self._path("work", "dedup", "removed")

    def dedup_removals_of(self, key: str) -> str:
        return self._path("work", "dedup", "removed", f"shard_key={key}")

    def dedup_clusters_run(self, run: str) -> str:
        """Per survivor, how many duplicates of it one dedup run removed, by survivor shard."""
        return self._path("work", "dedup", "clusters", run)

    def dedup_clusters_of(self, run: str, key: str) -> str:
        return self._path("work", "dedup", "clusters", run, f"shard_key={key}")

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

    # tokenize phase: kept documents' tokens, domain and shuffle key, per input shard
    def tokenized(self, key: str) -> str:
        return self._path("work", "tokenize", f"{key}.parquet")

    def tokenize_marker(self, key: str) -> str:
        return self._path("work", "tokenize", "_markers", f"{key}.json")

    # mix phase
    def mix_marker(self, key: str) -> str:
        return self._path("work", "mix", "_markers", f"{key}.json")

    def tokenize_rejects(self, key: str) -> str:
        return self._path("rejects", "tokenize", f"{key}.parquet")

    def mix_rejects(self, key: str) -> str:
        return self._path("rejects", "mix", f"{key}.parquet")

    @property
    def mix_plan(self) -> str:
        return self._path("work", "mix", "_PLAN.json")

    # pack phase: output shard j of a snapshot
    def pack_marker(self, snapshot: str, index: int) -> str:
        return self._path("work", "pack", snapshot, "_markers", f"shard-{index:05d}.json")

    def pack_work(self, snapshot: str) -> str:
        return self._path("work", "pack", snapshot)

    @staticmethod
    def staged(relative: str) -> str:
        """Where a snapshot's file (``snapshots/<snapshot>/...``, relative to the output root)
        is written until the snapshot commits: ``work/pack/<snapshot>/...``. So nothing under
        ``snapshots/`` is ever a partial set that a reader globbing it could take for data."""
        parts = relative.split("/")
        if len(parts) < 3 or parts[0] != "snapshots":
            raise ValueError(f"not a snapshot file: {relative}")
        return "/".join(["work", "pack", *parts[1:]])

    # snapshots: each packed result in its own directory, never changed once committed
    @property
    def snapshots_dir(self) -> str:
        return self._path("snapshots")

    def snapshot_dir(self, snapshot: str) -> str:
        return self._path("snapshots", snapshot)

    def snapshot_manifest(self, snapshot: str) -> str:
        return self._path("snapshots", snapshot, "manifest.json")

    def snapshot_report(self, snapshot: str, suffix: str) -> str:
        return self._path("snapshots", snapshot, f"report.{suffix}")

    def tokens_dir(self, snapshot: str) -> str:
        return self._path("snapshots", snapshot, "tokens")

    @staticmethod
    def token_shard_stem(snapshot: str, index: int) -> str:
        """Relative to the output root, as manifests name files."""
        return f"snapshots/{snapshot}/tokens/shard-{index:05d}"

    @staticmethod
    def document_shard(snapshot: str, index: int, suffix: str) -> str:
        """Relative to the output root, as manifests name files."""
        return f"snapshots/{snapshot}/documents/shard-{index:05d}{suffix}"

    def document_schema(self, snapshot: str) -> str:
        """The one schema of a snapshot's document shards, for its pack workers."""
        return self._path("work", "pack", snapshot, "_DOCUMENT_SCHEMA.json")

    @property
    def latest(self) -> str:
        """Names the newest committed snapshot; moved only after its manifest is written."""
        return self._path("latest.json")

    # run outputs
    @property
    def manifest(self) -> str:
        """A copy of the latest snapshot's manifest, for readers that take one fixed path."""
        return self._path("manifest.json")

    @property
    def report_json(self) -> str:
        return self._path("report.json")

    @property
    def report_md(self) -> str:
        return self._path("report.md")
