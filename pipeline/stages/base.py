"""The two kinds of stage every capability plugs into.

A ``DocumentStage`` is built from its validated config, loads what it needs once per
worker in ``setup``, and maps a ``pyarrow.Table`` of documents to the same rows with
columns added and, optionally, a reject reason per row. It never sees Ray, so a unit
test can call it on a plain table; the runner wraps it in a Ray actor.

A ``GlobalStage`` reads the key columns of every annotated document as a
``ray.data.Dataset`` and returns a Dataset of the rows it removes (``shard_key``,
``row``, ``id``, ``reject_stage``, ``reject_reason``, ``duplicate_of``). It uses Ray
Data shuffles and never collects the corpus on one node.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import documents as cols

if TYPE_CHECKING:
    import ray.data

    from pipeline.annotated import AnnotatedShards


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

    def __init__(self, config: Any) -> None:
        self.config = config

    def setup(self) -> None:
        """Load models and other per-worker state. Called once before the first batch."""

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

    @abstractmethod
    def find_removals(self, shards: "AnnotatedShards") -> "ray.data.Dataset":
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
    ]
)
