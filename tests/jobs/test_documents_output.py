"""``output.kind: documents`` and ``both``: curated document shards with their annotations,
committed like token shards; equal to what a token run keeps; resumed and refreshed alike."""

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sentencepiece as spm

from pipeline import run_job
from pipeline.config import JobSpecError, load_job_spec
from pipeline.core import storage
from tests.helpers import job_dict
from tests.helpers.megatron_reader import read_indexed_dataset

pytestmark = pytest.mark.usefixtures("ray_local")

STAGES = {
    "language": {"enabled": True, "keep": ["en"], "min_score": 0.3},
    "exact_dedup": {"enabled": True},
    "near_dedup": {"enabled": True},
}
INTERNAL = {"exact_hash", "lsh_bands", "minhash", "shingle_hashes", "dedup_units", "shard_key", "row", "u", "tokens"}


def documents_job(corpus, out, **output):
    spec = job_dict(str(corpus), str(out), "unused", stages=STAGES, output={"kind": "documents", **output})
    del spec["stages"]["tokenize"]
    return spec


def read_documents(out: Path, manifest: dict) -> pa.Table:
    """Every document shard of a snapshot, in shard order, as the manifest lists them."""
    tables = []
    for shard in manifest["shards"]:
        entry = shard["files"]["documents"]
        path = out / entry["path"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        if manifest["documents"]["format"] == "parquet":
            table = pq.read_table(path)
        else:
            rows = [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]
            table = pa.Table.from_pylist(rows)
        assert table.num_rows == shard["documents"]
        tables.append(table)
    return pa.concat_tables(tables, promote_options="permissive")


def snapshot_files(out: Path) -> dict[str, str]:
    latest = json.loads((out / "latest.json").read_text())["snapshot"]
    root = out / "snapshots" / latest
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("shard-*"))}


@pytest.fixture(scope="module")
def token_run(sample_corpus, tokenizer_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("tokens") / "out"
    spec = job_dict(str(sample_corpus), str(out), str(tokenizer_model), stages=STAGES)
    return spec, run_job(spec)


def test_both_writes_the_token_runs_documents_in_token_order(token_run, tokenizer_model, tmp_path):
    """Document shard j holds exactly the documents whose tokens are in token shard j, in the
    same order; the token shards are byte for byte those of a tokens-only run."""
    spec, tokens_only = token_run
    both_spec = json.loads(json.dumps(spec))
    both_spec["output"] = {"uri": str(tmp_path / "both"), "kind": "both"}
    both = run_job(both_spec)
    out = tmp_path / "both"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "both" and manifest["manifest_version"] == 4
    tokens_files = {k: v for k, v in snapshot_files(out).items() if k.startswith("tokens/")}
    assert tokens_files == snapshot_files(Path(tokens_only.output_uri))
    assert both.report["totals"]["output_documents"] == tokens_only.report["totals"]["document_copies"]

    processor = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    eos = processor.eos_id()
    for shard in manifest["shards"]:
        documents = read_documents(out, {**manifest, "shards": [shard]})
        stem = out / shard["files"]["bin"]["path"][: -len(".bin")]
        tokens = np.concatenate(read_indexed_dataset(stem)["sequences"])
        ends = np.flatnonzero(tokens == eos)
        pieces = np.split(tokens, ends + 1)[: len(ends)]
        decoded = [processor.decode(p[:-1].tolist()) for p in pieces]
        expected = [processor.decode(processor.encode(t)) for t in documents.column("text").to_pylist()]
        assert decoded == expected  # a shard holds whole documents, each ended by EOS


def test_documents_output_keeps_what_the_token_run_keeps_with_annotations(token_run, sample_corpus, tmp_path):
    _, tokens_only = token_run
    out = tmp_path / "docs"
    result = run_job(documents_job(sample_corpus, out, documents={"shard_bytes": 60_000}))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "documents" and "tokenizer" not in manifest and "tokens" not in manifest["totals"]
    assert len(manifest["shards"]) >= 3  # ~240 kB of kept text at 60 kB per shard
    documents = read_documents(out, manifest)
    names = documents.column_names
    assert names[:4] == ["id", "text", "domain", "url"] and names[-1] == "copy"
    assert {"lang", "lang_score"} <= set(names) and not INTERNAL & set(names)
    assert set(documents.column("lang").to_pylist()) == {"en"}
    assert min(documents.column("lang_score").to_pylist()) >= 0.3
    # the same documents as the token run packed: every kept id once, same text
    token_out = Path(tokens_only.output_uri)
    assert not (token_out / "work" / "dedup" / "clusters").exists()  # a token output needs no cluster counts
    assert (out / "work" / "dedup" / "clusters").exists()
    kept = pa.concat_tables(pq.read_table(p) for p in sorted((token_out / "work" / "tokenize").glob("*.parquet")))
    assert result.report["totals"]["kept_docs"] == tokens_only.report["totals"]["kept_docs"] == documents.num_rows
    assert sorted(documents.column("id").to_pylist()) == sorted(
        pa.concat_tables(
            pq.read_table(p, columns=["id"]) for p in sorted((out / "work" / "tokenize").glob("*.parquet"))
        )
        .column("id")
        .to_pylist()
    )
    texts_by_id = dict(zip(documents.column("id").to_pylist(), documents.column("text").to_pylist()))
    annotated = pa.concat_tables(
        pq.read_table(p, columns=["id", "text", "row", "shard_key"])
        for p in sorted((token_out / "work" / "annotate").glob("*.parquet"))
    )
    originals = dict(zip(annotated.column("id").to_pylist(), annotated.column("text").to_pylist()))
    assert len(kept) == len(texts_by_id)
    assert all(originals[i] == text for i, text in texts_by_id.items())
    # in the seeded global order: the shuffle keys ascend over the shards, read in order
    keys = pa.concat_tables(
        pq.read_table(p, columns=["id", "u"]) for p in (out / "work" / "tokenize").glob("*.parquet")
    )
    key_of = dict(zip(keys.column("id").to_pylist(), keys.column("u").to_pylist()))
    order = [key_of[i] for i in documents.column("id").to_pylist()]
    assert order == sorted(order)
    assert sum(s["text_bytes"] for s in manifest["shards"]) == sum(len(t.encode()) for t in texts_by_id.values())
    report_md = (out / "report.md").read_text()
    assert "Document shards:" in report_md and "## Mixture (text bytes)" in report_md
    assert "| prepare |" in report_md

    from pipeline.cli import main

    assert main(["inspect", str(out)]) == 0
    # a byte flipped in a shard is found
    victim = out / manifest["shards"][0]["files"]["documents"]["path"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert main(["inspect", str(out)]) == 1


def test_documents_mix_in_text_bytes(sample_corpus, tmp_path):
    weights = {"web": 0.3, "code": 0.2, "docs": 0.5}  # about 120, 95 and 97 kB kept
    out = tmp_path / "mixed"
    spec = documents_job(sample_corpus, out)
    spec["stages"]["mix"] = {"weights": weights, "budget_bytes": 300_000}
    result = run_job(spec)
    domains = result.report["mixture"]["domains"]
    assert result.report["mixture"]["unit"] == "bytes"
    manifest = json.loads((out / "manifest.json").read_text())
    documents = read_documents(out, manifest)
    realized: dict[str, int] = {}
    for domain, text in zip(documents.column("domain").to_pylist(), documents.column("text").to_pylist()):
        realized[domain] = realized.get(domain, 0) + len(text.encode())
    assert realized == {d: v["realized_bytes"] for d, v in domains.items()}
    for domain, weight in weights.items():
        assert realized[domain] == pytest.approx(300_000 * weight, rel=0.05)
    # repeats are marked: a document's copies are numbered 0, 1, ...
    copies: dict[str, list[int]] = {}
    for i, copy in zip(documents.column("id").to_pylist(), documents.column("copy").to_pylist()):
        copies.setdefault(i, []).append(copy)
    assert all(sorted(c) == list(range(len(c))) for c in copies.values())
    assert max(len(c) for c in copies.values()) == 2  # docs: 150 kB asked of 97 kB


def test_json_lines_in_with_nested_fields_and_bad_lines_to_jsonl_gz(sample_corpus, tmp_path):
    source = tmp_path / "jsonl"
    source.mkdir()
    records = pq.read_table(sorted(sample_corpus.glob("*.parquet"))[0]).to_pylist()[:120]
    lines = []
    for n, r in enumerate(records):
        record = {"id": r["id"], "text": r["text"], "source": "crawl-7", "metadata": {"url": r["url"], "n": n}}
        if n % 10 == 0:
            record["license"] = "cc-by"
        lines.append(json.dumps(record))
    lines.insert(5, "{not json")
    (source / "part.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    out = tmp_path / "out"
    spec = documents_job(source, out, documents={"format": "jsonl.gz"})
    spec["input"]["url_column"] = "metadata.url"
    spec["stages"] = {"language": STAGES["language"]}
    result = run_job(spec)
    assert result.report["quarantined"] == {"invalid_json": 1}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["documents"]["format"] == "jsonl.gz"
    documents = read_documents(out, manifest).to_pylist()
    assert len(documents) == result.report["totals"]["kept_docs"] > 80
    by_id = {r["id"]: (n, r) for n, r in enumerate(records)}
    for doc in documents:
        n, original = by_id[doc["id"]]
        assert doc["text"] == original["text"] and doc["url"] == original["url"]
        assert doc["source"] == "crawl-7"
        assert json.loads(doc["metadata"]) == {"url": original["url"], "n": n}
        assert doc["license"] == ("cc-by" if n % 10 == 0 else None)
        assert doc["lang"] == "en"
    columns = [c["name"] for c in manifest["documents"]["columns"]]
    assert columns == [
        *["id", "text", "domain", "url", "lang", "lang_score", "source", "metadata", "license"],
        *["duplicate_count", "copy"],
    ]


def test_parquet_columns_are_carried_and_a_clash_is_renamed(sample_corpus, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    for i, path in enumerate(sorted(sample_corpus.glob("*.parquet"))[:2]):
        table = pq.read_table(path)
        table = table.append_column("crawl_date", pa.array([f"2026-0{i + 1}-01"] * table.num_rows))
        table = table.append_column("lang", pa.array(["declared"] * table.num_rows))  # a Refinery column's name
        if i == 1:
            table = table.append_column("score", pa.array(np.arange(table.num_rows, dtype=np.int64)))
        pq.write_table(table, source / path.name)
    out = tmp_path / "out"
    run_job(documents_job(source, out))
    manifest = json.loads((out / "manifest.json").read_text())
    documents = read_documents(out, manifest)
    assert {"crawl_date", "input_lang", "score", "lang"} <= set(documents.column_names)
    assert set(documents.column("input_lang").to_pylist()) == {"declared"}
    assert set(documents.column("lang").to_pylist()) == {"en"}
    assert set(documents.column("crawl_date").to_pylist()) == {"2026-01-01", "2026-02-01"}
    dated = dict(zip(documents.column("crawl_date").to_pylist(), documents.column("score").to_pylist()))
    assert dated["2026-01-01"] is None  # the first file has no score column
    # carry_columns: none keeps only Refinery's columns
    bare = documents_job(source, tmp_path / "bare")
    bare["input"]["carry_columns"] = "none"
    run_job(bare)
    manifest = json.loads((tmp_path / "bare" / "manifest.json").read_text())
    assert not {"crawl_date", "input_lang", "score"} & {c["name"] for c in manifest["documents"]["columns"]}


def test_refresh_and_resume_of_a_documents_output(sample_corpus, tmp_path, start_job):
    """A refresh adds a snapshot with the new shard's kept documents and leaves the first as
    it was; a run killed while writing document shards resumes to the same bytes."""
    shards = sorted(sample_corpus.glob("*.parquet"))
    grown = tmp_path / "in"
    grown.mkdir()
    for path in shards[:-1]:
        shutil.copy(path, grown / path.name)
    out = tmp_path / "out"
    spec = documents_job(grown, out, documents={"shard_bytes": 50_000})
    first = run_job(spec)
    first_files = snapshot_files(out)
    first_ids = set(read_documents(out, json.loads((out / "manifest.json").read_text())).column("id").to_pylist())

    shutil.copy(shards[-1], grown / shards[-1].name)
    spec_path = tmp_path / "job.json"
    spec_path.write_text(json.dumps(spec))
    job = start_job(
        spec_path, stop_in="pipeline.phases.pack.documents:encode_documents", env_changes={"REFINERY_STOP_AFTER": "1"}
    )
    job.wait_until_stopped()
    job.kill()
    assert json.loads((out / "latest.json").read_text())["snapshot"] == first.snapshot
    job = start_job(spec_path)
    printed = job.finish()
    assert "already committed, skipped" in printed.split("pack:", 1)[1]
    second = json.loads((out / "latest.json").read_text())["snapshot"]
    assert second != first.snapshot
    manifest = json.loads((out / "manifest.json").read_text())
    refreshed_ids = set(read_documents(out, manifest).column("id").to_pylist())
    assert first_ids < refreshed_ids
    # the first snapshot is untouched, and a clean run of the grown input gives the same bytes
    first_manifest = json.loads((out / "snapshots" / first.snapshot / "manifest.json").read_text())
    assert {s["files"]["documents"]["sha256"] for s in first_manifest["shards"]} == set(first_files.values())
    clean = tmp_path / "clean"
    clean_spec = documents_job(grown, clean, documents={"shard_bytes": 50_000})
    run_job(clean_spec)
    assert sorted(snapshot_files(clean).values()) == sorted(snapshot_files(out).values())


def test_a_documents_job_needs_no_tokenizer_and_mixes_in_bytes(tmp_path):
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"text": ["a document"]}), tmp_path / "in" / "a.parquet")
    base = {"name": "d", "input": {"uri": str(tmp_path / "in")}, "output": {"uri": str(tmp_path / "o")}}
    spec = load_job_spec({**base, "output": {**base["output"], "kind": "documents"}, "stages": {}})
    assert spec.mix_unit == "bytes" and "stages.tokenize.model" not in spec.model_files()
    with pytest.raises(JobSpecError, match=r"stages.tokenize: required for output.kind 'tokens'"):
        load_job_spec({**base, "stages": {}})
    with pytest.raises(JobSpecError, match=r"stages.mix.budget_tokens: output.kind 'documents' has no tokens"):
        load_job_spec(
            {**base, "output": {**base["output"], "kind": "documents"}, "stages": {"mix": {"budget_tokens": 5}}}
        )
    with pytest.raises(JobSpecError, match=r"output.documents.format"):
        load_job_spec(
            {**base, "output": {**base["output"], "kind": "documents", "documents": {"format": "csv"}}, "stages": {}}
        )
    assert storage.exists(str(tmp_path / "in" / "a.parquet"))


@pytest.fixture(scope="module")
def planted_clusters(sample_corpus, tmp_path_factory):
    """Two shards of distinct sample documents plus one planted cluster: text T (kept, first),
    three exact copies of T, and a near copy T' (a few words changed) twice, so that one T'
    is an exact duplicate of the other and that one a near duplicate of T: the cluster holds 6."""
    texts = [t for t in pq.read_table(sorted(sample_corpus.glob("*.parquet"))[1]).column("text").to_pylist()]
    long_texts = [t for t in texts if len(t.split()) > 150]
    base = long_texts[0]
    words = base.split()
    near = " ".join(w if i not in (40, 80) else w.upper() + "x" for i, w in enumerate(words))
    others = long_texts[1:40]
    root = tmp_path_factory.mktemp("clusters") / "in"
    root.mkdir()
    first = [base, *others[:20], base, near]
    second = [*others[20:], base, near, base]
    for name, rows in (("a.parquet", first), ("b.parquet", second)):
        pq.write_table(
            pa.table({"id": [f"{name[0]}{i}" for i in range(len(rows))], "text": rows, "domain": ["web"] * len(rows)}),
            root / name,
        )
    return root, len(others)


def cluster_job(root, out, **mix):
    spec = documents_job(root, out)
    spec["stages"] = {"exact_dedup": {"enabled": True}, "near_dedup": {"enabled": True}, "mix": mix}
    return spec


def test_survivors_carry_the_size_of_their_duplicate_cluster(planted_clusters, tmp_path):
    root, singletons = planted_clusters
    out = tmp_path / "out"
    result = run_job(cluster_job(root, out))
    assert result.report["rejected"] == {"exact_dedup": {"exact_duplicate": 4}, "near_dedup": {"near_duplicate": 1}}
    documents = read_documents(out, json.loads((out / "manifest.json").read_text()))
    sizes = dict(zip(documents.column("id").to_pylist(), documents.column("duplicate_count").to_pylist()))
    assert sizes.pop("a0") == 6
    assert len(sizes) == singletons and set(sizes.values()) == {1}
    assert "duplicate_count" in [
        c["name"] for c in json.loads((out / "manifest.json").read_text())["documents"]["columns"]
    ]


def test_rehydration_copies_follow_the_table(planted_clusters, tmp_path):
    root, singletons = planted_clusters
    out = tmp_path / "out"
    run_job(cluster_job(root, out, rehydration=[{"min_size": 2, "copies": 3}, {"min_size": 10, "copies": 1}]))
    documents = read_documents(out, json.loads((out / "manifest.json").read_text()))
    copies: dict[str, list[int]] = {}
    for i, copy in zip(documents.column("id").to_pylist(), documents.column("copy").to_pylist()):
        copies.setdefault(i, []).append(copy)
    assert sorted(copies.pop("a0")) == [0, 1, 2]
    assert len(copies) == singletons and all(c == [0] for c in copies.values())
    # a step of 0 copies drops what it covers (clusters this large are boilerplate, say), counted
    out = tmp_path / "dropped"
    result = run_job(cluster_job(root, out, rehydration=[{"min_size": 2, "copies": 3}, {"min_size": 6, "copies": 0}]))
    documents = read_documents(out, json.loads((out / "manifest.json").read_text()))
    assert "a0" not in documents.column("id").to_pylist() and documents.num_rows == singletons
    assert result.report["rejected"]["mix"] == {"rehydration_weight_zero": 1}


def test_a_refresh_adds_the_duplicates_it_removes_to_the_clusters_kept_before(planted_clusters, tmp_path):
    root, _ = planted_clusters
    grown = tmp_path / "in"
    grown.mkdir()
    shutil.copy(root / "a.parquet", grown / "a.parquet")
    out = tmp_path / "out"
    run_job(cluster_job(grown, out))
    documents = read_documents(out, json.loads((out / "manifest.json").read_text()))
    assert dict(zip(documents.column("id").to_pylist(), documents.column("duplicate_count").to_pylist()))["a0"] == 3
    shutil.copy(root / "b.parquet", grown / "b.parquet")
    result = run_job(cluster_job(grown, out))
    assert result.report["dedup_index"]["indexed_shards"] == 1  # b was deduplicated against the index
    documents = read_documents(out, json.loads((out / "manifest.json").read_text()))
    assert dict(zip(documents.column("id").to_pylist(), documents.column("duplicate_count").to_pylist()))["a0"] == 6
