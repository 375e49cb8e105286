"""Read Refinery's token shards with the trainers' own readers and compare with what they
should hold.

    benchmarks/.venv-trainers/bin/python -m benchmarks trainer_readers DIR [--json OUT]
    benchmarks/.venv-trainers/bin/python benchmarks/trainer_readers.py DIR [--json OUT]   # as the test runs it

Runs in its own venv (``make trainer-readers`` builds it from requirements-trainers.txt: torch
CPU, megatron-core, datatrove) and never imports Refinery: it only reads the files in DIR and
DIR/expected.json, which tests/test_trainer_readers.py writes with Refinery's writers.

expected.json: ``{"files": [ENTRY, ...]}``, each ENTRY one shard:

- ``{"format": "megatron", "prefix": "NAME", "dtype": "uint16", "seq_len": 64,
  "sequences": [[token, ...], ...], "document_indices": [0, 1, ...]}``: ``NAME.bin`` +
  ``NAME.idx``. Read with ``megatron.core.datasets.indexed_dataset.IndexedDataset(prefix,
  mmap=True)``: dtype, ``len``, ``sequence_lengths``, ``document_indices``, sequence
  pointers, ``ds[i]`` and ``ds.get(i)`` for every sequence, one contiguous slice; then the same
  sequences and document indices are written with Megatron's ``IndexedDatasetBuilder`` and
  both files compared byte for byte (a difference names its byte offset and field).
- ``{"format": "datatrove", "path": "NAME.ds", "dtype": "uint16", "token_size": 2,
  "seq_len": 64, "reader_seq_len": 63, "tokenizer": "...", "tokens": [...],
  "doc_ends": [...]}``: ``NAME.ds`` + ``.ds.index`` + ``.ds.metadata``. Read with
  ``datatrove.utils.dataset.DatatroveFileDataset(path, seq_len=reader_seq_len,
  token_size=...)``: ``len`` (full windows of reader_seq_len + 1 tokens), every window's
  ``input_ids`` against the expected stream cut the same way, and with
  ``return_positions=True`` (positions read from ``.ds.index``) every window's positions
  against those the expected document ends give (0 at the window start and after each end).
  Also the raw ``.ds`` (all tokens, including a tail too short for a window), the raw
  ``.ds.index`` (little-endian uint64 ends) and the ``.ds.metadata`` text datatrove's
  ``TokenizedFile.write_final_metadata`` writes (``humanize.metric(n, unit="T")``).

Prints one line per file, ``OK ...`` or ``BAD ...: what differs``, and a summary; exits 1 on any
mismatch (or a shard file in DIR that expected.json does not describe).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import struct
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

with warnings.catch_warnings():
    # megatron.core's package import warns that Transformer Engine / Apex are missing.
    warnings.simplefilter("ignore")
    import humanize
    import torch
    from datatrove.utils.dataset import DatatroveFileDataset
    from megatron.core.datasets.indexed_dataset import IndexedDataset, IndexedDatasetBuilder

logging.getLogger("megatron").setLevel(logging.WARNING)

MAX_PROBLEMS = 12  # per file; the rest are counted


class Problems:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.extra = 0

    def add(self, message: str) -> None:
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(message)
        else:
            self.extra += 1

    def check(self, condition: bool, message: str) -> bool:
        if not condition:
            self.add(message)
        return condition

    def as_list(self) -> list[str]:
        return self.items + ([f"... and {self.extra} more"] if self.extra else [])


def first_difference(got: np.ndarray, want: np.ndarray) -> str:
    """'index k: expected x, got y' for two 1-D arrays (lengths may differ)."""
    n = min(len(got), len(want))
    diff = np.flatnonzero(np.asarray(got[:n], dtype=np.int64) != np.asarray(want[:n], dtype=np.int64))
    if len(diff):
        k = int(diff[0])
        return f"first at index {k}: expected {int(want[k])}, got {int(got[k])} ({len(diff)} differ)"
    return f"length: expected {len(want)}, got {len(got)}"


# --- Megatron ---------------------------------------------------------------------------------

IDX_HEADER_FIELDS = [
    (0, 9, "magic", None),
    (9, 17, "version", "<Q"),
    (17, 18, "dtype code", "<B"),
    (18, 26, "sequence count", "<Q"),
    (26, 34, "document count", "<Q"),
]


def idx_field(offset: int, sequences: int) -> tuple[str, int, int, str | None]:
    """(name, first byte, end byte, struct format) of the .idx field holding byte ``offset``."""
    for start, end, name, fmt in IDX_HEADER_FIELDS:
        if start <= offset < end:
            return name, start, end, fmt
    lengths_end = 34 + 4 * sequences
    pointers_end = lengths_end + 8 * sequences
    if offset < lengths_end:
        k = (offset - 34) // 4
        return f"sequence_lengths[{k}]", 34 + 4 * k, 38 + 4 * k, "<i"
    if offset < pointers_end:
        k = (offset - lengths_end) // 8
        return f"sequence_pointers[{k}]", lengths_end + 8 * k, lengths_end + 8 * k + 8, "<q"
    k = (offset - pointers_end) // 8
    return f"document_indices[{k}]", pointers_end + 8 * k, pointers_end + 8 * k + 8, "<q"


def bin_field(offset: int, dtype: np.dtype, sequence_ends: np.ndarray) -> tuple[str, int, int, str]:
    k = offset // dtype.itemsize
    sequence = int(np.searchsorted(sequence_ends, k, side="right"))
    return (
        f"token {k} (sequence {sequence})",
        k * dtype.itemsize,
        (k + 1) * dtype.itemsize,
        "<" + dtype.newbyteorder("<").char,
    )


def compare_bytes(label: str, got: bytes, want: bytes, field) -> str | None:
    """None when equal, else where the first difference is: byte offset, field, both values."""
    if got == want:
        return None
    n = min(len(got), len(want))
    mismatch = np.flatnonzero(np.frombuffer(got[:n], np.uint8) != np.frombuffer(want[:n], np.uint8))
    if len(mismatch) == 0:
        return f"{label}: Refinery's file has {len(got)} bytes, Megatron's builder writes {len(want)} (equal up to {n})"
    off = int(mismatch[0])
    name, start, end, fmt = field(off)

    def value(data: bytes):
        raw = data[start:end]
        return struct.unpack(fmt, raw)[0] if fmt and len(raw) == struct.calcsize(fmt) else raw

    return (
        f"{label}: first differing byte at offset {off}, field {name} (bytes {start}..{end - 1}): "
        f"Megatron's builder writes {value(want)!r} ({want[start:end].hex()}), Refinery's file has "
        f"{value(got)!r} ({got[start:end].hex()}); {len(mismatch)} bytes differ, sizes {len(got)} vs {len(want)}"
    )


def check_megatron(root: Path, entry: dict) -> tuple[list[str], dict]:
    problems = Problems()
    prefix = str(root / entry["prefix"])
    want_dtype = np.dtype(entry["dtype"])
    sequences = [np.asarray(s, dtype=np.int64) for s in entry["sequences"]]
    want_lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    want_docs = np.asarray(entry["document_indices"], dtype=np.int64)

    problems.check(IndexedDataset.exists(prefix), "IndexedDataset.exists(prefix) is False")
    ds = IndexedDataset(prefix, multimodal=False, mmap=True)
    problems.check(
        np.dtype(ds.index.dtype) == want_dtype,
        f"dtype: expected {want_dtype}, index declares {np.dtype(ds.index.dtype)}",
    )
    problems.check(len(ds) == len(sequences), f"len(ds): expected {len(sequences)}, got {len(ds)}")
    got_lengths = np.asarray(ds.sequence_lengths)
    problems.check(
        np.array_equal(got_lengths, want_lengths), f"sequence_lengths: {first_difference(got_lengths, want_lengths)}"
    )
    got_docs = np.asarray(ds.document_indices)
    problems.check(np.array_equal(got_docs, want_docs), f"document_indices: {first_difference(got_docs, want_docs)}")
    want_pointers = np.concatenate([[0], np.cumsum(want_lengths)[:-1]]) * want_dtype.itemsize if len(sequences) else []
    got_pointers = np.asarray(ds.index.sequence_pointers)
    problems.check(
        np.array_equal(got_pointers, want_pointers),
        f"sequence_pointers: {first_difference(got_pointers, np.asarray(want_pointers))}",
    )

    for i, want in enumerate(sequences[: len(ds)]):
        item = ds[i]
        problems.check(item.dtype == want_dtype, f"ds[{i}].dtype is {item.dtype}")
        problems.check(np.array_equal(item.astype(np.int64), want), f"ds[{i}]: {first_difference(item, want)}")
        got = ds.get(i)
        problems.check(np.array_equal(got.astype(np.int64), want), f"ds.get({i}): {first_difference(got, want)}")
    if len(ds) == len(sequences) and len(sequences):
        sliced = ds[0 : len(ds)]
        problems.check(
            all(np.array_equal(a.astype(np.int64), b) for a, b in zip(sliced, sequences)),
            "ds[0:len] (one contiguous read split by the index) differs from the sequences",
        )
    del ds

    # The same content through Megatron's own writer: the files must be identical.
    with tempfile.TemporaryDirectory() as tmp:
        ref = f"{tmp}/ref"
        builder = IndexedDatasetBuilder(f"{ref}.bin", dtype=want_dtype.type)
        for d in range(len(want_docs) - 1):
            for s in range(int(want_docs[d]), int(want_docs[d + 1])):
                builder.add_item(torch.from_numpy(sequences[s]))
            builder.end_document()
        builder.finalize(f"{ref}.idx")
        ref_idx, ref_bin = Path(f"{ref}.idx").read_bytes(), Path(f"{ref}.bin").read_bytes()
    got_idx, got_bin = Path(f"{prefix}.idx").read_bytes(), Path(f"{prefix}.bin").read_bytes()
    sequence_ends = np.cumsum(want_lengths)
    for message in (
        compare_bytes(".idx", got_idx, ref_idx, lambda off: idx_field(off, len(sequences))),
        compare_bytes(".bin", got_bin, ref_bin, lambda off: bin_field(off, want_dtype, sequence_ends)),
    ):
        if message:
            problems.add(message)

    info = {
        "sequences": len(sequences),
        "tokens": int(want_lengths.sum()),
        "dtype": str(want_dtype),
        "documents": len(want_docs) - 1,
        "idx_bytes": len(got_idx),
        "bin_bytes": len(got_bin),
        "byte_identical_to_megatron_builder": got_idx == ref_idx and got_bin == ref_bin,
    }
    return problems.as_list(), info


# --- datatrove --------------------------------------------------------------------------------


def expected_positions(window_start: int, width: int, doc_ends: np.ndarray) -> np.ndarray:
    """Position of each token within its document, restarting at the window start."""
    t = np.arange(window_start, window_start + width, dtype=np.int64)
    k = np.searchsorted(doc_ends, t, side="right") - 1
    last_end = np.where(k >= 0, doc_ends[np.maximum(k, 0)], 0)
    return t - np.maximum(last_end, window_start)


def check_datatrove(root: Path, entry: dict) -> tuple[list[str], dict]:
    problems = Problems()
    path = root / entry["path"]
    token_size = int(entry["token_size"])
    want_dtype = np.dtype(entry["dtype"]).newbyteorder("<")
    reader_seq_len = int(entry["reader_seq_len"])
    width = reader_seq_len + 1
    tokens = np.asarray(entry["tokens"], dtype=np.int64)
    doc_ends = np.asarray(entry["doc_ends"], dtype=np.int64)
    problems.check(want_dtype.itemsize == token_size, f"expected.json: dtype {want_dtype} vs token_size {token_size}")

    # Raw files.
    raw = np.fromfile(path, dtype=want_dtype)
    problems.check(
        path.stat().st_size == len(tokens) * token_size,
        f".ds size: expected {len(tokens) * token_size} bytes, got {path.stat().st_size}",
    )
    problems.check(np.array_equal(raw.astype(np.int64), tokens), f".ds tokens: {first_difference(raw, tokens)}")
    index_path = Path(f"{path}.index")
    index_bytes = index_path.read_bytes()
    problems.check(len(index_bytes) % 8 == 0, f".ds.index size {len(index_bytes)} is not a multiple of 8")
    index = np.frombuffer(index_bytes[: len(index_bytes) // 8 * 8], dtype="<u8").astype(np.int64)
    problems.check(np.array_equal(index, doc_ends), f".ds.index ends: {first_difference(index, doc_ends)}")
    metadata = Path(f"{path}.metadata").read_text()
    want_metadata = "\n".join(
        [f"{entry['tokenizer']}|{token_size}", str(len(tokens)), humanize.metric(len(tokens), unit="T")]
    )
    problems.check(metadata == want_metadata, f".ds.metadata: expected {want_metadata!r}, got {metadata!r}")

    # DatatroveFileDataset: token windows.
    ds = DatatroveFileDataset(str(path), seq_len=reader_seq_len, token_size=token_size)
    want_len = len(tokens) // width
    problems.check(len(ds) == want_len, f"len(ds): expected {want_len} windows of {width}, got {len(ds)}")
    for i in range(min(len(ds), want_len)):
        got = ds[i]["input_ids"].numpy()
        want = tokens[i * width : (i + 1) * width]
        problems.check(np.array_equal(got, want), f"window {i} input_ids: {first_difference(got, want)}")

    # DatatroveFileDataset(return_positions=True): positions from the .ds.index.
    dsp = DatatroveFileDataset(str(path), seq_len=reader_seq_len, token_size=token_size, return_positions=True)
    resets = 0
    for i in range(min(len(dsp), want_len)):
        try:
            item = dsp[i]
        except AssertionError as exc:  # "First position should be 0"
            problems.add(f"window {i} positions: reader assertion: {exc}")
            continue
        got = item["positions"].numpy().astype(np.int64)
        want = expected_positions(i * width, width, doc_ends)
        problems.check(np.array_equal(got, want), f"window {i} positions: {first_difference(got, want)}")
        problems.check(
            np.array_equal(item["input_ids"].numpy(), tokens[i * width : (i + 1) * width]),
            f"window {i} input_ids (return_positions=True) differ",
        )
        resets += int(np.count_nonzero(got[1:] == 0))
    del ds, dsp

    info = {
        "tokens": len(tokens),
        "dtype": str(np.dtype(entry["dtype"])),
        "windows": want_len,
        "window_tokens": width,
        "tokens_past_last_window": len(tokens) - want_len * width,
        "index_entries": len(doc_ends),
        "position_resets_inside_windows": resets,
    }
    if "seq_len" in entry:
        info["windows_aligned_with_packed_sequences"] = width == int(entry["seq_len"])
    return problems.as_list(), info


# --- driver -----------------------------------------------------------------------------------


def shard_files(root: Path) -> set[str]:
    names = set()
    for pattern in ("*.bin", "*.idx", "*.ds", "*.ds.index", "*.ds.metadata"):
        names.update(p.name for p in root.glob(pattern))
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks trainer_readers", description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path, help="folder with the shards and expected.json")
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args(argv)

    root: Path = args.dir
    expected = json.loads((root / "expected.json").read_text())
    results = []
    covered: set[str] = set()
    for entry in expected["files"]:
        fmt = entry["format"]
        if fmt == "megatron":
            name, reader = entry["prefix"], "megatron.core IndexedDataset"
            covered.update({f"{name}.bin", f"{name}.idx"})
            check = check_megatron
        elif fmt == "datatrove":
            name, reader = entry["path"], "datatrove DatatroveFileDataset"
            covered.update({name, f"{name}.index", f"{name}.metadata"})
            check = check_datatrove
        else:
            results.append({"file": str(entry), "format": fmt, "ok": False, "problems": [f"unknown format {fmt}"]})
            continue
        started = time.perf_counter()
        try:
            problems, info = check(root, entry)
        except Exception as exc:  # the reader refused the file
            problems, info = [f"{type(exc).__name__}: {exc}".strip()], {"traceback": traceback.format_exc()}
        results.append(
            {
                "file": name,
                "format": fmt,
                "reader": reader,
                "ok": not problems,
                "problems": problems,
                "seconds": round(time.perf_counter() - started, 3),
                **info,
            }
        )
    for stray in sorted(shard_files(root) - covered):
        results.append({"file": stray, "format": "?", "ok": False, "problems": ["not described in expected.json"]})

    for r in results:
        if r["ok"]:
            detail = (
                f"{r['sequences']} sequences, {r['tokens']} tokens"
                if r["format"] == "megatron"
                else f"{r['windows']} windows of {r['window_tokens']}, {r['tokens']} tokens"
            )
            print(f"OK   {r['format']:<9} {r['file']} ({r['dtype']}, {detail})")
        else:
            print(f"BAD  {r['format']:<9} {r['file']}: " + "; ".join(r["problems"]))
    bad = sum(not r["ok"] for r in results)
    print(f"{len(results)} files: {len(results) - bad} OK, {bad} BAD")

    if args.json:
        versions = {
            p: importlib.metadata.version(p) for p in ("torch", "megatron-core", "datatrove", "numpy", "humanize")
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"ok": bad == 0, "versions": versions, "python": sys.version.split()[0], "files": results}, indent=2
            )
            + "\n"
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
