"""Language ID: the LanguageId stage on 1,024-row batches (line breaks folded, labels and
scores turned into Arrow columns) against what an expert writes with fastText: the same
texts with line breaks folded and cut to the same length in Python, one ``predict(texts,
k=1)`` call over the list; the bundled lid.176.ftz, one core. The two sides are timed in
fresh processes, alternating over ``--rounds``: the stage is a thin wrapper over the same
``predict``, so a ratio above 1 is noise, not a result. Plus accuracy per language on
../shared/data/lingua_sentences (required: set REFINERY_SHARED_DATA if it is elsewhere).

    python -m benchmarks language --docs 20000 --rounds 5
"""

from __future__ import annotations

import statistics

import pyarrow as pa

from benchmarks import common
from pipeline.core import columns as cols


def sides(docs: int) -> dict:
    """The two sides of the comparison, built in the process that times them."""
    import fasttext

    from pipeline.stages.language import LanguageConfig, LanguageId, bundled_model

    table = common.docs_table(docs)
    stage = LanguageId(LanguageConfig())
    stage.setup()
    raw = fasttext.load_model(bundled_model())
    texts = table.column(cols.TEXT).to_pylist()
    max_chars = LanguageConfig().max_chars

    def refinery():
        for batch in common.batches(table):
            stage.process(batch)

    def fasttext_predict():
        raw.predict([text.replace("\n", " ")[:max_chars] for text in texts], k=1)

    return {"refinery": refinery, "fasttext_predict": fasttext_predict}


def bench_language(docs: int, rounds: int) -> dict:
    from pipeline.stages.language import LANG, LanguageConfig, LanguageId

    table = common.docs_table(docs)
    stage = LanguageId(LanguageConfig())
    stage.setup()
    comparison = common.interleaved(
        "benchmarks.language:sides", {"docs": docs}, rounds, reference="fasttext_predict", candidates=["refinery"]
    )
    nbytes = common.text_bytes(table)
    figures = {
        "documents": table.num_rows,
        "bytes": nbytes,
        "vs_fasttext_predict": comparison,
        "refinery_mb_per_s_per_core": nbytes / comparison["median_seconds"]["refinery"] / 1e6,
    }
    accuracy = {}
    for path in sorted(common.shared_data("lingua_sentences").glob("*.txt")):
        sentences = [line for line in path.read_text().splitlines() if line.strip()]
        labels = stage.process(pa.table({cols.TEXT: sentences})).table.column(LANG).to_pylist()
        accuracy[path.stem] = sum(label == path.stem for label in labels) / len(labels)
    figures["lingua_accuracy"] = accuracy
    figures["lingua_mean_accuracy"] = statistics.mean(accuracy.values())
    return figures


def main(argv: list[str]) -> None:
    parser = common.parser("language", __doc__)
    common.add_docs(parser)
    common.add_rounds(parser)
    args = parser.parse_args(argv)
    common.write_result("language", argv, bench_language(args.docs, args.rounds))
