"""Whole jobs on real local Ray (2 CPUs) over real Parquet files."""

import itertools
import json
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import sentencepiece as spm

from pipeline import run_job
from pipeline.core.layout import shard_key
from tests.helpers.megatron_reader import read_indexed_dataset
from tests.helpers.near_dup_corpus import shingles, words_of

pytestmark = pytest.mark.usefixtures("ray_local")


def expected_kept(corpus: Path) -> dict[str, list[str]]:
    """Reference written independently of the pipeline: drop blank texts; keep the first (by
    shard key, row) of each text under NFKC + lowercase + whitespace folding; then join the
    documents whose word 5-gram sets (tests/helpers/near_dup_corpus.words_of, its own
    normalization) have a Jaccard similarity of at least 0.8, by every pair, and keep the
    first of each group. MinHash-LSH finds a pair at 0.8 with probability 0.87 (14 x 9
    bands), so on another corpus it could miss one; on this one (seed 7) the 17 pairs at 0.80
    to 0.91 are all found, and a change that loses one fails here."""
    rows = []
    for path in sorted(corpus.glob("*.parquet")):
        key = shard_key(str(corpus), str(path))
        for row, text in enumerate(pq.read_table(path).column("text").to_pylist()):
            if text is not None and text.strip():
                rows.append((key, row, text))
    seen, unique = set(), []
    for key, _row, text in sorted(rows):
        normalized = " ".join(unicodedata.normalize("NFKC", text).lower().split())
        if normalized not in seen:
            seen.add(normalized)
            unique.append((key, text))
    sets = [shingles(words_of(text)) for _, text in unique]
    group = list(range(len(unique)))

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    for i, j in itertools.combinations(range(len(unique)), 2):
        if len(sets[i] & sets[j]) >= 0.8 * len(sets[i] | sets[j]):
            a, b = root(i), root(j)
            group[max(a, b)] = min(a, b)
    kept: dict[str, list[str]] = {}
    for i, (key, text) in enumerate(unique):
        if root(i) == i:
            kept.setdefault(key, []).append(text)
    return kept


def decode_documents(output: Path, manifest: dict, model: Path) -> list[str]:
    """Every document in the output, in output order (shards in order, EOS-separated)."""
    processor = spm.SentencePieceProcessor(model_file=str(model))
    eos = manifest["tokenizer"]["eos_id"]
    docs = []
    for shard in manifest["shards"]:
        dataset = read_indexed_dataset(output / shard["files"]["bin"]["path"][: -len(".bin")])
        stream = [t for seq in dataset["sequences"] for t in seq.tolist()]
        assert stream[-1] == eos  # documents never straddle output shards
        current: list[int] = []
        for token in stream:
            if token == eos:
                docs.append(processor.Decode(current))
                current = []
            else:
                current.append(token)
        assert all(n == manifest["seq_len"] for n in dataset["lengths"][:-1])
    return docs


@pytest.fixture(scope="module")
def finished_run(sample_corpus, tokenizer_model, tmp_path_factory):
    from tests.helpers import job_dict

    out = tmp_path_factory.mktemp("e2e") / "out"
    result = run_job(job_dict(str(sample_corpus), str(out), str(tokenizer_model)))
    return out, result


def test_counts_balance_and_report_written(finished_run, sample_corpus):
    out, result = finished_run
    report = json.loads((out / "report.json").read_text())
    assert report == result.report
    balance = report["balance"]
    assert balance["ok"] and balance["input"] == 500
    assert balance["input"] == balance["kept"] + balance["rejected"] + balance["quarantined"]
    assert [p["name"] for p in report["phases"]] == ["annotate", "dedup", "tokenize", "mix", "pack"]
    for phase in report["phases"]:  # rates over the work done, the dedup pass counting what it read
        assert phase["docs_processed"] > 0 and phase["docs_per_s"] > 0 and phase["mb_per_s"] > 0, phase
        assert phase["peak_rss_bytes"] > 0, phase
    dedup = report["phases"][1]
    assert dedup["docs_processed"] == dedup["docs"]  # every annotated document, not the ones it removed
    # Where annotate's time went, by step in pipeline order; within each unit's own time.
    steps = report["annotate_steps"]
    assert [s["step"] for s in steps] == [
        "read", "validate", "tokens_sample", "language", "exact_dedup", "near_dedup", "write"
    ]  # fmt: skip
    assert all(s["seconds"] > 0 for s in steps)
    for path in (out / "work" / "annotate" / "_markers").glob("*.json"):
        marker = json.loads(path.read_text())
        assert sum(marker["step_seconds"].values()) <= marker["seconds"] + 0.01, marker
    markdown = (out / "report.md").read_text()
    assert "### Annotate, by step" in markdown and "| language |" in markdown
    assert "Counts balance: **yes**" in markdown and "exact_duplicate" in markdown
    plants = json.loads((sample_corpus / "_plants.json").read_text())
    assert report["rejected"]["exact_dedup"]["exact_duplicate"] >= len(plants["exact_duplicates"])
    # Language ID annotates by default (no keep list): every annotated document has a label.
    languages = report["languages_after_annotate"]
    dedup_removed = sum(sum(report["rejected"][stage].values()) for stage in ("exact_dedup", "near_dedup"))
    assert sum(languages.values()) == balance["kept"] + dedup_removed
    assert report["rejected"]["near_dedup"] == {"near_duplicate": 17}
    assert max(languages, key=languages.get) == "en" and "language" not in report["rejected"]
    assert "## Languages after annotate" in markdown


def test_shards_detokenize_to_exactly_the_kept_documents(finished_run, sample_corpus, tokenizer_model):
    out, _ = finished_run
    manifest = json.loads((out / "manifest.json").read_text())
    expected = [text for texts in expected_kept(sample_corpus).values() for text in texts]
    decoded = decode_documents(out, manifest, tokenizer_model)
    assert sorted(decoded) == sorted(expected)  # natural mixture: every kept document exactly once
    assert manifest["totals"]["documents"] == manifest["totals"]["document_copies"] == len(expected)


def test_output_is_shuffled_across_input_shards(finished_run, sample_corpus, tokenizer_model):
    """Each output shard mixes documents from every input shard, in an order unrelated to the input's."""
    out, _ = finished_run
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["shards"]) >= 3
    source = {text: key for key, texts in expected_kept(sample_corpus).items() for text in texts}
    input_order = [text for texts in expected_kept(sample_corpus).values() for text in texts]
    position = {text: i for i, text in enumerate(input_order)}
    processor = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    eos = manifest["tokenizer"]["eos_id"]
    decoded = decode_documents(out, manifest, tokenizer_model)
    for shard in manifest["shards"]:
        stream = read_indexed_dataset(out / shard["files"]["bin"]["path"][:-4])["sequences"]
        texts = [processor.Decode(ids) for ids in _split(np.concatenate(stream).tolist(), eos)]
        assert len({source[t] for t in texts}) == len(expected_kept(sample_corpus))
    ranks = [position[t] for t in decoded]
    assert abs(np.corrcoef(ranks, np.arange(len(ranks)))[0, 1]) < 0.2
    sizes = [s["tokens"] for s in manifest["shards"]]
    assert max(sizes) < 1.2 * min(sizes)  # boundaries at token quantiles: shards of nearly equal size


def _split(stream, eos):
    docs, current = [], []
    for token in stream:
        if token == eos:
            docs.append(current)
            current = []
        else:
            current.append(token)
    return docs


def test_rejects_sink_names_stage_reason_and_survivor(finished_run, sample_corpus):
    out, _ = finished_run
    dedup_rejects = [
        r for p in sorted((out / "rejects" / "dedup").glob("*.parquet")) for r in pq.read_table(p).to_pylist()
    ]
    plants = json.loads((sample_corpus / "_plants.json").read_text())
    rejected_ids = {r["id"] for r in dedup_rejects}
    for planted in plants["exact_duplicates"]:
        # either copy may be the survivor; the other must be rejected and point at a kept id
        assert planted["id"] in rejected_ids or planted["of"] in rejected_ids
    reasons = {(r["reject_stage"], r["reject_reason"]) for r in dedup_rejects}
    assert reasons == {("exact_dedup", "exact_duplicate"), ("near_dedup", "near_duplicate")}
    assert all(r["duplicate_of"] for r in dedup_rejects)
    assert all(r["duplicate_of"] not in rejected_ids for r in dedup_rejects)
    empty = [r for p in (out / "rejects" / "annotate").glob("*.parquet") for r in pq.read_table(p).to_pylist()]
    assert {r["reject_reason"] for r in empty} == {"empty_text"}


def test_same_seed_gives_byte_identical_shards(finished_run, sample_corpus, tokenizer_model, tmp_path):
    from tests.helpers import job_dict

    out, _ = finished_run
    second = tmp_path / "again"
    run_job(job_dict(str(sample_corpus), str(second), str(tokenizer_model)))
    first_manifest = json.loads((out / "manifest.json").read_text())
    second_manifest = json.loads((second / "manifest.json").read_text())
    assert first_manifest["shards"] == second_manifest["shards"]
    for shard in first_manifest["shards"]:
        for entry in shard["files"].values():
            assert (out / entry["path"]).read_bytes() == (second / entry["path"]).read_bytes()
    reseeded = run_job({**job_dict(str(sample_corpus), str(tmp_path / "seed1"), str(tokenizer_model)), "seed": 1})
    reseeded_manifest = json.loads(Path(reseeded.manifest_uri).read_text())
    assert reseeded_manifest["totals"]["tokens"] == first_manifest["totals"]["tokens"]
    assert [s["files"]["bin"]["sha256"] for s in reseeded_manifest["shards"]] != [
        s["files"]["bin"]["sha256"] for s in first_manifest["shards"]
    ]


def test_rerun_skips_committed_work(finished_run, sample_corpus, tokenizer_model, capfd):
    from tests.helpers import job_dict

    out, first = finished_run
    again = run_job(job_dict(str(sample_corpus), str(out), str(tokenizer_model)))
    err = capfd.readouterr().err
    assert "annotate: 4 shards (4 already committed, skipped)" in err
    assert "dedup: already committed" in err
    assert "tokenize: 4 shards (4 already committed, skipped)" in err
    assert "mix: 4 shards (4 already committed, skipped)" in err
    n = first.report["output_shards"]["count"]
    assert f"pack: {n} output shards ({n} already committed, skipped)" in err
    assert again.report["totals"] == first.report["totals"]
    # Reused phases report no rate (there was no work to time), and every phase has its row.
    assert again.report["work_units"]["dedup"] == {"total": 1, "reused": 1}
    assert set(again.report["work_units"]) == {"annotate", "dedup", "tokenize", "mix", "pack"}
    for phase in again.report["phases"]:
        assert phase["docs_per_s"] is None and phase["mb_per_s"] is None and phase["docs_processed"] == 0, phase
    markdown = (out / "report.md").read_text()
    assert "| annotate |" in markdown and "| reused | reused |" in markdown
    assert "| dedup | 1 | 0 | 1 |" in markdown


def test_cli_inspect_verifies_manifest(finished_run, capsys):
    from pipeline.cli import main

    out, _ = finished_run
    assert main(["inspect", str(out)]) == 0
    assert "manifest verified" in capsys.readouterr().out
    shard = json.loads((out / "manifest.json").read_text())["shards"][0]
    tampered = out / shard["files"]["bin"]["path"]
    original = tampered.read_bytes()
    try:
        tampered.write_bytes(original[:-2] + b"\x00\x00")
        assert main(["inspect", str(out)]) == 1
        assert ".bin sha256 differs" in capsys.readouterr().out
    finally:
        tampered.write_bytes(original)


def test_cli_run_prints_where_outputs_are(finished_run, sample_corpus, tokenizer_model, tmp_path, capsys):
    import yaml

    from pipeline.cli import main
    from tests.helpers import job_dict

    out, _ = finished_run
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(job_dict(str(sample_corpus), str(out), str(tokenizer_model))))
    assert main(["run", str(job), "--set", "ray.progress_bars=false"]) == 0
    printed = capsys.readouterr().out
    snapshot = json.loads((out / "latest.json").read_text())["snapshot"]
    assert f"snapshot {snapshot} (now latest): {out / 'snapshots' / snapshot / 'manifest.json'}" in printed
    assert f"run report:                {out / 'report.md'}" in printed
