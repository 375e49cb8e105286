"""Column names and schemas shared by every phase.

A document is one row. ``shard_key`` + ``row`` locate it in its input shard and are
unique within a run even when user-supplied ids are not.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

ID = "id"
TEXT = "text"
DOMAIN = "domain"
URL = "url"
SHARD = "shard_key"
ROW = "row"
TEXT_BYTES = "text_bytes"

REJECT_STAGE = "reject_stage"
REJECT_REASON = "reject_reason"
DUPLICATE_OF = "duplicate_of"
MATCHED_TO = "matched_to"
"""Of a near duplicate: the id of the document it was matched to, one verified edge on the
way to its survivor (``duplicate_of``); the survivor itself when the two matched directly."""
SIMILARITY = "similarity"
"""Of a near duplicate: the verified similarity of it and ``matched_to`` (true Jaccard of the
shingle sets, or the signatures' agreement with ``verify: signature``; null unverified)."""

QUARANTINE_REASON = "quarantine_reason"
QUARANTINE_DETAIL = "quarantine_detail"
SOURCE_URI = "source_uri"

BASE_SCHEMA = pa.schema(
    [
        pa.field(ID, pa.string(), nullable=False),
        pa.field(TEXT, pa.string(), nullable=False),
        pa.field(DOMAIN, pa.string()),
        pa.field(URL, pa.string()),
        pa.field(SHARD, pa.string(), nullable=False),
        pa.field(ROW, pa.int64(), nullable=False),
        pa.field(TEXT_BYTES, pa.int64(), nullable=False),
    ]
)

REJECT_FIELDS = [
    pa.field(REJECT_STAGE, pa.string(), nullable=False),
    pa.field(REJECT_REASON, pa.string(), nullable=False),
    pa.field(DUPLICATE_OF, pa.string()),
    pa.field(MATCHED_TO, pa.string()),
    pa.field(SIMILARITY, pa.float64()),
]

REJECTS_SCHEMA = pa.schema(list(BASE_SCHEMA) + REJECT_FIELDS)
"""Rejected documents as written under ``rejects/``."""

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field(SOURCE_URI, pa.string(), nullable=False),
        pa.field(SHARD, pa.string(), nullable=False),
        pa.field(ROW, pa.int64()),
        pa.field(ID, pa.string()),
        pa.field(TEXT_BYTES, pa.int64()),
        pa.field(QUARANTINE_REASON, pa.string(), nullable=False),
        pa.field(QUARANTINE_DETAIL, pa.string()),
    ]
)


def with_rejection(docs: pa.Table, stage: str, reasons: pa.Array) -> pa.Table:
    """Rows of ``docs`` labelled as rejected by ``stage`` for ``reasons``."""
    n = docs.num_rows
    table = docs.append_column(REJECT_FIELDS[0], pa.array([stage] * n, pa.string()))
    table = table.append_column(REJECT_FIELDS[1], reasons.cast(pa.string()))
    for field in REJECT_FIELDS[2:]:
        table = table.append_column(field, pa.nulls(n, field.type))
    return table


SEGMENT_BREAK = "\n\ufdd0\n"
"""Joins the fields of a text made of several (a conversation's messages: ``pipeline.chat
.segments``). Stages that match spans split at it, so that no match spans two fields."""
CONVERSATION = "conversation"
"""Chat jobs: the conversation (``pipeline.chat.schema``) as JSON text; ``text`` holds its
fields joined by ``SEGMENT_BREAK``."""
DEDUP_TEXT = "dedup_text"
"""When present, what exact and near dedup compare instead of ``text`` (a chat job's first
user turn, ``input.chat.dedup_on``)."""

INPUT_FIELDS = "input_fields"
"""JSON lines inputs: the fields carried to document outputs (``input.carry_columns``), as
one JSON object per document; document shards spread them into columns."""
SURVIVOR_SHARD = "duplicate_of_shard"
SURVIVOR_ROW = "duplicate_of_row"
"""Where the document a duplicate was removed for lies (dedup removals only)."""
MATCHED_SHARD = "matched_to_shard"
MATCHED_ROW = "matched_to_row"
"""Where a near duplicate's ``matched_to`` lies (dedup removals only)."""
COPY = "copy"
"""In document shards: 0 for a document's first copy in the mix, 1 for its second, ..."""
ROUTED_DOMAIN = "routed_domain"
"""A domain a document stage decided for a document (a classifier's label): the mix phase
takes it after its domain rules and before the input's domain column. A stage that writes
it keeps a value an earlier stage wrote."""

CLUSTER_SIZE = "duplicate_count"
"""Of a kept document: the documents of the duplicate cluster it stands for (itself and every
document exact or near dedup removed for it, in this run and earlier ones); 1 when none. The
cluster's id is the kept document's id: the ``duplicate_of`` of the removed ones."""
MIX_WEIGHT = "mix_weight"
"""Rehydration's copies multiplier of a kept document, from its cluster size."""


def carried_name(name: str, taken: set[str] | list[str]) -> str:
    """An input column's name in annotated and document shards: its own, or ``input_<name>``
    when a Refinery column has it."""
    return f"input_{name}" if name in taken else name


# Annotations that stages other than their own read.
LANG = "lang"
"""The language stage's top label; perplexity picks its model by it."""
LANG_SCORE = "lang_score"
PERPLEXITY = "perplexity"
"""Under the document's language model; near dedup may keep the lowest."""

# Tokenized shards (work/tokenize/), read by the mix and pack phases.
SHUFFLE_KEY = "u"
"""A document's seeded uniform key in [0, 1): its place in the global order."""
NUM_TOKENS = "num_tokens"
TOKENS = "tokens"
LOSS_MASK = "loss_mask"
"""Chat jobs: one byte per token, 1 where a fine-tuning step trains on it."""


def dedup_text(docs: pa.Table) -> pa.ChunkedArray:
    """What dedup compares: ``DEDUP_TEXT`` when the documents have it, else their text."""
    return docs.column(DEDUP_TEXT if DEDUP_TEXT in docs.column_names else TEXT)


def with_texts_replaced(docs: pa.Table, replacements: dict[int, str]) -> pa.Table:
    """``docs`` with the text of the given rows replaced, and their ``text_bytes`` recounted."""
    if not replacements:
        return docs
    column = docs.column(TEXT)
    mask = pa.array([row in replacements for row in range(docs.num_rows)])
    texts = pc.replace_with_mask(
        column.combine_chunks(), mask, pa.array([replacements[r] for r in sorted(replacements)], column.type)
    )
    # the same fields (not-null included), so that every batch a writer gets has one schema
    text_at, bytes_at = docs.schema.get_field_index(TEXT), docs.schema.get_field_index(TEXT_BYTES)
    docs = docs.set_column(text_at, docs.schema.field(text_at), texts)
    lengths = pc.binary_length(texts).cast(pa.int64())
    return docs.set_column(bytes_at, docs.schema.field(bytes_at), lengths)
