"""Quality rules: every rule just inside and just outside its threshold, on hand-written
documents, with only the rule under test enabled."""

from __future__ import annotations

import itertools
import random

import pyarrow as pa
import pytest
from pydantic import ValidationError

from pipeline.core import columns as cols
from pipeline.stages.quality import (
    C4_REASONS,
    DUP_NGRAMS,
    FINEWEB_REASONS,
    GOPHER_QUALITY_REASONS,
    GOPHER_REPETITION_REASONS,
    REJECT_REASONS,
    TOP_NGRAMS,
    C4Config,
    FineWebConfig,
    GopherQualityConfig,
    GopherRepetitionConfig,
    QualityRules,
    QualityRulesConfig,
    reject_reasons,
)
from pipeline.tools.sample import random_prose

FAMILIES = {
    "gopher_quality": dict.fromkeys(
        [
            "min_doc_words",
            "max_doc_words",
            "min_avg_word_length",
            "max_avg_word_length",
            "max_symbol_word_ratio",
            "max_bullet_lines_ratio",
            "max_ellipsis_lines_ratio",
            "min_alpha_words_ratio",
            "min_stop_words",
        ]
    ),
    "gopher_repetition": dict.fromkeys(
        [
            "dup_para_frac",
            "dup_para_char_frac",
            "dup_line_frac",
            "dup_line_char_frac",
            *(f"top_{n}gram_char_frac" for n in TOP_NGRAMS),
            *(f"dup_{n}gram_char_frac" for n in DUP_NGRAMS),
        ]
    ),
    "c4": {"filter_lorem_ipsum": False, "filter_curly_bracket": False, "min_num_sentences": None},
    "fineweb": dict.fromkeys(["line_punct_thr", "short_line_thr", "char_duplicates_ratio", "new_line_ratio"]),
}
DEFAULTS = {
    "gopher_quality": GopherQualityConfig(),
    "gopher_repetition": GopherRepetitionConfig(),
    "c4": C4Config(),
    "fineweb": FineWebConfig(),
}


def only(family: str, field: str, **extra) -> QualityRulesConfig:
    """Every family off but ``family``, and in it every rule off but the one ``field`` (at its
    default) belongs to."""
    settings = {name: {"enabled": False} for name in FAMILIES}
    settings[family] = {**FAMILIES[family], field: getattr(DEFAULTS[family], field), **extra}
    return QualityRulesConfig(**settings)


def reason(text: str | None, config: QualityRulesConfig | None = None) -> str | None:
    return reject_reasons(pa.array([text], pa.string()), config or QualityRulesConfig())[0].as_py()


def fillers():
    """Distinct words that appear nowhere else in these documents."""
    for letters in itertools.product("abcdefghijklmnopqrstuvwxyz", repeat=2):
        yield "z" + "".join(letters)


def padded(words: list[str], total: int) -> str:
    """``words`` joined by spaces, then distinct filler words up to exactly ``total`` characters."""
    text, extra = " ".join(words), fillers()
    while total - len(text) > 8:
        text += " " + next(extra)
    assert total - len(text) >= 2
    return text + " " + "y" * (total - len(text) - 1)


def lines_text(lines: list[str]) -> str:
    return "\n".join(lines)


def words(n: int, word: str = "word") -> str:
    return " ".join([word] * n)


# (reason, family, the field of the rule's threshold, text just inside, text just outside)
CASES = [
    ("gopher_word_count", "gopher_quality", "min_doc_words", words(50), words(49)),
    ("gopher_word_count", "gopher_quality", "max_doc_words", words(100_000, "ab"), words(100_001, "ab")),
    (
        "gopher_mean_word_length",
        "gopher_quality",
        "min_avg_word_length",
        " ".join(["ab", "abcd"] * 25),
        " ".join(["ab", "abcd"] * 25 + ["ab"]),
    ),
    (
        "gopher_mean_word_length",
        "gopher_quality",
        "max_avg_word_length",
        words(50, "abcdefghij"),
        words(49, "abcdefghij") + " abcdefghijk",
    ),
    # 5 of 50 tokens, 6 of 51
    ("gopher_symbol_ratio", "gopher_quality", "max_symbol_word_ratio", words(45) + " #" * 5, words(45) + " #" * 6),
    (
        "gopher_symbol_ratio",
        "gopher_quality",
        "max_symbol_word_ratio",
        words(45) + " ..." * 3 + " …" * 2,
        words(45) + " ..." * 3 + " …" * 3,
    ),
    (
        "gopher_bullet_lines",
        "gopher_quality",
        "max_bullet_lines_ratio",
        lines_text(["• an item"] * 45 + ["  - an item"] * 45 + ["plain text"] * 10) + "\n",
        lines_text(["• an item"] * 45 + ["  - an item"] * 46 + ["plain text"] * 9) + "\n",
    ),
    (
        "gopher_ellipsis_lines",
        "gopher_quality",
        "max_ellipsis_lines_ratio",
        lines_text(["and so on..."] * 2 + ["and so on… "] + ["a full stop."] * 7),
        lines_text(["and so on..."] * 2 + ["and so on… "] * 2 + ["a full stop."] * 6),
    ),
    ("gopher_alpha_words", "gopher_quality", "min_alpha_words_ratio", words(80) + " 123" * 20, words(79) + " 123" * 21),
    (
        "gopher_stop_words",
        "gopher_quality",
        "min_stop_words",
        "The cat sat on the mat and slept.",
        "The cat sat on the mat, then slept.",
    ),
    (
        "gopher_dup_para_fraction",
        "gopher_repetition",
        "dup_para_frac",
        "\n\n".join([f"paragraph {i}" for i in range(6)] + ["same again"] * 4),
        "\n\n".join([f"paragraph {i}" for i in range(5)] + ["same again"] * 5),
    ),
    (
        "gopher_dup_para_char_fraction",
        "gopher_repetition",
        "dup_para_char_frac",
        "p" * 20 + "\n\n" + "q" * 56 + "\n\n" + "p" * 20,
        "p" * 20 + "\n\n" + "q" * 55 + "\n\n" + "p" * 20,
    ),
    (
        "gopher_dup_line_fraction",
        "gopher_repetition",
        "dup_line_frac",
        lines_text([f"line {i}" for i in range(6)] + ["same line"] * 4),
        lines_text([f"line {i}" for i in range(5)] + ["same line"] * 5),
    ),
    (
        "gopher_dup_line_char_fraction",
        "gopher_repetition",
        "dup_line_char_frac",
        "p" * 20 + "\n" + "q" * 58 + "\n" + "p" * 20,
        "p" * 20 + "\n" + "q" * 57 + "\n" + "p" * 20,
    ),
    ("c4_lorem_ipsum", "c4", "filter_lorem_ipsum", "Lorem ipsum dolor sit amet", "Lorem ipsum dolor sit amet."),
    (
        "c4_curly_bracket",
        "c4",
        "filter_curly_bracket",
        "if (x) { return y; }\nTurn on JavaScript {now}.",
        "The set {1, 2, 3} has three members.",
    ),
    (
        "c4_too_few_sentences",
        "c4",
        "min_num_sentences",
        "This is sentence one. It has a friend.\nThis is line two.\nThis is line three!\nIs this line four?",
        "This is sentence one.\nThis is line two.\nThis is line three!\nIs this line four?",
    ),
    (
        "fineweb_line_punct",
        "fineweb",
        "line_punct_thr",
        lines_text([f"line {i}." for i in range(13)] + [f"line {i}" for i in range(87)]),
        lines_text([f"line {i}." for i in range(12)] + [f"line {i}" for i in range(88)]),
    ),
    (
        "fineweb_short_lines",
        "fineweb",
        "short_line_thr",
        lines_text(["s" * 30] * 66 + ["l" * 31] * 34),
        lines_text(["s" * 30] * 67 + ["l" * 31] * 33),
    ),
    (
        "fineweb_char_dup",
        "fineweb",
        "char_duplicates_ratio",
        lines_text(["r" * 10, "u" * 981, "r" * 10]),
        lines_text(["r" * 10, "u" * 980, "r" * 10]),
    ),
    (
        "fineweb_list_ratio",
        "fineweb",
        "new_line_ratio",
        lines_text(["alpha beta gamma"] * 10),
        lines_text(["alpha beta gamma"] * 10) + "\n",
    ),
]

# n: (the n-gram, how often, document length); (chars + spaces) * count / length == threshold
TOP_GRAMS = {2: (["ab", "cd"], 4, 100), 3: (["ab", "cd", "ef"], 9, 400), 4: (["ab", "cd", "ef", "gh"], 16, 1100)}
# n: an n-gram of 100 * threshold characters
DUP_GRAMS = {
    5: ["abc", "abd", "abe", "abf", "abg"],
    6: ["abc", "abd", "ab", "ac", "ad", "ae"],
    7: ["abc", "ab", "ac", "ad", "ae", "a", "b"],
    8: ["ab", "ac", "ad", "ae", "a", "b", "c", "d"],
    9: ["ab", "ac", "a", "b", "c", "d", "e", "f", "g"],
    10: list("abcdefghij"),
}


def top_gram_text(gram: list[str], count: int, total: int) -> str:
    """``gram`` ``count`` times, each followed by a distinct word, padded to ``total``."""
    extra = fillers()
    return padded([w for _ in range(count) for w in [*gram, next(extra) + "x"]], total)


for n, (gram, count, total) in TOP_GRAMS.items():
    # (len(gram) + spaces) * count / total is exactly the threshold inside, above it outside
    CASES.append(
        (
            f"gopher_top_{n}gram",
            "gopher_repetition",
            f"top_{n}gram_char_frac",
            top_gram_text(gram, count, total),
            top_gram_text(gram, count, total - 1),
        )
    )
for n, gram in DUP_GRAMS.items():
    # the second copy of ``gram`` covers len("".join(gram)) == 100 * threshold characters
    CASES.append(
        (
            f"gopher_dup_{n}gram",
            "gopher_repetition",
            f"dup_{n}gram_char_frac",
            padded([*gram, "qq", *gram], 100),
            padded([*gram, "qq", *gram], 99),
        )
    )


@pytest.mark.parametrize(
    ("expected", "family", "field", "inside", "outside"),
    CASES,
    ids=[f"{case[0]}-{case[2]}-{i}" for i, case in enumerate(CASES)],
)
def test_rule_threshold(expected, family, field, inside, outside):
    config = only(family, field)
    assert reason(inside, config) is None
    assert reason(outside, config) == expected


def test_every_rule_has_a_threshold_case():
    assert {case[0] for case in CASES} == set(REJECT_REASONS) - {"empty_text"}


def test_reasons_are_unique_and_prefixed_by_family():
    assert len(REJECT_REASONS) == len(set(REJECT_REASONS))
    assert REJECT_REASONS[0] == "empty_text"
    for reasons, prefix in (
        (GOPHER_QUALITY_REASONS, "gopher_"),
        (GOPHER_REPETITION_REASONS, "gopher_"),
        (C4_REASONS, "c4_"),
        (FINEWEB_REASONS, "fineweb_"),
    ):
        assert all(r.startswith(prefix) for r in reasons)


@pytest.mark.parametrize("text", ["", " ", "   \n\t  ", "\u00a0\u3000\n", None])
def test_empty_text_is_rejected_first_whatever_is_enabled(text):
    assert reason(text) == "empty_text"
    nothing = QualityRulesConfig(**{name: {"enabled": False} for name in FAMILIES})
    assert reason(text, nothing) == "empty_text"


# Each family alone: (gopher_quality, gopher_repetition, c4, fineweb). C4 drops lines without
# terminal punctuation before its other line checks, as its reference does, so "{" alone is
# too few sentences, not a curly bracket.
NON_TEXT = [
    ("\x00\x01\x02\x03", ["gopher_word_count", None, "c4_too_few_sentences", "fineweb_line_punct"]),
    (
        "!!!! ???? #### $$$$ %%%%",
        ["gopher_word_count", "gopher_top_2gram", "c4_too_few_sentences", "fineweb_line_punct"],
    ),
    ("0 0 0 0 0 0 0 0 0 0", ["gopher_word_count", "gopher_top_2gram", "c4_too_few_sentences", "fineweb_line_punct"]),
    ("😀😀😀 🎉", ["gopher_word_count", "gopher_top_2gram", "c4_too_few_sentences", "fineweb_line_punct"]),
    ("\ufffd" * 40, ["gopher_word_count", None, "c4_too_few_sentences", "fineweb_line_punct"]),
    ("a", ["gopher_word_count", None, "c4_too_few_sentences", "fineweb_line_punct"]),
    ("...", ["gopher_word_count", None, "c4_too_few_sentences", "fineweb_short_lines"]),
    ("{", ["gopher_word_count", None, "c4_too_few_sentences", "fineweb_line_punct"]),
    ("\r\n\r\n.", ["gopher_word_count", None, "c4_too_few_sentences", "fineweb_short_lines"]),
    ("-\n-\n-", ["gopher_word_count", "gopher_dup_line_fraction", "c4_too_few_sentences", "fineweb_line_punct"]),
    ("• " * 500, ["gopher_word_count", "gopher_top_2gram", "c4_too_few_sentences", "fineweb_line_punct"]),
    ("x" * 5000, ["gopher_word_count", None, "c4_too_few_sentences", "fineweb_line_punct"]),
]


@pytest.mark.parametrize(("text", "expected"), NON_TEXT)
def test_non_text_documents_get_each_familys_reason_not_an_exception(text, expected):
    found = [reason(text, QualityRulesConfig(**{n: {"enabled": n == f} for n in FAMILIES})) for f in FAMILIES]
    assert found == expected
    assert reason(text) == expected[0]


def test_stop_words_are_distinct_and_case_sensitive_like_datatrove():
    config = only("gopher_quality", "min_stop_words")
    assert reason("the cat and the dog", config) is None
    assert reason("the cat, the dog, the end", config) == "gopher_stop_words"
    assert reason("The cat AND The dog", config) == "gopher_stop_words"


def test_tokens_are_counted_as_spacy_counts_them():
    config = only("gopher_quality", "min_alpha_words_ratio")
    assert reason(words(80) + " ;" * 20, config) is None  # 80 tokens with a letter of 100
    assert reason(words(80) + " ;" * 21, config) == "gopher_alpha_words"
    # one token each: a number with separators, an abbreviation, a URL, "..."
    assert reason(words(80) + " 1,000.50" * 20, config) is None
    assert reason(words(80) + " 11/02/2006" * 20, config) is None
    assert reason(words(60) + " U.S." * 20 + " 1" * 20, config) is None
    assert reason(words(79) + " ..." * 20 + " https://example.org/a/b.html", config) is None
    # an apostrophe inside a word is no token ("don't": "don", "t")
    assert reason(" ".join(["don't"] * 40) + " 1" * 20, config) is None
    assert reason(" ".join(["don't"] * 40) + " 1" * 21, config) == "gopher_alpha_words"


def test_ellipsis_inside_a_line_does_not_make_an_ellipsis_line():
    text = lines_text(["wait... what happened next"] * 4 + ["a full stop."] * 6)
    assert reason(text, only("gopher_quality", "max_ellipsis_lines_ratio")) is None


def test_top_ngram_ties_go_to_the_first_to_appear():
    # "aa bb" and "cccc dddd" both occur twice; the first (2 * 5 chars of 60) is under 0.2,
    # the longer one (2 * 9 of 60) would be over it.
    text = padded(["aa", "bb", "zqa", "aa", "bb", "zqb", "cccc", "dddd", "zqc", "cccc", "dddd"], 60)
    assert reason(text, only("gopher_repetition", "top_2gram_char_frac")) is None


def test_top_ngram_of_a_document_without_repeats_is_its_first_like_datatrove():
    config = only("gopher_repetition", "top_2gram_char_frac")
    assert reason(padded(["alpha", "beta"], 50), config) is None  # "alpha beta": 10 of 50 characters
    assert reason(padded(["alpha", "beta"], 49), config) == "gopher_top_2gram"


def test_repeated_ngrams_are_counted_once_where_they_overlap():
    # "a b c d e f" twice: the second copy holds two repeated 5-grams that share 4 words;
    # covered characters are its 6 words, not 10.
    gram = list("abcdef")
    config = only("gopher_repetition", "dup_5gram_char_frac")
    assert reason(padded([*gram, "qq", *gram], 40), config) is None  # 6 / 40 = 0.15
    assert reason(padded([*gram, "qq", *gram], 39), config) == "gopher_dup_5gram"


def test_ngrams_do_not_cross_documents():
    gram = list("abcde")
    batch = pa.array([padded(gram, 100), padded(gram, 100)])
    reasons = reject_reasons(batch, only("gopher_repetition", "dup_5gram_char_frac"))
    assert reasons.to_pylist() == [None, None]


def test_c4_sentences_count_only_lines_c4_would_keep():
    config = only("c4", "min_num_sentences")
    kept_lines = [
        "One line here. Two sentences here.",
        "A third one is here.",
        "The fourth one is here.",
        "The fifth [1] one is here.[2]",
    ]
    dropped = [
        "Too short.",
        "No terminal punctuation here",
        "Ends in an ellipsis here...",
        "Please enable JavaScript to see this.",
        "Read our privacy policy before use.",
        "x" * 1001 + " a b.",
    ]
    assert reason(lines_text(kept_lines + dropped), config) is None
    assert reason(lines_text(kept_lines[1:] + dropped), config) == "c4_too_few_sentences"
    no_citations = only("c4", "min_num_sentences", remove_citations=False)
    assert reason(lines_text(kept_lines + dropped), no_citations) == "c4_too_few_sentences"


def test_c4_line_options_can_be_relaxed():
    text = lines_text(["No terminal punctuation here"] * 5)
    assert reason(text, only("c4", "min_num_sentences")) == "c4_too_few_sentences"
    assert reason(text, only("c4", "min_num_sentences", filter_no_terminal_punct=False)) is None


def test_fineweb_line_punct_can_keep_documents_without_any():
    text = lines_text(["no punctuation at all"] * 10)
    assert reason(text, only("fineweb", "line_punct_thr")) == "fineweb_line_punct"
    assert reason(text, only("fineweb", "line_punct_thr", line_punct_exclude_zero=True)) is None


def test_fineweb_list_ratio_counts_punctuation_as_tokens():
    config = only("fineweb", "new_line_ratio")
    assert reason(lines_text(["alpha, beta"] * 10), config) is None  # 9 newlines / 30 tokens
    assert reason(lines_text(["alpha beta"] * 10), config) == "fineweb_list_ratio"


def test_fineweb_ignores_blank_lines():
    paragraphs = [f"Paragraph {i} is a long line of prose that ends properly." for i in range(5)]
    assert reason("\n \n\t\n\n".join(paragraphs), only("fineweb", "short_line_thr")) is None


def test_crlf_is_one_line_break():
    text = "\r\n".join([f"line {i}." for i in range(20)])
    assert reason(text, only("fineweb", "line_punct_thr")) is None


GOOD = """Why the river changed its course

The river that runs through the valley has changed its course several times in the last thousand years. \
Each change left a trace in the soil, and the farmers who work the land today still find old banks of sand \
and gravel when they dig their fields.

Geologists who studied the valley in the nineteenth century thought that the changes were caused by floods. \
Later work showed that the slow rise of the land to the north played a larger part, because it tilted the \
whole valley and pushed the water towards the south.

The village moved with the river. Its oldest houses stand on a low hill that was once an island, and the \
church was built where the ford used to be. When the water left, the people followed it, and the new \
streets were laid out along the bank.

Today the river is held in place by walls and weirs. That has made the valley safer, but it has also \
stopped the slow renewal of the fields that the floods used to bring. Some farmers would like to see the \
walls opened again, at least in a few places, so that the land can take what the water gives it."""


def test_clean_prose_passes_every_rule():
    assert reason(GOOD) is None


BAD = {
    "gopher_quality": words(10),
    "gopher_repetition": lines_text(["The same sentence is repeated over and over again in the text."] * 20),
    "c4": GOOD + "\nThe function returns {x: 1} as expected.",
    "fineweb": GOOD.replace(".", ""),
}


def test_rule_order_picks_the_first_failing_rule():
    assert reason(words(10) + " {}") == "gopher_word_count"
    assert reason(BAD["gopher_repetition"]) == "gopher_dup_line_fraction"


FAMILY_REASONS = {
    "gopher_quality": GOPHER_QUALITY_REASONS,
    "gopher_repetition": GOPHER_REPETITION_REASONS,
    "c4": C4_REASONS,
    "fineweb": FINEWEB_REASONS,
}


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_can_be_switched_off(family):
    alone = QualityRulesConfig(**{name: {"enabled": name == family} for name in FAMILIES})
    assert reason(BAD[family], alone) in FAMILY_REASONS[family]
    without = QualityRulesConfig(**{family: {"enabled": False}})
    found = reject_reasons(pa.array(list(BAD.values())), without).to_pylist()
    assert not set(found) & set(FAMILY_REASONS[family])


def test_non_english_documents_are_handled():
    texts = [
        "北京是中华人民共和国的首都，也是全国的政治、文化中心。" * 20,
        "東京は日本の首都であり、世界有数の大都市です。" * 20,
        "القاهرة هي عاصمة مصر وأكبر مدنها، وتقع على ضفاف نهر النيل. " * 20,
        "दिल्ली भारत की राजधानी है और यह एक बहुत बड़ा शहर है। " * 20,
        "Москва — столица России, крупнейший по численности населения город. " * 20,
        "\n".join(["Der Fluss hat seinen Lauf in tausend Jahren mehrmals geändert."] * 3),
    ]
    # Each family's reason per document (Gopher's tokens count punctuation as words, as
    # datatrove's do, so the Russian and Arabic sentences fail the alphabetic-word ratio).
    expected = {
        "gopher_quality": [
            "gopher_alpha_words",
            "gopher_word_count",
            "gopher_stop_words",
            "gopher_stop_words",
            "gopher_alpha_words",
            "gopher_word_count",
        ],
        "gopher_repetition": [
            "gopher_top_2gram",
            "gopher_top_2gram",
            "gopher_top_3gram",
            "gopher_top_2gram",
            "gopher_top_3gram",
            "gopher_dup_line_fraction",
        ],
        "c4": [
            "c4_too_few_sentences",
            "c4_too_few_sentences",
            None,
            "c4_too_few_sentences",
            None,
            "c4_too_few_sentences",
        ],
        "fineweb": ["fineweb_line_punct"] * 5 + ["fineweb_char_dup"],
    }
    for family in FAMILIES:
        config = QualityRulesConfig(**{name: {"enabled": name == family} for name in FAMILIES})
        assert reject_reasons(pa.array(texts), config).to_pylist() == expected[family], family
    assert reject_reasons(pa.array(texts), QualityRulesConfig()).to_pylist() == expected["gopher_quality"]


# Per family alone, so that none is skipped for a document an earlier one rejected. Speed on
# these documents is measured by `python -m benchmarks quality`, not here.
ONE_MEGABYTE_REASONS = {
    "web": {"gopher_quality": "gopher_word_count", "gopher_repetition": None, "c4": None, "fineweb": None},
    "one_line": {
        "gopher_quality": "gopher_word_count",
        "gopher_repetition": None,
        "c4": "c4_too_few_sentences",  # its only line has no terminal punctuation, so none is left
        "fineweb": "fineweb_line_punct",
    },
    "repetitive": {
        "gopher_quality": "gopher_word_count",
        "gopher_repetition": "gopher_top_2gram",
        "c4": "c4_too_few_sentences",
        "fineweb": "fineweb_line_punct",
    },
}


@pytest.mark.parametrize("kind", ["web", "one_line", "repetitive"])
def test_one_megabyte_document_gets_each_familys_reason(kind):
    rng = random.Random(1)
    text = {
        "web": lambda: random_prose(rng, 1_000_000),
        "one_line": lambda: random_prose(rng, 1_000_000).replace("\n", " "),
        "repetitive": lambda: ("The same few words again and again. " * 30_000)[:1_000_000],
    }[kind]()
    found = {}
    for family in FAMILIES:
        config = QualityRulesConfig(**{name: {"enabled": name == family} for name in FAMILIES})
        found[family] = reject_reasons(pa.array([text, GOOD]), config).to_pylist()
        assert found[family][1] is None  # a short good document beside it is unaffected
        found[family] = found[family][0]
    assert found == ONE_MEGABYTE_REASONS[kind]


def test_a_batch_gives_each_document_the_reason_it_gets_alone():
    texts = [GOOD, "", *BAD.values(), *(text for case in CASES for text in case[3:] if len(text) < 5000)]
    for config in [
        QualityRulesConfig(),
        *(QualityRulesConfig(**{name: {"enabled": name == family} for name in FAMILIES}) for family in FAMILIES),
    ]:
        together = reject_reasons(pa.array(texts), config).to_pylist()
        assert together == [reason(text, config) for text in texts]


def test_stage_rejects_by_name_and_keeps_row_count():
    texts = [GOOD, "", words(10), GOOD + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit."]
    n = len(texts)
    docs = pa.table(
        {
            cols.ID: [f"d{i}" for i in range(n)],
            cols.TEXT: texts,
            cols.DOMAIN: [None] * n,
            cols.URL: [None] * n,
            cols.SHARD: ["s"] * n,
            cols.ROW: list(range(n)),
            cols.TEXT_BYTES: [len(t.encode()) for t in texts],
        },
        schema=cols.BASE_SCHEMA,
    )
    stage = QualityRules(QualityRulesConfig())
    out = stage.process(docs)
    assert out.table.num_rows == n
    assert out.reject_reasons.to_pylist() == [None, "empty_text", "gopher_word_count", "c4_lorem_ipsum"]
    kept, rejected = stage(docs)
    assert kept.column(cols.ID).to_pylist() == ["d0"]
    assert set(rejected.column(cols.REJECT_STAGE).to_pylist()) == {"quality"}


def test_chunked_and_sliced_input():
    texts = pa.chunked_array([[GOOD, words(10)], [GOOD]])
    assert reject_reasons(texts, QualityRulesConfig()).to_pylist() == [None, "gopher_word_count", None]
    sliced = pa.array(["", words(10), GOOD, words(5)]).slice(1, 2)
    assert reject_reasons(sliced, QualityRulesConfig()).to_pylist() == ["gopher_word_count", None]


def test_config_defaults_are_the_sources_and_unknown_keys_fail():
    c = QualityRulesConfig()
    assert (c.gopher_quality.min_doc_words, c.gopher_quality.max_doc_words) == (50, 100_000)
    assert c.gopher_repetition.top_2gram_char_frac == 0.2 and c.gopher_repetition.dup_10gram_char_frac == 0.1
    assert c.c4.min_num_sentences == 5 and c.fineweb.char_duplicates_ratio == 0.01
    with pytest.raises(ValidationError):
        QualityRulesConfig(gopher_quality={"min_words": 3})


def values_of(text: str, config: QualityRulesConfig) -> dict[str, float]:
    values: dict[str, object] = {}
    reject_reasons(pa.array([text], pa.string()), config, values)
    return {rule: float(v[0]) for rule, v in values.items() if v[0] == v[0]}


MEASURED = [case for case in CASES if case[0] not in ("c4_lorem_ipsum", "c4_curly_bracket")]


@pytest.mark.parametrize(
    ("expected", "family", "field", "inside", "outside"),
    MEASURED,
    ids=[f"{case[0]}-{case[2]}-{i}" for i, case in enumerate(MEASURED)],
)
def test_each_rule_records_the_value_it_compared(expected, family, field, inside, outside):
    """The recorded value is the one the decision turned on: the two texts either side of the
    threshold differ in it, and the threshold lies between them (or on the kept text's side)."""
    config = only(family, field)
    kept, rejected = values_of(inside, config)[expected], values_of(outside, config)[expected]
    threshold = getattr(DEFAULTS[family], field)
    assert kept != rejected
    if isinstance(threshold, (int, float)) and not isinstance(threshold, bool):
        low, high = sorted([kept, rejected])
        assert low <= threshold <= high or abs(kept - threshold) <= abs(rejected - threshold)


def test_quality_values_annotate_documents_for_document_outputs():
    from pipeline.config import load_job_spec

    text = random_prose(random.Random(3), 3000)
    spec = load_job_spec(
        {
            "name": "q",
            "input": {"uri": "unused"},
            "output": {"uri": "unused", "kind": "documents"},
            "stages": {"quality": {"enabled": True}},
        },
        check_files=False,
    )
    stage = QualityRules(spec.stages.quality)
    stage.bind_job(spec)
    docs = pa.table({cols.TEXT: [text, "too short"]})
    out = stage.process(docs)
    first, second = out.table.column("quality_values").to_pylist(maps_as_pydicts="strict")
    # every whitespace-separated piece of this text holds a letter: each is a word
    assert first["gopher_word_count"] == len(text.split()) and first["gopher_stop_words"] == 5
    assert {"fineweb_line_punct", "c4_too_few_sentences", "gopher_dup_line_fraction"} <= set(first)
    assert out.reject_reasons.to_pylist() == [None, "gopher_word_count"]
    assert second == {rule: v for rule, v in second.items() if rule.startswith("gopher_")}  # later families skipped
    assert second["gopher_word_count"] == 2
    tokens_only = QualityRules(spec.stages.quality)
    assert "quality_values" not in tokens_only.process(docs).table.column_names
