"""Publishing a snapshot: its number, the manifest that commits it, and ``latest.json``.

A snapshot is ``snapshots/NNNNN-<hash>/``, named by the hash of what decides its bytes. A
re-run of the same work finds its own snapshot and resumes it; a refresh on a grown input
gets the next number. The manifest is written once every shard it lists is complete, and
never again; ``latest.json`` moves only to committed snapshots, so a trainer reading one
is never disturbed by the next refresh.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pipeline import formats
from pipeline.config import JobSpec
from pipeline.core import storage
from pipeline.core.layout import OutputLayout
from pipeline.core.markers import AnnotateMarker, PackMarker
from pipeline.core.progress import Progress
from pipeline.phases.mix.plan import synthetic_share
from pipeline.phases.pack.documents import DocumentSchema
from pipeline.phases.tokenize.tokenizer import Tokenize

MANIFEST_VERSION = 4  # 4: "kind", document shards; 3: token files under snapshots/<snapshot>/, a "snapshot" field
SNAPSHOT_NAME = re.compile(r"^(\d{5})-([0-9a-f]{8})$")


def open_snapshot(spec: JobSpec, config_hash: str, progress: Progress) -> str:
    """The snapshot this run packs into: its own if an earlier run of the same work left
    it (committed or not), else the next number. Snapshots that never committed and are
    not this run's (a killed run, re-run with other settings) are removed: nothing can
    be reading them."""
    layout = OutputLayout(spec.output.uri)
    options = spec.output.storage_options
    suffix = config_hash[:8]
    numbers, own = [], None
    pack_work = storage.join(spec.output.uri, "work", "pack")
    started = set(storage.list_dirs(layout.snapshots_dir, options)) | set(storage.list_dirs(pack_work, options))
    for name in sorted(started):
        match = SNAPSHOT_NAME.match(name)
        if match is None:
            continue
        if match.group(2) == suffix:
            own = name
        elif storage.exists(layout.snapshot_manifest(name), options):
            numbers.append(int(match.group(1)))
        else:
            progress.log(f"removing snapshot {name}: it was never committed (a run stopped before its manifest)")
            storage.remove_tree(layout.snapshot_dir(name), options)
            storage.remove_tree(layout.pack_work(name), options)
    return own or f"{max(numbers, default=0) + 1:05d}-{suffix}"


def remove_stale_shards(spec: JobSpec, snapshot: str, pack_stats: list[PackMarker]) -> list[str]:
    """Token and document files of the snapshot, staged or moved, that this run did not write
    (left by an attempt that planned more shards)."""
    options = spec.output.storage_options
    layout = OutputLayout(spec.output.uri)
    current = set()
    for s in pack_stats:
        for f in s.files.values():
            current.add(storage.normalize_uri(storage.join(spec.output.uri, f["path"])))
            current.add(storage.normalize_uri(storage.join(spec.output.uri, layout.staged(f["path"]))))
    directories = []
    for kind in ("tokens", "documents"):
        directories.append(storage.join(spec.output.uri, f"snapshots/{snapshot}/{kind}"))
        directories.append(storage.join(spec.output.uri, layout.staged(f"snapshots/{snapshot}/{kind}")))
    stale = [
        uri
        for directory in directories
        for uri in storage.list_files(directory, options)
        if storage.normalize_uri(uri) not in current
    ]
    for uri in stale:
        storage.remove_tree(uri, options)
    return stale


def move_into_snapshot(spec: JobSpec, snapshot: str, pack_stats: list[PackMarker], progress: Progress) -> None:
    """Move the snapshot's token and document files from where they were staged
    (``work/pack/``) to ``snapshots/<snapshot>/tokens/`` and ``documents/``, just before the manifest commits them. A move that a
    killed run left half done is finished: a file already moved is not staged any more.

    On local disk each move is a rename. S3 has no rename: each file is copied server-side
    and then deleted, so for those seconds ``snapshots/<snapshot>/`` holds some of the files
    and no ``manifest.json``; ``latest.json`` and a snapshot's manifest remain the contract."""
    options = spec.output.storage_options
    layout = OutputLayout(spec.output.uri)
    moves = []
    for s in pack_stats:
        for f in s.files.values():
            final = storage.join(spec.output.uri, f["path"])
            staged = storage.join(spec.output.uri, layout.staged(f["path"]))
            if storage.exists(staged, options):
                moves.append((staged, final))
            elif not storage.exists(final, options):
                raise RuntimeError(f"file {f['path']} is neither staged nor in its snapshot; re-run to pack it")
    if not moves:
        return
    if not storage.is_local(spec.output.uri):
        progress.log(f"pack: moving {len(moves):,} files into snapshots/{snapshot}/ (server-side copies)")
    with ThreadPoolExecutor(max_workers=1 if storage.is_local(spec.output.uri) else 16) as pool:
        list(pool.map(lambda move: storage.move(*move, options), moves))


def write_manifest(
    spec: JobSpec,
    snapshot: str,
    plan: dict[str, Any],
    pack_stats: list[PackMarker],
    annotate_stats: list[AnnotateMarker],
    generation: dict[str, Any] | None = None,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """The commit point of a snapshot: written only after every shard it lists is complete,
    and never again once written. ``generation``: a generation job's report section;
    ``warnings``: the report's about the mixture."""
    layout = OutputLayout(spec.output.uri)
    options = spec.output.storage_options
    if storage.exists(layout.snapshot_manifest(snapshot), options):
        return storage.read_json(layout.snapshot_manifest(snapshot), options)
    unit = plan["unit"]
    realized = {
        d: sum((s.domain_tokens if unit == "tokens" else s.domain_bytes).get(d, 0) for s in pack_stats)
        for d in plan["available"]
    }
    total_realized = sum(realized.values())
    mixture = {
        d: {
            f"available_{unit}": plan["available"][d],
            "target_weight": plan["weights"].get(d, 0.0),
            f"target_{unit}": round(plan["target"][d]),
            "rate": plan["rates"][d],
            f"realized_{unit}": realized[d],
            "realized_weight": realized[d] / total_realized if total_realized else 0.0,
            "documents": plan["realized"].get(d, {}).get("docs", 0),
            "copies": plan["realized"].get(d, {}).get("copies", 0),
        }
        for d in sorted(plan["available"])
    }
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "job": spec.name,
        "snapshot": snapshot,
        "kind": spec.output.kind,
        "config_hash": spec.config_hash(),
        "seed": spec.seed,
    }
    if spec.output.writes_tokens:
        manifest |= _token_fields(spec)
    if spec.output.writes_documents:
        schema = DocumentSchema.from_json(storage.read_json(layout.document_schema(snapshot), options))
        manifest["documents"] = {
            "format": spec.output.documents.format,
            "columns": [{"name": f.name, "type": str(f.type)} for f in schema.output],
        }
        if spec.input.chat is not None:  # one record per conversation in a chat format, not columns
            manifest["documents"] = {
                "format": spec.output.documents.format,
                "chat_format": spec.output.documents.chat_format or "openai",
            }
    manifest["totals"] = {
        "documents": sum(v["docs"] for v in plan["realized"].values()),
        "document_copies": sum(s.documents for s in pack_stats),
        "text_bytes": sum(s.document_bytes for s in pack_stats),
    }
    if spec.output.writes_tokens:
        manifest["totals"] |= {
            "tokens": sum(s.tokens for s in pack_stats),
            "padding_tokens": sum(s.padding_tokens for s in pack_stats),
            "sequences": sum(s.sequences for s in pack_stats),
        }
        if spec.input.chat is not None:
            trained = sum(s.trained_tokens for s in pack_stats)
            manifest["totals"] |= {"trained_tokens": trained, "masked_tokens": manifest["totals"]["tokens"] - trained}
    synthetic, share = synthetic_share(spec, realized)
    manifest["mixture"] = {
        "unit": unit,
        "domains": mixture,
        "synthetic_domains": synthetic,
        "synthetic_share": share,
        "real_share": 1 - share if total_realized else 0.0,
        f"budget_{unit}": round(plan["budget"]),
        "max_epochs": plan["max_epochs"],
        "notes": plan["notes"],
        "warnings": warnings or [],
    }
    manifest["shards"] = [
        {
            "name": f"shard-{s.index:05d}",
            "files": s.files,
            "documents": s.documents,
            "text_bytes": s.document_bytes,
            **(
                {"tokens": s.tokens, "sequences": s.sequences, "padding_tokens": s.padding_tokens}
                if spec.output.writes_tokens
                else {}
            ),
        }
        for s in pack_stats
    ]
    manifest["inputs"] = [{"uri": s.uri, **s.fingerprint} for s in annotate_stats]
    if generation is not None:
        manifest["generation"] = {
            key: generation[key]
            for key in ("method", "generator", "judge", "endpoint_kind", "domain", "records", "completion_tokens")
        } | {
            "prompt_tokens": generation["requests"]["prompt_tokens"],
            "backends": {
                role: {key: b[key] for key in ("model", "requests", "cache_hits", "prompt_tokens", "completion_tokens")}
                for role, b in generation["backends"].items()
            },
            "rounds": [
                {"round": r["round"], "records": r["records"], "completion_tokens": r["completion_tokens"]}
                for r in generation["rounds"]
            ],
        }
    storage.write_json(layout.snapshot_manifest(snapshot), manifest, options)
    return manifest


def _token_fields(spec: JobSpec) -> dict[str, Any]:
    """What a trainer needs to read the token shards."""
    tokenize, config = spec.stages.tokenize, spec.stages.pack
    tokenizer = Tokenize(tokenize)
    tokenizer.setup()
    return {
        "format": {
            "megatron": "megatron-indexed-dataset",
            "datatrove": "datatrove-tokenized",
            "parquet": "sft-parquet",
        }[config.format],
        "dtype": formats.token_dtype(config.format, tokenizer.vocab_size).name,
        "seq_len": config.seq_len,
        "pack_mode": config.mode,
        "pad_id": (
            config.check_pad_id(tokenizer.tokenizer, tokenize.model)
            if config.mode == "bestfit" and tokenize.chat is None
            else None
        ),
        "tokenizer": {
            "uri": tokenize.model,
            "type": tokenizer.tokenizer.kind,
            "sha256": storage.sha256_of(tokenize.model, tokenize.storage_options),
            "vocab_size": tokenizer.vocab_size,
            "bos_id": tokenizer.bos_id,
            "eos_id": tokenizer.eos_id,
            "pad_id": tokenizer.pad_id,
            "add_bos": tokenize.add_bos,
            "add_eos": tokenize.add_eos,
        },
        **({"chat": _chat_fields(spec)} if spec.input.chat is not None and tokenize.chat is not None else {}),
    }


def _chat_fields(spec: JobSpec) -> dict[str, Any]:
    """What a fine-tuning run needs to know of a chat job's rendering."""
    import hashlib

    from pipeline.chat.templates import read_template

    chat, tokenize = spec.stages.tokenize.chat, spec.stages.tokenize
    template = read_template(chat.template, tokenize.storage_options)
    return {
        "template": chat.template,
        "template_sha256": hashlib.sha256(template.encode()).hexdigest(),
        "train_on": chat.train_on,
        "over_long": chat.over_long,
        "date": chat.date.isoformat(),
        "columns": ["input_ids", "labels", "assistant_masks", "position_ids", "seq_lengths"],
    }


def latest_snapshot(spec: JobSpec) -> dict[str, Any] | None:
    """The snapshot ``latest.json`` names now and its synthetic share; None before the first."""
    layout = OutputLayout(spec.output.uri)
    options = spec.output.storage_options
    if not storage.exists(layout.latest, options):
        return None
    latest = storage.read_json(layout.latest, options)
    manifest = storage.read_json(layout.snapshot_manifest(latest["snapshot"]), options)
    return {"snapshot": latest["snapshot"], "synthetic_share": manifest.get("mixture", {}).get("synthetic_share")}


def publish_latest(spec: JobSpec, snapshot: str, manifest: dict[str, Any]) -> None:
    """Move ``latest.json`` to a committed snapshot, then refresh the root manifest.json copy."""
    layout = OutputLayout(spec.output.uri)
    options = spec.output.storage_options
    storage.write_json(
        layout.latest, {"snapshot": snapshot, "manifest": f"snapshots/{snapshot}/manifest.json"}, options
    )
    storage.write_json(layout.manifest, manifest, options)
