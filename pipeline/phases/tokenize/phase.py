"""Phase 3, tokenize (``prepare`` for a documents-only output): per annotated shard, drop
what dedup removed, give each kept document its domain and seeded shuffle key, and tokenize
it (token outputs) and/or keep its text, input columns and annotations (document outputs).

Writes ``work/tokenize/<key>.parquet`` sorted by (domain, shuffle key), one domain per
row group, so that pack workers read only the row groups their output shard needs; and a
marker with the shard's tokens and text bytes per domain, from which the mix phase plans.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.config import JobSpec
from pipeline.core import columns as cols
from pipeline.core import sketch, storage
from pipeline.core.annotated import read_rows
from pipeline.core.columns import DOMAIN, NUM_TOKENS, SHUFFLE_KEY, TOKENS
from pipeline.core.hashing import short_hash
from pipeline.core.layout import OutputLayout, input_relative_path
from pipeline.core.markers import AnnotateMarker, DedupMarker, TokenizeMarker
from pipeline.core.parquet_io import LazyParquetWriter
from pipeline.core.progress import Progress
from pipeline.core.sketch import LENGTH_GAMMA
from pipeline.phases.dedup import read_cluster_sizes, read_removals
from pipeline.phases.examples import ExampleSampler, hidden_texts
from pipeline.phases.mix.plan import assign_domains, synthetic_domains, uniform_keys
from pipeline.phases.mix.profile import PROFILE_FORMAT, DomainProfiles
from pipeline.phases.shard_tasks import ShardWorker, committed, run_shard_tasks
from pipeline.phases.tokenize.chat import STAGE as CHAT_STAGE
from pipeline.phases.tokenize.chat import ChatEncoder, ChatStats, mask_binary, special_token_texts
from pipeline.phases.tokenize.tokenizer import Tokenize
from pipeline.stages.registry import document_stages, enabled, global_stages

LOOKUP_THREADS = 8
"""Shards read at once when looking up the domains of the documents synthetic ones duplicate."""
FORMAT_STAGE = "chat_format"
"""Rejects a chat job's document format cannot hold."""
TOKENIZED_FORMAT = 4  # 4: document columns for document outputs; "histogram" of the mix unit
PLACEMENT_FIELDS = [
    pa.field(cols.ROW, pa.int64(), nullable=False),
    pa.field(DOMAIN, pa.string(), nullable=False),
    pa.field(SHUFFLE_KEY, pa.float64(), nullable=False),
    pa.field(cols.TEXT_BYTES, pa.int64(), nullable=False),
]
TOKEN_FIELDS = [pa.field(NUM_TOKENS, pa.int64(), nullable=False), pa.field(TOKENS, pa.large_binary(), nullable=False)]
MASK_FIELD = pa.field(cols.LOSS_MASK, pa.large_binary(), nullable=False)
# Tokens (or text bytes) per 1/HISTOGRAM_BINS of the shuffle key, per domain: lets the mix
# phase choose how many documents to take so that a domain's realized amount meets its target.
HISTOGRAM_BINS = 1024
# Small row groups keep the pack phase's reads close to what it needs.
ROW_GROUP_BYTES = 4 << 20


def storage_dtype(vocab_size: int) -> np.dtype:
    """Tokens are kept as uint16 when every id fits, else uint32, whatever the output format."""
    return np.dtype("<u2") if vocab_size < 65536 else np.dtype("<u4")


def phase_name(spec: JobSpec) -> str:
    return "tokenize" if spec.output.writes_tokens else "prepare"


def document_columns(spec: JobSpec, annotated: pa.Schema) -> list[str]:
    """The annotated columns a document output keeps: id, text, url, the carried input
    columns and every stage's annotations, not the placement columns nor stage internals."""
    if not spec.output.writes_documents:
        return []
    internal = {cols.SHARD, cols.ROW, cols.TEXT_BYTES, DOMAIN, cols.ROUTED_DOMAIN, cols.DEDUP_TEXT}
    for capability, _ in enabled(spec):
        if capability.document_stage is not None:
            internal.update(capability.document_stage.internal_columns)
    return [name for name in annotated.names if name not in internal]


def tokenize_config_hash(
    spec: JobSpec,
    annotate_hash: str,
    removals_version: str,
    tokenizer_info: dict | None,
    cluster_runs: list[str] | tuple[str, ...] = (),
    stage_state: dict[str, Any] | None = None,
) -> str:
    payload = {
        "format": TOKENIZED_FORMAT,
        "annotate": annotate_hash,
        "removals": removals_version,
        "seed": spec.seed,
        "tokenize": spec.stages.tokenize.settings_for_hash() if spec.output.writes_tokens else None,
        "tokenizer_file": tokenizer_info,
        "domains": spec.stages.mix.domain_config(),
        "input": spec.input.model_dump(mode="json", include={"domain_column", "url_column"}),
        "write_rejects": spec.output.write_rejects,
    }
    if synthetic_domains(spec):
        # which removals the profiles follow, and to which side, depend on the list
        payload["profiles"] = {"format": PROFILE_FORMAT, "synthetic_domains": synthetic_domains(spec)}
    if spec.output.kind != "tokens":
        payload["output_kind"] = spec.output.kind
    if spec.input.chat is not None and spec.output.writes_documents:
        payload["chat_format"] = spec.output.documents.chat_format or "openai"
    if spec.counts_duplicates and cluster_runs:
        payload["cluster_runs"] = list(cluster_runs)
    if spec.output.writes_documents and stage_state:
        payload["stage_state"] = stage_state
    if spec.stages.mix.rehydration:
        payload["rehydration"] = [step.model_dump(mode="json") for step in spec.stages.mix.rehydration]
    return short_hash(payload)


def tokens_binary(encoded: list[list[int]], dtype: np.dtype) -> tuple[pa.Array, np.ndarray]:
    """Token lists as one binary value per document (``dtype`` bytes), and their lengths."""
    lengths = np.fromiter((len(ids) for ids in encoded), dtype=np.int64, count=len(encoded))
    flat = np.fromiter(itertools.chain.from_iterable(encoded), dtype=dtype, count=int(lengths.sum()))
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(lengths * dtype.itemsize, out=offsets[1:])
    array = pa.Array.from_buffers(pa.large_binary(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(flat)])
    return array, lengths


class ShardTokenizer(ShardWorker):
    phase = "tokenize"
    marker = TokenizeMarker

    def __init__(self, spec: JobSpec) -> None:
        super().__init__(spec)
        self.phase = phase_name(spec)
        self.layout = OutputLayout(spec.output.uri)
        self.tokenizer: Tokenize | None = None
        self.chat: ChatEncoder | None = None
        if spec.output.writes_tokens:
            self.tokenizer = Tokenize(spec.stages.tokenize)
            self.tokenizer.setup()
            self.dtype = storage_dtype(self.tokenizer.vocab_size)
            chat = spec.stages.tokenize.chat
            if spec.input.chat is not None and chat is not None:
                text_tokenizer = self.tokenizer.tokenizer
                special = special_token_texts(text_tokenizer, getattr(text_tokenizer, "special", {}))
                self.chat = ChatEncoder(
                    chat.load(special, spec.stages.tokenize.storage_options),
                    text_tokenizer,
                    chat.train_on,
                    chat.over_long,
                    spec.stages.pack.seq_len,
                )
        self.chat_format = None
        if spec.input.chat is not None and spec.output.writes_documents:
            self.chat_format = spec.output.documents.chat_format or "openai"
        self.unit = spec.mix_unit
        self.global_stages = global_stages(spec) if spec.output.writes_documents else []
        self.synthetic = set(synthetic_domains(spec))
        self._shard_uris: dict[str, str] = {}
        """Input file per shard key, of shards whose documents this worker looked up."""
        self.hiders = [stage for stage in document_stages(spec) if stage.example_hiding_columns]
        self.hiding_columns = [c for stage in self.hiders for c in stage.example_hiding_columns]
        self.profiles: DomainProfiles | None = None

    def run(self, item: dict[str, Any]) -> TokenizeMarker:
        for stage in self.global_stages:
            stage.previous_state = json.loads(item["stage_state"]).get(stage.name)
        return self.tokenize(item["key"], item["uri"], item["config_hash"], item.get("cluster_runs", []))

    def tokenize(self, key: str, uri: str, config_hash: str, cluster_runs: list[str] = ()) -> TokenizeMarker:
        started = time.perf_counter()
        options = self.spec.output.storage_options
        self.clusters = (
            read_cluster_sizes(self.layout, key, list(cluster_runs), options) if self.spec.counts_duplicates else None
        )
        removals = read_removals(self.layout, key, options)
        removed_rows = removals.column(cols.ROW).combine_chunks()
        removed: dict[str, dict[str, int]] = {}
        shard_path = input_relative_path(self.spec.input.uri, uri)
        annotated_docs = 0
        parts: list[pa.Table] = []
        storage.remove_tree(self.layout.dedup_rejects(key), options)
        storage.remove_tree(self.layout.tokenize_rejects(key), options)
        rejected: dict[str, dict[str, int]] = {}
        chat_stats = ChatStats() if self.chat is not None else None
        self.profiles = DomainProfiles() if self.synthetic else None
        duplicated: list[tuple[str, str, str, int]] = []
        examples = ExampleSampler(self.spec.seed, key)
        self.lengths: dict[str, dict[int, int]] = {}
        with contextlib.ExitStack() as stack:
            source = stack.enter_context(storage.open_read(self.layout.annotated(key), options))
            rejects = LazyParquetWriter(stack, self.layout.dedup_rejects(key), options, cols.REJECTS_SCHEMA)
            own_rejects = LazyParquetWriter(stack, self.layout.tokenize_rejects(key), options, cols.REJECTS_SCHEMA)
            annotated = pq.ParquetFile(source)
            kept_columns = document_columns(self.spec, annotated.schema_arrow)
            routed = [cols.ROUTED_DOMAIN] if cols.ROUTED_DOMAIN in annotated.schema_arrow.names else []
            conversation = [cols.CONVERSATION] if self.spec.input.chat is not None else []
            hiding = [c for c in self.hiding_columns if c in annotated.schema_arrow.names]
            read = list(dict.fromkeys(cols.BASE_SCHEMA.names + routed + conversation + kept_columns + hiding))
            for batch in annotated.iter_batches(batch_size=self.spec.input.batch_rows, columns=read):
                docs = pa.Table.from_batches([batch])
                annotated_docs += docs.num_rows
                is_removed = pc.is_in(docs.column(cols.ROW), value_set=removed_rows)
                dropped = docs.filter(is_removed)
                if dropped.num_rows:
                    labels = removals.take(pc.index_in(dropped.column(cols.ROW), value_set=removed_rows))
                    for stage, reason in zip(
                        labels.column(cols.REJECT_STAGE).to_pylist(), labels.column(cols.REJECT_REASON).to_pylist()
                    ):
                        per_stage = removed.setdefault(stage, {})
                        per_stage[reason] = per_stage.get(reason, 0) + 1
                    if self.profiles is not None:
                        # duplicates only: a global stage may also drop documents (perplexity buckets)
                        named = pc.or_(
                            pc.is_valid(labels.column(cols.DUPLICATE_OF)),
                            pc.is_valid(labels.column(cols.SURVIVOR_SHARD)),
                        )
                        domains = self._domains(dropped.filter(named), shard_path)
                        duplicates = labels.filter(named)
                        self.profiles.add_removed(domains, duplicates.column(cols.REJECT_STAGE).to_pylist())
                        duplicated += self._synthetic_duplicates(domains, duplicates)
                    table = dropped.select(cols.BASE_SCHEMA.names)
                    for name in (f.name for f in cols.REJECT_FIELDS):
                        table = table.append_column(name, labels.column(name))
                    if self.spec.output.write_rejects:
                        rejects.write(table)
                    located = [cols.SURVIVOR_SHARD, cols.SURVIVOR_ROW, cols.MATCHED_SHARD, cols.MATCHED_ROW]
                    for name in located:
                        table = table.append_column(name, labels.column(name))
                    details = [cols.DUPLICATE_OF, cols.MATCHED_TO, cols.SIMILARITY, *located]
                    examples.offer(table, details, hidden=hidden_texts(self.hiders, dropped))
                kept = docs.filter(pc.invert(is_removed))
                refusals = []
                if self.chat is not None and kept.num_rows:
                    kept, refused = self._render(kept, chat_stats)
                    refusals.append(refused)
                if self.chat_format is not None and kept.num_rows:
                    kept, refused = self._representable(kept)
                    refusals.append(refused)
                for refused in refusals:
                    for (stage, reason), n in _group_counts(refused).items():
                        per_stage = rejected.setdefault(stage, {})
                        per_stage[reason] = per_stage.get(reason, 0) + n
                    examples.offer(refused, [])
                    if refused.num_rows and self.spec.output.write_rejects:
                        own_rejects.write(refused)
                if kept.num_rows:
                    parts.append(self._prepare(kept, key, shard_path, kept_columns))
            if not parts:
                empty = annotated.schema_arrow.empty_table().select(read)
                if self.chat is not None:
                    empty, _ = self._render(empty, ChatStats())
                parts.append(self._prepare(empty, key, shard_path, kept_columns))
        if duplicated:
            self.profiles.add_duplicate_sides(self._duplicate_sides(duplicated, key, uri))
        table = pa.concat_tables(parts)
        table = table.sort_by([(DOMAIN, "ascending"), (SHUFFLE_KEY, "ascending"), (cols.ROW, "ascending")])
        domains = self._write(key, table)
        stats = TokenizeMarker(
            shard_key=key,
            uri=uri,
            config_hash=config_hash,
            annotated_docs=annotated_docs,
            removed=removed,
            rejected=rejected,
            chat=chat_stats.to_json() if chat_stats is not None else None,
            examples=examples.to_json([]),  # annotated text: scrubbed already
            length_buckets=self.lengths,
            profiles=self.profiles.to_json() if self.profiles is not None else None,
            tokenized_docs=table.num_rows,
            tokenized_bytes=sum(d["bytes"] for d in domains.values()),
            tokens=int(pc.sum(table.column(NUM_TOKENS)).as_py() or 0) if self.tokenizer else 0,
            domains=domains,
            seconds=round(time.perf_counter() - started, 3),
        )
        storage.write_json(self.layout.tokenize_marker(key), stats.to_json(), options)
        return stats

    def _synthetic_duplicates(self, domains: pa.Array, labels: pa.Table) -> list[tuple[str, str, str | None, int]]:
        """(domain, stage, shard, row) of each synthetic document among ``labels`` (removals
        that name a duplicate), naming the document it duplicates: the one it matched (near
        dedup), else its survivor; shard None where the removal does not say where that is
        (removals written before they did)."""
        out = []
        names = (
            cols.REJECT_STAGE,
            cols.MATCHED_SHARD,
            cols.MATCHED_ROW,
            cols.SURVIVOR_SHARD,
            cols.SURVIVOR_ROW,
        )
        for domain, stage, matched, matched_row, survivor, survivor_row in zip(
            domains.to_pylist(), *(labels.column(c).to_pylist() for c in names)
        ):
            if domain not in self.synthetic:
                continue
            if matched is not None:
                out.append((domain, stage, matched, matched_row))
            elif survivor is not None:
                out.append((domain, stage, survivor, survivor_row))
            else:
                out.append((domain, stage, None, -1))
        return out

    def _duplicate_sides(
        self, duplicated: list[tuple[str, str, str | None, int]], key: str, uri: str
    ) -> list[tuple[str, str, str]]:
        """(domain, stage, side) per removed synthetic document: whether the document it
        duplicates is synthetic or real, by that document's domain, which is assigned as this
        phase assigns every domain, from its annotated shard (any shard: dedup has finished);
        ``unlocated`` where that shard's annotations are gone or unreadable."""
        from concurrent.futures import ThreadPoolExecutor

        by_shard: dict[str, set[int]] = {}
        for _, _, shard, row in duplicated:
            if shard is not None:
                by_shard.setdefault(shard, set()).add(row)
        with ThreadPoolExecutor(max_workers=LOOKUP_THREADS) as pool:
            found = pool.map(lambda item: self._domains_of(*item, key, uri), sorted(by_shard.items()))
            domain_of = {(shard, row): domain for part in found for shard, row, domain in part}
        sides = []
        for domain, stage, shard, row in duplicated:
            of = domain_of.get((shard, row))
            side = "unlocated" if of is None else "synthetic" if of in self.synthetic else "real"
            sides.append((domain, stage, side))
        return sides

    def _domains_of(self, shard: str, rows: set[int], key: str, uri: str) -> list[tuple[str, int, str]]:
        """(shard, row, domain) of the given rows of one shard; none if it cannot be read."""
        options = self.spec.output.storage_options
        try:
            if shard == key:
                shard_uri = uri
            elif shard in self._shard_uris:
                shard_uri = self._shard_uris[shard]
            else:
                shard_uri = storage.read_json(self.layout.annotate_marker(shard), options)["uri"]
                self._shard_uris[shard] = shard_uri
            wanted = np.array(sorted(rows), np.int64)
            found = read_rows(
                self.layout.annotated(shard), options, wanted, [cols.ROW, cols.URL, cols.DOMAIN, cols.ROUTED_DOMAIN]
            )
        except (OSError, ValueError, LookupError, KeyError):
            return []  # an earlier run's work files, gone or rewritten
        domains = self._domains(found, input_relative_path(self.spec.input.uri, shard_uri))
        return [(shard, row, domain) for row, domain in zip(found.column(cols.ROW).to_pylist(), domains.to_pylist())]

    def _domains(self, docs: pa.Table, shard_path: str) -> pa.Array:
        routed = docs.column(cols.ROUTED_DOMAIN).combine_chunks() if cols.ROUTED_DOMAIN in docs.column_names else None
        return assign_domains(
            self.spec.stages.mix,
            docs.column(cols.URL).combine_chunks(),
            docs.column(cols.DOMAIN).combine_chunks(),
            shard_path,
            docs.num_rows,
            routed,
        )

    def _prepare(self, kept: pa.Table, key: str, shard_path: str, kept_columns: list[str]) -> pa.Table:
        domains = self._domains(kept, shard_path)
        rows = kept.column(cols.ROW).to_numpy()
        keys = uniform_keys(self.spec.seed, key, rows)
        if self.profiles is not None:
            self.profiles.add_kept(domains, kept.column(cols.TEXT), keys)
        columns = {
            cols.ROW: rows,
            DOMAIN: domains,
            SHUFFLE_KEY: keys,
            cols.TEXT_BYTES: kept.column(cols.TEXT_BYTES),
        }
        fields = list(PLACEMENT_FIELDS)
        if self.chat is not None:
            columns[TOKENS], columns[NUM_TOKENS] = kept.column(TOKENS), kept.column(NUM_TOKENS)
            columns[cols.LOSS_MASK] = kept.column(cols.LOSS_MASK)
            fields += [*TOKEN_FIELDS, MASK_FIELD]
        elif self.tokenizer is not None:
            encoded = self.tokenizer.encode(kept.column(cols.TEXT).to_pylist())
            columns[TOKENS], columns[NUM_TOKENS] = tokens_binary(encoded, self.dtype)
            fields += TOKEN_FIELDS
        chars = pc.utf8_length(kept.column(cols.TEXT)).to_numpy(zero_copy_only=False).astype(np.float64)
        sketch.add_counts(self.lengths.setdefault("chars", {}), chars, LENGTH_GAMMA)
        if NUM_TOKENS in columns:
            tokens = np.asarray(columns[NUM_TOKENS], dtype=np.float64)
            sketch.add_counts(self.lengths.setdefault("tokens", {}), tokens, LENGTH_GAMMA)
        for stage in self.global_stages:
            before = set(kept.column_names)
            kept = stage.annotate_kept(kept)
            kept_columns = kept_columns + [name for name in kept.column_names if name not in before]
        for name in kept_columns:
            columns[name] = kept.column(name)
            fields.append(kept.schema.field(name))
        if self.clusters is not None:
            found = pc.index_in(kept.column(cols.ROW), value_set=self.clusters.column(cols.ROW))
            sizes = pc.fill_null(self.clusters.column(cols.CLUSTER_SIZE).take(found), 1).cast(pa.int64())
            columns[cols.CLUSTER_SIZE] = sizes
            fields.append(pa.field(cols.CLUSTER_SIZE, pa.int64(), nullable=False))
            if self.spec.stages.mix.rehydration:
                weights = self.spec.stages.mix.rehydration_weights(sizes.to_numpy(zero_copy_only=False))
                columns[cols.MIX_WEIGHT] = weights
                fields.append(pa.field(cols.MIX_WEIGHT, pa.float64(), nullable=False))
        return pa.table(columns, schema=pa.schema(fields))

    def _representable(self, kept: pa.Table) -> tuple[pa.Table, pa.Table]:
        """A chat job's conversations that its document format can hold; and, as rejects
        (``not_representable_as_<format>``), those it cannot."""
        from pipeline.chat.formats import NotRepresentable, write_conversation

        ok = []
        for conversation in kept.column(cols.CONVERSATION).to_pylist():
            try:
                write_conversation(json.loads(conversation), self.chat_format)
                ok.append(True)
            except NotRepresentable:
                ok.append(False)
        mask = pa.array(ok, pa.bool_())
        refused = kept.filter(pc.invert(mask)).select(cols.BASE_SCHEMA.names)
        reason = pa.array([f"not_representable_as_{self.chat_format}"] * refused.num_rows, pa.string())
        return kept.filter(mask), cols.with_rejection(refused, FORMAT_STAGE, reason)

    def _render(self, kept: pa.Table, stats: ChatStats) -> tuple[pa.Table, pa.Table]:
        """Conversations rendered, tokenized and masked (``TOKENS``, ``NUM_TOKENS``,
        ``LOSS_MASK`` added); and those refused, as rejects."""
        encoded, reasons = self.chat.encode(kept.column(cols.CONVERSATION).to_pylist(), stats)
        ok = pa.array([r is None for r in reasons], pa.bool_())
        refused = kept.filter(pc.invert(ok)).select(cols.BASE_SCHEMA.names)
        refused = cols.with_rejection(refused, CHAT_STAGE, pa.array([r for r in reasons if r is not None], pa.string()))
        done = [t for t in encoded if t is not None]
        tokens, lengths = tokens_binary([t.input_ids for t in done], self.dtype)
        masks = pa.array(mask_binary(done), pa.large_binary())
        kept = kept.filter(ok)
        kept = kept.append_column(TOKENS, tokens).append_column(NUM_TOKENS, pa.array(lengths, pa.int64()))
        return kept.append_column(cols.LOSS_MASK, masks), refused

    def _write(self, key: str, table: pa.Table) -> dict[str, dict[str, int]]:
        """One domain per row group (at least), in (domain, shuffle key) order."""
        domains: dict[str, dict[str, int]] = {}
        options = self.spec.output.storage_options
        size = NUM_TOKENS if self.unit == "tokens" else cols.TEXT_BYTES
        with storage.atomic_writer(self.layout.tokenized(key), options) as sink:
            with pq.ParquetWriter(
                sink,
                table.schema,
                compression="none" if self.spec.output.kind == "tokens" else "zstd",
                write_statistics=[f.name for f in PLACEMENT_FIELDS],
            ) as writer:
                if table.num_rows == 0:
                    writer.write_table(table)
                names = table.column(DOMAIN).to_numpy(zero_copy_only=False)
                bounds = np.flatnonzero(names[1:] != names[:-1]) + 1 if len(names) else np.zeros(0, np.int64)
                for start, end in zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [len(names)]])):
                    if end <= start:
                        continue
                    part = table.slice(int(start), int(end - start))
                    payload = part.nbytes - part.num_rows * 8 * len(PLACEMENT_FIELDS)
                    rows_per_group = max(16, int(part.num_rows * ROW_GROUP_BYTES / max(payload, 1)))
                    writer.write_table(part, row_group_size=rows_per_group)
                    bins = (part.column(SHUFFLE_KEY).to_numpy() * HISTOGRAM_BINS).astype(np.int64)
                    amounts = part.column(size).to_numpy().astype(np.float64)
                    if cols.MIX_WEIGHT in part.column_names:
                        amounts = amounts * part.column(cols.MIX_WEIGHT).to_numpy()
                    histogram = np.bincount(bins, weights=amounts, minlength=HISTOGRAM_BINS)
                    domains[str(names[start])] = {
                        "docs": part.num_rows,
                        "tokens": int(pc.sum(part.column(NUM_TOKENS)).as_py()) if self.tokenizer else 0,
                        "bytes": int(pc.sum(part.column(cols.TEXT_BYTES)).as_py()),
                        # what the mix counts: tokens or bytes, times rehydration weights
                        "mix_size": int(round(float(amounts.sum()))),
                        "histogram": np.round(histogram).astype(np.int64).tolist(),
                    }
        return domains


def tokenizer_file_info(spec: JobSpec) -> dict[str, Any] | None:
    """Size and change token of the tokenizer file, when the output has tokens; for a
    tokenizer.json whose special tokens come from the tokenizer_config.json beside it, that
    file's too; and a chat job's template file's (a template edited in place redoes tokenize)."""
    if not spec.output.writes_tokens:
        return None
    tokenize = spec.stages.tokenize
    info = storage.file_info(tokenize.model, tokenize.storage_options)
    beside = tokenize.special_tokens_file()
    if beside is not None:
        info = {**info, "tokenizer_config": storage.file_info(beside, tokenize.storage_options)}
    if spec.input.chat is not None and tokenize.chat is not None and tokenize.chat.template != "chatml":
        info = {**info, "chat_template": storage.file_info(tokenize.chat.template, tokenize.storage_options)}
    return info


def _group_counts(rejects: pa.Table) -> dict[tuple[str, str], int]:
    grouped = rejects.group_by([cols.REJECT_STAGE, cols.REJECT_REASON]).aggregate([(cols.ROW, "count")])
    return {(r[cols.REJECT_STAGE], r[cols.REJECT_REASON]): r[f"{cols.ROW}_count"] for r in grouped.to_pylist()}


def run_tokenize(
    spec: JobSpec,
    annotate_stats: list[AnnotateMarker],
    dedup: DedupMarker,
    progress: Progress,
    max_workers: int,
) -> list[TokenizeMarker]:
    """Tokenize every non-quarantined shard without a current marker; return every shard's stats."""
    layout = OutputLayout(spec.output.uri)
    options = spec.output.storage_options
    tokenizer_info = tokenizer_file_info(spec)
    finished: dict[str, TokenizeMarker] = {}
    items = []
    shards = [s for s in annotate_stats if not s.shard_quarantined]
    for shard in shards:
        key = shard.shard_key
        runs = dedup.cluster_runs.get(key, [])
        config_hash = tokenize_config_hash(
            spec, shard.config_hash, dedup.removals_version[key], tokenizer_info, runs, dedup.stage_state
        )
        stats = committed(TokenizeMarker, layout.tokenize_marker(key), options, config_hash)
        if stats is not None:
            finished[key] = stats
        else:
            items.append(
                {
                    "key": key,
                    "uri": shard.uri,
                    "config_hash": config_hash,
                    "cluster_runs": runs,
                    "stage_state": json.dumps(dedup.stage_state, sort_keys=True),
                }
            )
    progress.start(phase_name(spec), total=len(shards), unit="shard", skipped=len(finished))
    for stats in run_shard_tasks(ShardTokenizer, spec, items, max_workers):
        finished[stats.shard_key] = stats
        progress.advance(1, docs=stats.tokenized_docs, nbytes=stats.tokenized_bytes)
    return [finished[s.shard_key] for s in shards]
