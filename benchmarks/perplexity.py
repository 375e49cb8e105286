"""Perplexity: the Perplexity stage (CCNet normalization + sentencepiece + KenLM score per
line, document perplexity) on 1,024-row batches, against a raw loop of sentencepiece encode +
kenlm score over the same lines, already normalized; one core. The 5-gram model is trained
with ``refinery train-lm`` on another 5,000-document sample.

    python -m benchmarks perplexity --docs 20000
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from benchmarks import common
from pipeline.core import columns as cols


def bench_perplexity(docs: int, repeats: int, tmp: Path) -> dict:
    import kenlm
    import sentencepiece as spm

    from pipeline.stages.language import LANG
    from pipeline.stages.perplexity import Perplexity, PerplexityConfig, ccnet_normalize
    from pipeline.tools.train_lm import train_perplexity_model

    reference = common.sample_corpus(tmp / "lm_corpus", 5000, 2, 9)
    pair = train_perplexity_model(str(reference), str(tmp / "lm"), "en", order=5)
    table = common.docs_table(docs)
    table = table.append_column(LANG, pa.array(["en"] * table.num_rows))
    stage = Perplexity(PerplexityConfig(enabled=True, models={"en": {"lm": pair["lm"], "sp": pair["sp"]}}))
    stage.setup()
    lm, sp = kenlm.Model(pair["lm"]), spm.SentencePieceProcessor(model_file=pair["sp"])
    lines = [n for text in table.column(cols.TEXT).to_pylist() for n in map(ccnet_normalize, text.split("\n")) if n]

    def raw_loop():
        for line in lines:
            lm.score(" ".join(sp.encode(line, out_type=str)))

    ours_s = common.median_seconds(lambda: [stage.process(b) for b in common.batches(table)], repeats)
    raw_s = common.median_seconds(raw_loop, repeats)
    nbytes = common.text_bytes(table)
    return {
        "documents": table.num_rows,
        "bytes": nbytes,
        "lines": len(lines),
        "lm_order": 5,
        "refinery_s": ours_s,
        "raw_loop_s": raw_s,
        "ratio_vs_raw": raw_s / ours_s,
        "refinery_mb_per_s_per_core": nbytes / ours_s / 1e6,
    }


def main(argv: list[str]) -> None:
    parser = common.parser("perplexity", __doc__)
    common.add_docs(parser)
    common.add_repeats(parser)
    args = parser.parse_args(argv)
    with common.scratch() as tmp:
        figures = bench_perplexity(args.docs, args.repeats, tmp)
    common.write_result("perplexity", argv, figures)
