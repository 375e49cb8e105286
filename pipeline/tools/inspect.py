"""``refinery inspect OUTPUT``: check a manifest against its shards, print a summary, the
mixture, and a few decoded samples."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from typing import TextIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import formats
from pipeline.core import storage
from pipeline.core.layout import OutputLayout
from pipeline.core.text_tokenizer import load_text_tokenizer


def inspect_output(
    output_uri: str,
    samples: int = 2,
    out: TextIO | None = None,
    options: storage.StorageOptions | None = None,
    snapshot: str | None = None,
) -> bool:
    """Check a snapshot (default: the one ``latest.json`` names) against its manifest."""
    layout = OutputLayout(output_uri)
    write = (lambda line: print(line, file=out)) if out else (lambda line: None)
    if snapshot is None:
        if not storage.exists(layout.latest, options):
            write(f"no {layout.latest}: no run has committed a snapshot here yet (re-run the job to complete it)")
            return False
        snapshot = storage.read_json(layout.latest, options)["snapshot"]
    manifest_uri = layout.snapshot_manifest(snapshot)
    if not storage.exists(manifest_uri, options):
        committed = [
            name
            for name in storage.list_dirs(layout.snapshots_dir, options)
            if storage.exists(layout.snapshot_manifest(name), options)
        ]
        write(
            f"no manifest at {manifest_uri}: snapshot {snapshot} was never committed; committed snapshots: "
            f"{', '.join(committed) or 'none'}"
        )
        return False
    manifest = storage.read_json(manifest_uri, options)
    write(f"snapshot {snapshot}")
    kind = manifest.get("kind", "tokens")
    totals = manifest["totals"]
    if kind in ("tokens", "both"):
        write(
            f"job {manifest['job']} ({manifest['format']}, {manifest['dtype']}, {manifest['pack_mode']} packing, "
            f"seq_len {manifest['seq_len']}): {totals['documents']:,} documents ({totals['document_copies']:,} "
            f"copies), {totals['tokens']:,} tokens, {totals['sequences']:,} sequences, {len(manifest['shards'])} shards"
        )
        if totals["padding_tokens"]:
            write(f"padding: {totals['padding_tokens']:,} tokens ({totals['padding_tokens'] / totals['tokens']:.2%})")
    if kind in ("documents", "both"):
        documents = manifest["documents"]
        write(
            f"job {manifest['job']} (documents as {documents['format']}, {len(documents['columns'])} columns): "
            f"{totals['documents']:,} documents ({totals['document_copies']:,} copies), "
            f"{totals['text_bytes'] / 1e6:,.1f} MB of text, {len(manifest['shards'])} shards"
        )
    unit = manifest["mixture"].get("unit", "tokens")
    for name, domain in manifest["mixture"]["domains"].items():
        write(
            f"  domain {name}: target {domain['target_weight']:.2%}, realized {domain['realized_weight']:.2%} "
            f"({domain[f'realized_{unit}']:,} {unit}, {domain['rate']:.3f} copies per document)"
        )
    tokenizer = None
    if kind in ("tokens", "both"):
        try:
            tokenizer_uri = manifest["tokenizer"]["uri"]
            tokenizer_options = options if not storage.is_local(tokenizer_uri) else None
            tokenizer = load_text_tokenizer(tokenizer_uri, tokenizer_options)
            if storage.sha256_of(tokenizer_uri, tokenizer_options) != manifest["tokenizer"]["sha256"]:
                write("tokenizer file differs from the one the manifest names (sha256): samples may decode wrongly")
        except (FileNotFoundError, OSError, RuntimeError, ValueError):
            write(f"tokenizer {manifest['tokenizer']['uri']} not readable here: samples shown as ids")
    ok = True
    shown = 0
    for shard in manifest["shards"]:
        problems = []
        data = {}
        for role, entry in shard["files"].items():
            uri = storage.join(output_uri, entry["path"])
            if not storage.exists(uri, options):
                problems.append(f"{entry['path']} is missing")
                continue
            data[role] = storage.read_bytes(uri, options)
            if len(data[role]) != entry["bytes"]:
                problems.append(f"{entry['path']} size differs")
            elif hashlib.sha256(data[role]).hexdigest() != entry["sha256"]:
                problems.append(f"{entry['path']} sha256 differs")
        described, sample = [], None
        if kind in ("tokens", "both"):
            ids = _check_tokens(manifest, shard, data, problems)
            described.append(f"{shard['tokens']:,} tokens, {shard['sequences']:,} sequences")
            if ids is not None:
                sample = tokenizer.decode(ids) if tokenizer else str(ids)
        if kind in ("documents", "both"):
            text = _check_documents(manifest, shard, data, problems)
            described.append(f"{shard['documents']:,} documents")
            sample = sample if sample is not None else text
        ok = ok and not problems
        verdict = "OK" if not problems else "BAD (" + "; ".join(problems) + ")"
        write(f"  {shard['name']}: {', '.join(described)}: {verdict}")
        if sample is not None and shown < samples:
            write(f"    sample: {sample[:300]!r}")
            shown += 1
    write("manifest verified" if ok else "manifest does NOT match the shards")
    return ok


def _check_tokens(manifest: dict, shard: dict, data: dict[str, bytes], problems: list[str]) -> list[int] | None:
    """Decode a token shard and compare it with the manifest; its first tokens, as a sample."""
    fmt = {"sft-parquet": "parquet"}.get(manifest["format"]) or (
        "megatron" if manifest["format"].startswith("megatron") else "datatrove"
    )
    roles = set(formats.FILE_ROLES[fmt])
    if not roles <= set(data):
        return None
    try:
        decoded = formats.decode_shard(fmt, {role: data[role] for role in roles})
    except (ValueError, KeyError) as exc:
        problems.append(f"unreadable: {exc}")
        return None
    problems += decoded.problems
    seq_len = manifest["seq_len"]
    if len(decoded.tokens) != shard["tokens"]:
        problems.append("token count differs from the manifest")
    sequences = (
        len(decoded.sequence_lengths) if decoded.sequence_lengths is not None else -(-len(decoded.tokens) // seq_len)
    )
    if sequences != shard["sequences"]:
        problems.append("sequence count differs from the manifest")
    return np.asarray(decoded.tokens[: min(seq_len, 64)]).tolist() if len(decoded.tokens) else None


def _check_documents(manifest: dict, shard: dict, data: dict[str, bytes], problems: list[str]) -> str | None:
    """Read a document shard and compare it with the manifest; its first text, as a sample."""
    if "documents" not in data:
        return None
    chat_format = manifest["documents"].get("chat_format")
    if chat_format is not None:  # a chat job's conversations, one record each
        try:
            records = [json.loads(line) for line in gzip.decompress(data["documents"]).splitlines()]
        except (OSError, ValueError) as exc:
            problems.append(f"unreadable: {exc}")
            return None
        if len(records) != shard["documents"]:
            problems.append(f"{len(records):,} conversations where the manifest says {shard['documents']:,}")
        return json.dumps(records[0], ensure_ascii=False) if records else None
    try:
        if manifest["documents"]["format"] == "parquet":
            table = pq.read_table(io.BytesIO(data["documents"]), columns=["text"])
            texts = table.column("text").to_pylist()
        else:
            lines = gzip.decompress(data["documents"]).splitlines()
            texts = [json.loads(line)["text"] for line in lines]
    except (pa.ArrowException, OSError, ValueError, KeyError) as exc:
        problems.append(f"unreadable: {exc}")
        return None
    if len(texts) != shard["documents"]:
        problems.append(f"{len(texts):,} documents where the manifest says {shard['documents']:,}")
    if sum(len(t.encode()) for t in texts) != shard["text_bytes"]:
        problems.append("text bytes differ from the manifest")
    return texts[0] if texts else None
