"""``refinery train-lm``: an n-gram language model with interpolated modified Kneser-Ney, as ARPA.

The estimate is the one KenLM's ``lmplz`` makes (Heafield, Pouzyrevsky, Clark and Koehn 2013,
"Scalable Modified Kneser-Ney Language Model Estimation"), after Chen and Goodman 1998 ("An
Empirical Study of Smoothing Techniques for Language Modeling", sections 3 and 4.1.6). When
``lmplz`` is on PATH it is run instead. For a model of order N:

* Each sentence is wrapped as ``<s> w1 ... wk </s>``; n-grams never cross sentences.
* Adjusted counts a(g): the raw count for N-grams and for n-grams that begin with ``<s>``
  (nothing can precede them); otherwise the continuation count, the number of distinct words
  v such that ``v g`` occurs.
* Three discounts per order from the count-of-counts n1..n4 of that order's adjusted counts:
  Y = n1 / (n1 + 2 n2), D1 = 1 - 2Y n2/n1, D2 = 2 - 3Y n3/n2, D3+ = 3 - 4Y n4/n3. Where one of
  n1..n3 is zero or a discount Dj leaves [0, j] (small or artificial data), that order uses
  lmplz's ``--discount_fallback`` values 0.5, 1, 1.5 instead; ``LMStats.fallback_orders`` says
  which orders did.
* p(w | h) = (a(hw) - D(a(hw))) / sum_v a(hv) + gamma(h) p(w | h'), where h' is h without its
  first word and gamma(h) = (D1 N1(h.) + D2 N2(h.) + D3+ N3+(h.)) / sum_v a(hv) is the mass the
  discounts freed. Unigrams interpolate with the uniform distribution over the vocabulary:
  every word, ``</s>`` and ``<unk>``, but not ``<s>``.

Every n-gram is written with its interpolated probability and every context h with backoff
gamma(h) (1 where h is never a context), so KenLM's backoff rule, gamma(h) p(w | h') for an
unseen hw, gives back the interpolated distribution exactly.

Special words are handled as lmplz handles them. ``<s>`` is only ever a context: it has log10
probability -99. ``<unk>`` has adjusted count 0, so it gets only its uniform share of the
unigram interpolation mass, gamma() / |V| (lmplz's default; SRILM's alternative, giving
``<unk>`` all of gamma(), would make one unseen word as likely as all the rare words together).
``<s>``, ``</s>`` and ``<unk>`` in the input are dropped, like ``lmplz --skip_symbols``.

Words get integer ids in sorted order, and an n-gram's id is the rank of (its (n-1)-gram
prefix's id, its last word's id) among the n-grams that occur, so each order is one
``np.unique`` over corpus positions and ids follow the lexicographic order of the n-grams.
The ARPA file is therefore sorted, and byte-identical for the same sentences in any order.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
SPECIAL_WORDS = (BOS, EOS, UNK)
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
# ARPA's log10 of probability zero.
LOG10_ZERO = -99.0


@dataclass(frozen=True)
class LMStats:
    order: int
    sentences: int
    tokens: int  # as read, before dropping special words
    counts: tuple[int, ...]  # n-grams in the ARPA file, per order
    discounts: tuple[tuple[float, float, float], ...]  # (D1, D2, D3+) per order; empty from lmplz
    fallback_orders: tuple[int, ...]  # orders that used FALLBACK_DISCOUNTS
    backend: str  # "python" or "lmplz"


def train_arpa(
    sentences: Iterable[list[str]], output: str | Path, order: int = 5, prefer_lmplz: bool = True
) -> LMStats:
    """Train on tokenized sentences (one list of tokens per sentence) and write ARPA to output.

    Tokens must be non-empty and free of whitespace. Uses ``lmplz`` when it is on PATH and
    ``prefer_lmplz`` is set.
    """
    if order < 1:
        raise ValueError(f"order must be at least 1, got {order}")
    lmplz = shutil.which("lmplz") if prefer_lmplz else None
    if lmplz:
        return _train_with_lmplz(lmplz, sentences, Path(output), order)
    corpus = _Corpus.encode(sentences)
    levels = _count_ngrams(corpus, order)
    adjusted = _adjusted_counts(levels, corpus.bos)
    discounts, fell_back = zip(*(_discounts(a) for a in adjusted))
    logprobs, logbackoffs = _interpolate(levels, adjusted, discounts, corpus.bos)
    _write_arpa(Path(output), corpus.words, levels, logprobs, logbackoffs)
    return LMStats(
        order=order,
        sentences=corpus.sentences,
        tokens=corpus.tokens,
        counts=tuple(len(level.raw) for level in levels),
        discounts=discounts,
        fallback_orders=tuple(n for n, fell in enumerate(fell_back, 1) if fell),
        backend="python",
    )


def arpa_ngram_counts(path: str | Path) -> tuple[int, ...]:
    """The n-gram counts an ARPA file declares in its header."""
    counts: list[int] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("ngram "):
                counts.append(int(line.split("=", 1)[1]))
            elif counts and not line.strip():
                break
    return tuple(counts)


def _train_with_lmplz(lmplz: str, sentences: Iterable[list[str]], output: Path, order: int) -> LMStats:
    n_sentences = n_tokens = 0
    with (
        open(output, "wb") as arpa,
        subprocess.Popen(
            [lmplz, "-o", str(order), "--discount_fallback", "--skip_symbols"], stdin=subprocess.PIPE, stdout=arpa
        ) as process,
    ):
        for sentence in sentences:
            process.stdin.write((" ".join(sentence) + "\n").encode("utf-8"))
            n_sentences += 1
            n_tokens += len(sentence)
    if process.returncode != 0:
        raise RuntimeError(f"lmplz exited with status {process.returncode}")
    return LMStats(
        order=order,
        sentences=n_sentences,
        tokens=n_tokens,
        counts=arpa_ngram_counts(output),
        discounts=(),
        fallback_orders=(),
        backend="lmplz",
    )


@dataclass(frozen=True)
class _Corpus:
    words: list[str]  # the vocabulary, sorted; a word's id is its index
    ids: np.ndarray  # every sentence as <s> w1 ... wk </s>, concatenated
    sentence_end: np.ndarray  # per position: where its sentence ends (exclusive)
    bos: int
    sentences: int
    tokens: int

    @classmethod
    def encode(cls, sentences: Iterable[list[str]]) -> _Corpus:
        index = {word: i for i, word in enumerate(SPECIAL_WORDS)}
        flat: list[int] = []
        lengths: list[int] = []
        for sentence in sentences:
            flat.extend([index.setdefault(word, len(index)) for word in sentence])
            lengths.append(len(sentence))
        if not lengths:
            raise ValueError("no sentences to train on")
        words = list(index)
        _check_words(words[len(SPECIAL_WORDS) :])
        ids, sentence_end = _pad_sentences(np.asarray(flat, dtype=np.int64), lengths)
        by_text = sorted(range(len(words)), key=words.__getitem__)
        rank = np.empty(len(words), dtype=np.int64)
        rank[by_text] = np.arange(len(words))
        return cls(
            words=[words[i] for i in by_text],
            ids=rank[ids],
            sentence_end=sentence_end,
            bos=int(rank[SPECIAL_WORDS.index(BOS)]),
            sentences=len(lengths),
            tokens=len(flat),
        )


def _pad_sentences(tokens: np.ndarray, lengths: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Drop special words, wrap each sentence in <s> ... </s>; also where each position's sentence ends."""
    sentence_of = np.repeat(np.arange(len(lengths)), lengths)
    kept = tokens >= len(SPECIAL_WORDS)
    tokens, sentence_of = tokens[kept], sentence_of[kept]
    padded_lengths = np.bincount(sentence_of, minlength=len(lengths)) + 2
    end = np.cumsum(padded_lengths)
    ids = np.empty(end[-1], dtype=np.int64)
    ids[end - padded_lengths] = SPECIAL_WORDS.index(BOS)
    ids[end - 1] = SPECIAL_WORDS.index(EOS)
    # The k-th kept token follows k tokens, two markers per earlier sentence and its own <s>.
    ids[np.arange(len(tokens)) + 2 * sentence_of + 1] = tokens
    return ids, np.repeat(end, padded_lengths)


def _check_words(words: list[str]) -> None:
    bad = [word for word in words if word.split() != [word]]
    if bad:
        raise ValueError(f"tokens must be non-empty and contain no whitespace, got {bad[:5]!r}")


@dataclass(frozen=True)
class _Ngrams:
    """The distinct n-grams of one order, by id. For unigrams the context is the empty 0-gram."""

    prefix: np.ndarray  # id of the (n-1)-gram of the first n-1 words: the context
    suffix: np.ndarray  # id of the (n-1)-gram of the last n-1 words: the backed-off n-gram
    first_word: np.ndarray
    last_word: np.ndarray
    raw: np.ndarray  # occurrences


def _count_ngrams(corpus: _Corpus, order: int) -> list[_Ngrams]:
    vocab_size = len(corpus.words)
    empty_context = np.zeros(vocab_size, dtype=np.int64)
    every_word = np.arange(vocab_size)
    levels = [
        _Ngrams(
            prefix=empty_context,
            suffix=empty_context,
            first_word=every_word,
            last_word=every_word,
            raw=np.bincount(corpus.ids, minlength=vocab_size),
        )
    ]
    ids_at = corpus.ids  # id of the (n-1)-gram starting at each position
    positions = np.arange(len(corpus.ids))
    for n in range(2, order + 1):
        starts = positions[positions + n <= corpus.sentence_end]
        keys = ids_at[starts] * vocab_size + corpus.ids[starts + n - 1]
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        at = starts[first]
        levels.append(
            _Ngrams(
                prefix=ids_at[at],
                suffix=ids_at[at + 1],
                first_word=corpus.ids[at],
                last_word=corpus.ids[at + n - 1],
                raw=np.bincount(inverse),
            )
        )
        ids_at = np.full(len(corpus.ids), -1, dtype=np.int64)
        ids_at[starts] = inverse
    return levels


def _adjusted_counts(levels: list[_Ngrams], bos: int) -> list[np.ndarray]:
    adjusted = []
    for n, ngrams in enumerate(levels, 1):
        if n == len(levels):
            counts = ngrams.raw.copy()
        else:
            continuation = np.bincount(levels[n].suffix, minlength=len(ngrams.raw))
            counts = np.where(ngrams.first_word == bos, ngrams.raw, continuation)
        adjusted.append(counts)
    adjusted[0][bos] = 0
    return adjusted


def _discounts(adjusted: np.ndarray) -> tuple[tuple[float, float, float], bool]:
    """Chen and Goodman's (D1, D2, D3+) for one order, and whether the fallback replaced them."""
    n = np.bincount(np.minimum(adjusted, 5), minlength=6).astype(float)
    if min(n[1], n[2], n[3]) > 0:
        y = n[1] / (n[1] + 2 * n[2])
        discounts = tuple(float(j - (j + 1) * y * n[j + 1] / n[j]) for j in (1, 2, 3))
        if all(0 <= d <= j for j, d in enumerate(discounts, 1)):
            return discounts, False
    return FALLBACK_DISCOUNTS, True


def _interpolate(
    levels: list[_Ngrams], adjusted: list[np.ndarray], discounts: tuple[tuple[float, float, float], ...], bos: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """log10 p(w | h) for every n-gram, and log10 backoff for every n-gram below the top order."""
    lower = np.array([1.0 / (len(levels[0].raw) - 1)])  # uniform over the vocabulary but <s>
    probs, backoffs = [], []
    for ngrams, counts, (d1, d2, d3) in zip(levels, adjusted, discounts):
        discount = np.array([0.0, d1, d2, d3])[np.minimum(counts, 3)]
        # .astype: bincount of an empty order is integer even with weights.
        denominator = np.bincount(ngrams.prefix, weights=counts, minlength=len(lower)).astype(float)
        freed = np.bincount(ngrams.prefix, weights=discount, minlength=len(lower)).astype(float)
        gamma = np.divide(freed, denominator, out=np.ones_like(freed), where=denominator > 0)
        prob = (counts - discount) / denominator[ngrams.prefix] + gamma[ngrams.prefix] * lower[ngrams.suffix]
        backoffs.append(_log10(gamma))
        probs.append(prob)
        lower = prob
    logprobs = [np.minimum(_log10(p), 0.0) for p in probs]
    logprobs[0][bos] = LOG10_ZERO
    # backoffs[n] belongs to the contexts of order n + 1, that is to the n-grams of order n.
    return logprobs, backoffs[1:]


def _log10(x: np.ndarray) -> np.ndarray:
    return np.log10(np.maximum(x, 10.0**LOG10_ZERO))


def _write_arpa(
    path: Path, words: list[str], levels: list[_Ngrams], logprobs: list[np.ndarray], logbackoffs: list[np.ndarray]
) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\\data\\\n")
        f.writelines(f"ngram {n}={len(p)}\n" for n, p in enumerate(logprobs, 1))
        texts = words
        for n, (ngrams, logprob) in enumerate(zip(levels, logprobs), 1):
            if n > 1:
                texts = [f"{texts[p]} {words[w]}" for p, w in zip(ngrams.prefix.tolist(), ngrams.last_word.tolist())]
            f.write(f"\n\\{n}-grams:\n")
            if n < len(levels):
                f.writelines(map("{:.6f}\t{}\t{:.6f}\n".format, logprob.tolist(), texts, logbackoffs[n - 1].tolist()))
            else:
                f.writelines(map("{:.6f}\t{}\n".format, logprob.tolist(), texts))
        f.write("\n\\end\\\n")


def train_perplexity_model(
    corpus_uri: str,
    out_dir: str,
    lang: str,
    order: int = 5,
    vocab_size: int = 8000,
    sp_model: str | None = None,
    text_column: str = "text",
    max_documents: int = 20000,
    seed: int = 0,
    options=None,
) -> dict:
    """The ``{lang}.arpa`` + ``{lang}.sp.model`` pair the perplexity stage uses, from a Parquet
    corpus: lines normalized as CCNet does, a sentencepiece model trained on them unless
    ``sp_model`` names one, then an n-gram model over their pieces."""
    import tempfile

    import sentencepiece as spm

    from pipeline.core import storage
    from pipeline.stages.perplexity import normalize_lines
    from pipeline.tools.train_tokenizer import sample_texts, train_sentencepiece

    texts = sample_texts(corpus_uri, text_column, max_documents, seed, options)
    raw_lines = [line for text in texts for line in text.split("\n")]
    lines = [line for line in normalize_lines(raw_lines).to_pylist() if line]
    if not lines:
        raise ValueError(f"no text to train on in '{corpus_uri}' (column '{text_column}')")
    sp_bytes = storage.read_bytes(sp_model, options) if sp_model else train_sentencepiece(lines, vocab_size, seed)
    processor = spm.SentencePieceProcessor(model_proto=sp_bytes)
    lm_uri, sp_uri = storage.join(out_dir, f"{lang}.arpa"), storage.join(out_dir, f"{lang}.sp.model")
    with tempfile.TemporaryDirectory() as tmp:
        arpa = Path(tmp) / "lm.arpa"
        stats = train_arpa((processor.encode(line, out_type=str) for line in lines), arpa, order)
        with storage.atomic_writer(lm_uri, options) as sink, open(arpa, "rb") as source:
            shutil.copyfileobj(source, sink)
    storage.write_bytes(sp_uri, sp_bytes, options)
    return {"lm": lm_uri, "sp": sp_uri, "documents": len(texts), "lines": len(lines), "stats": stats}
