"""What every capability plugs into: its config model, its two kinds of stage, and the
``Capability`` that ties them together and is registered (``pipeline.stages.registry``).

A ``DocumentStage`` is built from its validated config, loads what it needs once per
worker in ``setup``, and maps a ``pyarrow.Table`` of documents to the same rows with
columns added and, optionally, a reject reason per row. It never sees Ray, so a unit
test can call it on a plain table; annotate runs it inside per-shard Ray tasks.

A ``GlobalStage`` reads the key columns of every annotated document as a
``ray.data.Dataset`` and returns a Dataset of the rows it removes (``shard_key``,
``row``, ``id``, ``reject_stage``, ``reject_reason``, ``duplicate_of`` and the survivor's
``shard_key`` and ``row``). It uses Ray
Data shuffles and never collects the corpus on one node.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from pipeline.core import columns as cols
from pipeline.core import storage

if TYPE_CHECKING:
    import ray.data

    from pipeline.config import JobSpec
    from pipeline.core.annotated import AnnotatedShards
    from pipeline.core.charts import Chart
    from pipeline.core.markers import RunRecord
    from pipeline.core.progress import Progress

ModelFiles = dict[str, tuple[str, storage.StorageOptions]]


class StageConfig(BaseModel):
    """A capability's section under ``stages:``. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    ADDED_LATER: ClassVar[dict[str, Any]] = {}
    """Fields added after outputs were written, each with the value that reproduces what the
    stage did before it: at that value a field stays out of work hashes, so committed work
    stays valid; at any other (a new default that changes results included) the work is redone."""

    enabled: bool = False

    def settings_for_hash(self) -> dict[str, Any]:
        """The section as work hashes see it (``ADDED_LATER`` fields at their earlier value left out)."""
        settings = self.model_dump(mode="json")
        for name, earlier in self.ADDED_LATER.items():
            if name in settings and settings[name] == earlier:
                del settings[name]
        return settings

    def model_files(self, key: str) -> ModelFiles:
        """Every model or data file the stage reads, by key path (``key`` is this section's,
        ``stages.<name>``): a file's size and change token are part of the work that used it."""
        return {}

    def check_files(self, key: str) -> list[str]:
        """Every problem with the files this section names, each starting with its key path:
        missing, or not usable as what it is (``open_file``). Runs when the spec is loaded
        with file checks (``refinery validate``, the start of ``run``)."""
        problems = []
        for path, (uri, options) in self.model_files(key).items():
            if not storage.exists(uri, options):
                problems.append(f"{path}: file not found: '{uri}'{self.missing_file_hint(path)}")
                continue
            try:
                self.open_file(path, uri, options)
            except (ValueError, OSError, RuntimeError) as exc:
                problems.append(f"{path}: {exc}")
        return problems

    def open_file(self, path: str, uri: str, options: storage.StorageOptions) -> None:
        """Open the existing file named at key path ``path`` as cheaply as tells whether the
        stage can use it (a header, a vocabulary, a first record: ``pipeline.core.model_files``)
        and raise ``ValueError`` saying what is wrong with it."""

    def missing_file_hint(self, path: str) -> str:
        """Appended to the file-not-found error of ``path``: how to make or get the file."""
        return ""

    def check_job(self, stages: BaseModel, key: str) -> None:
        """Checks across sections (this stage needs another one enabled); raise ``ValueError``
        starting with the key path."""


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage needs; the runner, not the stage, decides placement."""

    num_cpus: float = 1.0
    memory_bytes: int | None = None


@dataclass
class StageOutput:
    """The input rows with the stage's columns added.

    ``reject_reasons`` is a string array aligned with the rows: null keeps the row,
    a string names why it is rejected.
    """

    table: pa.Table
    reject_reasons: pa.Array | None = None


class DocumentStage(ABC):
    name: ClassVar[str]
    resources: ClassVar[Resources] = Resources()
    internal_columns: ClassVar[tuple[str, ...]] = ()
    """Columns the stage adds only for its global stage (hashes, signatures): left out of
    document outputs, where every other column it adds is an annotation."""
    example_text: ClassVar[bool] = True
    """Whether the report's examples of this stage's rejects show a snippet of the text (not
    where the text is what must not be shown: contamination's eval items)."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def bind_job(self, spec: JobSpec) -> None:
        """Take what the stage needs from the job beyond its own section (the output's
        location, the job's name and seed). Not called when a stage is used on its own."""

    def setup(self) -> None:
        """Load models and other per-worker state. Called once before the first batch."""

    def count_kept(self, kept: pa.Table) -> dict[str, int]:
        """Counters over a batch's documents that annotate kept (after every stage), summed
        per shard into its marker (``kept_counts``) and per run for the report."""
        return {}

    example_hiding_columns: ClassVar[tuple[str, ...]] = ()
    """The columns ``hides_example_text`` reads (phases after annotate read them for it)."""

    def hides_example_text(self, rejected: pa.Table) -> pa.Array | None:
        """Which of these rejected rows (of any stage, with this stage's columns) must show no
        text in the report's examples: contamination hides the documents it flagged, whatever
        rejected them later. None: none."""
        return None

    def scrub_examples(self, texts: list[str | None]) -> list[str | None]:
        """The report's example snippets (of any stage's rejects) as this stage would leave
        them: PII scrubbing replaces what it finds; None hides a text it cannot scan."""
        return texts

    def take_stats(self) -> Any:
        """JSON the stage gathered since the last call (per shard), or None. Called before a
        shard starts (to drop what a failed shard left) and after it ends (``stage_stats``)."""
        return None

    @abstractmethod
    def process(self, docs: pa.Table) -> StageOutput:
        """Annotate (and optionally reject) a batch of documents."""

    def __call__(self, docs: pa.Table) -> tuple[pa.Table, pa.Table]:
        """Run the stage and split the batch into kept rows and labelled rejects."""
        out = self.process(docs)
        if out.table.num_rows != docs.num_rows:
            raise RuntimeError(f"stage {self.name} returned {out.table.num_rows} rows for {docs.num_rows}")
        if out.reject_reasons is None or out.reject_reasons.null_count == len(out.reject_reasons):
            return out.table, out.table.schema.empty_table()
        rejected_mask = pc.is_valid(out.reject_reasons)
        kept = out.table.filter(pc.invert(rejected_mask))
        rejected = cols.with_rejection(
            out.table.filter(rejected_mask), self.name, out.reject_reasons.filter(rejected_mask)
        )
        return kept, rejected


class GlobalStage(ABC):
    name: ClassVar[str]
    index_columns: tuple[str, ...]
    """Annotated columns this stage reads; the dedup index keeps them for kept documents."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.previous_state: dict[str, Any] | None = None
        """What this stage recorded in the dedup index on an earlier run (``state``)."""
        self.state: dict[str, Any] | None = None
        """JSON a stage may set in ``find_removals``: kept in the dedup index for later
        runs and shown in the run report."""

    def annotate_kept(self, docs: pa.Table) -> pa.Table:
        """``docs`` (kept documents, with their annotations) with the columns this stage decided
        for them in the whole run (e.g. a perplexity bucket), for document outputs. Reads the
        run's committed ``previous_state``."""
        return docs

    @abstractmethod
    def find_removals(self, shards: AnnotatedShards) -> ray.data.Dataset:
        """Rows to remove, with REMOVAL_SCHEMA, found from the annotated shards' columns.
        Documents of indexed shards (kept by earlier runs) take precedence as survivors."""


REMOVAL_SCHEMA = pa.schema(
    [
        pa.field(cols.SHARD, pa.string(), nullable=False),
        pa.field(cols.ROW, pa.int64(), nullable=False),
        pa.field(cols.ID, pa.string()),
        pa.field(cols.REJECT_STAGE, pa.string(), nullable=False),
        pa.field(cols.REJECT_REASON, pa.string(), nullable=False),
        pa.field(cols.DUPLICATE_OF, pa.string()),
        pa.field(cols.SURVIVOR_SHARD, pa.string()),
        pa.field(cols.SURVIVOR_ROW, pa.int64()),
        pa.field(cols.MATCHED_TO, pa.string()),
        pa.field(cols.MATCHED_SHARD, pa.string()),
        pa.field(cols.MATCHED_ROW, pa.int64()),
        pa.field(cols.SIMILARITY, pa.float64()),
    ]
)


@dataclass
class ReportSection:
    """A capability's part of the run report: ``data`` under ``key`` in ``report.json``,
    ``markdown`` lines in ``report.md``, and optionally the same data in a file of its own
    at the output's root."""

    key: str
    data: Any
    markdown: list[str] = field(default_factory=list)
    file: str | None = None
    more: dict[str, Any] = field(default_factory=dict)
    """Further keys of ``report.json`` the capability writes (what its charts read)."""


class Capability:
    """One capability: its section under ``stages:``, its stages, and its hooks into the
    job. Register a subclass with ``@register`` (``pipeline.stages.registry``) in the
    capability's package; the spec, annotate, dedup and the report find it there."""

    key: ClassVar[str]
    """The section under ``stages:``; also the ``reject_stage`` its stages write."""
    config: ClassVar[type[StageConfig]]
    order: ClassVar[int]
    """Position among capabilities: document stages run in this order, and a document
    several global stages remove is counted by the first."""
    document_stage: ClassVar[type[DocumentStage] | None] = None
    global_stage: ClassVar[type[GlobalStage] | None] = None
    hashed_when_unused: ClassVar[bool] = True
    """Whether the section counts in work hashes while it is at its defaults (off). A
    capability added to a Refinery that already has outputs sets False, so that installing
    it redoes no committed work."""

    @classmethod
    def needs_global_stage(cls, config: StageConfig) -> bool:
        """Whether this job runs the capability's global stage: one the settings leave with
        nothing to decide (no run-wide cut) is left out of dedup."""
        return cls.global_stage is not None

    @classmethod
    def prepare_job(cls, spec: JobSpec, config: StageConfig, progress: Progress) -> Any:
        """Work done once per job before annotate (e.g. an index every worker loads).
        Its JSON result reaches ``report_section`` as ``run.prepared[key]``."""
        return None

    @classmethod
    def report_section(cls, config: StageConfig, run: RunRecord) -> ReportSection | None:
        """This capability's part of the run report, when it is enabled."""
        return None

    @classmethod
    def report_charts(cls, report: dict[str, Any]) -> list[Chart]:
        """This capability's charts in ``report.html``, from ``report.json`` alone (what its
        ``report_section`` put there), so that an earlier run's page can be rebuilt."""
        return []


def removal_table(
    shards: pa.Array | pa.ChunkedArray,
    rows: pa.Array | pa.ChunkedArray,
    ids: pa.Array | pa.ChunkedArray | None,
    stage: str,
    reasons: str | pa.Array,
    duplicate_of: pa.Array | pa.ChunkedArray | None = None,
    survivor: tuple[pa.Array | pa.ChunkedArray, pa.Array | pa.ChunkedArray] | None = None,
    matched: Matches | None = None,
) -> pa.Table:
    """Rows a global stage removes, with REMOVAL_SCHEMA: one reason for all, or one per row.
    A duplicate names the document it duplicates: its id, and its (shard, row) in ``survivor``;
    a near duplicate also the document it was matched to, in ``matched``."""
    n = len(rows)
    survivor_shards, survivor_rows = survivor if survivor is not None else (None, None)
    if matched is None:
        matched = Matches(*(pa.nulls(n, REMOVAL_SCHEMA.field(c).type) for c in _MATCH_COLUMNS))
    return pa.table(
        {
            cols.SHARD: shards,
            cols.ROW: rows,
            cols.ID: ids if ids is not None else pa.nulls(n, pa.string()),
            cols.REJECT_STAGE: pa.array([stage] * n, pa.string()),
            cols.REJECT_REASON: pa.array([reasons] * n, pa.string()) if isinstance(reasons, str) else reasons,
            cols.DUPLICATE_OF: duplicate_of if duplicate_of is not None else pa.nulls(n, pa.string()),
            cols.SURVIVOR_SHARD: survivor_shards if survivor_shards is not None else pa.nulls(n, pa.string()),
            cols.SURVIVOR_ROW: survivor_rows if survivor_rows is not None else pa.nulls(n, pa.int64()),
            cols.MATCHED_TO: matched.ids,
            cols.MATCHED_SHARD: matched.shards,
            cols.MATCHED_ROW: matched.rows,
            cols.SIMILARITY: matched.similarity,
        },
        schema=REMOVAL_SCHEMA,
    )


_MATCH_COLUMNS = (cols.MATCHED_TO, cols.MATCHED_SHARD, cols.MATCHED_ROW, cols.SIMILARITY)


class Matches(NamedTuple):
    """Per removed near duplicate, the document it was matched to (id, shard, row) and their
    verified similarity."""

    ids: pa.Array | pa.ChunkedArray
    shards: pa.Array | pa.ChunkedArray
    rows: pa.Array | pa.ChunkedArray
    similarity: pa.Array | pa.ChunkedArray
