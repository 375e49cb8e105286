"""The word list matcher equals a brute-force reference: every whole-word occurrence of every
entry, then leftmost-longest without overlaps, per document and list."""

import random
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import regex

from pipeline.stages.word_lists import WORD_PATTERN, ListMatcher, WordList, count_words

SCRIPTS = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\p{Tibetan}"
NO_SPACE = regex.compile(rf"[{SCRIPTS}]")
# RE2's \s is ASCII whitespace only; the regex module's is Unicode's.
REFERENCE_WORDS = regex.compile(rf"[{SCRIPTS}]|[^\t\n\f\r {SCRIPTS}]+")


def word_char(char: str) -> bool:
    return char.isalnum() or char == "_" or unicodedata.category(char).startswith("M")


def lower(texts: list[str]) -> list[str]:
    return pc.utf8_lower(pa.array(texts, pa.string())).to_pylist()


def reference(texts: list[str], langs: list[str | None], lists: list[WordList]) -> tuple[np.ndarray, np.ndarray]:
    matches = np.zeros((len(texts), len(lists)), np.int64)
    words = np.zeros_like(matches)
    for row, text in enumerate(lower(texts)):
        for column, word_list in enumerate(lists):
            entries = set(lower(word_list.files.get("*", []) + word_list.files.get(langs[row] or "*", [])))
            found = []
            for entry in entries:
                anywhere = NO_SPACE.search(entry) is not None
                at = text.find(entry)
                while at >= 0:
                    end = at + len(entry)
                    if anywhere or (
                        (at == 0 or not word_char(text[at - 1])) and (end == len(text) or not word_char(text[end]))
                    ):
                        found.append((at, end, entry))
                    at = text.find(entry, at + 1)
            last = 0
            for start, end, entry in sorted(found, key=lambda f: (f[0], -f[1])):
                if start >= last:
                    matches[row, column] += 1
                    words[row, column] += len(REFERENCE_WORDS.findall(entry))
                    last = end
    return matches, words


ALPHABET = list("aabbc   .-_1") + [
    "ß",
    "é",
    "É",
    "A",
    "B",
    "中",
    "文",
    "字",
    "\n",
    "(",
    ")",
    "$",
    "\x00",
    "\u0301",
    "\xa0",
]


def random_text(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(length))


def random_entries(rng: random.Random, texts: list[str], n: int) -> list[str]:
    entries = []
    while len(entries) < n:
        if rng.random() < 0.6:  # a piece of a text, so that there are matches
            text = rng.choice(texts)
            at = rng.randrange(len(text) + 1)
            entry = text[at : at + rng.randint(1, 7)].strip()
        else:
            entry = random_text(rng, rng.randint(1, 5)).strip()
        if entry:
            entries.append(entry)
    return entries


def test_matches_equal_the_brute_force_reference_on_random_text():
    rng = random.Random(0)
    matched = 0
    for _ in range(300):
        texts = [random_text(rng, rng.randint(0, 40)) for _ in range(rng.randint(1, 12))]
        langs = [rng.choice(["en", "de", None]) for _ in texts]
        lists = [
            WordList("one", {"*": random_entries(rng, texts, rng.randint(1, 8))}),
            WordList("two", {"de": random_entries(rng, texts, rng.randint(1, 4))}),
        ]
        if rng.random() < 0.5:
            lists[1].files["*"] = random_entries(rng, texts, 3)
        expected = reference(texts, langs, lists)
        got = ListMatcher(lists).count(pa.array(texts), pa.array(langs, pa.string()))
        assert got[0].tolist() == expected[0].tolist(), (texts, langs, lists)
        assert got[1].tolist() == expected[1].tolist(), (texts, langs, lists)
        matched += int(expected[0].sum())
    assert matched > 1000  # the random lists do match, often


def test_prefix_entries_phrases_and_a_longer_match_that_fails_its_boundary():
    lists = [WordList("l", {"*": ["bad", "bad wordx", "bad word", "word list", "x y", "y z"]})]
    texts = [
        "a bad wordy thing",  # "bad word" fails its end boundary; "bad" still counts
        "bad word list",  # leftmost first: "bad word", then "list" alone is not an entry
        "x y z",  # "x y" is leftmost; "y z" overlaps it
        "xx y z",  # "x y" fails its start boundary; "y z" counts
        "bad-word bad\tword",  # a phrase's space matches only a space: two "bad"
    ]
    matches, words = ListMatcher(lists).count(pa.array(texts))
    assert matches[:, 0].tolist() == [1, 1, 1, 1, 2]
    assert words[:, 0].tolist() == [1, 2, 2, 2, 2]
    assert matches.tolist() == reference(texts, [None] * len(texts), lists)[0].tolist()


def test_whole_words_only_and_case_insensitive():
    lists = [WordList("l", {"*": ["ass", "Straße", "café"]})]
    texts = ["class assess passing", "ass.", "(ASS)", "an ass_hat", "ass1", "STRASSE straße STRASSEN", "CAFÉ cafés"]
    matches, _ = ListMatcher(lists).count(pa.array(texts))
    assert matches[:, 0].tolist() == [0, 1, 1, 0, 0, 1, 1]


def test_no_space_scripts_match_inside_runs_and_count_each_character_as_a_word():
    lists = [WordList("l", {"*": ["中文", "ไม่ดี", "bad"]})]
    texts = ["我爱中文和中文", "คำไม่ดีมาก", "中文bad中文"]
    matches, words = ListMatcher(lists).count(pa.array(texts))
    assert matches[:, 0].tolist() == [2, 1, 2]  # "bad" between Han characters is not a whole word
    assert words[:, 0].tolist() == [4, 5, 4]  # each character of these scripts is a word, Thai's marks too


def test_word_counts_equal_the_pattern_on_every_text():
    rng = random.Random(1)
    alphabet = list("ab \t\n\r\x0b\x0c.") + ["中", "\xa0", "é", "ไ", "\u3000"]
    texts = ["", " ", "a", " a  b ", "\x0b", "中文 abc"] + [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(500)
    ]
    texts += ["".join(rng.choice("ab \t\n\x0b.") for _ in range(rng.randint(0, 30))) for _ in range(500)]
    expected = pc.count_substring_regex(pa.array(texts), WORD_PATTERN).to_pylist()
    assert count_words(pa.array(texts)).tolist() == expected
    assert count_words(pa.chunked_array([texts[:7], texts[7:]])).tolist() == expected
    assert expected == [len(REFERENCE_WORDS.findall(t)) for t in texts]


def test_duplicate_entries_and_entries_that_differ_only_in_punctuation():
    lists = [WordList("l", {"*": ["a-b", "a b", "A B", "a.b", "a b"]})]
    assert {label: len(found) for label, found in lists[0].distinct_entries().items()} == {"*": 3}
    matches, _ = ListMatcher(lists).count(pa.array(["a-b a b a.b a_b a,b", "a b"]))
    assert matches[:, 0].tolist() == [3, 1]


def test_a_documents_list_is_the_union_of_its_star_and_language_files():
    lists = [WordList("l", {"*": ["bad", "word"], "de": ["bad word", "bad"]}), WordList("m", {"de": ["word"]})]
    texts = ["bad word", "bad word", "word"]
    matches, words = ListMatcher(lists).count(pa.array(texts), pa.array(["de", "en", "de"]))
    # in German the phrase is the longest match; "bad", in both files, counts once
    assert matches.tolist() == [[1, 1], [2, 0], [1, 1]]
    assert words.tolist() == [[2, 1], [2, 0], [1, 1]]
