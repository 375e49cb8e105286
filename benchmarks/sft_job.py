"""A whole chat job at each size: OpenAI-format conversations (JSON lines, 16 files) read,
validated, deduplicated (exact and near, the defaults), rendered with the built-in ChatML,
tokenized with loss masks and packed into SFT Parquet rows (seq_len 2,048, best fit) by
``run_job``; wall time, conversations per second per core, peak RSS of any one process and
of all together, and how they grow between sizes. The figure of merit is memory growth:
peak RSS should stay flat as the input grows.

Conversations are generated (seeded): a system prompt half the time, one to three
user/assistant exchanges of random words over a 20,000-word vocabulary (5-25 words a
question, 10-80 an answer), so no two are duplicates. Tokenizer: a byte-level BPE ``tokenizer.json`` (8,000 tokens, ChatML's special
tokens) trained on the sample corpus.

    python -m benchmarks sft-job --conversations 100000,1000000
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import common

FILES = 16


def write_conversations(out: Path, n: int, seed: int) -> int:
    """``n`` conversations in ``FILES`` JSON lines files; their total bytes."""
    rng = random.Random(seed)
    vocabulary = ["".join(rng.choices("etaoinshrdlucmfwypvbgk", k=rng.randint(2, 10))) for _ in range(20000)]
    out.mkdir(parents=True, exist_ok=True)
    total = 0
    per_file = -(-n // FILES)
    for f in range(FILES):
        lines = []
        for i in range(f * per_file, min(n, (f + 1) * per_file)):
            messages = []
            if rng.random() < 0.5:
                messages.append({"role": "system", "content": "You are a helpful assistant."})
            for _ in range(rng.randint(1, 3)):
                messages.append(
                    {"role": "user", "content": " ".join(rng.choices(vocabulary, k=rng.randint(5, 25))) + "?"}
                )
                messages.append(
                    {"role": "assistant", "content": " ".join(rng.choices(vocabulary, k=rng.randint(10, 80))) + "."}
                )
            lines.append(json.dumps({"id": f"c{i}", "messages": messages}))
        data = ("\n".join(lines) + "\n").encode()
        (out / f"part-{f:03d}.jsonl").write_bytes(data)
        total += len(data)
    return total


def bench_sft_job(sizes: list[int], tmp: Path, overrides: list[str]) -> dict:
    from pipeline.config import apply_override
    from pipeline.core.progress import Progress
    from pipeline.runner import run_job

    corpus = common.sample_corpus(tmp / "corpus", 3000, 2, 5)
    tokenizer = tmp / "tok" / "tokenizer.json"
    common.refinery(
        "train-tokenizer", str(corpus), str(tokenizer), "--vocab-size", "8000", "--format", "tokenizer.json"
    )  # fmt: skip
    common.start_ray()
    runs = []
    for n in sizes:
        data = tmp / f"chat_{n}"
        # written by a subprocess, so that generating them does not count in this process's memory
        subprocess.run(
            [sys.executable, "-m", "benchmarks.sft_job", "--write", str(data), str(n)], check=True, cwd=common.ROOT
        )
        size = sum(p.stat().st_size for p in data.iterdir())
        spec = {
            "name": f"sft-bench-{n}",
            "input": {"uri": str(data), "id_column": "id", "chat": {}},
            "output": {"uri": str(tmp / f"out_{n}"), "write_rejects": False},
            "stages": {
                "tokenize": {"model": str(tokenizer), "chat": {"template": "chatml", "over_long": "truncate"}},
                "pack": {"seq_len": 2048, "mode": "bestfit", "format": "parquet", "shard_tokens": 20_000_000},
            },
        }
        for override in overrides:
            apply_override(spec, override)
        progress = Progress(quiet=True)
        started = time.perf_counter()
        result = run_job(spec, progress=progress)
        wall = time.perf_counter() - started
        report = result.report
        runs.append(
            {
                "documents": n,
                "input_bytes": size,
                "wall_s": wall,
                "conversations_per_s_per_core": n / wall / common.cores(),
                "peak_rss_bytes": report["peak_rss_bytes"],
                "peak_private_bytes": report["peak_private_bytes"],
                "tokens": report["totals"]["tokens"],
                "packing_efficiency": report["chat"]["output"]["packing_efficiency"],
                "kept": report["totals"]["kept_docs"],
                "phases": {p["name"]: p["seconds"] for p in report["phases"]},
                "phase_peak_rss_bytes": {p["name"]: p["peak_rss_bytes"] for p in report["phases"]},
                "phase_peak_private_bytes": {p["name"]: p["peak_private_bytes"] for p in report["phases"]},
            }
        )
        print(json.dumps(runs[-1]), flush=True)
    return {"runs": runs, "growth": common.growth(runs, "wall_s")}


def main(argv: list[str]) -> None:
    if argv[:1] == ["--write"]:
        write_conversations(Path(argv[1]), int(argv[2]), seed=int(argv[2]))
        return
    parser = common.parser("sft-job", __doc__)
    parser.add_argument("--conversations", type=common.sizes, default=[100_000, 1_000_000])
    common.add_overrides(parser)
    args = parser.parse_args(argv)
    with common.scratch() as tmp:
        figures = bench_sft_job(args.conversations, tmp, args.set)
    common.write_result("sft-job", argv, figures)


if __name__ == "__main__":
    main(sys.argv[1:])
