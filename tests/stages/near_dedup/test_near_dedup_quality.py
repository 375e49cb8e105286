"""Precision and recall of near-duplicate removal against planted edits with known true
Jaccard similarity, at the default threshold 0.8 with 128 permutations."""

import random

import pyarrow.parquet as pq
import pytest

from pipeline import run_job
from tests.helpers import SHARED_DATA
from tests.helpers.near_dup_corpus import build, precision_recall, wikitext_paragraphs

pytestmark = pytest.mark.usefixtures("ray_local")


def removed_ids(out):
    return {r["id"] for p in (out / "rejects" / "dedup").glob("*.parquet") for r in pq.read_table(p).to_pylist()}


def evaluate(originals, tmp_path, make_job):
    planted = build(originals, tmp_path / "corpus", seed=0)
    run_job(make_job(tmp_path / "corpus", tmp_path / "out", stages={"near_dedup": {"enabled": True}}))
    # every removal is explained by one verified match, here the copy's own original
    truth = {p["id"]: p for p in planted}
    near = [
        r
        for p in (tmp_path / "out" / "rejects" / "dedup").glob("*.parquet")
        for r in pq.read_table(p).to_pylist()
        if r["reject_stage"] == "near_dedup"
    ]
    assert near and all(r["similarity"] >= 0.8 for r in near)
    for r in near:
        if r["id"] in truth and r["matched_to"] == truth[r["id"]]["of"]:
            assert r["similarity"] == pytest.approx(truth[r["id"]]["jaccard"], abs=0.005), r["id"]
    matched_own = sum(r["id"] in truth and r["matched_to"] == truth[r["id"]]["of"] for r in near)
    assert matched_own >= 0.95 * len(near)
    return precision_recall(removed_ids(tmp_path / "out"), planted, 0.8)


def test_planted_near_duplicates_fixture(tmp_path, make_job):
    # Originals that share no 5-gram with each other, so every removal is judged by its plant.
    rng = random.Random(5)
    vocabulary = [f"w{i}" for i in range(20000)]
    originals = [" ".join(rng.choice(vocabulary) for _ in range(rng.randint(60, 200))) for _ in range(500)]
    scores = evaluate(originals, tmp_path, make_job)
    print("fixture near-dedup", scores)
    assert scores["truth"] >= 80
    assert scores["recall"] >= 0.95 and scores["precision"] >= 0.99


@pytest.mark.skipif(not (SHARED_DATA / "wikitext2" / "valid.txt").exists(), reason="../shared/data/wikitext2 is absent")
def test_planted_near_duplicates_wikipedia(tmp_path, make_job):
    originals = wikitext_paragraphs(SHARED_DATA / "wikitext2" / "valid.txt")
    scores = evaluate(originals, tmp_path, make_job)
    print("wikitext near-dedup", scores)
    assert scores["truth"] >= 200
    assert scores["recall"] >= 0.95 and scores["precision"] >= 0.99
