"""The tokenizer stage round-trips text with any sentencepiece model."""

from pipeline.phases.tokenize.tokenizer import Tokenize, TokenizeConfig
from tests.helpers.documents import docs_table


def test_tokenize_stage_round_trips_text(tokenizer_model):
    stage = Tokenize(TokenizeConfig(model=str(tokenizer_model)))
    stage.setup()
    texts = ["Plain text.", "  leading spaces\n\ttabs and\nnewlines  ", "ünïcödé 日本語 🙂", "x" * 5000]
    kept, _ = stage(docs_table(texts))
    for text, ids in zip(texts, kept.column("tokens").to_pylist()):
        assert ids[-1] == stage.eos_id
        assert stage.tokenizer.decode(ids[:-1]) == text
    assert kept.column("num_tokens").to_pylist() == [len(t) for t in kept.column("tokens").to_pylist()]
