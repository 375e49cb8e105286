"""``refinery inspect OUTPUT``: check a manifest against its shards and show decoded samples."""

from __future__ import annotations

import hashlib
from typing import TextIO

import numpy as np

from pipeline import storage
from pipeline.formats import megatron
from pipeline.layout import OutputLayout
from pipeline.stages.tokenize import load_sentencepiece


def inspect_output(output_uri: str, samples: int = 2, out: TextIO | None = None,
                   options: storage.StorageOptions | None = None) -> bool:
    layout = OutputLayout(output_uri)
    write = (lambda line: print(line, file=out)) if out else (lambda line: None)
    if not storage.exists(layout.manifest, options):
        write(f"no manifest at {layout.manifest}: the run did not finish (re-run the job to complete it)")
        return False
    manifest = storage.read_json(layout.manifest, options)
    write(f"job {manifest['job']} ({manifest['format']}, {manifest['dtype']}, seq_len {manifest['seq_len']}): "
          f"{manifest['totals']['documents']:,} documents, {manifest['totals']['tokens']:,} tokens, "
          f"{len(manifest['shards'])} shards")
    tokenizer = None
    try:
        tokenizer = load_sentencepiece(manifest["tokenizer"]["uri"])
    except (FileNotFoundError, OSError, RuntimeError):
        write(f"tokenizer {manifest['tokenizer']['uri']} not readable here: samples shown as ids")
    ok = True
    shown = 0
    for shard in manifest["shards"]:
        idx_bytes = storage.read_bytes(storage.join(output_uri, shard["idx"]), options)
        bin_bytes = storage.read_bytes(storage.join(output_uri, shard["bin"]), options)
        problems = []
        if hashlib.sha256(idx_bytes).hexdigest() != shard["idx_sha256"]:
            problems.append("idx sha256 differs")
        if hashlib.sha256(bin_bytes).hexdigest() != shard["bin_sha256"]:
            problems.append("bin sha256 differs")
        dataset = megatron.decode(idx_bytes, bin_bytes)
        if int(np.sum(dataset.sequence_lengths, dtype=np.int64)) != shard["tokens"] or len(dataset) != shard["sequences"]:
            problems.append("token or sequence count differs from the manifest")
        ok = ok and not problems
        write(f"  {shard['bin']}: {shard['tokens']:,} tokens, {shard['sequences']:,} sequences: "
              + ("OK" if not problems else "BAD (" + "; ".join(problems) + ")"))
        if shown < samples and len(dataset):
            ids = dataset.sequence(0)[:64].tolist()
            text = tokenizer.Decode(ids) if tokenizer else str(ids)
            write(f"    sample: {text[:300]!r}")
            shown += 1
    write("manifest verified" if ok else "manifest does NOT match the shards")
    return ok
