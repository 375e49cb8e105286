"""Perplexity: the Perplexity stage (CCNet normalization, sentencepiece, KenLM score per
line, document perplexity) on 1,024-row batches, against what an expert writes with the same
libraries: per document, CCNet's normalization of each line in Python, one batched
sentencepiece ``encode`` of the document's lines, a KenLM score per line and the document's
perplexity. Same work on both sides; each round runs both in a fresh process, the order
alternating; one core. The 5-gram model is trained with ``refinery train-lm`` on another
5,000-document sample.

    python -m benchmarks perplexity --docs 20000 --rounds 5
"""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa

from benchmarks import common
from pipeline.core import columns as cols


def sides(docs: int, lm: str, sp: str) -> dict:
    """The two sides of the comparison, built in the process that times them."""
    import kenlm
    import sentencepiece as spm

    from pipeline.stages.language import LANG
    from pipeline.stages.perplexity import Perplexity, PerplexityConfig, ccnet_normalize

    table = common.docs_table(docs)
    table = table.append_column(LANG, pa.array(["en"] * table.num_rows))
    stage = Perplexity(PerplexityConfig(enabled=True, models={"en": {"lm": lm, "sp": sp}}))
    stage.setup()
    model, pieces = kenlm.Model(lm), spm.SentencePieceProcessor(model_file=sp)
    texts = table.column(cols.TEXT).to_pylist()

    def refinery():
        for batch in common.batches(table):
            stage.process(batch)

    def kenlm_loop():
        for text in texts:
            lines = [line for line in map(ccnet_normalize, text.split("\n")) if line]
            total, length = 0.0, 0
            for encoded in pieces.encode(lines, out_type=str):
                total += model.score(" ".join(encoded))
                length += len(encoded) + 1
            _ = 10 ** (-total / length) if length else math.nan

    return {"refinery": refinery, "kenlm_loop": kenlm_loop}


def bench_perplexity(docs: int, rounds: int, tmp: Path) -> dict:
    from pipeline.tools.train_lm import train_perplexity_model

    reference = common.sample_corpus(tmp / "lm_corpus", 5000, 2, 9)
    pair = train_perplexity_model(str(reference), str(tmp / "lm"), "en", order=5)
    table = common.docs_table(docs)
    comparison = common.interleaved(
        "benchmarks.perplexity:sides",
        {"docs": docs, "lm": pair["lm"], "sp": pair["sp"]},
        rounds,
        reference="kenlm_loop",
        candidates=["refinery"],
    )
    nbytes = common.text_bytes(table)
    return {
        "documents": table.num_rows,
        "bytes": nbytes,
        "lm_order": 5,
        "vs_kenlm_loop": comparison,
        "refinery_mb_per_s_per_core": nbytes / comparison["median_seconds"]["refinery"] / 1e6,
    }


def main(argv: list[str]) -> None:
    parser = common.parser("perplexity", __doc__)
    common.add_docs(parser)
    common.add_rounds(parser)
    args = parser.parse_args(argv)
    with common.scratch() as tmp:
        common.write_result("perplexity", argv, bench_perplexity(args.docs, args.rounds, tmp))
