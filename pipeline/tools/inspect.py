"""``refinery inspect OUTPUT``: check a manifest against its shards, print a summary, the
mixture, and a few decoded samples."""

from __future__ import annotations

import hashlib
from typing import TextIO

import numpy as np

from pipeline import formats
from pipeline.core import storage
from pipeline.core.layout import OutputLayout
from pipeline.core.sentencepiece import load_sentencepiece


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
    fmt = "megatron" if manifest["format"].startswith("megatron") else "datatrove"
    totals = manifest["totals"]
    write(
        f"job {manifest['job']} ({manifest['format']}, {manifest['dtype']}, {manifest['pack_mode']} packing, "
        f"seq_len {manifest['seq_len']}): {totals['documents']:,} documents ({totals['document_copies']:,} copies), "
        f"{totals['tokens']:,} tokens, {totals['sequences']:,} sequences, {len(manifest['shards'])} shards"
    )
    if totals["padding_tokens"]:
        write(f"padding: {totals['padding_tokens']:,} tokens ({totals['padding_tokens'] / totals['tokens']:.2%})")
    for name, domain in manifest["mixture"]["domains"].items():
        write(
            f"  domain {name}: target {domain['target_weight']:.2%}, realized {domain['realized_weight']:.2%} "
            f"({domain['realized_tokens']:,} tokens, {domain['rate']:.3f} copies per token)"
        )
    tokenizer = None
    try:
        tokenizer_uri = manifest["tokenizer"]["uri"]
        tokenizer = load_sentencepiece(tokenizer_uri, options if not storage.is_local(tokenizer_uri) else None)
        if hashlib.sha256(tokenizer.serialized_model_proto()).hexdigest() != manifest["tokenizer"]["sha256"]:
            write("tokenizer file differs from the one the manifest names (sha256): samples may decode wrongly")
    except (FileNotFoundError, OSError, RuntimeError):
        write(f"tokenizer {manifest['tokenizer']['uri']} not readable here: samples shown as ids")
    ok = True
    shown = 0
    seq_len = manifest["seq_len"]
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
        decoded = None
        if len(data) == len(shard["files"]):
            try:
                decoded = formats.decode_shard(fmt, data)
                problems += decoded.problems
            except (ValueError, KeyError) as exc:
                problems.append(f"unreadable: {exc}")
        if decoded is not None:
            if len(decoded.tokens) != shard["tokens"]:
                problems.append("token count differs from the manifest")
            sequences = (
                len(decoded.sequence_lengths)
                if decoded.sequence_lengths is not None
                else -(-len(decoded.tokens) // seq_len)
            )
            if sequences != shard["sequences"]:
                problems.append("sequence count differs from the manifest")
        ok = ok and not problems
        write(
            f"  {shard['name']}: {shard['tokens']:,} tokens, {shard['sequences']:,} sequences: "
            + ("OK" if not problems else "BAD (" + "; ".join(problems) + ")")
        )
        if decoded is not None and shown < samples and len(decoded.tokens):
            ids = np.asarray(decoded.tokens[: min(seq_len, 64)]).tolist()
            text = tokenizer.Decode(ids) if tokenizer else str(ids)
            write(f"    sample: {text[:300]!r}")
            shown += 1
    write("manifest verified" if ok else "manifest does NOT match the shards")
    return ok
