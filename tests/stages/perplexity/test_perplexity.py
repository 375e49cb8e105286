"""CCNet-style perplexity: CCNet's normalization, per-line KenLM scores, and exactly the
number a direct kenlm computation gives on the same normalized text."""

import math
from pathlib import Path

import kenlm
import pyarrow as pa
import pytest
import sentencepiece as spm

from pipeline.config import JobSpecError, load_job_spec
from pipeline.core import columns as cols
from pipeline.stages.language import LANG
from pipeline.stages.perplexity import PERPLEXITY, Perplexity, PerplexityConfig, ccnet_normalize, normalize_lines
from pipeline.tools.sample import build_sample_documents
from pipeline.tools.train_lm import train_arpa

EDGE_LINES = [
    "  Café Zürich — 1999 “quotes” «guillemets» …  ",
    "ΟΔΟΣ ΣΑΣ",
    "İstanbul ß ﬁ",
    "\x1c\tcontrol\x07 chars\x85 ",
    "Ｆｕｌｌ　ｗｉｄｔｈ １２３ ，。！？（）",
    "٣ arabic digit ٤٥",
    "",
    "   ",
    "naïve résumé — ✓ ► 【x】",
]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    rows, _ = build_sample_documents(300, seed=4)
    return [r["text"] for r in rows if r["text"].strip()]


@pytest.fixture(scope="module")
def lm_pair(texts, tokenizer_model, tmp_path_factory):
    """A 3-gram model trained on normalized, tokenized sample text."""
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    lines = [ccnet_normalize(line) for t in texts for line in t.split("\n")]
    arpa = tmp_path_factory.mktemp("lm") / "en.arpa"
    train_arpa((sp.encode(line, out_type=str) for line in lines if line), arpa, order=3)
    return str(arpa), str(tokenizer_model)


def _stage(lm_pair, **config) -> Perplexity:
    lm, sp = lm_pair
    stage = Perplexity(PerplexityConfig(enabled=True, models={"en": {"lm": lm, "sp": sp}}, **config))
    stage.setup()
    return stage


def _direct(text: str, lm: kenlm.Model, sp: spm.SentencePieceProcessor, per_line: bool = True) -> float:
    total, length = 0.0, 0
    for line in text.split("\n") if per_line else [text]:
        line = ccnet_normalize(line)
        if line:
            pieces = sp.encode(line, out_type=str)
            total += lm.score(" ".join(pieces))
            length += len(pieces) + 1
    return 10 ** (-total / length) if length else math.nan


def test_vectorized_normalization_equals_ccnet(texts):
    lines = [line for t in texts for line in t.split("\n")] + EDGE_LINES
    assert normalize_lines(lines).to_pylist() == [ccnet_normalize(line) for line in lines]
    assert ccnet_normalize("  Café 1999 “x” —  ") == 'cafe 0000 "x"  - '


# One case per step of CCNet's text_normalizer.normalize (defaults: accent, case, numbers,
# punct=1), each written out by hand from what that step does.
CCNET_CASES = [
    ("   \t  ", ""),  # strip, then an empty line stays empty
    ("MiXeD CASE Ünïcödé", "mixed case unicode"),  # lower case, then Mn marks removed after NFD
    ("ﬁ ligature stays", "ﬁ ligature stays"),  # NFD is not NFKC: compatibility forms stay
    ("क्षत्रिय", "कषतरिय"),  # virama (Mn) removed; the vowel sign ि is Mc and stays
    ("2024 ٣٤ ५६ ²", "0000 00 00 ²"),  # every decimal digit (Nd) is 0; superscripts are not Nd
    # Digits go first, so CCNet's table entry for the full-width one never applies.
    ("a，b。c、d„e”f“g«h»i１j」k「l《m》n", 'a,b.c,d"e"f"g"h"i0j"k"l"m"n'),
    ("a´b∶c：d？e！f（g）h；i", "a'b:c:d?e!f(g)h;i"),
    ("a–b—c．d～e’f…g━h〈i〉j【k】l％m►n", "a-b - c. d~e'f...g-h<i>j[k]l%m-n"),
    ("tab\there\x07bell\x1fus\x7fdel\x85nel\x9fapc", "tabherebellusdelnelapc"),  # C0, DEL, C1 removed
    ("\u00a0nbsp and \u200b zero width", "nbsp and \u200b zero width"),  # strip takes NBSP; ZWSP is no control
]


@pytest.mark.parametrize(("line", "normalized"), CCNET_CASES)
def test_ccnet_normalization_step_by_step(line, normalized):
    assert ccnet_normalize(line) == normalized
    assert normalize_lines([line]).to_pylist() == [normalized]


@pytest.mark.parametrize("per_line", [True, False])
def test_stage_equals_direct_kenlm(texts, lm_pair, per_line):
    docs = pa.table({cols.TEXT: texts + ["Zeile eins\n\nZeile zwei"], LANG: ["en"] * (len(texts) + 1)})
    got = _stage(lm_pair, per_line=per_line).process(docs).table.column(PERPLEXITY).to_pylist()
    lm, sp = kenlm.Model(lm_pair[0]), spm.SentencePieceProcessor(model_file=lm_pair[1])
    for text, value in zip(docs.column(cols.TEXT).to_pylist(), got):
        assert value == pytest.approx(_direct(text, lm, sp, per_line), rel=1e-6)
    assert len(set(got)) > len(got) // 2  # real, varied scores


def test_other_languages_get_null_and_max_perplexity_rejects(texts, lm_pair):
    docs = pa.table(
        {cols.TEXT: texts[:3] + ["Ein deutscher Satz.", "\x07\x08\n \t \x1f"], LANG: ["en"] * 3 + ["de", "en"]}
    )
    out = _stage(lm_pair).process(docs)
    values = out.table.column(PERPLEXITY).to_pylist()
    assert values[3] is None and values[4] is None  # no model for de; nothing scorable after normalization
    assert out.reject_reasons is None
    limit = sorted(values[:3])[1]
    reasons = _stage(lm_pair, max_perplexity=limit).process(docs).reject_reasons.to_pylist()
    assert reasons == [None if v <= limit else "perplexity_above_max" for v in values[:3]] + [None, None]


def test_spec_requires_models_and_language(make_job, sample_corpus, tmp_path, lm_pair):
    with pytest.raises(JobSpecError, match="stages.perplexity.models"):
        load_job_spec(make_job(sample_corpus, tmp_path / "o", stages={"perplexity": {"enabled": True}}))
    pair = {"en": {"lm": lm_pair[0], "sp": lm_pair[1]}}
    with pytest.raises(JobSpecError, match="needs stages.language"):
        load_job_spec(
            make_job(
                sample_corpus,
                tmp_path / "o",
                stages={"perplexity": {"enabled": True, "models": pair}, "language": {"enabled": False}},
            )
        )
    with pytest.raises(JobSpecError, match=r"stages.perplexity.models.en.lm: file not found"):
        load_job_spec(
            make_job(
                sample_corpus,
                tmp_path / "o",
                stages={"perplexity": {"enabled": True, "models": {"en": {"lm": "missing.arpa", "sp": lm_pair[1]}}}},
            )
        )


def test_spec_opens_the_models_it_names(make_job, sample_corpus, tmp_path, lm_pair):
    """A file that is not a KenLM model or not a sentencepiece model fails when the spec is
    loaded, by key; an ARPA file gzipped is accepted (KenLM reads it, checked here). Mutation
    that fails it: PerplexityConfig.open_file does nothing."""
    import gzip

    from pipeline.stages.perplexity.stage import _native_stderr_silenced

    lm, sp = lm_pair
    garbage = tmp_path / "garbage.arpa.bin"
    garbage.write_bytes(b"PK\x03\x04 a zip file, not a language model" * 20)

    def spec(lm_file, sp_file):
        models = {"en": {"lm": str(lm_file), "sp": str(sp_file)}}
        return make_job(sample_corpus, tmp_path / "o", stages={"perplexity": {"enabled": True, "models": models}})

    with pytest.raises(JobSpecError) as error:
        load_job_spec(spec(garbage, garbage))
    message = str(error.value)
    assert f"stages.perplexity.models.en.lm: '{garbage}' is neither a KenLM binary nor an ARPA file" in message
    assert f"stages.perplexity.models.en.sp: '{garbage}' is not a sentencepiece model" in message
    zipped = tmp_path / "en.arpa.gz"
    zipped.write_bytes(gzip.compress(Path(lm).read_bytes()))
    load_job_spec(spec(zipped, sp))
    with _native_stderr_silenced():
        assert kenlm.Model(str(zipped)).order == 3


def test_bucket_cut_points_are_within_one_percent_rank_and_independent_of_blocks():
    import numpy as np

    from pipeline.core.annotated import NODE
    from pipeline.core.sketch import log_bucket_base, percentile_values
    from pipeline.stages.perplexity.buckets import bucket_counts

    rng = np.random.default_rng(5)
    values = {"en": rng.lognormal(5.5, 0.6, 120_000), "de": rng.lognormal(6.5, 0.9, 30_000)}
    gamma = log_bucket_base(0.001)

    def cutoffs(pieces: int):
        rows = []
        for lang, v in values.items():
            for part in np.array_split(v, pieces):  # one block per part, merged afterwards
                block = pa.table({NODE: np.arange(len(part)), LANG: [lang] * len(part), PERPLEXITY: part})
                rows += bucket_counts(block, gamma, first_new=0, skip=[]).to_pylist()
        return percentile_values(rows, gamma, (30.0, 60.0))

    merged = cutoffs(13)
    assert merged == cutoffs(1) == cutoffs(7)  # exact counts: the same cut points however split
    for lang, v in values.items():
        for cut, percentile in zip(merged[lang], (30, 60)):
            assert abs(np.mean(v < cut) - percentile / 100) <= 0.01
            assert abs(cut / np.percentile(v, percentile) - 1) <= 0.002


def bucketing_job(make_job, lm_pair, texts, tmp_path, **sections):
    """The texts as one Parquet shard, and a job that buckets them by perplexity (head and
    middle kept)."""
    import pyarrow.parquet as pq

    corpus = tmp_path / "in"
    corpus.mkdir()
    pq.write_table(pa.table({"id": [f"a{i}" for i in range(len(texts))], "text": texts}), corpus / "a.parquet")
    perplexity = {
        "enabled": True,
        "models": {"en": {"lm": lm_pair[0], "sp": lm_pair[1]}},
        "keep_buckets": ["head", "middle"],
    }
    return corpus, make_job(corpus, tmp_path / "out", stages={"perplexity": perplexity}, **sections)


def test_job_buckets_perplexity_and_keeps_cut_points_on_refresh(make_job, lm_pair, texts, tmp_path):
    import json

    import pyarrow.parquet as pq

    from pipeline import run_job
    from pipeline.core.progress import Progress

    corpus, spec = bucketing_job(make_job, lm_pair, texts, tmp_path)
    spec["stages"]["mix"] = {"synthetic_domains": ["other"]}  # every document: the report profiles them
    first = run_job(spec, progress=Progress(quiet=True))
    # documents the dedup phase drops by perplexity are not duplicates
    profiled = first.report["mixture"]["synthetic_vs_real"]["sides"]["synthetic"]
    assert profiled["domains"] == ["other"] and "perplexity" not in profiled["duplicates_removed"]
    cutoffs = first.report["perplexity_buckets"]["cutoffs"]
    assert list(cutoffs) == ["en"] and cutoffs["en"][0] < cutoffs["en"][1]
    tail = first.report["rejected"]["perplexity"]["perplexity_tail"]
    english = first.report["languages_after_annotate"]["en"]
    assert abs(tail / english - 0.4) < 0.05
    assert "## Perplexity buckets" in (tmp_path / "out" / "report.md").read_text()

    pq.write_table(
        pa.table({"id": ["b0", "b1"], "text": [texts[0] + " extra", "Another new English document."]}),
        corpus / "b.parquet",
    )
    second = run_job(spec, progress=Progress(quiet=True))
    assert second.report["perplexity_buckets"]["cutoffs"] == cutoffs
    index = json.loads((tmp_path / "out" / "index" / "_INDEX.json").read_text())
    assert index["stage_state"]["perplexity"]["cutoffs"] == cutoffs


def test_train_lm_cli_writes_a_pair_the_stage_loads(sample_corpus, tmp_path, capsys):
    from pipeline.cli import main

    assert (
        main(
            [
                "train-lm",
                str(sample_corpus),
                str(tmp_path / "models"),
                "--lang",
                "en",
                "--order",
                "4",
                "--vocab-size",
                "600",
            ]
        )
        == 0
    )
    assert "stages.perplexity.models.en" in capsys.readouterr().out
    pair = (str(tmp_path / "models" / "en.arpa"), str(tmp_path / "models" / "en.sp.model"))
    assert kenlm.Model(pair[0]).order == 4
    prose = "The committee met on Tuesday and agreed on the budget for the next year."
    shuffled = "budget Tuesday the year on met next and the for committee agreed on The."
    values = _stage(pair).process(pa.table({cols.TEXT: [prose, shuffled], LANG: ["en", "en"]})).table
    ordered, scrambled = values.column(PERPLEXITY).to_pylist()
    assert ordered < scrambled


def test_retrained_models_invalidate_annotation_and_packing(
    make_job, sample_corpus, lm_pair, tokenizer_model, tmp_path
):
    import shutil

    from pipeline.phases.annotate.phase import annotate_config_hash

    lm, sp, tokenizer = (
        str(shutil.copy(source, tmp_path / name))
        for source, name in ((lm_pair[0], "en.arpa"), (lm_pair[1], "en.sp.model"), (tokenizer_model, "tok.model"))
    )
    spec_dict = make_job(
        sample_corpus,
        tmp_path / "o",
        stages={
            "perplexity": {"enabled": True, "models": {"en": {"lm": lm, "sp": sp}}},
            "tokenize": {"model": tokenizer},
        },
    )
    spec = load_job_spec(spec_dict)
    before = annotate_config_hash(spec), spec.config_hash()
    with open(lm, "a") as f:
        f.write("\n")  # retrained in place: same path, new size and mtime
    after_lm = annotate_config_hash(spec), spec.config_hash()
    with open(tokenizer, "ab") as f:
        f.write(b"\0")
    after_tokenizer = annotate_config_hash(spec), spec.config_hash()
    assert after_lm[0] != before[0] and after_lm[1] != before[1]
    assert after_tokenizer[0] == after_lm[0] and after_tokenizer[1] != after_lm[1]  # the tokenizer only affects pack


def test_documents_output_carries_each_documents_perplexity_and_bucket(make_job, lm_pair, texts, tmp_path):
    import json

    import pyarrow.parquet as pq

    from pipeline import run_job
    from pipeline.core.progress import Progress

    _, spec = bucketing_job(make_job, lm_pair, texts, tmp_path, output={"kind": "documents"})
    del spec["stages"]["tokenize"]
    spec["report"] = {"charts": True}
    result = run_job(spec, progress=Progress(quiet=True))
    head_below, tail_from = result.report["perplexity_buckets"]["cutoffs"]["en"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    documents = pa.concat_tables(
        pq.read_table(tmp_path / "out" / s["files"]["documents"]["path"]) for s in manifest["shards"]
    )
    scored = [
        (b, v)
        for b, v in zip(documents.column("perplexity_bucket").to_pylist(), documents.column("perplexity").to_pylist())
        if v is not None and v == v
    ]
    assert len(scored) > 0.8 * documents.num_rows  # the rest are not English: no model, no bucket
    assert {b for b, _ in scored} == {"head", "middle"}
    assert all((b == "head") == (v < head_below) and v < tail_from for b, v in scored)
    unscored = [
        b
        for b, v in zip(documents.column("perplexity_bucket").to_pylist(), documents.column("perplexity").to_pylist())
        if v is None or v != v
    ]
    assert set(unscored) <= {None}
    # the report's distribution counts every document annotate scored (the tail too), in buckets 10% wide
    distribution = result.report["perplexity_buckets"]["distribution"]["en"]
    removed = sum(result.report["rejected"].get("perplexity", {}).values())
    assert sum(n for _, n in distribution) >= len(scored) + removed > len(scored)
    low, high = min(v for _, v in scored), max(v for _, v in scored)
    assert distribution[0][0] <= low * 1.06 and distribution[-1][0] >= high / 1.06
    page = (tmp_path / "out" / "report.html").read_text()
    assert 'id="chart-perplexity"' in page and (tmp_path / "out" / "report_charts" / "perplexity.svg").exists()
