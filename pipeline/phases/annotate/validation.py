"""Input validation: turn raw Parquet rows into documents, or quarantine them with a reason.

Shard-level problems (unreadable file, missing or mistyped text column) quarantine the
whole shard; row-level problems (null or non-UTF-8 text, oversized documents, null
ids) quarantine the row, naming it. Empty or whitespace-only text is a reject, not a
quarantine: the row is well-formed, it just carries nothing to train on.
"""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from pipeline.chat.config import ChatInputConfig
from pipeline.core import columns as cols
from pipeline.core.storage import StorageOptions

STAGE_NAME = "validate"


class InputConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    uri: str
    """Directory, prefix or glob of input shards (local path, file:// or s3://). Files whose
    names start with ``_`` or ``.`` are skipped (``_SUCCESS``, ``.crc``)."""
    storage_options: StorageOptions = StorageOptions()
    format: Literal["auto", "parquet", "jsonl"] = "auto"
    """``auto`` tells each file's format by its first bytes: Parquet, or JSON lines plain,
    gzip or zstd (dolma's ``.json.zst`` included); ``jsonl`` still reads the compression from
    the content."""
    text_column: str = "text"
    """The column (Parquet) or field (JSON lines; a dotted path such as ``metadata.text``
    reaches into nested objects) that holds the text. The same goes for the other columns."""
    id_column: str | None = None
    """Column holding a stable document id; when unset ids are ``<shard_key>:<row>``."""
    domain_column: str | None = "domain"
    url_column: str | None = "url"
    max_document_bytes: int = Field(10_000_000, gt=0)
    """Documents with more UTF-8 bytes than this are quarantined, not processed."""
    batch_rows: int = Field(1024, gt=0)
    """Rows read from a shard per batch; bounds worker memory."""
    on_bad_shard: Literal["quarantine", "fail"] = "quarantine"
    """What an unreadable shard does when annotate meets it: quarantine it and go on, or fail
    the run at once."""
    unit_rows: int = Field(10_000, ge=1)
    """A Parquet file of more rows is annotated as several work units, consecutive row ranges
    of about this many rows, so that one big file keeps every core busy (a unit reads the
    row groups its range overlaps). Each unit has its own marker, so resume and refresh work
    per unit."""
    unit_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    """An uncompressed JSON lines file larger than this is annotated as several work units,
    byte ranges of about this size (a unit holds the lines that begin in its range). A gzip
    or zstd file is one unit, whatever its size: split such files before a run."""
    carry_columns: Literal["all", "none"] | list[str] = "all"
    """Input columns, besides text, id, domain and url, that document outputs keep (``output.kind:
    documents`` or ``both``): ``all``, ``none``, or a list of names (JSON lines: dotted paths
    allowed). Parquet columns keep their types; JSON lines fields are kept as strings (other
    values as their JSON text) and a field absent from a line is null. A name a Refinery
    column already has (``lang``, ``perplexity``, ...) is kept as ``input_<name>``."""
    chat: ChatInputConfig | None = None
    """Set for chat and instruction data (``pipeline.phases.annotate.chat``): each record is
    a conversation (Alpaca, ShareGPT, OpenAI messages or ChatML), read from JSON lines, JSON
    array files or Parquet. ``text_column`` then names nothing in the input; the document
    stages see the conversation's text fields joined."""
    max_unreadable_shards: int = Field(0, ge=0)
    """Shards quarantined whole (corrupt, truncated or zero-byte file; text column missing
    or not text) that a run accepts. More fail the run after annotate, naming them; the
    annotated shards are kept, so a re-run after fixing or removing them resumes. Either
    way the report and the console count them, with their bytes."""


# Fields added after work was first committed, with their defaults: at the default they stay
# out of the work hashes, so that upgrading does not redo committed work.
ADDED_WITH_DEFAULTS = {
    "format": "auto",
    "unit_rows": 10_000,
    "unit_bytes": 64 * 1024 * 1024,
    "carry_columns": "all",
    "chat": None,
}


def settings_for_hash(config: InputConfig, leave_out: set[str]) -> dict:
    """The input settings a work hash covers: all but ``leave_out``, and fields added later only
    when they differ from their defaults."""
    at_default = {name for name, default in ADDED_WITH_DEFAULTS.items() if getattr(config, name) == default}
    return config.model_dump(mode="json", exclude=leave_out | at_default)


class ShardRejected(Exception):
    """The whole shard cannot be read as documents."""

    def __init__(self, reason: str, detail: str, num_rows: int | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.num_rows = num_rows


class ValidationResult:
    def __init__(self, docs: pa.Table, rejected: pa.Table, quarantined: pa.Table) -> None:
        self.docs = docs
        self.rejected = rejected
        self.quarantined = quarantined


class InputValidation:
    name = STAGE_NAME

    def __init__(self, config: InputConfig) -> None:
        self.config = config

    @property
    def named_columns(self) -> list[str]:
        """The input columns the config names: text, id, domain, url."""
        names = [self.config.text_column, self.config.id_column, self.config.domain_column, self.config.url_column]
        return [c for c in names if c]

    def carried(self, names: list[str], read: set[str] = frozenset()) -> list[str]:
        """Which of an input's columns (or a JSON record's fields) are carried to document
        outputs; ``read``: fields a chat record's format reads its conversation from."""
        carry = self.config.carry_columns
        if carry == "none":
            return []
        own = set(self.named_columns) | read
        if carry == "all":
            return [n for n in names if n not in own]
        return [n for n in carry if n in names and n not in own]

    def columns_to_read(self, schema: pa.Schema) -> list[str]:
        named = [c for c in self.named_columns if c in schema.names]
        return named + [c for c in self.carried(schema.names) if c not in named]

    def empty_documents(self) -> pa.Table:
        """No documents, with the columns ``validate`` gives them."""
        table = cols.BASE_SCHEMA.empty_table()
        chat = self.config.chat
        if chat is not None:
            names = [cols.CONVERSATION] + ([cols.DEDUP_TEXT] if chat.dedup_on == "first_user_turn" else [])
            for name in names:
                table = table.append_column(pa.field(name, pa.string(), nullable=False), pa.array([], pa.string()))
        return table

    def check_schema(self, schema: pa.Schema, num_rows: int) -> None:
        text = self.config.text_column
        if text not in schema.names:
            raise ShardRejected(
                "missing_text_column",
                f"no column '{text}' (columns: {', '.join(schema.names) or 'none'}); "
                "set input.text_column to the column that holds the text",
                num_rows,
            )
        text_type = schema.field(text).type
        if not (
            pa.types.is_string(text_type)
            or pa.types.is_large_string(text_type)
            or pa.types.is_binary(text_type)
            or pa.types.is_large_binary(text_type)
        ):
            raise ShardRejected("bad_text_type", f"column '{text}' has type {text_type}, expected string", num_rows)
        if self.config.id_column and self.config.id_column not in schema.names:
            raise ShardRejected(
                "missing_id_column", f"no column '{self.config.id_column}' named by input.id_column", num_rows
            )

    def validate(self, raw: pa.Table, source_uri: str, shard_key: str, rows: int | pa.Array) -> ValidationResult:
        """``rows``: each row's number in the shard, or the first one's when they follow on."""
        n = raw.num_rows
        if isinstance(rows, int):
            rows = pa.array(range(rows, rows + n), pa.int64())
        text, reasons, details = self._decode_text(raw.column(self.config.text_column), rows)
        text_bytes = pc.binary_length(text).cast(pa.int64()).fill_null(0)
        # as stored: a row whose bytes are not UTF-8 has no decoded text, but it has a size
        stored_bytes = pc.binary_length(raw.column(self.config.text_column)).cast(pa.int64()).fill_null(0)
        ids = self._ids(raw, shard_key, rows)

        too_large = pc.fill_null(pc.greater(text_bytes, self.config.max_document_bytes), False)
        for i in _indices(too_large):
            if reasons[i] is None:
                reasons[i] = "document_too_large"
                details[i] = (
                    f"text is {text_bytes[i].as_py()} bytes; input.max_document_bytes is {self.config.max_document_bytes}"
                )
        for i in _indices(pc.is_null(ids)):
            if reasons[i] is None:
                reasons[i] = "null_id"
                details[i] = f"column '{self.config.id_column}' is null"

        quarantined_mask = pa.array([r is not None for r in reasons], pa.bool_())
        quarantined = pa.table(
            {
                cols.SOURCE_URI: pa.array([source_uri] * n, pa.string()),
                cols.SHARD: pa.array([shard_key] * n, pa.string()),
                cols.ROW: rows,
                cols.ID: ids,
                cols.TEXT_BYTES: stored_bytes,
                cols.QUARANTINE_REASON: pa.array(reasons, pa.string()),
                cols.QUARANTINE_DETAIL: pa.array(details, pa.string()),
            },
            schema=cols.QUARANTINE_SCHEMA,
        ).filter(quarantined_mask)

        docs = pa.table(
            {
                cols.ID: ids.fill_null(""),
                cols.TEXT: text.fill_null(""),
                cols.DOMAIN: self._optional_column(raw, self.config.domain_column),
                cols.URL: self._optional_column(raw, self.config.url_column),
                cols.SHARD: pa.array([shard_key] * n, pa.string()),
                cols.ROW: rows,
                cols.TEXT_BYTES: text_bytes,
            },
            schema=cols.BASE_SCHEMA,
        ).filter(pc.invert(quarantined_mask))
        rejected = []
        if self.config.chat is not None:
            docs, rejected = self._conversations(docs, raw.filter(pc.invert(quarantined_mask)))

        empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(docs.column(cols.TEXT))), 0)
        empty_docs = docs.filter(empty).select(cols.BASE_SCHEMA.names)
        rejected.append(
            cols.with_rejection(empty_docs, STAGE_NAME, pa.array(["empty_text"] * empty_docs.num_rows, pa.string()))
        )
        rejected = pa.concat_tables(rejected) if len(rejected) > 1 else rejected[0]
        return ValidationResult(docs.filter(pc.invert(empty)), rejected, quarantined)

    @staticmethod
    def _conversations(docs: pa.Table, raw: pa.Table) -> tuple[pa.Table, list[pa.Table]]:
        """A chat batch's documents with their conversations; those that break a rule of
        ``pipeline.chat.validation`` rejected with its name."""
        from pipeline.phases.annotate.chat import CHAT_INVALID

        for name in (cols.CONVERSATION, cols.DEDUP_TEXT):
            if name in raw.column_names:
                docs = docs.append_column(pa.field(name, pa.string(), nullable=False), raw.column(name).fill_null(""))
        invalid = raw.column(CHAT_INVALID)
        broken = pc.is_valid(invalid)
        rejected = docs.filter(broken).select(cols.BASE_SCHEMA.names)
        return docs.filter(pc.invert(broken)), [
            cols.with_rejection(rejected, STAGE_NAME, invalid.filter(broken).combine_chunks())
        ]

    def _decode_text(self, column: pa.ChunkedArray, rows: pa.Array) -> tuple[pa.Array, list, list]:
        column = column.combine_chunks()
        reasons: list[str | None] = [None] * len(column)
        details: list[str | None] = [None] * len(column)
        if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            try:
                text = column.cast(pa.string())
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                values = []
                for i, value in enumerate(column.to_pylist()):
                    try:
                        values.append(None if value is None else value.decode("utf-8"))
                    except UnicodeDecodeError as exc:
                        values.append(None)
                        reasons[i] = "invalid_utf8"
                        details[i] = f"byte {exc.start} of the text is not valid UTF-8"
                text = pa.array(values, pa.string())
        else:
            text = column.cast(pa.string())
        for i in _indices(pc.is_null(text)):
            if reasons[i] is None:
                reasons[i] = "null_text"
                details[i] = f"column '{self.config.text_column}' is null"
        return text, reasons, details

    def _ids(self, raw: pa.Table, shard_key: str, rows: pa.Array) -> pa.Array:
        if self.config.id_column:
            return raw.column(self.config.id_column).combine_chunks().cast(pa.string())
        return pc.binary_join_element_wise(shard_key, rows.cast(pa.string()), ":")

    @staticmethod
    def _optional_column(raw: pa.Table, name: str | None) -> pa.Array:
        if name and name in raw.column_names:
            column = raw.column(name).combine_chunks()
            try:
                return column.cast(pa.string())
            except pa.ArrowException:
                return pa.array([None if v is None else str(v) for v in column.to_pylist()], pa.string())
        return pa.nulls(raw.num_rows, pa.string())


def _indices(mask: pa.Array) -> list[int]:
    return [i for i, flag in enumerate(mask.to_pylist()) if flag]
