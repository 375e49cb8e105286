"""train_arpa writes modified Kneser-Ney ARPA that KenLM loads, normalizes and ranks text with."""

import math
import random
from collections import Counter, defaultdict

import kenlm
import numpy as np
import pytest

from pipeline.tools.train_lm import arpa_ngram_counts, train_arpa
from tests.helpers import SHARED_DATA

SUBJECTS = ["the cat", "a dog", "my old neighbour", "the teacher", "a small bird", "her brother"]
VERBS = ["sees", "likes", "chases", "finds", "watches", "draws"]
OBJECTS = ["the ball", "a red apple", "the garden", "his friend", "some bread", "the river"]
ADVERBIALS = ["in the park", "at home", "near the river", "after lunch", "every morning", ""]


def grammar_sentences(count: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(part) for part in (SUBJECTS, VERBS, OBJECTS, ADVERBIALS)).split() for _ in range(count)]


def markov_sentences(count: int, seed: int) -> list[list[str]]:
    """Sentences from a random sparse word chain with Zipf-like transitions: varied counts at every order."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(60)]
    successors = {w: rng.sample(words, rng.randint(2, 8)) for w in words}
    sentences = []
    for _ in range(count):
        sentence = [rng.choice(words[:10])]
        for _ in range(rng.randint(2, 11)):
            options = successors[sentence[-1]]
            sentence += rng.choices(options, weights=[1 / (k + 1) for k in range(len(options))])
        sentences.append(sentence)
    return sentences


def train(sentences, path, order):
    return train_arpa(sentences, path, order=order, prefer_lmplz=False)


def state_after(model: kenlm.Model, history: list[str], from_sentence_start: bool) -> kenlm.State:
    state = kenlm.State()
    if from_sentence_start:
        model.BeginSentenceWrite(state)
    else:
        model.NullContextWrite(state)
    for word in history:
        following = kenlm.State()
        model.BaseScore(state, word, following)
        state = following
    return state


def log10_prob(model: kenlm.Model, history: list[str], from_sentence_start: bool, word: str) -> float:
    return model.BaseScore(state_after(model, history, from_sentence_start), word, kenlm.State())


def sample_histories(sentences: list[list[str]], order: int) -> list[tuple[list[str], bool]]:
    """Seen and unseen contexts of every length below the order, at and away from <s>."""
    histories = [([], True), ([], False)]
    for sentence in sentences[:3]:
        for length in range(1, order):
            histories.append((sentence[:length], True))
            histories.append((sentence[1 : 1 + length], False))
            histories.append((sentence[::-1][:length], True))
            histories.append((sentence[::-1][:length], False))
    histories.append((["never-seen-word"], True))
    histories.append((sentences[0][:1] + ["never-seen-word"] + sentences[0][1:3], False))
    return histories


TINY = [["a", "b"], ["a", "b"], ["b"]]


@pytest.mark.parametrize("corpus, order", [("markov", n) for n in range(2, 7)] + [("tiny", 3), ("tiny", 5)])
def test_every_history_gives_a_distribution_over_the_vocabulary(tmp_path, corpus, order):
    sentences = markov_sentences(300, seed=1) if corpus == "markov" else TINY
    train(sentences, tmp_path / "lm.arpa", order)
    model = kenlm.Model(str(tmp_path / "lm.arpa"))
    assert model.order == order
    vocabulary = sorted({w for s in sentences for w in s}) + ["</s>", "<unk>"]
    for history, from_start in sample_histories(sentences, order):
        total = sum(10 ** log10_prob(model, history, from_start, w) for w in vocabulary)
        assert total == pytest.approx(1.0, abs=1e-3), (history, from_start)


def read_arpa_unigrams(path) -> dict[str, float]:
    lines = path.read_text(encoding="utf-8").split("\\1-grams:\n", 1)[1].split("\n\n", 1)[0]
    return {word: float(logprob) for logprob, word, *_ in (line.split("\t") for line in lines.splitlines())}


def test_unigram_model_is_a_distribution(tmp_path):
    # KenLM refuses to load unigram models, so read the ARPA file itself.
    sentences = markov_sentences(300, seed=1)
    stats = train(sentences, tmp_path / "lm.arpa", order=1)
    unigrams = read_arpa_unigrams(tmp_path / "lm.arpa")
    assert stats.counts == (len(unigrams),) == arpa_ngram_counts(tmp_path / "lm.arpa")
    assert unigrams.pop("<s>") == -99
    assert sum(10**p for p in unigrams.values()) == pytest.approx(1.0, abs=1e-4)
    prob, _ = reference_model(sentences, order=1)
    assert all(p == pytest.approx(math.log10(prob(w, ())), abs=1e-4) for w, p in unigrams.items())


def test_tiny_corpus_matches_hand_computed_values(tmp_path):
    stats = train(TINY, tmp_path / "lm.arpa", order=2)
    # Unigram adjusted counts a=1, </s>=1, b=2: no count of 3, so order 1 falls back to
    # 0.5, 1, 1.5. Bigram counts <s> a=2, a b=2, b </s>=3, <s> b=1: n1=1, n2=2, n3=1, n4=0,
    # Y = 1/5, D1 = 1 - 2Y(2/1) = 0.2, D2 = 2 - 3Y(1/2) = 1.7, D3+ = 3 - 4Y(0/1) = 3.
    assert stats.fallback_orders == (1,)
    assert stats.discounts[1] == pytest.approx((0.2, 1.7, 3.0))
    assert stats.counts == (5, 4) == arpa_ngram_counts(tmp_path / "lm.arpa")
    model = kenlm.Model(str(tmp_path / "lm.arpa"))
    # Unigrams: denominator 4, gamma = (0.5 + 1 + 0.5) / 4 = 0.5, uniform 1/4 over a b </s> <unk>.
    p_a, p_b, p_eos, p_unk = 0.5 / 4 + 0.125, 1 / 4 + 0.125, 0.5 / 4 + 0.125, 0.125
    assert p_a + p_b + p_eos + p_unk == pytest.approx(1.0)
    expected = {
        (("<s>",), "a"): (2 - 1.7) / 3 + (1.9 / 3) * p_a,  # context <s>: a=2, b=1
        (("<s>",), "b"): (1 - 0.2) / 3 + (1.9 / 3) * p_b,
        (("<s>", "a"), "b"): 0.3 / 2 + 0.85 * p_b,  # context a: b=2, gamma 1.7/2
        (("<s>", "a"), "</s>"): 0.85 * p_eos,  # unseen: backs off
        (("<s>", "a"), "<unk>"): 0.85 * p_unk,
        (("b",), "</s>"): 0 / 3 + 1.0 * p_eos,  # context b: </s>=3, D3+ = 3
        ((), "b"): p_b,
    }
    for (history, word), p in expected.items():
        from_start = history[:1] == ("<s>",)
        got = log10_prob(model, list(history[1:] if from_start else history), from_start, word)
        assert got == pytest.approx(math.log10(p), abs=1e-4), (history, word)


def reference_model(sentences: list[list[str]], order: int):
    """Modified Kneser-Ney straight from its definition, with tuples and dicts: p(word | history)."""
    padded = [("<s>", *s, "</s>") for s in sentences]
    raw = Counter(p[i : i + n] for p in padded for n in range(1, order + 1) for i in range(len(p) - n + 1))
    del raw[("<s>",)]
    left_words = defaultdict(set)
    for gram in raw:
        left_words[gram[1:]].add(gram[0])
    adjusted = {g: c if len(g) == order or g[0] == "<s>" else len(left_words[g]) for g, c in raw.items()}
    discounts = {}
    for n in range(1, order + 1):
        n1, n2, n3, n4 = (sum(1 for g, c in adjusted.items() if len(g) == n and c == k) for k in (1, 2, 3, 4))
        y = n1 / (n1 + 2 * n2) if n1 and n2 else 0
        d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3) if n1 and n2 and n3 else None
        discounts[n] = d if d and all(0 <= x <= j for j, x in enumerate(d, 1)) else (0.5, 1.0, 1.5)
    extensions = defaultdict(dict)
    for gram, count in adjusted.items():
        extensions[gram[:-1]][gram[-1]] = count
    vocabulary_size = len(extensions[()]) + 1  # + <unk>

    def prob(word: str, history: tuple[str, ...]) -> float:
        history = history[max(0, len(history) - order + 1) :]
        lower = prob(word, history[1:]) if history else 1 / vocabulary_size
        seen = extensions.get(history)
        if not seen:
            return lower
        d = (0.0, *discounts[len(history) + 1])
        denominator = sum(seen.values())
        gamma = sum(d[min(c, 3)] for c in seen.values()) / denominator
        count = seen.get(word, 0)
        return (count - d[min(count, 3)]) / denominator + gamma * lower

    return prob, discounts


@pytest.mark.parametrize("order", [3, 5])
def test_matches_an_independent_reference_implementation(tmp_path, order):
    sentences = markov_sentences(300, seed=1)
    stats = train(sentences, tmp_path / "lm.arpa", order=order)
    prob, discounts = reference_model(sentences, order=order)
    for n in range(1, order + 1):
        assert stats.discounts[n - 1] == pytest.approx(discounts[n])
    assert stats.fallback_orders == ((5,) if order == 5 else ())  # 5-grams: n4 ~ n3, so D3+ < 0
    model = kenlm.Model(str(tmp_path / "lm.arpa"))
    vocabulary = sorted({w for s in sentences for w in s}) + ["</s>", "<unk>"]
    for history, from_start in sample_histories(sentences, order):
        context = ("<s>", *history) if from_start else tuple(history)
        context = tuple("<unk>" if w == "never-seen-word" else w for w in context)
        for word in vocabulary:
            assert log10_prob(model, history, from_start, word) == pytest.approx(
                math.log10(prob(word, context)), abs=1e-4
            ), (context, word)


def perplexity(model: kenlm.Model, words: list[str]) -> float:
    return 10 ** (-model.score(" ".join(words), bos=True, eos=True) / (len(words) + 1))


def roc_auc(lower: list[float], higher: list[float]) -> float:
    """How often a value from `lower` is below one from `higher` (ties count half)."""
    a, b = np.asarray(lower)[:, None], np.asarray(higher)[None, :]
    return float(np.mean((a < b) + 0.5 * (a == b)))


def shuffled_auc(model: kenlm.Model, paragraphs: list[list[str]]) -> float:
    rng = random.Random(0)
    shuffled = [rng.sample(p, len(p)) for p in paragraphs]
    return roc_auc([perplexity(model, p) for p in paragraphs], [perplexity(model, p) for p in shuffled])


def test_ordered_text_ranks_below_shuffled_on_generated_text(tmp_path):
    train(grammar_sentences(2000, seed=3), tmp_path / "lm.arpa", order=5)
    model = kenlm.Model(str(tmp_path / "lm.arpa"))
    held_out = grammar_sentences(800, seed=4)
    paragraphs = [sum(held_out[i : i + 4], []) for i in range(0, len(held_out), 4)]
    assert shuffled_auc(model, paragraphs) >= 0.95


def test_ordered_text_ranks_below_shuffled_on_wikitext(tmp_path):
    data = SHARED_DATA / "wikitext2"
    if not data.is_dir():
        pytest.skip(f"{data} is absent")
    lines = (data / "valid.txt").read_text(encoding="utf-8").splitlines()
    stats = train([words for line in lines if (words := line.lower().split())], tmp_path / "lm.arpa", order=5)
    assert stats.fallback_orders == ()
    model = kenlm.Model(str(tmp_path / "lm.arpa"))
    paragraphs = [
        words
        for line in (data / "test.txt").read_text(encoding="utf-8").splitlines()
        if len(words := line.lower().split()) >= 30 and words[0] != "="
    ]
    assert len(paragraphs) >= 200
    assert shuffled_auc(model, paragraphs) >= 0.95


def test_output_is_byte_identical_for_the_same_sentences(tmp_path):
    sentences = grammar_sentences(500, seed=5)
    train(sentences, tmp_path / "a.arpa", order=4)
    train(sentences, tmp_path / "b.arpa", order=4)
    train(sentences[::-1], tmp_path / "reversed.arpa", order=4)
    first = (tmp_path / "a.arpa").read_bytes()
    assert first == (tmp_path / "b.arpa").read_bytes() == (tmp_path / "reversed.arpa").read_bytes()


def test_special_words_in_the_input_are_dropped(tmp_path):
    train([["a", "<unk>", "b", "</s>"], ["<s>", "b"]], tmp_path / "special.arpa", order=3)
    train([["a", "b"], ["b"]], tmp_path / "plain.arpa", order=3)
    assert (tmp_path / "special.arpa").read_bytes() == (tmp_path / "plain.arpa").read_bytes()


@pytest.mark.parametrize("sentences, order", [([["a b"]], 2), ([["a", ""]], 2), ([], 2), ([["a"]], 0)])
def test_bad_input_is_rejected(tmp_path, sentences, order):
    with pytest.raises(ValueError):
        train(sentences, tmp_path / "lm.arpa", order)
