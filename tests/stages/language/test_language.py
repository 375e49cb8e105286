"""Language ID: the stage adds exactly what fastText's own predict says, keeps and rejects
by the spec, and loads models from any URI."""

import fasttext
import pyarrow as pa
import pytest

from pipeline.core import columns as cols
from pipeline.stages.language import LANG, LANG_SCORE, LanguageConfig, LanguageId, bundled_model, prepare_text
from pipeline.tools.sample import build_sample_documents
from tests.helpers import SHARED_DATA


def _docs(texts: list[str]) -> pa.Table:
    return pa.table({cols.TEXT: texts})


def _stage(**config) -> LanguageId:
    stage = LanguageId(LanguageConfig(**config))
    stage.setup()
    return stage


def test_labels_and_scores_equal_a_direct_predict():
    rows, _ = build_sample_documents(400, seed=2)
    texts = [r["text"] for r in rows if r["text"].strip()]
    texts += ["line one\nline two\r\nline three", "Ein Satz auf Deutsch.\n\nUnd noch einer.", "x" * 300_000]
    stage = _stage(max_chars=1000)
    out = stage.process(_docs(texts)).table
    raw = fasttext.load_model(bundled_model())
    labels, scores = raw.predict(prepare_text(pa.array(texts), 1000), k=1)
    assert out.column(LANG).to_pylist() == [label[0].removeprefix("__label__") for label in labels]
    assert out.column(LANG_SCORE).to_pylist() == [float(s[0]) for s in scores]


def test_prepared_text_is_one_line_and_bounded():
    prepared = prepare_text(pa.array(["a\nb\r\n\nc", "é" * 50]), 10)
    assert prepared == ["a b\r  c", "é" * 10]
    assert prepare_text(pa.array(["short\ntext"]), 100) == ["short text"]


def test_keep_list_and_min_score_reject_with_reasons():
    texts = [
        "The committee published its annual report on regional water supplies today.",
        "Le comité a publié aujourd'hui son rapport annuel sur l'approvisionnement en eau.",
        "zzkq vvx",
    ]
    only_annotate = _stage().process(_docs(texts))
    assert only_annotate.reject_reasons is None
    assert only_annotate.table.column(LANG).to_pylist()[:2] == ["en", "fr"]
    out = _stage(keep=["en"], min_score=0.5).process(_docs(texts))
    assert out.reject_reasons.to_pylist() == [None, "language_not_kept", "language_low_score"]
    assert _stage(min_score=0.5).process(_docs(texts)).reject_reasons.to_pylist() == [None, None, "language_low_score"]
    assert _stage(keep=["fr"]).process(_docs(texts)).reject_reasons.to_pylist() == [
        "language_not_kept",
        None,
        "language_not_kept",
    ]
    # The reference for the third: fastText's own predict on the same prepared line.
    raw = fasttext.load_model(bundled_model())
    labels, scores = raw.predict(prepare_text(pa.array(texts[2:]), 100_000), k=1)
    assert labels[0] == ["__label__en"] and scores[0][0] < 0.5


def test_model_loads_from_s3(s3, s3_endpoint):
    s3.mkdir("models")
    s3.put(bundled_model(), "models/lid.176.ftz")
    stage = _stage(model="s3://models/lid.176.ftz", storage_options={"endpoint_url": s3_endpoint})
    out = stage.process(_docs(["Guten Morgen, wie geht es Ihnen heute?"])).table
    assert out.column(LANG).to_pylist() == ["de"]


def test_spec_rejects_a_file_that_is_not_a_fasttext_model(make_job, sample_corpus, tmp_path):
    """Garbage at stages.language.model fails when the spec is loaded, by key; the bundled
    lid.176.ftz copied elsewhere passes. Mutation that fails it: LanguageConfig.open_file
    does nothing."""
    from pipeline.config import JobSpecError, load_job_spec

    garbage = tmp_path / "lid.bin"
    garbage.write_bytes(b"<html>404 Not Found</html>\n" * 10)
    job = make_job(sample_corpus, tmp_path / "o", stages={"language": {"model": str(garbage)}})
    with pytest.raises(JobSpecError, match=rf"stages.language.model: '{garbage}' is not a fastText model"):
        load_job_spec(job)
    copy = tmp_path / "lid.176.ftz"
    copy.write_bytes(open(bundled_model(), "rb").read())
    job["stages"]["language"]["model"] = str(copy)
    assert load_job_spec(job).stages.language.model == str(copy)


@pytest.mark.skipif(not (SHARED_DATA / "lingua_sentences").is_dir(), reason="../shared/data/lingua_sentences absent")
def test_accuracy_on_lingua_sentences_for_major_languages():
    stage = _stage()
    for lang in ("en", "de", "fr", "es", "ru", "zh", "ar", "ja"):
        sentences = (SHARED_DATA / "lingua_sentences" / f"{lang}.txt").read_text().splitlines()[:300]
        labels = stage.process(_docs(sentences)).table.column(LANG).to_pylist()
        accuracy = sum(label == lang for label in labels) / len(labels)
        assert accuracy >= 0.9, (lang, accuracy)
