"""Language ID: the LanguageId stage on 1,024-row batches (line breaks folded, labels and
scores turned into Arrow columns) against one raw fastText ``predict(texts, k=1)`` call over
the same prepared texts, with the bundled lid.176.ftz, on one core; plus accuracy per
language on ../shared/data/lingua_sentences when present.

    python -m benchmarks language --docs 20000
"""

from __future__ import annotations

import statistics

import pyarrow as pa

from benchmarks import common
from pipeline.core import columns as cols


def bench_language(docs: int, repeats: int) -> dict:
    import fasttext

    from pipeline.stages.language import LANG, LanguageConfig, LanguageId, bundled_model, prepare_text

    table = common.docs_table(docs)
    stage = LanguageId(LanguageConfig())
    stage.setup()
    raw = fasttext.load_model(bundled_model())
    prepared = prepare_text(table.column(cols.TEXT), LanguageConfig().max_chars)
    ours_s = common.median_seconds(lambda: [stage.process(b) for b in common.batches(table)], repeats)
    raw_s = common.median_seconds(lambda: raw.predict(prepared, k=1), repeats)
    nbytes = common.text_bytes(table)
    figures = {
        "documents": table.num_rows,
        "bytes": nbytes,
        "refinery_s": ours_s,
        "raw_predict_s": raw_s,
        "ratio_vs_raw": raw_s / ours_s,
        "refinery_mb_per_s_per_core": nbytes / ours_s / 1e6,
    }
    lingua = common.SHARED_DATA / "lingua_sentences"
    if lingua.is_dir():
        accuracy = {}
        for path in sorted(lingua.glob("*.txt")):
            sentences = [line for line in path.read_text().splitlines() if line.strip()]
            labels = stage.process(pa.table({cols.TEXT: sentences})).table.column(LANG).to_pylist()
            accuracy[path.stem] = sum(label == path.stem for label in labels) / len(labels)
        figures["lingua_accuracy"] = accuracy
        figures["lingua_mean_accuracy"] = statistics.mean(accuracy.values())
    return figures


def main(argv: list[str]) -> None:
    parser = common.parser("language", __doc__)
    common.add_docs(parser)
    common.add_repeats(parser)
    args = parser.parse_args(argv)
    common.write_result("language", argv, bench_language(args.docs, args.repeats))
