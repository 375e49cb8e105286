"""Phase 5, pack: one task per output shard of a snapshot (``pipeline.phases.publish``
names it from the hash of the mix plan, shard boundaries, pack settings and tokenizer, and
commits it afterwards). An output shard is a token shard, a document shard, or both (the
same copies in the same order), as ``output.kind`` says.

Output shard ``j`` holds the document copies whose mix position falls in its range of
the plan's boundaries (see ``pipeline.phases.mix.plan``), in position order: a seeded
global shuffle across every input shard. The task reads, from each tokenized shard, only
the row groups whose (domain, shuffle key) range can hold such copies, packs them
(``concat`` or ``bestfit``), and writes the shard's files (Megatron or datatrove; Parquet or
JSON lines for documents: ``pipeline.phases.pack.documents``), each uploaded whole or not at
all, with retries. Its marker, written after the files, lists
their sizes and sha256.
"""

from __future__ import annotations

import hashlib
import io
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import formats
from pipeline.chat.masks import TokenizedConversation
from pipeline.chat.packing import SFT_SCHEMA, pack_conversations
from pipeline.config import JobSpec
from pipeline.core import columns as cols
from pipeline.core import storage
from pipeline.core.columns import DOMAIN, SHUFFLE_KEY, TOKENS
from pipeline.core.hashing import short_hash
from pipeline.core.layout import OutputLayout
from pipeline.core.markers import AnnotateMarker, PackMarker
from pipeline.core.progress import Progress
from pipeline.phases.mix.phase import domain_rates
from pipeline.phases.mix.plan import document_rates, expand_copies, pile_of
from pipeline.phases.pack.documents import SUFFIXES, DocumentSchema, document_schema, document_table, encode_documents
from pipeline.phases.pack.packing import pack_bestfit, pack_concat
from pipeline.phases.publish import open_snapshot
from pipeline.phases.shard_tasks import ShardWorker, committed, run_shard_tasks
from pipeline.phases.tokenize.phase import storage_dtype, tokenizer_file_info
from pipeline.phases.tokenize.tokenizer import Tokenize

PACK_FORMAT = 2
DOCUMENTS_FORMAT = 1
# Row-group pruning widens each key range by this much, so that a copy on a range edge is
# never missed to rounding; the exact assignment is then recomputed per row.
EDGE = 1e-9
SFT_ROW_GROUP = 1024  # sequences per row group of an SFT shard


def pack_config_hash(
    spec: JobSpec, plan_hash: str, boundaries: list[float], tokenizer_info: dict[str, Any] | None
) -> str:
    payload = {
        "format": PACK_FORMAT,
        "plan": plan_hash,
        "boundaries": boundaries,
        "pack": spec.stages.pack.model_dump(mode="json") if spec.output.writes_tokens else None,
        "tokenizer_file": tokenizer_info,
    }
    if spec.output.writes_documents:
        payload["documents"] = {"format": DOCUMENTS_FORMAT, **spec.output.documents.settings_for_hash()}
        payload["kind"] = spec.output.kind
    return short_hash(payload)


def key_ranges(rate: float, start: float, end: float) -> list[tuple[float, float]]:
    """Shuffle-key ranges whose copies of a document (domain at ``rate``) have positions in
    [start, end)."""
    ranges = []
    for copy in range(int(np.ceil(rate))):
        low = max(0.0, start * rate - copy)
        high = min(1.0, rate - copy, end * rate - copy)
        if high > low:
            ranges.append((low - EDGE, high + EDGE))
    return ranges


class ShardPacker(ShardWorker):
    phase = "pack"
    marker = PackMarker

    def __init__(self, spec: JobSpec) -> None:
        super().__init__(spec)
        self.config = spec.stages.pack
        self.layout = OutputLayout(spec.output.uri)
        self.options = spec.output.storage_options
        self.tokens = spec.output.writes_tokens
        self.documents = spec.output.writes_documents
        self.chat = spec.input.chat is not None
        if self.tokens:
            tokenizer = Tokenize(spec.stages.tokenize)
            tokenizer.setup()
            self.vocab_size = tokenizer.vocab_size
            self.pad_id = (
                None if self.chat else self.config.check_pad_id(tokenizer.tokenizer, spec.stages.tokenize.model)
            )
            self.dtype = formats.token_dtype(self.config.format, tokenizer.vocab_size)
            self.storage_dtype = storage_dtype(tokenizer.vocab_size)
            self.tokenizer_name = spec.stages.tokenize.model.rsplit("/", 1)[-1]
        self._schema: tuple[str, DocumentSchema] | None = None
        self._plan: dict[str, Any] | None = None
        self._row_groups: dict[str, list[tuple[str | None, str | None, float, float]]] = {}

    def plan(self, plan_hash: str) -> dict[str, Any]:
        if self._plan is None or self._plan["hash"] != plan_hash:
            self._plan = storage.read_json(self.layout.mix_plan, self.options)
            if self._plan["hash"] != plan_hash:
                raise RuntimeError("work/mix/_PLAN.json changed while packing; re-run the job")
            self._row_groups = {}
        return self._plan

    def _groups_of(self, key: str, parquet: pq.ParquetFile) -> list[tuple[str | None, str | None, float, float]]:
        """(domain min, domain max, key min, key max) per row group, read once per worker."""
        if key not in self._row_groups:
            schema = parquet.schema_arrow
            d, u = schema.get_field_index(DOMAIN), schema.get_field_index(SHUFFLE_KEY)
            groups = []
            for i in range(parquet.metadata.num_row_groups):
                group = parquet.metadata.row_group(i)
                ds, us = group.column(d).statistics, group.column(u).statistics
                if group.num_rows == 0:
                    continue
                if ds is None or us is None or not ds.has_min_max or not us.has_min_max:
                    groups.append((None, None, 0.0, 1.0))
                else:
                    groups.append((ds.min, ds.max, us.min, us.max))
            self._row_groups[key] = groups
        return self._row_groups[key]

    def _select(self, key: str, parquet: pq.ParquetFile, ranges: dict[str, list[tuple[float, float]]]) -> list[int]:
        chosen = []
        for i, (dmin, dmax, umin, umax) in enumerate(self._groups_of(key, parquet)):
            if dmin is None or dmin != dmax:
                chosen.append(i)
            elif any(low <= umax and high >= umin for low, high in ranges.get(dmin, [])):
                chosen.append(i)
        return chosen

    def schema(self, snapshot: str) -> DocumentSchema:
        if self._schema is None or self._schema[0] != snapshot:
            data = storage.read_json(self.layout.document_schema(snapshot), self.options)
            self._schema = (snapshot, DocumentSchema.from_json(data))
        return self._schema[1]

    def run(self, item: dict[str, Any]) -> PackMarker:
        return self.pack(item["snapshot"], item["index"], item["config_hash"], item["plan_hash"])

    def pack(self, snapshot: str, index: int, config_hash: str, plan_hash: str) -> PackMarker:
        started = time.perf_counter()
        plan = self.plan(plan_hash)
        boundaries = np.asarray(plan["shard_boundaries"])
        rates = {d: r for d, r in plan["rates"].items() if r > 0}
        cap = plan["max_epochs"]
        ranges = {
            d: [
                span
                for level in plan.get("rehydration_levels", [1.0])
                if level > 0
                for span in key_ranges(min(r * level, cap), boundaries[index], boundaries[index + 1])
            ]
            for d, r in rates.items()
        }
        schema = self.schema(snapshot) if self.documents else None
        rehydrated = bool(self.spec.stages.mix.rehydration)
        read = [cols.ROW, DOMAIN, SHUFFLE_KEY, cols.TEXT_BYTES] + ([TOKENS] if self.tokens else [])
        read += [cols.LOSS_MASK] if self.tokens and self.chat else []
        read += [cols.MIX_WEIGHT] if rehydrated else []
        positions, ordinals, rows, copies, documents, domain_of, text_bytes, pieces = [], [], [], [], [], [], [], []
        masks: list[np.ndarray] = []
        bytes_read = 0
        for ordinal, shard in enumerate(plan["shards"]):
            with storage.open_read(self.layout.tokenized(shard["key"]), self.options) as f:
                parquet = pq.ParquetFile(f)
                groups = self._select(shard["key"], parquet, ranges)
                if not groups:
                    continue
                present = set(parquet.schema_arrow.names)
                wanted = read + [c for c in (schema.prepared.names if schema else []) if c in present]
                table = parquet.read_row_groups(groups, columns=wanted)
            bytes_read += table.nbytes
            domain = table.column(DOMAIN).combine_chunks()
            u = table.column(SHUFFLE_KEY).to_numpy()
            weights = table.column(cols.MIX_WEIGHT).to_numpy() if rehydrated else None
            rate = document_rates(domain_rates(domain, rates), weights, cap)
            doc, copy = expand_copies(u, rate)
            keep = pile_of(u[doc], copy, rate[doc], boundaries) == index
            doc, copy = doc[keep], copy[keep]
            if not len(doc):
                continue
            positions.append((u[doc] + copy) / rate[doc])
            ordinals.append(np.full(len(doc), ordinal, dtype=np.int64))
            rows.append(table.column(cols.ROW).to_numpy()[doc])
            copies.append(copy)
            text_bytes.append(table.column(cols.TEXT_BYTES).to_numpy()[doc])
            domain_of.extend(domain.take(pa.array(doc)).to_pylist())
            if self.tokens:
                documents.extend(self._compact(table.column(TOKENS), doc))
                if self.chat:
                    masks.extend(self._compact(table.column(cols.LOSS_MASK), doc, np.dtype(np.uint8)))
            if schema is not None:
                piece = table.drop_columns([c for c in read if c not in (DOMAIN,)]).take(pa.array(doc))
                pieces.append(piece.append_column(cols.COPY, pa.array(copy, pa.int32())))
            del table
        if positions:
            order = np.lexsort(
                (np.concatenate(copies), np.concatenate(rows), np.concatenate(ordinals), np.concatenate(positions))
            )
        else:
            order = np.zeros(0, dtype=np.int64)
        sizes = np.concatenate(text_bytes)[order] if text_bytes else np.zeros(0, dtype=np.int64)
        domain_bytes: dict[str, int] = {}
        for i, size in zip(order.tolist(), sizes.tolist()):
            domain_bytes[domain_of[i]] = domain_bytes.get(domain_of[i], 0) + size
        files: dict[str, dict[str, Any]] = {}
        if schema is not None:
            table = document_table(pieces, schema, raw_fields=self.chat)
            del pieces
            if table.num_rows:
                table = table.take(pa.array(order))
            fmt = self.spec.output.documents
            chat_format = (fmt.chat_format or "openai") if self.chat else None
            data = encode_documents(table, fmt.format, fmt.row_group_rows, chat_format)
            del table
            files["documents"] = self._write(self.layout.document_shard(snapshot, index, SUFFIXES[fmt.format]), data)
        stats = PackMarker(
            index=index,
            config_hash=config_hash,
            files=files,
            documents=int(len(order)),
            document_bytes=int(sizes.sum()),
            domain_bytes=domain_bytes,
            bytes_read=int(bytes_read),
        )
        if self.tokens and self.chat:
            ordered = order.tolist()
            ordered_documents, ordered_masks = [documents[i] for i in ordered], [masks[i] for i in ordered]
            documents.clear()
            masks.clear()
            self._pack_conversations(snapshot, index, ordered_documents, ordered_masks, order, domain_of, stats)
        elif self.tokens:
            self._pack_tokens(snapshot, index, [documents[i] for i in order.tolist()], order, domain_of, stats)
        stats.seconds = round(time.perf_counter() - started, 3)
        storage.write_json(self.layout.pack_marker(snapshot, index), stats.to_json(), self.options)
        return stats

    def _write(self, relative: str, data: bytes | memoryview) -> dict[str, Any]:
        """Stages a file of the snapshot in ``work/pack/`` (moved in when the snapshot commits)."""
        storage.write_bytes_retrying(
            storage.join(self.spec.output.uri, OutputLayout.staged(relative)),
            data,
            self.options,
            self.spec.output.upload,
        )
        return {"path": relative, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    def _pack_tokens(
        self,
        snapshot: str,
        index: int,
        ordered: list[np.ndarray],
        order: np.ndarray,
        domain_of: list[str],
        stats: PackMarker,
    ) -> None:
        domain_tokens = _domain_tokens(ordered, order, domain_of)
        if self.config.mode == "bestfit":
            packed = pack_bestfit(ordered, self.config.seq_len, self.pad_id, self.dtype)
        else:
            packed = pack_concat(ordered, self.config.seq_len, self.dtype)
        del ordered
        stem = self.layout.token_shard_stem(snapshot, index)
        encoded = formats.encode_shard(self.config.format, packed, self.dtype, self.tokenizer_name)
        for role, relative in formats.shard_files(self.config.format, stem).items():
            stats.files[role] = self._write(relative, encoded.pop(role))
        stats.tokens = int(len(packed.tokens))
        stats.sequences = int(len(packed.sequence_lengths))
        stats.padding_tokens = packed.padding_tokens
        stats.domain_tokens = domain_tokens

    def _pack_conversations(
        self,
        snapshot: str,
        index: int,
        ordered: list[np.ndarray],
        masks: list[np.ndarray],
        order: np.ndarray,
        domain_of: list[str],
        stats: PackMarker,
    ) -> None:
        """A chat job's shard: its conversations (whole, in mix order) packed into SFT rows."""
        domain_tokens = _domain_tokens(ordered, order, domain_of)
        # the shard's tokens as stored (uint16 or uint32) and masks viewed as bool: no copies
        conversations = [TokenizedConversation(ids, mask.view(bool)) for ids, mask in zip(ordered, masks)]
        ordered.clear()
        masks.clear()
        packed = pack_conversations(conversations, self.config.seq_len, packed=self.config.mode == "bestfit")
        trained = int(sum(int(c.trained.sum()) for c in conversations))
        del conversations
        sink = io.BytesIO()
        with pq.ParquetWriter(sink, SFT_SCHEMA, compression="zstd") as writer:
            for table in packed.tables(SFT_ROW_GROUP):
                writer.write_table(table, row_group_size=SFT_ROW_GROUP)
        stem = self.layout.token_shard_stem(snapshot, index)
        for role, relative in formats.shard_files(self.config.format, stem).items():
            stats.files[role] = self._write(relative, sink.getbuffer())
        stats.tokens = packed.tokens
        stats.sequences = packed.num_sequences
        stats.trained_tokens = trained
        stats.domain_tokens = domain_tokens

    def _compact(self, column: pa.ChunkedArray, picked: np.ndarray, dtype: np.dtype | None = None) -> list[np.ndarray]:
        """The picked rows' tokens (``picked`` ascending; or another binary column of
        ``dtype`` values), copied out of the row groups so that those can be freed."""
        dtype = dtype or self.storage_dtype
        views = []
        base = 0
        for chunk in column.chunks:
            offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int64)[chunk.offset : chunk.offset + len(chunk) + 1]
            data = np.frombuffer(chunk.buffers()[2], dtype=dtype) if len(chunk) else None
            lo, hi = np.searchsorted(picked, [base, base + len(chunk)])
            for row in (picked[lo:hi] - base).tolist():
                views.append(data[offsets[row] // dtype.itemsize : offsets[row + 1] // dtype.itemsize])
            base += len(chunk)
        if not views:
            return []
        flat = np.concatenate(views)
        ends = np.cumsum([len(v) for v in views])
        return np.split(flat, ends[:-1])


def _domain_tokens(ordered: list[np.ndarray], order: np.ndarray, domain_of: list[str]) -> dict[str, int]:
    """Tokens per domain of a shard's documents (``ordered``, the documents at ``order``)."""
    domain_tokens: dict[str, int] = {}
    for i, document in zip(order.tolist(), ordered):
        domain_tokens[domain_of[i]] = domain_tokens.get(domain_of[i], 0) + len(document)
    return domain_tokens


def run_pack(
    spec: JobSpec, plan: dict[str, Any], annotate_stats: list[AnnotateMarker], progress: Progress, max_workers: int
) -> tuple[str, list[PackMarker]]:
    """Packs every output shard of the plan; returns the snapshot and each shard's stats."""
    layout = OutputLayout(spec.output.uri)
    options = spec.output.storage_options
    num_shards = plan["num_output_shards"]
    config_hash = pack_config_hash(spec, plan["hash"], plan["shard_boundaries"], tokenizer_file_info(spec))
    snapshot = open_snapshot(spec, config_hash, progress)
    if spec.output.writes_documents:
        schema = document_schema(spec, [s["key"] for s in plan["shards"]], annotate_stats)
        storage.write_json(layout.document_schema(snapshot), schema.to_json(), options)
    finished: dict[int, PackMarker] = {}
    items = []
    for index in range(num_shards):
        stats = committed(PackMarker, layout.pack_marker(snapshot, index), options, config_hash)
        if stats is not None:
            finished[index] = stats
        else:
            items.append(
                {
                    "key": f"shard-{index:05d}",
                    "index": index,
                    "config_hash": config_hash,
                    "plan_hash": plan["hash"],
                    "snapshot": snapshot,
                }
            )
    progress.start("pack", total=num_shards, unit="output shard", skipped=len(finished))
    progress.log(f"pack: snapshot {snapshot}")
    for stats in run_shard_tasks(ShardPacker, spec, items, max_workers):
        finished[stats.index] = stats
        progress.advance(1, docs=stats.documents, nbytes=stats.bytes_read)
    return snapshot, [finished[i] for i in range(num_shards)]
