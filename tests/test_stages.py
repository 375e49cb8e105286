"""Document stages run on plain tables, without Ray."""


import numpy as np
import pyarrow as pa
import pytest

from pipeline import documents as cols
from pipeline.annotated import NODE, node_ids, shard_ordinals
from pipeline.stages.exact_dedup import EXACT_HASH, ExactDedupConfig, ExactDedupKeys, duplicates_in_block
from pipeline.stages.tokenize import Tokenize, TokenizeConfig
from pipeline.stages.validate import InputConfig, InputValidation, ShardRejected


def _validation(**kwargs):
    return InputValidation(InputConfig(uri="unused", id_column="id", **kwargs))


def test_validation_quarantines_rows_and_rejects_empty():
    raw = pa.table({
        "id": ["a", "b", "c", "d", None],
        "text": ["good text", None, "x" * 101, "   \n", "fine"],
    })
    result = _validation(max_document_bytes=100).validate(raw, "file.parquet", "shard-1", first_row=10)
    assert result.docs.column(cols.ID).to_pylist() == ["a"]
    assert result.docs.column(cols.ROW).to_pylist() == [10]
    q = result.quarantined.to_pylist()
    assert [(r[cols.ROW], r[cols.QUARANTINE_REASON]) for r in q] == [
        (11, "null_text"), (12, "document_too_large"), (14, "null_id")]
    assert "101 bytes; input.max_document_bytes is 100" in q[1][cols.QUARANTINE_DETAIL]
    assert all(r[cols.SOURCE_URI] == "file.parquet" for r in q)
    assert result.rejected.column(cols.REJECT_REASON).to_pylist() == ["empty_text"]
    assert result.rejected.column(cols.ROW).to_pylist() == [13]


def test_validation_decodes_binary_and_quarantines_invalid_utf8():
    raw = pa.table({"id": ["a", "b"], "text": pa.array(["héllo".encode(), b"\xff\xfe bad"], pa.binary())})
    result = _validation().validate(raw, "f", "s", 0)
    assert result.docs.column(cols.TEXT).to_pylist() == ["héllo"]
    [bad] = result.quarantined.to_pylist()
    assert bad[cols.QUARANTINE_REASON] == "invalid_utf8" and bad[cols.ROW] == 1
    assert "byte 0" in bad[cols.QUARANTINE_DETAIL]


def test_validation_derives_ids_when_no_id_column():
    validation = InputValidation(InputConfig(uri="unused"))
    result = validation.validate(pa.table({"text": ["a", "b"]}), "f", "shard-x", 5)
    assert result.docs.column(cols.ID).to_pylist() == ["shard-x:5", "shard-x:6"]


def test_schema_check_names_the_problem():
    validation = _validation()
    with pytest.raises(ShardRejected, match="no column 'text'.*set input.text_column"):
        validation.check_schema(pa.schema([("id", pa.string()), ("body", pa.string())]), 3)
    with pytest.raises(ShardRejected, match="has type int64"):
        validation.check_schema(pa.schema([("id", pa.string()), ("text", pa.int64())]), 3)


def _docs(texts):
    n = len(texts)
    return pa.table({
        cols.ID: [f"d{i}" for i in range(n)], cols.TEXT: texts, cols.DOMAIN: pa.nulls(n, pa.string()),
        cols.URL: pa.nulls(n, pa.string()), cols.SHARD: ["s"] * n, cols.ROW: list(range(n)),
        cols.TEXT_BYTES: [len(t.encode()) for t in texts],
    }, schema=cols.BASE_SCHEMA)


def test_exact_hash_ignores_case_and_whitespace_only():
    stage = ExactDedupKeys(ExactDedupConfig())
    stage.setup()
    kept, rejected = stage(_docs(["Hello  World", " hello world\n", "hello, world", "ｈｅｌｌｏ world"]))
    hashes = kept.column(EXACT_HASH).to_pylist()
    assert rejected.num_rows == 0
    assert hashes[0] == hashes[1] == hashes[3]  # NFKC folds full-width letters
    assert hashes[2] != hashes[0]


def _reference_duplicates(rows):
    """Single-process reference: first (shard, row) of each hash survives."""
    survivors, removed = {}, {}
    for shard, row, doc_id, h in sorted(rows, key=lambda r: (r[3], r[0], r[1])):
        if h in survivors:
            removed[(shard, row)] = survivors[h]
        else:
            survivors[h] = doc_id
    return removed


def test_duplicates_in_block_matches_reference():
    rng = np.random.default_rng(3)
    rows = [(f"s{rng.integers(3)}", int(i), f"id{i}", int(rng.integers(40))) for i in range(300)]
    block = pa.table({cols.SHARD: [r[0] for r in rows], cols.ROW: [r[1] for r in rows],
                      cols.ID: [r[2] for r in rows], EXACT_HASH: pa.array([r[3] for r in rows], pa.int64())})
    nodes = node_ids(shard_ordinals(block.column(cols.SHARD), ["s0", "s1", "s2"]), block.column(cols.ROW).to_numpy())
    out = duplicates_in_block(block.append_column(NODE, pa.array(nodes)))
    got = {(r[cols.SHARD], r[cols.ROW]): r[cols.DUPLICATE_OF] for r in out.to_pylist()}
    assert got == _reference_duplicates(rows)
    assert set(out.column(cols.REJECT_REASON).to_pylist()) == {"exact_duplicate"}


def test_tokenize_stage_round_trips_text(tokenizer_model):
    stage = Tokenize(TokenizeConfig(model=str(tokenizer_model)))
    stage.setup()
    texts = ["Plain text.", "  leading spaces\n\ttabs and\nnewlines  ", "ünïcödé 日本語 🙂", "x" * 5000]
    kept, _ = stage(_docs(texts))
    for text, ids in zip(texts, kept.column("tokens").to_pylist()):
        assert ids[-1] == stage.eos_id
        assert stage.processor.Decode(ids[:-1]) == text
    assert kept.column("num_tokens").to_pylist() == [len(t) for t in kept.column("tokens").to_pylist()]


def test_exact_duplicates_across_many_blocks_keep_one_per_hash(ray_local, tmp_path):
    """Rows of one hash can arrive in many blocks; the sort must bring them together."""
    import pyarrow.parquet as pq

    from pipeline.annotated import AnnotatedShards
    from pipeline.stages.exact_dedup import ExactDuplicates

    uris = {}
    for shard in ("a", "b", "c"):
        n = 2000
        uris[shard] = str(tmp_path / f"{shard}.parquet")
        pq.write_table(pa.table({cols.SHARD: [shard] * n, cols.ROW: pa.array(range(n), pa.int64()),
                                 cols.ID: [f"{shard}{i}" for i in range(n)],
                                 EXACT_HASH: pa.array([i % 2 for i in range(n)], pa.int64())}),
                       uris[shard], row_group_size=100)
    removed = ExactDuplicates(ExactDedupConfig()).find_removals(AnnotatedShards(uris)).take_all()
    assert len(removed) == 6000 - 2
    assert {r[cols.DUPLICATE_OF] for r in removed} == {"a0", "a1"}
