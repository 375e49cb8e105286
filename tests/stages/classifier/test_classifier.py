"""The classifier stage: scores equal fastText's own predict on the same prepared text,
columns and decisions by the spec, domain routing, and errors at validate."""

from pathlib import Path

import fasttext
import numpy as np
import pyarrow as pa
import pyarrow.parquet
import pytest

from pipeline.config import JobSpecError, load_job_spec
from pipeline.core import columns as cols
from pipeline.stages.classifier import ClassifierConfig, Classifiers, TextPreparation, prepare_texts
from pipeline.tools.sample import build_sample_documents
from tests.helpers import SHARED_DATA


def _stage(*entries, **config) -> Classifiers:
    stage = Classifiers(ClassifierConfig(enabled=True, classifiers=list(entries), **config))
    stage.setup()
    return stage


def _direct(model, texts: list[str], label: str) -> list[float]:
    """One predict call per text, every label, as a user scoring documents by hand would."""
    scores = []
    for text in texts:
        labels, probs = model.predict([text], k=-1)
        scores.append(float(dict(zip(labels[0], probs[0].tolist())).get(label, 0.0)))
    return scores


@pytest.fixture(scope="module")
def texts() -> list[str]:
    rows, _ = build_sample_documents(600, seed=11)
    return [r["text"] for r in rows] + ["", "one line\r\nand\x0banother\u2028third\n\n", "É" * 5000]


@pytest.mark.parametrize(
    "prepare",
    [
        {},
        {"newlines": "join_lines"},
        {"lowercase": True, "max_chars": 300},
        {"newlines": "join_lines", "lowercase": True},
    ],
)
def test_scores_equal_a_direct_predict_on_the_prepared_text(quality_model, texts, prepare):
    stage = _stage({"name": "q", "model": quality_model, "label": "hq", "prepare": prepare})
    out = stage.process(pa.table({cols.TEXT: texts})).table
    prepared = prepare_texts(pa.array(texts), TextPreparation(**prepare))
    direct = _direct(fasttext.load_model(quality_model), prepared, "__label__hq")
    assert out.column("classifier_q").to_pylist() == pytest.approx(direct, abs=0, rel=0)
    assert len(set(direct)) > 100  # a real spread of scores, not a constant


def test_text_preparation_follows_each_recipe():
    text = pa.array(["  Line one\r\nline TWO\n\nÉtat\u2028end  "])
    assert prepare_texts(text, TextPreparation()) == ["  Line one\r line TWO  État\u2028end  "]
    # DCLM's " ".join(text.strip().splitlines())
    assert prepare_texts(text, TextPreparation(newlines="join_lines")) == ["Line one line TWO  État end"]
    assert prepare_texts(text, TextPreparation(lowercase=True, max_chars=13)) == ["  line one\r l"]


def test_top_label_and_all_labels_columns_are_predicts(topic_model, texts):
    stage = _stage({"name": "topic", "model": topic_model, "outputs": ["top_label", "all_labels"]})
    out = stage.process(pa.table({cols.TEXT: texts})).table
    model = fasttext.load_model(topic_model)
    labels, probs = model.predict(prepare_texts(pa.array(texts), TextPreparation()), k=-1)
    assert out.column("classifier_topic_label").to_pylist() == [names[0].removeprefix("__label__") for names in labels]
    assert out.column("classifier_topic_label_score").to_pylist() == [float(p[0]) for p in probs]
    maps = out.column("classifier_topic_labels").to_pylist()
    assert [dict(m) for m in maps] == [
        {n.removeprefix("__label__"): float(v) for n, v in zip(names, p)} for names, p in zip(labels, probs)
    ]
    assert {label for m in maps for label, _ in m} == {"code", "docs", "web"}
    assert "classifier_topic" not in out.column_names  # no label: no score column


def test_thresholds_reject_with_named_reasons(quality_model, texts):
    table = pa.table({cols.TEXT: texts})
    scores = np.array(_stage({"name": "q", "model": quality_model, "label": "hq"}).process(table).table["classifier_q"])
    low, high = np.quantile(scores, [0.25, 0.75])
    stage = _stage({"name": "q", "model": quality_model, "label": "hq", "min_score": low, "max_score": high})
    kept, rejected = stage(table)
    reasons = rejected.column(cols.REJECT_REASON).to_pylist()
    assert reasons.count("classifier_q_below") == int(np.sum(scores < np.float32(low)))
    assert reasons.count("classifier_q_above") == int(np.sum(scores > np.float32(high)))
    assert set(rejected.column(cols.REJECT_STAGE).to_pylist()) == {"classifier"}
    kept_scores = np.array(kept["classifier_q"])
    assert kept.num_rows + rejected.num_rows == len(texts)
    assert kept_scores.min() >= np.float32(low) and kept_scores.max() <= np.float32(high)
    # annotate only: the same scores, nothing rejected
    _, none = _stage({"name": "q", "model": quality_model, "label": "hq"})(table)
    assert none.num_rows == 0


def test_languages_limit_what_is_scored(quality_model):
    table = pa.table({cols.TEXT: ["a b c", "d e f", "g h i"], cols.LANG: ["en", "de", None]})
    stage = _stage({"name": "q", "model": quality_model, "label": "hq", "languages": ["en"], "min_score": 1.0})
    out = stage.process(table)
    assert [s is not None for s in out.table.column("classifier_q").to_pylist()] == [True, False, False]
    assert out.reject_reasons.to_pylist() == ["classifier_q_below", None, None]


def test_route_sets_the_domain_from_the_top_label(topic_model):
    rows, _ = build_sample_documents(400, seed=12)
    table = pa.table({cols.TEXT: [r["text"] for r in rows]})
    stage = _stage({"name": "topic", "model": topic_model, "route": {"labels": {"code": "code"}, "min_score": 0.4}})
    out = stage.process(table).table
    labels, probs = fasttext.load_model(topic_model).predict(prepare_texts(table[cols.TEXT], TextPreparation()), k=1)
    expected = ["code" if names[0] == "__label__code" and p[0] >= 0.4 else None for names, p in zip(labels, probs)]
    assert out.column(cols.ROUTED_DOMAIN).to_pylist() == expected
    routed = [r["domain"] for r, d in zip(rows, expected) if d == "code"]
    assert len(routed) > 20 and routed.count("code") / len(routed) > 0.8  # it routes code, mostly
    assert stage.count_kept(out)["routed:code"] == len(routed)


def _spec(classifier: dict, **stages) -> dict:
    return {
        "name": "t",
        "input": {"uri": "in"},
        "output": {"uri": "out", "kind": "documents"},
        "stages": {"classifier": {"enabled": True, **classifier}, **stages},
    }


def _errors(spec: dict, check_files: bool = False) -> str:
    with pytest.raises(JobSpecError) as error:
        load_job_spec(spec, check_files=check_files)
    return str(error.value)


@pytest.mark.parametrize("percentile", [0, 100, 101, -5])
def test_a_percentile_outside_0_100_names_its_key(percentile):
    entry = {"name": "q", "model": "m.bin", "label": "hq", "min_percentile": percentile}
    assert "stages.classifier.classifiers.0.min_percentile" in _errors(_spec({"classifiers": [entry]}))


def test_inconsistent_entries_are_errors():
    both = {"name": "q", "model": "m.bin", "label": "hq", "min_score": 0.5, "min_percentile": 90}
    assert "min_score or min_percentile" in _errors(_spec({"classifiers": [both]}))
    no_label = {"name": "q", "model": "m.bin", "min_score": 0.5}
    assert "needs label" in _errors(_spec({"classifiers": [no_label]}))
    twice = [{"name": "q", "model": "m.bin"}, {"name": "q", "model": "n.bin"}]
    assert "repeated: q" in _errors(_spec({"classifiers": twice}))
    assert "stages.classifier.classifiers.0.name" in _errors(
        _spec({"classifiers": [{"name": "Bad-Name", "model": "m"}]})
    )
    assert "stages.classifier.classifiers: name at least one" in _errors(_spec({}))
    langs = {"name": "q", "model": "m.bin", "languages": ["en"]}
    assert "needs stages.language enabled" in _errors(_spec({"classifiers": [langs]}, language={"enabled": False}))
    assert "stages.classifier.classifiers.0.prepare.newline" in _errors(
        _spec({"classifiers": [{"name": "q", "model": "m.bin", "prepare": {"newline": "space"}}]})
    )


def test_a_route_to_a_domain_without_weight_is_an_error():
    entry = {"name": "topic", "model": "m.bin", "route": {"labels": {"__label__code": "code"}}}
    message = _errors(_spec({"classifiers": [entry]}, mix={"weights": {"web": 1.0, "other": 1.0}}))
    assert "stages.classifier.classifiers.0.route.labels.__label__code: domain 'code' has no weight" in message


def test_model_files_are_checked_at_validate(quality_model, tmp_path):
    (tmp_path / "in").mkdir()
    pa.parquet.write_table(pa.table({"text": ["x"]}), tmp_path / "in" / "a.parquet")
    not_fasttext = tmp_path / "model.bin"
    not_fasttext.write_bytes(b"\x00" * 64)
    spec = _spec({"classifiers": [{"name": "q", "model": str(not_fasttext)}]})
    spec["input"]["uri"] = str(tmp_path / "in")
    assert "stages.classifier.classifiers.0.model: " in _errors(spec, check_files=True)
    assert "is not a fastText model" in _errors(spec, check_files=True)
    spec["stages"]["classifier"]["classifiers"] = [{"name": "q", "model": str(tmp_path / "missing.bin")}]
    assert "file not found" in _errors(spec, check_files=True)
    spec["stages"]["classifier"]["classifiers"] = [
        {"name": "q", "model": quality_model, "label": "__label__good"},
        {"name": "r", "model": quality_model, "route": {"labels": {"spam": "web"}}},
    ]
    message = _errors(spec, check_files=True)
    assert (
        "stages.classifier.classifiers.0.model: the model has no label '__label__good'; its labels: __label__hq, __label__cc"
        in message
        or (
            "stages.classifier.classifiers.0.model: the model has no label '__label__good'; its labels: __label__cc, __label__hq"
            in message
        )
    )
    assert "stages.classifier.classifiers.1.model: the model has no label 'spam'" in message
    spec["stages"]["classifier"]["classifiers"] = [{"name": "q", "model": quality_model, "label": "hq"}]
    assert load_job_spec(spec, check_files=True).stages.classifier.classifiers[0].label == "hq"


def test_scores_equal_raw_fasttext_on_a_real_corpus(quality_model):
    """Every Wikipedia paragraph of WikiText-2 and every line of NLTK's web text."""
    if not (SHARED_DATA / "wikitext2").is_dir():
        pytest.skip(f"real text not found at {SHARED_DATA}")
    from benchmarks.web_like import _webtext_lines, _wikitext_paragraphs

    texts = _wikitext_paragraphs(SHARED_DATA) + _webtext_lines(SHARED_DATA)
    stage = _stage({"name": "q", "model": quality_model, "label": "hq", "prepare": {"newlines": "join_lines"}})
    scores = []
    for start in range(0, len(texts), 1024):
        batch = pa.table({cols.TEXT: texts[start : start + 1024]})
        scores += stage.process(batch).table.column("classifier_q").to_pylist()
    prepared = prepare_texts(pa.array(texts), TextPreparation(newlines="join_lines"))
    assert scores == _direct(fasttext.load_model(quality_model), prepared, "__label__hq")
    assert len(scores) > 20_000


def test_a_quantized_model_on_s3_scores_as_the_local_file(quality_model, domain_corpora, s3, s3_endpoint, tmp_path):
    from pipeline.tools.train_classifier import TrainingOptions, train_classifier

    quantized = tmp_path / "quality.ftz"
    corpora = {"hq": [str(domain_corpora["docs"])], "cc": [str(domain_corpora["web"])]}
    train_classifier(corpora, str(quantized), TrainingOptions(dim=32, bucket=20_000, per_label=2_000, quantize=True))
    s3.mkdir("classifier-models")  # a bucket of its own: the S3 server lives for the whole session
    s3.put(str(quantized), "classifier-models/quality.ftz")
    texts = [r["text"] for r in build_sample_documents(200, seed=13)[0]]
    remote = _stage(
        {"name": "q", "model": "s3://classifier-models/quality.ftz", "label": "hq"},
        storage_options={"endpoint_url": s3_endpoint},
    )
    local = _stage({"name": "q", "model": str(quantized), "label": "hq"})
    scores = remote.process(pa.table({cols.TEXT: texts})).table.column("classifier_q").to_pylist()
    assert scores == local.process(pa.table({cols.TEXT: texts})).table.column("classifier_q").to_pylist()
    assert scores == _direct(
        fasttext.load_model(str(quantized)), prepare_texts(pa.array(texts), TextPreparation()), "__label__hq"
    )
    assert quantized.stat().st_size < Path(quality_model).stat().st_size


def test_a_threshold_scores_its_label_whatever_the_outputs(quality_model, texts):
    """With only the top label written, the score of a label that is not on top is still its
    probability, not 0."""
    table = pa.table({cols.TEXT: texts})
    with_score = _stage({"name": "q", "model": quality_model, "label": "cc", "min_score": 0.4})
    top_only = _stage({"name": "q", "model": quality_model, "label": "cc", "min_score": 0.4, "outputs": ["top_label"]})
    assert with_score.process(table).reject_reasons.to_pylist() == top_only.process(table).reject_reasons.to_pylist()
    assert with_score.take_stats() == top_only.take_stats()


def test_a_percentile_cut_needs_the_score_column():
    entry = {"name": "q", "model": "m.bin", "label": "hq", "min_percentile": 90, "outputs": ["top_label"]}
    assert "a percentile cut reads the score column" in _errors(_spec({"classifiers": [entry]}))
