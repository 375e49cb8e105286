"""The synthetic-against-real comparison of the report, on generated text with known shape."""

import random

import numpy as np
import pyarrow as pa
import pytest

from pipeline.phases.mix.profile import DomainProfiles, compare, comparison_lines


def _varied(n: int, seed: int, vocabulary: int = 5_000) -> list[str]:
    """Documents of 40-80 words drawn from a large vocabulary: few repeated 3-grams."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocabulary)]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(40, 80))) for _ in range(n)]


def _echoing(n: int, seed: int) -> list[str]:
    """What a generator stuck in one pattern writes: one opening, one frame, a slot filled."""
    rng = random.Random(seed)
    topics = [f"topic{i}" for i in range(50)]
    return [
        f"Sure! Here is a short answer about {rng.choice(topics)}. It is important to note that "
        f"{rng.choice(topics)} matters, and in conclusion {rng.choice(topics)} is worth knowing."
        for _ in range(n)
    ]


def _profile(texts_by_domain: dict[str, list[str]], seed: int = 0) -> dict:
    profiles = DomainProfiles()
    domains = [d for d, texts in texts_by_domain.items() for _ in texts]
    texts = [t for d in texts_by_domain for t in texts_by_domain[d]]
    keys = np.random.default_rng(seed).random(len(texts))
    profiles.add_kept(pa.array(domains), pa.array(texts), keys)
    return profiles.to_json()


def test_an_echoing_generator_shows_as_low_diversity_and_one_opening():
    shard = _profile({"generated": _echoing(400, 1), "web": _varied(2_000, 2)})
    result = compare([shard], ["generated"])["sides"]
    synthetic, real = result["synthetic"], result["real"]
    assert synthetic["domains"] == ["generated"] and real["domains"] == ["web"]
    assert synthetic["documents"] == 400 and real["documents"] == 2_000
    assert synthetic["openings"][0] == {"opening": "sure here", "share": 1.0}
    assert synthetic["top_openings_share"] == 1.0
    assert real["top_openings_share"] < 0.05
    assert synthetic["distinct_ngrams"]["ratio"] < 0.2 < 0.9 < real["distinct_ngrams"]["ratio"]
    lengths = [len(t) for t in _echoing(400, 1)]
    assert synthetic["length_chars"]["p50"] == pytest.approx(float(np.percentile(lengths, 50)), rel=0.03)
    lines = "\n".join(comparison_lines(compare([shard], ["generated"])))
    assert "| share of the 10 most frequent openings | 100.0% |" in lines
    assert '"sure here" 100.0%' in lines


def test_sets_of_different_sizes_are_compared_at_about_the_same_size():
    """The same process writes both sides, one 16 times larger: distinct 3-grams per 3-gram of
    the whole sets differ (repeats pile up in the larger one), at the same size they agree."""
    small, large = _varied(150, 3, vocabulary=30), _varied(2_400, 4, vocabulary=30)
    shard = _profile({"generated": small, "web": large})
    sides = compare([shard], ["generated"])["sides"]
    synthetic, real = sides["synthetic"]["distinct_ngrams"], sides["real"]["distinct_ngrams"]
    assert real["sample_rate"] == 1 / 16 and synthetic["sample_rate"] == 1
    assert real["measured_on_ngrams"] == pytest.approx(synthetic["measured_on_ngrams"], rel=0.35)
    assert real["ratio"] == pytest.approx(synthetic["ratio"], rel=0.08)
    whole_real = _profile({"web": large})
    assert compare([whole_real], [])["sides"]["real"]["distinct_ngrams"]["ratio"] < real["ratio"] - 0.1


def test_shards_merge_to_the_profile_of_the_whole():
    texts = {"generated": _echoing(300, 5), "web": _varied(600, 6)}
    domains = [d for d, ts in texts.items() for _ in ts]
    flat = [t for d in texts for t in texts[d]]
    keys = np.random.default_rng(7).random(len(flat))
    whole, parts = DomainProfiles(), [DomainProfiles(), DomainProfiles()]
    whole.add_kept(pa.array(domains), pa.array(flat), keys)
    for i, part in enumerate(parts):
        chosen = slice(i * 450, (i + 1) * 450)
        part.add_kept(pa.array(domains[chosen]), pa.array(flat[chosen]), keys[chosen])
    assert compare([p.to_json() for p in parts], ["generated"]) == compare([whole.to_json()], ["generated"])


def test_duplicates_removed_count_per_side():
    profiles = DomainProfiles()
    profiles.add_kept(
        pa.array(["generated"] * 90 + ["web"] * 100),
        pa.array(_echoing(90, 8) + _varied(100, 9)),
        np.random.default_rng(0).random(190),
    )
    profiles.add_removed(pa.array(["generated"] * 10), ["near_dedup"] * 6 + ["exact_dedup"] * 4)
    sides = compare([profiles.to_json()], ["generated"])["sides"]
    assert sides["synthetic"]["duplicates_removed"] == {"exact_dedup": 4, "near_dedup": 6}
    assert sides["synthetic"]["duplicate_rate"] == 0.1
    assert sides["real"]["duplicate_rate"] == 0.0
    assert sides["synthetic"]["duplicates_of"] == {} and sides["real"]["duplicates_of"] == {}


def test_synthetic_duplicates_split_by_what_they_duplicate_across_shards():
    shards = [DomainProfiles(), DomainProfiles()]
    for shard in shards:
        shard.add_kept(pa.array(["generated"] * 45), pa.array(_echoing(45, 8)), np.random.default_rng(1).random(45))
        shard.add_removed(pa.array(["generated"] * 5), ["near_dedup"] * 3 + ["exact_dedup"] * 2)
    shards[0].add_duplicate_sides(
        [("generated", "near_dedup", "synthetic")] * 3 + [("generated", "exact_dedup", "real")] * 2
    )
    shards[1].add_duplicate_sides(
        [("generated", "near_dedup", "synthetic"), ("generated", "near_dedup", "unlocated")]
        + [("generated", "near_dedup", "real")]
        + [("generated", "exact_dedup", "synthetic")] * 2
    )
    comparison = compare([s.to_json() for s in shards], ["generated"])
    assert comparison["sides"]["synthetic"]["duplicates_of"] == {
        "real": {"removed": {"exact_dedup": 2, "near_dedup": 1}, "rate": 0.03},
        "synthetic": {"removed": {"exact_dedup": 2, "near_dedup": 4}, "rate": 0.06},
        "unlocated": {"removed": {"near_dedup": 1}, "rate": 0.01},
    }
    lines = "\n".join(comparison_lines(comparison))
    assert "| of which duplicates within the synthetic set | 6.00% (exact_dedup 2, near_dedup 4) |" in lines
    assert "| of which duplicates of documents no longer annotated | 1.00% (near_dedup 1) |" in lines


def test_a_job_without_profiles_has_no_comparison():
    assert compare([], ["generated"]) is None


def test_a_side_without_three_word_documents_has_no_diversity_figure():
    shard = _profile({"generated": ["Yes.", "No way", "Sure thing"] * 10, "web": _varied(50, 10)})
    sides = compare([shard], ["generated"])["sides"]
    assert "distinct_ngrams" not in sides["synthetic"] and sides["synthetic"]["documents"] == 30
    assert sides["real"]["distinct_ngrams"]["ratio"] > 0.9
    assert "| distinct 3-grams per 3-gram | n/a |" in "\n".join(comparison_lines(compare([shard], ["generated"])))
