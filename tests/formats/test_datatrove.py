"""The datatrove writer checked byte by byte against a reader written from the format."""

import numpy as np
import pytest

from pipeline import formats
from pipeline.formats import datatrove
from pipeline.phases.pack.packing import pack_bestfit, pack_concat
from tests.helpers.datatrove_reader import read_datatrove
from tests.helpers.documents import token_documents


@pytest.mark.parametrize("vocab", [32000, 100000])
@pytest.mark.parametrize("mode", ["concat", "bestfit"])
def test_datatrove_files_read_back_by_the_spec_reader(tmp_path, vocab, mode):
    dtype = formats.token_dtype("datatrove", vocab)
    docs = token_documents(vocab, longest=40 if mode == "concat" else 32)
    packed = pack_concat(docs, 32, dtype) if mode == "concat" else pack_bestfit(docs, 32, 3, dtype)
    files = formats.encode_shard("datatrove", packed, dtype, "tok.model")
    for role, path in formats.shard_files("datatrove", "shard-00000").items():
        (tmp_path / path).write_bytes(files[role])
    read = read_datatrove(tmp_path / "shard-00000.ds")
    assert read["token_size"] == dtype.itemsize and read["tokenizer"] == "tok.model"
    assert read["token_count"] == len(read["tokens"]) == int(read["ends"][-1])
    assert read["tokens"].tolist() == packed.tokens.tolist()
    text_units = [u.tolist() for u in read["units"] if not (mode == "bestfit" and np.all(u == 3))]
    if mode == "concat":
        assert text_units == [d.tolist() for d in docs]  # one index entry per document
    else:
        assert sorted(map(tuple, text_units)) == sorted(tuple(d.tolist()) for d in docs)  # none split (<= 32)
        assert read["token_count"] % 32 == 0
    decoded = formats.decode_shard("datatrove", files)
    assert decoded.problems == [] and decoded.tokens.tolist() == packed.tokens.tolist()


def test_metadata_count_is_humanized_as_datatrove_writes_it():
    # Values printed by humanize.metric(n, unit="T") (humanize 4.17, datatrove's dependency).
    expected = {
        0: "0.00 T",
        12: "12.0 T",
        999: "999 T",
        1000: "1.00 kT",
        99999: "100 kT",
        1234567: "1.23 MT",
        5_000_000_000: "5.00 GT",
    }
    assert {n: datatrove.humanized(n) for n in expected} == expected
    assert datatrove.encode_metadata("tok", 2, 1234567) == b"tok|2\n1234567\n1.23 MT"
