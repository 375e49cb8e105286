"""Near-duplicate removal end to end, against datasketch's in-memory MinHashLSH and a
single-process union-find over the same signatures and bands."""

import json
from pathlib import Path

import datasketch
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import run_job
from pipeline.core.layout import shard_key
from pipeline.stages.exact_dedup.normalize import normalize_for_dedup
from pipeline.stages.near_dedup import NearDedup, NearDedupConfig, cluster_size_buckets, dedup_units
from pipeline.stages.near_dedup.minhash import shingle_hash
from tests.helpers.graphs import union_find_components

pytestmark = pytest.mark.usefixtures("ray_local")


def reference_removed(corpus: Path, config: NearDedupConfig) -> set[tuple[str, int]]:
    docs = []
    for path in sorted(corpus.glob("*.parquet")):
        key = shard_key(str(corpus), str(path))
        for row, text in enumerate(pq.read_table(path).column("text").to_pylist()):
            if text and text.strip():
                docs.append(((key, row), text))
    docs.sort()
    # exact duplicates first: the first (shard, row) of each normalized text survives
    first_seen, exact_removed = {}, set()
    for locator, text in docs:
        normalized = normalize_for_dedup(text)
        if normalized in first_seen:
            exact_removed.add(locator)
        else:
            first_seen[normalized] = locator
    bands, rows = config.banding()
    lsh = datasketch.MinHashLSH(num_perm=config.num_perm, params=(bands, rows))
    hashes = {}
    units = dedup_units(pa.array([t for _, t in docs]), "word").to_pylist()
    for (locator, _), words in zip(docs, units):
        n = config.ngram
        shingles = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)] if len(words) >= n else [tuple(words)]
        if not words:
            continue
        minhash = datasketch.MinHash(
            num_perm=config.num_perm, seed=config.seed, hashfunc=shingle_hash, scheme="affine32"
        )
        minhash.update_batch(shingles)
        hashes[locator] = minhash
        lsh.insert(locator, minhash)
    order = {locator: i for i, (locator, _) in enumerate(docs)}
    edges = [(order[a], order[b]) for a in hashes for b in lsh.query(hashes[a]) if a != b]
    near_removed = {docs[node][0] for node in union_find_components(edges)}
    return exact_removed | near_removed


@pytest.fixture(scope="module")
def near_run(sample_corpus, tokenizer_model, tmp_path_factory):
    from tests.helpers import job_dict

    # Unverified, so the removals are exactly what LSH candidates and components give.
    out = tmp_path_factory.mktemp("near") / "out"
    stages = {"near_dedup": {"verify": "none"}}
    return out, run_job(job_dict(str(sample_corpus), str(out), str(tokenizer_model), stages=stages))


def test_near_dedup_agrees_with_datasketch_lsh(near_run, sample_corpus):
    out, result = near_run
    removed = {
        (r["shard_key"], r["row"])
        for p in (out / "rejects" / "dedup").glob("*.parquet")
        for r in pq.read_table(p).to_pylist()
    }
    expected = reference_removed(sample_corpus, NearDedupConfig(verify="none"))
    assert removed == expected, (len(removed), len(expected), sorted(removed ^ expected)[:10])
    assert result.report["rejected"]["near_dedup"]["near_duplicate"] > 0
    assert result.report["balance"]["ok"]


def test_bands_sorted_a_group_at_a_time_find_the_same_duplicates(sample_corpus, tokenizer_model, tmp_path, monkeypatch):
    """A large corpus has its bands sorted in groups (so the object store never holds every
    band row at once); forced to one band per group, the removals still equal datasketch's."""
    from pipeline.stages.near_dedup import lsh
    from tests.helpers import job_dict

    assert lsh.band_groups(100_000, 14) == [(0, 14)]
    assert lsh.band_groups(1_000_000, 14) == [(0, 3), (3, 7), (7, 10), (10, 14)]
    assert len(lsh.band_groups(10**9, 14)) == 14
    monkeypatch.setattr(lsh, "GROUP_BYTES", 1)
    out = tmp_path / "out"
    run_job(job_dict(str(sample_corpus), str(out), str(tokenizer_model), stages={"near_dedup": {"verify": "none"}}))
    removed = {
        (r["shard_key"], r["row"])
        for p in (out / "rejects" / "dedup").glob("*.parquet")
        for r in pq.read_table(p).to_pylist()
    }
    assert removed == reference_removed(sample_corpus, NearDedupConfig(verify="none"))


def test_dedup_units_are_the_documented_normalization():
    """The pipeline's words equal an independent implementation of the documented rule (the
    one the planted-duplicate truth uses)."""
    from tests.helpers.near_dup_corpus import words_of

    texts = [
        "Hello, World!  It's   a TEST—of punctuation...",
        "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ and café naïve coöperate",
        "numbers 3.14 and 1,000 and ½ and ²",
        "tabs\tand\nnew lines\r\n and  spaces",
        "Ελληνικά, Русский; 日本語のテキスト。 العربية!",
        "",
        "!!! ??? ...",
        "e\u0301 combining and emoji 🙂 here",
    ]
    assert dedup_units(pa.array(texts), "word").to_pylist() == [words_of(t) for t in texts]


def test_near_duplicates_record_their_survivor(near_run):
    out, _ = near_run
    rejects = [r for p in (out / "rejects" / "dedup").glob("*.parquet") for r in pq.read_table(p).to_pylist()]
    near = [r for r in rejects if r["reject_stage"] == "near_dedup"]
    assert near
    rejected_ids = {r["id"] for r in rejects}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["totals"]["documents"] > 0
    for r in near:
        assert r["duplicate_of"] and r["duplicate_of"] not in rejected_ids
    report = (out / "report.md").read_text()
    assert "## Near-duplicate LSH" in report and "| P(candidate) |" in report


def test_huge_bucket_becomes_a_star_not_all_pairs():
    """100k identical boilerplate pages in one bucket: 99,999 edges, not ~5e9 pairs."""
    import numpy as np

    from pipeline.stages.near_dedup.components import DST, SRC
    from pipeline.stages.near_dedup.lsh import BAND_KEY, NODE, _star_edges

    n = 100_000
    nodes = np.random.default_rng(0).permutation(n).astype(np.int64) + 10
    block = pa.table({BAND_KEY: pa.array(np.full(n, 42, np.int64)), NODE: pa.array(nodes)})
    edges = _star_edges(block)
    assert edges.num_rows == n - 1
    assert set(edges.column(DST).to_pylist()) == {10}
    assert sorted(edges.column(SRC).to_pylist()) == list(range(11, n + 10))


@pytest.mark.parametrize("survivor", ["first", "longest"])
def test_survivor_choice(survivor, make_job, tmp_path):
    words = [f"w{i}" for i in range(300)]
    base = " ".join(words)
    longer = base + " and a few more words at the end"
    other = " ".join(f"x{i}" for i in range(300))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    pq.write_table(pa.table({"id": ["short", "other"], "text": [base, other]}), corpus / "a.parquet")
    pq.write_table(pa.table({"id": ["long", "copy"], "text": [longer, base.upper()]}), corpus / "b.parquet")
    out = tmp_path / "out"
    run_job(make_job(corpus, out, stages={"near_dedup": {"survivor": survivor}}))
    rejects = {
        r["id"]: (r["reject_reason"], r["duplicate_of"])
        for p in (out / "rejects" / "dedup").glob("*.parquet")
        for r in pq.read_table(p).to_pylist()
    }
    if survivor == "first":
        assert rejects == {"long": ("near_duplicate", "short"), "copy": ("exact_duplicate", "short")}
    else:
        assert rejects == {"short": ("near_duplicate", "long"), "copy": ("exact_duplicate", "short")}


def test_survivor_lowest_perplexity(make_job, tokenizer_model, tmp_path):
    import sentencepiece as spm

    from pipeline.stages.language import LanguageConfig, LanguageId
    from pipeline.stages.perplexity import ccnet_normalize
    from pipeline.tools.train_lm import train_arpa

    words = [f"w{i}" for i in range(300)]
    fluent = " ".join(words)
    noisy = " ".join("zqxv" if i % 60 == 7 else w for i, w in enumerate(words))  # Jaccard about 0.87
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    train_arpa([sp.encode(ccnet_normalize(fluent), out_type=str)] * 20, tmp_path / "en.arpa", order=3)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    pq.write_table(pa.table({"id": ["noisy"], "text": [noisy]}), corpus / "a.parquet")
    pq.write_table(pa.table({"id": ["fluent"], "text": [fluent]}), corpus / "b.parquet")
    language = LanguageId(LanguageConfig())
    language.setup()
    labels = set(language.predict([fluent, noisy])[0])  # "w0 w1 ..." is no language; use what lid.176 says
    out = tmp_path / "out"
    run_job(
        make_job(
            corpus,
            out,
            stages={
                "perplexity": {
                    "enabled": True,
                    "models": {lang: {"lm": str(tmp_path / "en.arpa"), "sp": str(tokenizer_model)} for lang in labels},
                },
                "near_dedup": {"survivor": "lowest_perplexity"},
            },
        )
    )
    rejects = {
        r["id"]: (r["reject_reason"], r["duplicate_of"])
        for p in (out / "rejects" / "dedup").glob("*.parquet")
        for r in pq.read_table(p).to_pylist()
    }
    assert rejects == {"noisy": ("near_duplicate", "fluent")}


def chain_texts() -> dict[str, str]:
    """A~B and B~C at Jaccard 0.87, A and C at 0.76: below the 0.8 threshold."""
    words = [f"w{i}" for i in range(300)]

    def substituted(base: list[str], positions: list[int], tag: str) -> list[str]:
        return [f"{tag}{i}" if i in positions else w for i, w in enumerate(base)]

    b = substituted(words, [30, 90, 150, 210], "b")
    c = substituted(b, [60, 120, 180, 240], "c")
    return {"A": " ".join(words), "B": " ".join(b), "C": " ".join(c)}


@pytest.fixture(scope="module")
def chain_corpus(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("chain") / "corpus"
    corpus.mkdir()
    texts = chain_texts()
    other = " ".join(f"x{i}" for i in range(300))
    pq.write_table(pa.table({"id": ["A", "other"], "text": [texts["A"], other]}), corpus / "a.parquet")
    pq.write_table(pa.table({"id": ["B", "C"], "text": [texts["B"], texts["C"]]}), corpus / "b.parquet")
    return corpus


def dedup_rejects(out: Path) -> dict[str, dict]:
    return {
        r["id"]: r for p in sorted((out / "rejects" / "dedup").glob("*.parquet")) for r in pq.read_table(p).to_pylist()
    }


def test_chain_texts_are_a_chain():
    from tests.helpers.near_dup_corpus import true_jaccard

    t = chain_texts()
    assert true_jaccard(t["A"], t["B"]) >= 0.8 and true_jaccard(t["B"], t["C"]) >= 0.8
    assert true_jaccard(t["A"], t["C"]) < 0.8


@pytest.fixture(scope="module")
def chain_run(chain_corpus, tokenizer_model, tmp_path_factory):
    from tests.helpers import job_dict

    out = tmp_path_factory.mktemp("chain_run") / "out"
    return out, run_job(job_dict(str(chain_corpus), str(out), str(tokenizer_model)))


def test_a_chained_duplicate_records_the_document_it_matched(chain_run):
    """C goes for survivor A, but is recorded as matched to B, at B and C's true Jaccard; the
    report shows C beside B and names A as the document kept."""
    from pipeline.report_page import _examples_html
    from tests.helpers.near_dup_corpus import true_jaccard

    texts = chain_texts()
    out, result = chain_run
    rejects = dedup_rejects(out)
    assert set(rejects) == {"B", "C"}
    assert {r["duplicate_of"] for r in rejects.values()} == {"A"}
    assert rejects["B"]["matched_to"] == "A"
    assert rejects["C"]["matched_to"] == "B"
    assert rejects["C"]["similarity"] == pytest.approx(true_jaccard(texts["B"], texts["C"]))
    assert all(r["similarity"] >= 0.8 for r in rejects.values())
    examples = {e["id"]: e for e in result.report["examples"]["near_dedup"]["near_duplicate"]}
    assert examples["C"]["matched"]["id"] == "B" and examples["C"]["matched"]["similarity"] >= 0.8
    assert examples["C"]["survivor"]["id"] == "A" and "matched" not in examples["B"]
    page = _examples_html(result.report)
    assert "matched to (similarity 0." in page and "at the end of the chain of matches: <code>A</code>" in page
    assert "kept instead (similarity 0." in page  # B, matched to A directly
    assert "  - matched to `B`, similarity 0." in (out / "report.md").read_text()
    # issue 23: one cluster of three documents, in report.json and as a chart
    assert result.report["near_dedup"]["cluster_sizes"] == {"3": 1}
    chart = next(c for c in NearDedup.report_charts(result.report) if c.key == "near_dup_cluster_sizes")
    assert chart.data == [{"cluster size": "3", "clusters": 1}]


def test_cluster_sizes_are_bucketed_for_the_chart():
    assert cluster_size_buckets({"2": 5, "3": 1, "7": 2, "12": 1, "40": 1, "5000": 1}) == {
        "2": 5,
        "3": 1,
        "6-10": 2,
        "11-100": 2,
        "1001+": 1,
    }
    assert cluster_size_buckets({}) == {}


def test_duplicate_links_are_deterministic(chain_run, chain_corpus, make_job, tmp_path):
    """The same input and seed write the same removals, byte for byte."""
    out, _ = chain_run
    again = tmp_path / "again"
    run_job(make_job(chain_corpus, again))
    first, second = (sorted((o / "rejects" / "dedup").glob("*.parquet")) for o in (out, again))
    assert first and [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    removed = (sorted((o / "work" / "dedup" / "removed").rglob("*.parquet")) for o in (out, again))
    assert [pq.read_table(p) for p in next(removed)] == [pq.read_table(p) for p in next(removed)]


def test_not_transitive_keeps_a_document_below_the_threshold_from_its_survivor(chain_corpus, make_job, tmp_path):
    from tests.helpers.near_dup_corpus import true_jaccard

    texts = chain_texts()
    out = tmp_path / "out"
    run_job(make_job(chain_corpus, out, stages={"near_dedup": {"transitive": False}}))
    rejects = dedup_rejects(out)
    assert set(rejects) == {"B"}
    assert (rejects["B"]["duplicate_of"], rejects["B"]["matched_to"]) == ("A", "A")
    assert rejects["B"]["similarity"] == pytest.approx(true_jaccard(texts["A"], texts["B"]))


def test_not_transitive_needs_verification():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="transitive: false"):
        NearDedupConfig(transitive=False, verify="none")
    NearDedupConfig(transitive=False, verify="signature")
