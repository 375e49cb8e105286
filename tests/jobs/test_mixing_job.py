"""Mixing, packing modes and formats in whole jobs on real Ray."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sentencepiece as spm

from pipeline import run_job
from pipeline.config import JobSpecError
from pipeline.phases.mix.plan import STAGE_NAME, MixtureError
from tests.helpers.datatrove_reader import read_datatrove
from tests.helpers.megatron_reader import read_indexed_dataset

pytestmark = pytest.mark.usefixtures("ray_local")


def _output_documents(out: Path, manifest: dict) -> list[tuple[int, ...]]:
    """Every document copy in output order, as token tuples (concat, Megatron, EOS-terminated)."""
    eos = manifest["tokenizer"]["eos_id"]
    docs, current = [], []
    for shard in manifest["shards"]:
        for seq in read_indexed_dataset(out / shard["files"]["bin"]["path"][:-4])["sequences"]:
            for token in seq.tolist():
                current.append(token)
                if token == eos:
                    docs.append(tuple(current))
                    current = []
    assert not current
    return docs


def test_weighted_budget_meets_targets_and_spaces_repeats(make_job, sample_corpus, tmp_path):
    out = tmp_path / "out"
    natural = run_job(make_job(sample_corpus, out))
    available = {d: v["available_tokens"] for d, v in natural.report["mixture"]["domains"].items()}
    assert set(available) == {"code", "docs", "web"}
    budget = sum(available.values())
    weights = {"code": 0.5, "docs": 0.2, "web": 0.3}
    assert budget * weights["code"] / available["code"] > 1.5  # code is upsampled, the others downsampled

    mixed = run_job(make_job(sample_corpus, out, stages={"mix": {"weights": weights, "budget_tokens": budget}}))

    mixture = mixed.report["mixture"]["domains"]
    for domain, weight in weights.items():
        assert mixture[domain]["realized_tokens"] == pytest.approx(budget * weight, rel=0.02)
    assert mixed.report["balance"]["ok"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["mixture"]["domains"]["code"]["realized_weight"] == pytest.approx(0.5, abs=0.01)

    docs = _output_documents(out, manifest)
    assert len(docs) == manifest["totals"]["document_copies"]
    # Realized tokens recounted from the shards: each output document's domain is the one its
    # tokenized input row was given.
    domain_of = {}
    for shard in sorted((out / "work" / "tokenize").glob("*.parquet")):
        for row in pq.read_table(shard, columns=["domain", "tokens"]).to_pylist():
            domain_of[tuple(np.frombuffer(row["tokens"], np.uint16).tolist())] = row["domain"]
    recounted = {domain: 0 for domain in weights}
    for doc in docs:
        recounted[domain_of[doc]] += len(doc)
    assert recounted == {domain: mixture[domain]["realized_tokens"] for domain in weights}
    for domain, weight in weights.items():
        assert recounted[domain] == pytest.approx(budget * weight, rel=0.02)
    positions: dict[tuple[int, ...], list[int]] = {}
    for i, doc in enumerate(docs):
        positions.setdefault(doc, []).append(i)
    code_rate = mixture["code"]["rate"]
    repeated = [p for p in positions.values() if len(p) > 1]
    assert repeated and max(len(p) for p in positions.values()) <= np.ceil(code_rate) <= 4
    gaps = [b - a for p in repeated for a, b in zip(p, p[1:])]
    assert min(gaps) > 0.7 * len(docs) / code_rate  # copies of a document are ~1/rate of the output apart

    # Downsampled documents are rejected by mix, with their text, and counted.
    mix_rejects = [r for p in sorted((out / "rejects" / "mix").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert {r["reject_reason"] for r in mix_rejects} == {"not_sampled"}
    assert {r["domain"] for r in mix_rejects} == {"docs", "web"}
    assert len(mix_rejects) == mixed.report["rejected"]["mix"]["not_sampled"]
    assert mixed.report["totals"]["kept_docs"] + len(mix_rejects) == natural.report["totals"]["kept_docs"]
    markdown = (out / "report.md").read_text()
    assert "## Mixture (tokens)" in markdown and "| code |" in markdown


def test_strict_mixture_fails_naming_the_short_domain(make_job, sample_corpus, tmp_path):
    out = tmp_path / "out"
    job = make_job(
        sample_corpus,
        out,
        stages={
            "mix": {
                "weights": {"code": 0.9, "docs": 0.05, "web": 0.05},
                "budget_tokens": 10_000_000,
                "on_shortfall": "fail",
            }
        },
    )
    with pytest.raises(MixtureError, match=r"code needs [0-9.]+ epochs of its [0-9,]+ tokens"):
        run_job(job)
    assert not (out / "manifest.json").exists()


def test_bestfit_datatrove_job(make_job, sample_corpus, tokenizer_model, tmp_path):
    out = tmp_path / "out"
    seq_len = 256
    result = run_job(
        make_job(
            sample_corpus,
            out,
            stages={"pack": {"mode": "bestfit", "format": "datatrove", "seq_len": seq_len, "shard_tokens": 40000}},
        )
    )
    manifest = json.loads((out / "manifest.json").read_text())
    processor = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    pad = processor.pad_id()
    assert manifest["format"] == "datatrove-tokenized" and manifest["pad_id"] == pad and manifest["dtype"] == "uint16"
    whole, pieces = [], 0
    for shard in manifest["shards"]:
        read = read_datatrove(out / shard["files"]["ds"]["path"])
        assert read["token_count"] == shard["tokens"] == shard["sequences"] * seq_len
        assert read["tokenizer"] == Path(str(tokenizer_model)).name and read["token_size"] == 2
        starts = np.concatenate([[0], read["ends"][:-1]]).astype(np.int64)
        for start, unit in zip(starts.tolist(), read["units"]):
            if np.all(unit == pad):
                continue
            if unit[-1] == processor.eos_id() and len(unit) <= seq_len and unit[0] != pad:
                # a document of up to seq_len tokens lies within one sequence
                assert start // seq_len == (start + len(unit) - 1) // seq_len
                whole.append(unit)
            else:
                pieces += 1
    assert len(whole) > 0.8 * manifest["totals"]["document_copies"]
    padding = result.report["totals"]["padding_tokens"]
    assert padding == manifest["totals"]["padding_tokens"] > 0
    assert padding / manifest["totals"]["tokens"] < 0.10  # best fit leaves little room unused
    assert "padding" in (out / "report.md").read_text()
    from pipeline.tools.inspect import inspect_output

    assert inspect_output(str(out))


def _tokenizer_without_pad(model: Path, out: Path) -> Path:
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model.read_bytes())
    proto.trainer_spec.pad_id = -1
    proto.pieces[3].type = sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED
    out.write_bytes(proto.SerializeToString())
    return out


def test_bestfit_needs_a_pad_id_when_the_tokenizer_has_none(make_job, sample_corpus, tokenizer_model, tmp_path):
    from pipeline.config import load_job_spec

    no_pad = _tokenizer_without_pad(Path(tokenizer_model), tmp_path / "nopad.model")
    job = make_job(sample_corpus, tmp_path / "out", stages={"pack": {"mode": "bestfit"}})
    job["stages"]["tokenize"]["model"] = str(no_pad)
    with pytest.raises(
        JobSpecError, match=r"stages.pack.pad_id: the tokenizer .* has no pad token; set pad_id .* EOS id, 2"
    ):
        load_job_spec(job)
    job["stages"]["pack"]["pad_id"] = 5000
    with pytest.raises(JobSpecError, match=r"stages.pack.pad_id: 5000 is not an id of the tokenizer \(1000 tokens\)"):
        load_job_spec(job)
    job["stages"]["pack"]["pad_id"] = 2
    assert load_job_spec(job).stages.pack.pad_id == 2


def _llama_style_tokenizer(corpus: Path, out: Path) -> Path:
    """A sentencepiece model trained with the trainer settings of Llama's tokenizer.model
    (BPE, byte fallback, split digits, dummy prefix, identity normalization, unk 0, bos 1,
    eos 2, no pad piece), at a small vocabulary."""
    import pyarrow.parquet as pq
    import sentencepiece as spm

    lines = out.parent / "llama_lines.txt"
    with lines.open("w") as f:
        for shard in sorted(corpus.glob("*.parquet")):
            for text in pq.read_table(shard, columns=["text"]).column("text").to_pylist():
                for line in (text or "").splitlines():
                    if line.strip():
                        f.write(line + "\n")
    spm.SentencePieceTrainer.train(
        input=str(lines),
        model_prefix=str(out.with_suffix("")),
        model_type="bpe",
        vocab_size=1200,
        byte_fallback=True,
        split_digits=True,
        add_dummy_prefix=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        max_sentencepiece_length=16,
        minloglevel=2,
    )
    return out


def test_llama_style_tokenizer_with_bos_and_eos(make_job, sample_corpus, tmp_path):
    model = _llama_style_tokenizer(sample_corpus, tmp_path / "llama.model")
    processor = spm.SentencePieceProcessor(model_file=str(model))
    assert processor.pad_id() == -1 and processor.bos_id() == 1 and processor.eos_id() == 2
    out = tmp_path / "out"
    job = make_job(sample_corpus, out)
    job["stages"]["tokenize"] = {"model": str(model), "add_bos": True, "add_eos": True}
    result = run_job(job)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tokenizer"]["add_bos"] and manifest["tokenizer"]["pad_id"] == -1
    documents = _output_documents(out, manifest)
    assert len(documents) == result.report["totals"]["kept_docs"]
    assert all(doc[0] == 1 and doc[-1] == 2 and 1 not in doc[1:] for doc in documents)
    kept_texts = {processor.Decode(list(doc[1:-1])) for doc in documents}
    corpus_texts = {
        t
        for p in sorted(sample_corpus.glob("*.parquet"))
        for t in pq.read_table(p, columns=["text"]).column("text").to_pylist()
    }
    assert kept_texts <= corpus_texts  # identity normalization and byte fallback: every text round-trips


def test_the_real_data_floor_holds_on_the_realized_mixture(make_job, sample_corpus, tmp_path):
    """``code`` stands in for a generated domain: asked for 70% of the output under a floor
    of 50% real data, the job fails naming the shares, or (rebalance) cuts it until real data
    is half of what is written (to within about a document per domain)."""
    mix = {"weights": {"code": 0.7, "docs": 0.15, "web": 0.15}, "synthetic_domains": ["code"], "min_real_fraction": 0.5}
    with pytest.raises(MixtureError, match=r"real data would be 30.0% of the output, under .*min_real_fraction 0.5"):
        run_job(make_job(sample_corpus, tmp_path / "fail", stages={"mix": mix}))
    out = tmp_path / "rebalanced"
    result = run_job(make_job(sample_corpus, out, stages={"mix": {**mix, "on_real_floor": "rebalance"}}))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["mixture"]["synthetic_domains"] == ["code"]
    realized = {d: v["realized_tokens"] for d, v in manifest["mixture"]["domains"].items()}
    assert manifest["mixture"]["real_share"] == (realized["docs"] + realized["web"]) / sum(realized.values())
    assert manifest["mixture"]["real_share"] == pytest.approx(0.5, abs=0.03)
    assert any("rebalanced" in note for note in manifest["mixture"]["notes"])
    assert result.report["balance"]["ok"]

    # the report compares the synthetic domain with the real ones over every document dedup kept
    report = result.report
    sides = report["mixture"]["synthetic_vs_real"]["sides"]
    assert sides["synthetic"]["domains"] == ["code"] and sides["real"]["domains"] == ["docs", "web"]
    unsampled = sum(report["rejected"].get(STAGE_NAME, {}).values())
    assert sides["synthetic"]["documents"] + sides["real"]["documents"] == report["totals"]["kept_docs"] + unsampled
    for side in sides.values():
        assert 0 < side["distinct_ngrams"]["ratio"] <= 1
        assert side["length_chars"]["p10"] <= side["length_chars"]["p50"] <= side["length_chars"]["p90"]
        assert 0 < side["top_openings_share"] <= 1
    markdown = (out / "report.md").read_text()
    assert "### Synthetic against real data" in markdown
    # the report says whether the floor held on what was written, and under which setting
    setting = "(stages.mix.min_real_fraction 0.5, on_real_floor: rebalance)"
    if 0.5 - manifest["mixture"]["real_share"] < 5e-4:
        assert f"The real-data floor {setting} holds." in markdown
    else:
        assert f"under the floor {setting} as sampled" in markdown


def test_a_refresh_whose_synthetic_share_grows_past_the_limit_warns(make_job, sample_corpus, tmp_path):
    """``code`` stands in for a generated domain again: a first snapshot over
    ``max_synthetic_share`` warns; a refresh that raises the share warns naming the snapshot
    before; one that lowers it does not."""
    from pipeline.config import load_job_spec
    from pipeline.phases.mix.plan import synthetic_share_warnings

    out = tmp_path / "out"
    mix = {"weights": {"code": 0.3, "docs": 0.35, "web": 0.35}, "synthetic_domains": ["code"]}
    first = run_job(make_job(sample_corpus, out, stages={"mix": {**mix, "max_synthetic_share": 0.25}}))
    (warning,) = first.report["mixture"]["warnings"]
    share = first.report["mixture"]["synthetic_share"]
    assert share == pytest.approx(0.3, abs=0.03)
    assert warning.startswith(f"synthetic data is {share:.1%} of this snapshot, past stages.mix.max_synthetic_share")
    assert json.loads((out / "manifest.json").read_text())["mixture"]["warnings"] == [warning]
    assert f"**Warning:** {warning}." in (out / "report.md").read_text()

    grown = {**mix, "weights": {"code": 0.45, "docs": 0.275, "web": 0.275}, "max_synthetic_share": 0.25}
    second = run_job(make_job(sample_corpus, out, stages={"mix": grown}))
    assert second.snapshot != first.snapshot
    (warning,) = second.report["mixture"]["warnings"]
    assert f"up from {share:.1%} in snapshot {first.snapshot}" in warning

    spec = load_job_spec(make_job(sample_corpus, out, stages={"mix": grown}), check_files=False)
    previous = {"snapshot": second.snapshot, "synthetic_share": second.report["mixture"]["synthetic_share"]}
    assert synthetic_share_warnings(spec, previous["synthetic_share"] - 0.1, previous) == []  # shrank
    assert synthetic_share_warnings(spec, 0.2, None) == []  # under the limit


def test_synthetic_duplicates_are_told_apart_by_what_they_duplicate(tmp_path):
    """The report splits the synthetic documents dedup removed into duplicates of other
    synthetic documents (the generator repeating itself: the near-duplicate rate within the
    synthetic set) and of real ones (a rewrite that kept its source), across shards and
    within one, for exact and near duplicates alike."""
    from tests.helpers import job_dict

    rng = np.random.default_rng(7)
    vocabulary = [f"w{i}" for i in range(5000)]

    def document() -> str:
        return " ".join(rng.choice(vocabulary, 150))

    def near(text: str) -> str:
        words = text.split()
        words[75] = "changed"
        return " ".join(words)

    real = [document() for _ in range(10)]
    synthetic = [document() for _ in range(8)]
    generated_a = (
        synthetic[:6]
        + [real[0], real[1], near(real[2])]  # of real: 2 exact, 1 near
        + [synthetic[0], near(synthetic[1])]  # within the synthetic set, in the same shard
    )
    generated_b = synthetic[6:] + [synthetic[2], near(synthetic[3]), near(real[3])]  # across shards
    root = tmp_path / "input"
    root.mkdir()
    for name, texts in (("a_real", real), ("generated_a", generated_a), ("generated_b", generated_b)):
        ids = [f"{name}-{i}" for i in range(len(texts))]
        pq.write_table(pa.table({"id": ids, "text": texts}), root / f"{name}.parquet")
    out = tmp_path / "out"
    spec = job_dict(
        str(root),
        str(out),
        "unused",
        output={"kind": "documents"},
        stages={
            "language": {"enabled": False},
            "quality": {"enabled": False},
            "mix": {
                "domain_rules": [{"files": "generated_*", "domain": "generated"}],
                "synthetic_domains": ["generated"],
            },
        },
    )
    del spec["stages"]["tokenize"]
    report = run_job(spec).report
    assert report["balance"]["ok"]
    side = report["mixture"]["synthetic_vs_real"]["sides"]["synthetic"]
    reached = len(generated_a) + len(generated_b)
    assert side["documents"] == 8 and side["duplicates_removed"] == {"exact_dedup": 4, "near_dedup": 4}
    assert side["duplicates_of"] == {
        "real": {"removed": {"exact_dedup": 2, "near_dedup": 2}, "rate": round(4 / reached, 4)},
        "synthetic": {"removed": {"exact_dedup": 2, "near_dedup": 2}, "rate": round(4 / reached, 4)},
    }
    markdown = (out / "report.md").read_text()
    within = f"| of which duplicates within the synthetic set | {4 / reached:.2%} (exact_dedup 2, near_dedup 2) | n/a |"
    assert within in markdown

    # a refresh: a new shard's duplicates of documents earlier runs kept are told apart too
    generated_c = [synthetic[4], real[5], near(synthetic[5])]
    pq.write_table(
        pa.table({"id": [f"generated_c-{i}" for i in range(3)], "text": generated_c}), root / "generated_c.parquet"
    )
    report = run_job(spec).report
    assert report["balance"]["ok"] and report["dedup_index"]
    side = report["mixture"]["synthetic_vs_real"]["sides"]["synthetic"]
    reached += len(generated_c)
    assert side["duplicates_of"] == {
        "real": {"removed": {"exact_dedup": 3, "near_dedup": 2}, "rate": round(5 / reached, 4)},
        "synthetic": {"removed": {"exact_dedup": 3, "near_dedup": 3}, "rate": round(6 / reached, 4)},
    }

    # calling the real documents synthetic too redoes the profiles: every duplicate is within
    spec["stages"]["mix"]["synthetic_domains"] = ["generated", "other"]
    side = run_job(spec).report["mixture"]["synthetic_vs_real"]["sides"]["synthetic"]
    reached += len(real)
    assert side["duplicates_of"] == {
        "synthetic": {"removed": {"exact_dedup": 6, "near_dedup": 5}, "rate": round(11 / reached, 4)}
    }
