"""The markers phases write when a unit of work is committed, as typed records.

A marker is the unit's stats, written last, as JSON; a re-run that finds a marker written
under the same config hash skips the unit. Shard tasks return the same records to the
driver. ``from_json`` also reads markers written by earlier versions, so their outputs
resume.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pipeline.config import JobSpec

RemovedCounts = dict[str, dict[str, int]]
"""Documents by stage, then by reason."""

M = TypeVar("M", bound="Marker")


@dataclass
class Marker:
    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls: type[M], data: dict[str, Any]) -> M:
        """Unknown keys (written by another version) are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# Before stages reported their own counters, annotate markers held two of them at the top
# level; they are the ``count_kept`` counters of these stages.
_TOP_LEVEL_KEPT_COUNTS = {"languages": "language", "pii_replaced": "pii"}


@dataclass
class AnnotateMarker(Marker):
    """One input shard, annotated (or quarantined as a whole)."""

    shard_key: str
    uri: str
    fingerprint: dict[str, Any]
    config_hash: str
    node: str | None = None
    rows: list[int] | None = None
    """``[start, end)`` of the file's rows this unit read, when a large Parquet file was split."""
    byte_range: list[int] | None = None
    """``[start, end)`` of the file's bytes whose lines this unit read, for a split JSON lines file."""
    worker_pid: int | None = None
    started_at: float | None = None
    """Wall clock (epoch seconds) when the unit started: with ``worker_pid``, shows which units ran at once."""
    input_docs: int = 0
    input_bytes: int = 0
    annotated_docs: int = 0
    annotated_bytes: int = 0
    rejected: RemovedCounts = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    """Documents by quarantine reason."""
    shard_quarantined: dict[str, Any] | None = None
    """``reason``, ``detail``, ``documents`` when the whole shard could not be read."""
    kept_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """Each document stage's ``count_kept`` counters over the documents annotate kept."""
    stage_stats: dict[str, Any] = field(default_factory=dict)
    """Each document stage's ``take_stats``."""
    carried_fields: list[str] = field(default_factory=list)
    """JSON lines: the input fields carried to document outputs, as met in this unit."""
    step_seconds: dict[str, float] = field(default_factory=dict)
    """Worker seconds by step: ``read``, ``validate``, each document stage, ``write``."""
    examples: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    """A few rejected documents per stage and reason (``pipeline.phases.examples``)."""
    length_buckets: dict[str, dict[int, int]] = field(default_factory=dict)
    """``chars``: the valid documents read, per length bucket (``sketch.LENGTH_GAMMA``)."""
    seconds: float = 0.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AnnotateMarker:
        marker = super().from_json(data)
        for old_key, stage in _TOP_LEVEL_KEPT_COUNTS.items():
            if data.get(old_key) and stage not in marker.kept_counts:
                marker.kept_counts[stage] = data[old_key]
        return marker


@dataclass
class DedupMarker(Marker):
    """The dedup phase, committed for one set of annotated shards."""

    input_hash: str
    removed_by_shard: dict[str, RemovedCounts] = field(default_factory=dict)
    removals_version: dict[str, str] = field(default_factory=dict)
    """Per shard, the dedup run whose removals apply to it (tokenized shards depend on it)."""
    cluster_runs: dict[str, list[str]] = field(default_factory=dict)
    """Per shard, the dedup runs that removed duplicates of its kept documents (their cluster
    sizes are in work/dedup/clusters/<run>/)."""
    index: dict[str, int] = field(default_factory=dict)
    """``indexed_shards`` (kept by earlier runs) and ``new_shards``."""
    stage_state: dict[str, Any] = field(default_factory=dict)
    """What global stages keep between runs (perplexity cut points), by stage."""
    cluster_sizes: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per dedup stage, the duplicate clusters this run formed, by size (a survivor and the
    documents removed for it): ``{"near_dedup": {"2": 310, "3": 41}}``."""
    removed_total: int = 0


@dataclass
class TokenizeMarker(Marker):
    """One annotated shard, deduplicated and tokenized."""

    shard_key: str
    uri: str
    config_hash: str
    annotated_docs: int = 0
    removed: RemovedCounts = field(default_factory=dict)
    """Documents the dedup phase's removals took out of this shard."""
    rejected: RemovedCounts = field(default_factory=dict)
    """Documents this phase rejected itself (a chat job's conversations that its template
    refuses or that are too long)."""
    tokenized_docs: int = 0
    tokenized_bytes: int = 0
    tokens: int = 0
    domains: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per domain: ``docs``, ``tokens``, ``bytes`` and a token histogram over the shuffle key."""
    chat: dict[str, Any] | None = None
    """Chat jobs: conversations, messages, truncated, trained and masked tokens, template errors."""
    examples: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    """A few documents per stage and reason that this phase removed or rejected."""
    length_buckets: dict[str, dict[int, int]] = field(default_factory=dict)
    """``chars`` and, for token outputs, ``tokens`` of the documents kept, before the
    mixture samples them, per length bucket (``sketch.LENGTH_GAMMA``)."""
    profiles: dict[str, Any] | None = None
    """Jobs with synthetic domains: per domain, what the report compares synthetic with real
    data on (``pipeline.phases.mix.profile``)."""
    seconds: float = 0.0


@dataclass
class SampleMarker(Marker):
    """One tokenized shard, sampled by the mixture's rates."""

    shard_key: str
    config_hash: str
    kept_docs: int = 0
    copies: int = 0
    tokens: int = 0
    copy_bytes: int = 0
    """Text bytes of every copy."""
    kept_bytes: int = 0
    unsampled: RemovedCounts = field(default_factory=dict)
    domains: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class PackMarker(Marker):
    """One output shard of a snapshot, written."""

    index: int
    config_hash: str
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per role (``bin``, ``idx``, ...): ``path`` relative to the output, ``bytes``, ``sha256``."""
    tokens: int = 0
    sequences: int = 0
    padding_tokens: int = 0
    documents: int = 0
    """Document copies in the shard."""
    document_bytes: int = 0
    """Their text bytes."""
    trained_tokens: int = 0
    """Chat jobs: the tokens a fine-tuning step trains on (loss mask on)."""
    domain_tokens: dict[str, int] = field(default_factory=dict)
    domain_bytes: dict[str, int] = field(default_factory=dict)
    bytes_read: int = 0
    seconds: float = 0.0


@dataclass
class GenerateMarker(Marker):
    """One committed generation round: what it asked, what came back, what it kept."""

    round: int
    config_hash: str
    method: str
    records: int = 0
    """Generated records kept."""
    source_records: int = 0
    """Source documents written beside their rewrites (``documents`` with ``keep_source``)."""
    candidates: int = 0
    """Items the round's answers offered (instructions, evolved prompts, candidates)."""
    rejected: dict[str, int] = field(default_factory=dict)
    """Candidates and requests that gave no record, by reason."""
    requests: dict[str, Any] = field(default_factory=dict)
    """The backends' counts, all roles together (``pipeline.generation.client.BackendStats``)."""
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The same per role (``generator``, ``judge``)."""
    completion_tokens: int = 0
    """Tokens of the kept records' answers."""
    seconds: float = 0.0


@dataclass
class SentBatch(Marker):
    """A generation task's answers, returned to the driver (not written)."""

    key: str
    role: str = "generator"
    responses: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunRecord:
    """Everything a finished run knows, for the report and the capabilities' sections."""

    spec: JobSpec
    annotate: list[AnnotateMarker]
    dedup: DedupMarker
    tokenize: list[TokenizeMarker] = field(default_factory=list)
    sample: list[SampleMarker] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)
    """The mix phase's plan (``work/mix/_PLAN.json``)."""
    pack: list[PackMarker] = field(default_factory=list)
    phases: list[dict[str, Any]] = field(default_factory=list)
    """Per phase: ``name``, ``seconds``, ``docs``, ``docs_per_s``, ``mb_per_s``."""
    peak_rss_bytes: int | None = None
    peak_private_bytes: int | None = None
    """The same without shared pages (the object store's, mapped by the workers that used it)."""
    prepared: dict[str, Any] = field(default_factory=dict)
    """What each capability's ``prepare_job`` returned, by key."""
    snapshot: str | None = None
    work_units: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per phase: units in ``total`` and ``reused`` from earlier runs."""
    generate: list[GenerateMarker] = field(default_factory=list)
    """A generation job's rounds."""
    previous_snapshot: dict[str, Any] | None = None
    """The snapshot ``latest.json`` named before this run: ``snapshot`` and ``synthetic_share``."""

    def kept_counts(self, stage: str) -> dict[str, int]:
        """A document stage's ``count_kept`` counters summed over every shard."""
        totals: dict[str, int] = {}
        for marker in self.annotate:
            for name, n in marker.kept_counts.get(stage, {}).items():
                totals[name] = totals.get(name, 0) + n
        return totals

    def stage_stats(self, stage: str) -> list[Any]:
        """A document stage's ``take_stats`` of every shard that has some."""
        return [m.stage_stats[stage] for m in self.annotate if stage in m.stage_stats]
