"""``refinery train-tokenizer`` reads its corpus as ``refinery run`` reads input: Parquet or
JSON lines by content, the text by column or dotted path."""

import gzip
import json

import pyarrow.parquet as pq
import sentencepiece as spm

from pipeline.cli import main
from pipeline.tools.train_tokenizer import sample_texts, train_tokenizer


def test_a_json_lines_corpus_samples_the_same_texts_as_its_parquet_twin(sample_corpus, tmp_path):
    """Mutation that fails it: sample_texts lists only .parquet files (no JSON lines found)."""
    corpus = tmp_path / "jsonl"
    corpus.mkdir()
    for shard in sorted(sample_corpus.glob("*.parquet")):
        lines = [json.dumps({"content": {"body": r["text"]}}) for r in pq.read_table(shard).to_pylist()]
        (corpus / (shard.stem + ".jsonl.gz")).write_bytes(gzip.compress("\n".join(lines).encode()))
    from_jsonl = sample_texts(str(corpus), text_column="content.body", max_documents=300, seed=4)
    assert from_jsonl == sample_texts(str(sample_corpus), max_documents=300, seed=4)
    model = tmp_path / "t.model"
    train_tokenizer(str(corpus), str(model), vocab_size=500, text_column="content.body", max_documents=300)
    processor = spm.SentencePieceProcessor(model_file=str(model))
    assert all(processor.decode(processor.encode(text)) == text for text in from_jsonl[:50])


def test_an_unreadable_corpus_file_is_one_error_line_naming_it(sample_corpus, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.parquet").write_bytes(
        (sample_corpus / sorted(p.name for p in sample_corpus.glob("*.parquet"))[0]).read_bytes()
    )
    (corpus / "b.parquet").write_bytes(b"PAR1 not parquet at all")
    assert main(["train-tokenizer", str(corpus), str(tmp_path / "t.model"), "--vocab-size", "300"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {corpus / 'b.parquet'}: unreadable_parquet: "), err
