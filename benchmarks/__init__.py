"""Refinery's benchmarks: a stage, a phase or the whole job on a generated corpus of a given
size, run from the repository root:

    python -m benchmarks <name> [options]      # python -m benchmarks <name> --help: its options
    python -m benchmarks list                  # the names

Each prints its figures and writes JSON to benchmarks/results/<name>.json. Comparisons are
ratios measured in the same run (ours vs the raw library or a naive single-process
approach); repeated measurements report the median. Figures and the commands behind them:
benchmarks/RESULTS.md.
"""

# name -> ("module:function", what it measures). The function takes the arguments after the
# name. Modules are imported only when run: datatrove_compare's datatrove side and
# trainer_readers run in their own venvs, without Refinery's dependencies.
BENCHMARKS: dict[str, tuple[str, str]] = {
    "job": ("benchmarks.job:main", "the whole job at each size (--docs 5000,20000); cost growth"),
    "near_dedup": ("benchmarks.near_dedup:main", "the dedup phase at each size: wall time, peak RSS, growth"),
    "pack": ("benchmarks.pack:main", "tokenize + mix + pack vs raw sentencepiece; peak RSS as the input grows"),
    "pii": ("benchmarks.pii:main", "the PII stage vs naive per-document Presidio; span parity"),
    "contamination": ("benchmarks.contamination:main", "contamination index build; scan vs normalize + hash"),
    "contamination-quality": (
        "benchmarks.contamination_quality:main",
        "contamination false positives on 15k clean real documents; recall of planted items per form",
    ),
    "exact_dedup": ("benchmarks.exact_dedup:main", "exact-dedup key hashing; global Ray dedup vs a dict"),
    "minhash": ("benchmarks.minhash:main", "MinHash signatures vs a datasketch update_batch loop"),
    "language": ("benchmarks.language:main", "language ID vs raw fastText predict; accuracy"),
    "perplexity": ("benchmarks.perplexity:main", "the perplexity stage vs a raw sentencepiece + kenlm loop"),
    "quality": ("benchmarks.quality:main", "the heuristic quality rules, every family on"),
    "sft": (
        "benchmarks.sft:main",
        "chat template render + tokenize + loss mask (+ pack) vs raw tokenizers encode_batch",
    ),
    "sft-job": (
        "benchmarks.sft_job:main",
        "a whole chat job (--conversations 100000,1000000): conversations/s per core, peak RSS growth",
    ),
    "generation": (
        "benchmarks.generation:main",
        "generation requests/s through one real server: the generate phase's Sender vs an asyncio openai loop",
    ),
    "report-page": (
        "benchmarks.report_page:main",
        "refinery report on an existing output: seconds, peak RSS and size of report.html",
    ),
    "word_lists": ("benchmarks.word_lists:main", "the word lists stage (10,000 entries) vs a naive re alternation"),
    "url_blocklist": (
        "benchmarks.url_blocklist:main",
        "URL blocklist: 5M-domain compile, workers sharing the mapped lists, lookups vs a Python set",
    ),
    "classifier": (
        "benchmarks.classifier:main",
        "train-classifier's held-out AUC on real text; the classifier stage vs raw fastText predict (1 and 3 models)",
    ),
    "datatrove_compare": (
        "benchmarks.datatrove_compare:main",
        "near dedup: datatrove's MinHash pipeline vs Refinery (installs benchmarks/.venv-datatrove)",
    ),
    "datatrove_job": (
        "benchmarks.datatrove_job:main",
        "a whole documents job (LID, Gopher, C4, FineWeb, MinHash, Parquet out): datatrove vs Refinery",
    ),
    "trainer_readers": (
        "benchmarks.trainer_readers:main",
        "token shards read by Megatron's and datatrove's readers (run with benchmarks/.venv-trainers/bin/python)",
    ),
}
