"""Mixing: domain assignment, the plan's rates under each shortfall policy, and where
copies of a document land."""

import numpy as np
import pyarrow as pa
import pytest

from pipeline.phases.mix.plan import (
    MixConfig,
    MixtureError,
    assign_domains,
    copy_counts,
    document_rates,
    effective_rate,
    expand_copies,
    pile_of,
    plan_mixture,
    shard_boundaries,
    uniform_keys,
)


def test_domains_from_rules_then_column_then_default():
    config = MixConfig(
        domain_rules=[
            {"domain": "wiki", "url_regex": r"^https?://[a-z]+\.wikipedia\.org/"},
            {"domain": "forum", "files": "forums/*.parquet"},
        ]
    )
    urls = pa.array(["https://en.wikipedia.org/wiki/X", "https://example.com", None, "http://wikipedia.org.evil/"])
    column = pa.array(["web", None, "books", "  "])
    assert assign_domains(config, urls, column, "crawl/a.parquet", 4).to_pylist() == ["wiki", "other", "books", "other"]
    assert assign_domains(config, urls, column, "forums/b.parquet", 4).to_pylist() == [
        "wiki",
        "forum",
        "forum",
        "forum",
    ]
    assert assign_domains(MixConfig(), None, None, "x.parquet", 2).to_pylist() == ["other", "other"]


def test_bad_rules_and_weights_are_config_errors():
    with pytest.raises(ValueError, match="exactly one of url_regex or files"):
        MixConfig(domain_rules=[{"domain": "a"}])
    with pytest.raises(ValueError, match="not a valid regular expression"):
        MixConfig(domain_rules=[{"domain": "a", "url_regex": "("}])
    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        MixConfig(weights={"a": -1})


AVAILABLE = {"web": 1000, "code": 100, "books": 300}


def test_natural_ratio_and_natural_with_budget():
    plan = plan_mixture(MixConfig(), AVAILABLE)
    assert plan.rates == {"books": 1.0, "code": 1.0, "web": 1.0} and plan.budget == 1400
    plan = plan_mixture(MixConfig(budget_tokens=700), AVAILABLE)
    assert all(r == 0.5 for r in plan.rates.values())
    plan = plan_mixture(MixConfig(budget_tokens=14000, max_epochs=4), AVAILABLE)
    assert all(r == 4 for r in plan.rates.values()) and "max_epochs" in plan.notes[0]
    with pytest.raises(MixtureError, match="needs 10.00 epochs"):
        plan_mixture(MixConfig(budget_tokens=14000, on_shortfall="fail"), AVAILABLE)


def test_weights_with_budget_up_and_down_sample():
    plan = plan_mixture(MixConfig(weights={"web": 2, "code": 1, "books": 1}, budget_tokens=800), AVAILABLE)
    assert plan.weights == {"books": 0.25, "code": 0.25, "web": 0.5}
    assert plan.target == {"books": 200, "code": 200, "web": 400}
    assert plan.rates == pytest.approx({"books": 200 / 300, "code": 2.0, "web": 0.4})
    assert plan.notes == []


def test_weights_without_budget_take_the_most_with_no_repeats():
    plan = plan_mixture(MixConfig(weights={"web": 0.5, "code": 0.25, "books": 0.25}), AVAILABLE)
    assert plan.budget == pytest.approx(400)  # code: 100 tokens is a quarter
    assert plan.rates["code"] == pytest.approx(1.0) and max(plan.rates.values()) <= 1


def test_shortfall_policies():
    config = {"weights": {"web": 0.5, "code": 0.5}, "budget_tokens": 1000}
    available = {"web": 1000, "code": 100}
    with pytest.raises(MixtureError, match="code needs 5.00 epochs of its 100 tokens"):
        plan_mixture(MixConfig(**config, on_shortfall="fail"), available)
    keep = plan_mixture(MixConfig(**config), available)
    assert keep.target == pytest.approx({"code": 400, "web": 400})  # mixture 50/50 kept, budget 800
    assert keep.rates["code"] == pytest.approx(4.0) and "reduced to 800" in keep.notes[0]
    fill = plan_mixture(MixConfig(**config, on_shortfall="keep_budget"), available)
    assert fill.target == pytest.approx({"code": 400, "web": 600})  # budget 1000 kept
    assert sum(fill.target.values()) == pytest.approx(1000)


def test_unweighted_and_missing_domains():
    with pytest.raises(MixtureError, match=r"no weight for domains present in the data: books \(300 tokens\)"):
        plan_mixture(MixConfig(weights={"web": 1, "code": 1}), AVAILABLE)
    plan = plan_mixture(MixConfig(weights={"web": 1, "code": 1, "books": 0}), AVAILABLE)
    assert plan.rates["books"] == 0 and "books left out" in plan.notes[-1]
    plan = plan_mixture(MixConfig(weights={"web": 1, "code": 1, "books": 1, "news": 1}), AVAILABLE)
    assert "news" in plan.notes[0] and set(plan.weights) == {"web", "code", "books"}
    with pytest.raises(MixtureError, match="no kept documents: news"):
        plan_mixture(MixConfig(weights={"web": 1, "code": 1, "books": 1, "news": 1}, on_shortfall="fail"), AVAILABLE)


def test_effective_rate_meets_the_token_target():
    rng = np.random.default_rng(0)
    u = uniform_keys(7, "shard", np.arange(3000))
    tokens = rng.integers(10, 2000, len(u))
    histogram = np.bincount((u * 1024).astype(int), weights=tokens, minlength=1024)
    for rate in (0.1, 0.37, 1.0, 2.5, 3.9):
        r = effective_rate(rate, int(tokens.sum()), histogram)
        realized = int((copy_counts(u, np.full(len(u), r)) * tokens).sum())
        assert realized == pytest.approx(rate * tokens.sum(), rel=0.002)
        assert np.floor(r) == np.floor(rate)


def test_copies_are_evenly_spaced_and_each_lands_in_exactly_one_shard():
    u = uniform_keys(1, "s", np.arange(5000))
    assert uniform_keys(1, "s", np.arange(3)).tolist() == u[:3].tolist()
    assert uniform_keys(2, "s", np.arange(3)).tolist() != u[:3].tolist()
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.02
    rate = np.full(len(u), 2.5)
    counts = copy_counts(u, rate)
    assert set(counts.tolist()) == {2, 3} and counts.mean() == pytest.approx(2.5, abs=0.05)
    doc, copy = expand_copies(u, rate)
    position = (u[doc] + copy) / rate[doc]
    assert position.min() >= 0 and position.max() < 1
    for d in (0, 1, 2):
        gaps = np.diff(position[doc == d])
        assert np.allclose(gaps, 1 / 2.5)  # copies of one document are 1/rate of the order apart
    piles = pile_of(u[doc], copy, rate[doc], np.linspace(0, 1, 8))
    assert np.array_equal(piles, np.floor(position * 7).astype(int))
    assert np.bincount(piles).min() > 0.8 * len(doc) / 7


@pytest.mark.parametrize("num_shards", [5, 13, 29])
def test_shard_boundaries_give_shards_of_equal_tokens(num_shards):
    rng = np.random.default_rng(num_shards)
    domains = {
        "a": (uniform_keys(0, "a", np.arange(3000)), rng.integers(10, 3000, 3000), 2.37),
        "b": (uniform_keys(0, "b", np.arange(800)), rng.integers(10, 300, 800), 0.41),
    }
    histograms = {d: np.bincount((u * 1024).astype(int), weights=t, minlength=1024) for d, (u, t, _) in domains.items()}
    rates = {d: r for d, (_, _, r) in domains.items()}
    boundaries = shard_boundaries(rates, histograms, num_shards)
    assert boundaries[0] == 0 and boundaries[-1] == 1 and np.all(np.diff(boundaries) > 0)
    per_shard = np.zeros(num_shards)
    for u, tokens, rate in domains.values():
        doc, copy = expand_copies(u, np.full(len(u), rate))
        np.add.at(per_shard, pile_of(u[doc], copy, np.full(len(doc), rate), boundaries), tokens[doc])
    assert per_shard.max() / per_shard.min() < 1.03  # equal-width ranges: 1.15 at 13 shards


@pytest.mark.parametrize("rate", [0.3, 1.0, 2.5, 4.0])
def test_pack_key_ranges_cover_every_copy_of_their_shard(rate):
    from pipeline.phases.pack.phase import key_ranges

    u = uniform_keys(3, "k", np.arange(4000))
    rates = np.full(len(u), rate)
    doc, copy = expand_copies(u, rates)
    for num_shards in (1, 3, 16):
        boundaries = np.sort(np.concatenate([[0, 1], np.random.default_rng(num_shards).random(num_shards - 1)]))
        piles = pile_of(u[doc], copy, rates[doc], boundaries)
        for index in range(num_shards):
            ranges = key_ranges(rate, boundaries[index], boundaries[index + 1])
            in_range = np.zeros(len(u), dtype=bool)
            for low, high in ranges:
                in_range |= (u >= low) & (u <= high)
            assert in_range[doc[piles == index]].all()


def test_a_documents_only_mix_counts_text_bytes():
    plan = plan_mixture(MixConfig(weights={"web": 2, "code": 1, "books": 1}, budget_bytes=800), AVAILABLE, "bytes")
    assert plan.unit == "bytes" and plan.target == {"books": 200, "code": 200, "web": 400}
    with pytest.raises(MixtureError, match=r"no weight for domains present in the data: books \(300 bytes\)"):
        plan_mixture(MixConfig(weights={"web": 1, "code": 1}), AVAILABLE, "bytes")


def test_rehydration_weights_follow_the_step_at_or_below_each_cluster_size():
    config = MixConfig(
        rehydration=[{"min_size": 2, "copies": 2}, {"min_size": 5, "copies": 3}, {"min_size": 100, "copies": 1}]
    )
    sizes = np.array([1, 2, 4, 5, 99, 100, 5000])
    assert config.rehydration_weights(sizes).tolist() == [1, 2, 2, 3, 3, 1, 1]
    assert config.rehydration_levels() == [1.0, 2.0, 3.0]
    rates = document_rates(np.full(7, 1.5), config.rehydration_weights(sizes), max_epochs=4)
    assert rates.tolist() == [1.5, 3.0, 3.0, 4.0, 4.0, 1.5, 1.5]  # capped at max_epochs
    with pytest.raises(ValueError, match="min_size must ascend"):
        MixConfig(rehydration=[{"min_size": 5, "copies": 2}, {"min_size": 2, "copies": 3}])


def test_the_real_data_floor_fails_or_rebalances_a_mostly_synthetic_mixture():
    config = {"weights": {"web": 0.1, "synth": 0.9}, "budget_tokens": 1000}
    available = {"web": 1000, "synth": 2000}
    with pytest.raises(
        MixtureError,
        match=r"real data would be 10.0% of the output, under .*min_real_fraction 0.2 \(synthetic: synth\)",
    ):
        plan_mixture(MixConfig(**config, synthetic_domains=["synth"]), available)
    rebalanced = plan_mixture(MixConfig(**config, on_real_floor="rebalance"), available, synthetic={"synth"})
    assert rebalanced.target == pytest.approx({"web": 100, "synth": 400})  # real 100 is 20% of 500
    assert rebalanced.rates == pytest.approx({"web": 0.1, "synth": 0.2})
    assert "rebalanced" in rebalanced.notes[-1]
    # at or above the floor, or with no real domain at all (an all-synthetic set), nothing changes
    fine = plan_mixture(
        MixConfig(weights={"web": 0.3, "synth": 0.7}, budget_tokens=1000), available, synthetic={"synth"}
    )
    assert fine.target == pytest.approx({"web": 300, "synth": 700})
    only = plan_mixture(MixConfig(), {"synth": 2000}, synthetic={"synth"})
    assert only.target == {"synth": 2000}
    unmarked = plan_mixture(MixConfig(**config), available)
    assert unmarked.target == pytest.approx({"web": 100, "synth": 900})
