"""Markers are typed records that read what earlier versions wrote, and the hashes that
name committed work are the ones earlier versions computed, so their outputs resume."""

from __future__ import annotations

import json
import os

import pytest

from pipeline.config import load_job_spec
from pipeline.core.hashing import short_hash
from pipeline.core.markers import AnnotateMarker, DedupMarker, PackMarker, RunRecord, TokenizeMarker

# An annotate marker as the version before typed markers wrote it: two stages' counters at
# the top level, contamination's stats under stage_stats.
OLD_ANNOTATE_MARKER = {
    "annotated_bytes": 80,
    "annotated_docs": 8,
    "config_hash": "3f0c2e41d6a7b9c5",
    "fingerprint": {"size": 1234, "version": "1700000000.5"},
    "input_bytes": 100,
    "input_docs": 10,
    "languages": {"en": 7, "de": 1},
    "node": None,
    "pii_replaced": {"EMAIL_ADDRESS": 3},
    "quarantined": {},
    "rejected": {"validate": {"empty_text": 2}},
    "seconds": 0.5,
    "shard_key": "part-00000-dd32721c",
    "shard_quarantined": None,
    "uri": "/data/part-00000.parquet",
    "stage_stats": {
        "contamination": {
            "gsm8k": {"documents": 1, "items": ["7"], "examples": ["d1"], "annotated": 1, "excised": 0, "dropped": 0}
        }
    },
}


def test_an_old_annotate_marker_reads_into_each_stages_counters():
    marker = AnnotateMarker.from_json(OLD_ANNOTATE_MARKER)
    assert marker.kept_counts == {"language": {"en": 7, "de": 1}, "pii": {"EMAIL_ADDRESS": 3}}
    assert marker.stage_stats["contamination"]["gsm8k"]["documents"] == 1
    assert (marker.input_docs, marker.annotated_docs, marker.rejected) == (10, 8, {"validate": {"empty_text": 2}})
    again = AnnotateMarker.from_json(json.loads(json.dumps(marker.to_json())))
    assert again == marker and "languages" not in marker.to_json()


def test_an_old_dedup_marker_drops_what_the_report_now_computes():
    old = {
        "input_hash": "a" * 16,
        "removed_by_shard": {"s": {"exact_dedup": {"exact_duplicate": 2}}},
        "removals_version": {"s": "a" * 16},
        "index": {"indexed_shards": 0, "new_shards": 1},
        "stage_state": {"perplexity": {"cutoffs": {"en": [10.0, 20.0]}, "percentiles": [30, 60]}},
        "near_dedup": {"threshold": 0.8},
        "removed_total": 2,
    }
    marker = DedupMarker.from_json(old)
    assert marker.removed_total == 2 and marker.stage_state["perplexity"]["cutoffs"]["en"] == [10.0, 20.0]
    assert "near_dedup" not in marker.to_json()


def test_run_record_sums_counters_over_shards():
    shards = [
        AnnotateMarker(shard_key=k, uri=k, fingerprint={}, config_hash="h", kept_counts={"language": c})
        for k, c in (("a", {"en": 2}), ("b", {"en": 3, "fr": 1}), ("c", {}))
    ]
    run = RunRecord(spec=None, annotate=shards, dedup=DedupMarker(input_hash="x"))
    assert run.kept_counts("language") == {"en": 5, "fr": 1} and run.kept_counts("pii") == {}
    assert run.stage_stats("contamination") == []


def test_short_hash_is_canonical_json():
    assert short_hash({"b": 1, "a": [1, 2]}) == short_hash({"a": [1, 2], "b": 1})
    assert short_hash({"a": 1}) != short_hash({"a": 2}) and len(short_hash(None)) == 16


@pytest.fixture
def fixed_job(tmp_path, monkeypatch):
    """A spec with every capability on, over files with fixed sizes and mtimes, named by
    relative paths: the hashes below depend on nothing else."""
    monkeypatch.chdir(tmp_path)
    files = {
        "data/part-0.parquet": b"x" * 10,
        "evals/gsm8k.jsonl": b'{"question": "q", "answer": "a"}\n',
        "models/en.arpa": b"a" * 40,
        "models/en.sp.model": b"s" * 50,
        "models/lid.bin": b"l" * 30,
        "models/tok.model": b"t" * 20,
    }
    for i, (name, data) in enumerate(sorted(files.items())):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
        os.utime(tmp_path / name, (1_700_000_000 + i, 1_700_000_000 + i))
    return {
        "name": "golden",
        "seed": 7,
        "input": {"uri": "data", "text_column": "text"},
        "output": {"uri": "out", "write_rejects": True},
        "stages": {
            "language": {"enabled": True, "model": "models/lid.bin", "keep": ["en"], "min_score": 0.3},
            "quality": {"enabled": True},
            "perplexity": {"enabled": True, "models": {"en": {"lm": "models/en.arpa", "sp": "models/en.sp.model"}}},
            "contamination": {
                "enabled": True,
                "benchmarks": [{"name": "gsm8k", "uri": "evals/gsm8k.jsonl", "preset": "gsm8k"}],
            },
            "pii": {"enabled": True},
            "exact_dedup": {"enabled": True},
            "near_dedup": {"enabled": True},
            "tokenize": {"model": "models/tok.model"},
            "mix": {"weights": {"a": 0.5, "b": 0.5}},
            "pack": {"seq_len": 1024},
        },
    }


def test_hashes_of_committed_work_are_those_of_earlier_versions(fixed_job):
    from pipeline.phases.annotate.phase import annotate_config_hash
    from pipeline.phases.dedup import dedup_config_hash, dedup_input_hash
    from pipeline.phases.pack.phase import pack_config_hash
    from pipeline.phases.tokenize.phase import tokenize_config_hash
    from pipeline.stages.contamination.index import index_key

    # Defaults added since that change results (extended PII recognizers, informative
    # n-grams) redo the work they touch; pinned to what the stages did before, nothing is redone.
    new_defaults = load_job_spec(fixed_job, check_files=False)
    fixed_job["stages"]["pii"]["recognizers"] = "stock"
    fixed_job["stages"]["contamination"] |= {"min_informative_words": 0, "max_items_per_ngram": None}
    spec = load_job_spec(fixed_job, check_files=False)
    assert new_defaults.config_hash() != spec.config_hash()
    assert annotate_config_hash(new_defaults) != annotate_config_hash(spec)
    assert index_key(new_defaults.stages.contamination) != index_key(spec.stages.contamination)
    tokenizer = {"size": 1, "version": "2"}
    # Computed by the version before capabilities registered themselves (the package
    # reshaping): markers and index files it wrote are valid for this one.
    assert spec.config_hash() == "8721c5156a356841"
    assert annotate_config_hash(spec) == "a9c0f3d096aebc89"
    assert dedup_config_hash(spec) == "81c905eaddbb8600"
    # Tokenized shards changed format once since (4: document columns, a histogram of the mix
    # unit): they are redone once, which costs no annotate or dedup work.
    assert tokenize_config_hash(spec, "ah", "rv", tokenizer) == "4bf46c3f5f5cf76b"
    assert pack_config_hash(spec, "ph", [0.0, 0.5, 1.0], tokenizer) == "679a3a71195bc9c2"
    # The contamination index's file format changed once since (2: which n-grams count):
    # it is rebuilt once from the eval sets, which costs no annotate work.
    assert index_key(spec.stages.contamination) == "95570859334db0a1"
    # The dedup commit's hash now leaves out the mix settings, as the index's always did: a
    # new mixture no longer re-commits dedup. An old commit is redone once from the index,
    # without a global pass, and gives the same removals.
    shards = [
        AnnotateMarker(
            shard_key="part-0-abc",
            uri="u",
            config_hash="h1",
            fingerprint={"size": 10, "version": "1"},
            annotated_docs=5,
        )
    ]
    assert dedup_input_hash(spec, shards) == "af82f9daebe60dad"
    fixed_job["stages"]["mix"]["weights"] = {"a": 0.9, "b": 0.1}
    assert dedup_input_hash(load_job_spec(fixed_job, check_files=False), shards) == "af82f9daebe60dad"


def test_markers_round_trip():
    pack = PackMarker(index=3, config_hash="c", files={"bin": {"path": "p", "bytes": 1, "sha256": "s"}}, tokens=9)
    tokenize = TokenizeMarker(shard_key="s", uri="u", config_hash="c", removed={"near_dedup": {"near_duplicate": 1}})
    for marker in (pack, tokenize):
        assert type(marker).from_json(json.loads(json.dumps(marker.to_json()))) == marker


def test_a_capability_added_later_changes_no_hash_until_it_is_used(fixed_job):
    """The golden spec above names none of the capabilities added since (classifier, URL
    blocklist, word lists): their sections at defaults stay out of every hash, and a used
    one is in them."""
    from pipeline.phases.annotate.phase import annotate_config_hash

    spec = load_job_spec(fixed_job, check_files=False)
    assert {"classifier", "url_blocklist", "word_lists"} <= set(spec.stages.model_dump())
    assert {"classifier", "url_blocklist", "word_lists"}.isdisjoint(spec.capability_settings())
    used = dict(fixed_job)
    used["stages"] = {**fixed_job["stages"], "url_blocklist": {"enabled": False, "action": "annotate"}}
    changed = load_job_spec(used, check_files=False)
    assert changed.config_hash() != spec.config_hash()
    assert annotate_config_hash(changed) != annotate_config_hash(spec)
    assert changed.capability_settings()["url_blocklist"]["action"] == "annotate"
