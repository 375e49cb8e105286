"""Whole-word, case-insensitive matching of word lists: one Aho-Corasick pass per batch over
every document, and one per language with list files over that language's documents.

What counts as a match. Text and entries are lower-cased with Arrow's ``utf8_lower``. An
occurrence of an entry counts when the character before it and the character after it are
not word characters (letters, digits, ``_`` and combining marks: ``is_word_char``) or are
the edge of the document. An entry holding a character of a script written without spaces
(Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar, Tibetan) counts wherever it occurs. Of
the occurrences of one list's entries in a document, the leftmost is taken, the longest of
those starting there, then the next one starting at or after its end, and so on:
leftmost-longest and never overlapping. A document's list is the union of the list's ``*``
file and the file of the document's language.

How it is found. There is one automaton per language label (``*`` included), holding the
entries of that label's files of every list. The documents a pass reads are joined into one
string, and in a copy of it (the *canonical* text, of the same length: a numpy table lookup)
every character that is not a word character becomes a space. Each entry is in the
automaton in the same canonical form, between two spaces unless it is of a no-space script,
so the automaton itself finds only whole-word occurrences, and reports every one of them
(pyahocorasick's ``iter``). The canonical form of an entry with a non-word character (a phrase's space,
"a$$") also stands for other punctuation there, so those characters are then compared with
the text's. Leftmost-longest selection is a sort; Python loops only over occurrences that
overlap. pyahocorasick's ``iter_long`` is not used: it misses matches (keys "a" and "caac"
in "ccbacca" find one "a" of two).

Words, for ratios: runs of characters that are neither whitespace (RE2's ``\\s``: ASCII
only) nor of a no-space script, and each character of a no-space script (``WORD_PATTERN``).
"""

from __future__ import annotations

import functools
import itertools
import unicodedata
from dataclasses import dataclass

import ahocorasick
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.stages.word_lists.config import ANY_LANGUAGE

NO_SPACE_SCRIPTS = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\p{Tibetan}"
WORD_PATTERN = rf"[{NO_SPACE_SCRIPTS}]|[^\s{NO_SPACE_SCRIPTS}]+"
_SPACE = ord(" ")
# Code points past the Basic Multilingual Plane that may be of a no-space script (Han
# extensions, up to plane 3); beyond it every character is "other" for word counts.
_CLASSIFIED = 0x40000
_OTHER, _WHITESPACE, _NO_SPACE = 0, 1, 2


def is_word_char(char: str) -> bool:
    """Letters, digits, ``_`` and combining marks (which belong to the letter before them)."""
    return char.isalnum() or char == "_" or unicodedata.category(char)[0] == "M"


def canonical_entry(entry: str) -> str:
    return "".join(c if is_word_char(c) else " " for c in entry)


@functools.cache
def _canonical_table() -> np.ndarray:
    """Code point -> itself for word characters, else a space, over the Basic Multilingual Plane."""
    table = np.arange(0x10000, dtype=np.uint32)
    table[[not is_word_char(chr(c)) for c in range(0x10000)]] = _SPACE
    return table


@functools.cache
def _ascii_canonical_table() -> np.ndarray:
    return _canonical_table()[:256].astype(np.uint8)


@functools.cache
def _word_classes() -> np.ndarray:
    """Code point -> whitespace, no-space script or other, by RE2 itself (as ``WORD_PATTERN``)."""
    points = np.r_[0:0xD800, 0xE000:_CLASSIFIED].astype(np.uint32)  # surrogates are never in UTF-8 text
    encoded = points.tobytes().decode("utf-32-le").encode("utf-8")
    every = pa.StringArray.from_buffers(1, pa.py_buffer(np.array([0, len(encoded)], np.int32)), pa.py_buffer(encoded))
    marked = pc.replace_substring_regex(every, f"[{NO_SPACE_SCRIPTS}]", " ")[0].as_py()
    classes = np.zeros(_CLASSIFIED + 1, np.uint8)
    classes[points[np.frombuffer(marked.encode("utf-32-le"), np.uint32) != points]] = _NO_SPACE
    classes[[ord(c) for c in "\t\n\f\r "]] = _WHITESPACE
    return classes


def prepare_tables(word_counts: bool) -> None:
    """Build this process's lookup tables now (in a stage's setup) rather than in its first batch."""
    _ascii_canonical_table()
    if word_counts:
        _word_classes()


@dataclass
class _Joined:
    """Documents joined as `` d1 \\x00 d2 \\x00 ...``: their code points, where each starts
    (in code points), and where the NUL after each is (it stays a NUL in the canonical text,
    where no entry has one, so no occurrence spans two documents)."""

    codes: np.ndarray
    starts: np.ndarray
    separators: np.ndarray


def _join(texts: pa.Array) -> _Joined:
    framed = pc.binary_join_element_wise(" ", texts, " \x00", "")
    offsets = np.frombuffer(framed.buffers()[1], np.int32, len(framed) + 1, framed.offset * 4).astype(np.int64)
    data = np.frombuffer(framed.buffers()[2], np.uint8, offsets[-1] - offsets[0], offsets[0])
    if pc.all(pc.string_is_ascii(texts)).as_py() is not False:
        bounds = offsets - offsets[0]
    else:
        codes = data.tobytes().decode("utf-8").encode("utf-32-le")
        data = np.frombuffer(codes, np.uint32)
        bounds = np.zeros(len(framed) + 1, np.int64)
        np.cumsum(pc.utf8_length(framed).to_numpy(zero_copy_only=False), out=bounds[1:])
    return _Joined(data, bounds[:-1] + 1, bounds[1:] - 1)


def _canonical_text(joined: _Joined) -> str:
    codes = joined.codes
    if codes.dtype == np.uint8:
        canonical = _ascii_canonical_table()[codes]
    else:
        canonical = _canonical_table()[np.minimum(codes, 0xFFFF)]
        astral = np.flatnonzero(codes > 0xFFFF)
        if astral.size:
            values, inverse = np.unique(codes[astral], return_inverse=True)
            word = np.array([is_word_char(chr(c)) for c in values.tolist()], bool)
            canonical[astral] = np.where(word, values, _SPACE)[inverse]
    canonical[joined.separators] = 0
    return canonical.tobytes().decode("ascii" if codes.dtype == np.uint8 else "utf-32-le")


def count_words(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Words per text (``WORD_PATTERN``), as int64."""
    texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    if not len(texts):
        return np.zeros(0, np.int64)
    joined = _join(texts)
    codes = joined.codes
    if codes.dtype == np.uint8:
        classes = _word_classes()[codes]
    else:
        classes = _word_classes()[np.minimum(codes, _CLASSIFIED)]
    other = classes == _OTHER
    begins = classes == _NO_SPACE
    begins[1:] |= other[1:] & ~other[:-1]
    begins[0] |= other[0]
    before = np.zeros(len(begins) + 1, np.int64)
    np.cumsum(begins, out=before[1:])
    return before[joined.separators] - before[joined.starts]


@dataclass
class WordList:
    """A list's entries as read from its files, by language label (``*``: every document)."""

    name: str
    files: dict[str, list[str]]

    def distinct_entries(self) -> dict[str, set[str]]:
        """Each file's entries, lower-cased, once each."""
        return {
            label: set(pc.utf8_lower(pa.array(entries, pa.string())).to_pylist())
            for label, entries in self.files.items()
        }


@dataclass
class _Automaton:
    """The entries of one language label's files (of every list), in one automaton. Entries
    sharing a canonical key ("a b" and "a-b") are one group of it:
    ``group_entries[group_starts[g]:group_starts[g + 1]]``."""

    automaton: ahocorasick.Automaton
    group_starts: np.ndarray
    group_entries: np.ndarray


@dataclass
class Occurrences:
    """Occurrences in a batch, one per row: document, start and end (code points in the
    document), list and entry."""

    doc: np.ndarray
    start: np.ndarray
    end: np.ndarray
    list: np.ndarray
    entry: np.ndarray

    def take(self, index: np.ndarray) -> Occurrences:
        return Occurrences(self.doc[index], self.start[index], self.end[index], self.list[index], self.entry[index])

    @classmethod
    def concat(cls, parts: list[Occurrences]) -> Occurrences:
        if len(parts) == 1:
            return parts[0]
        if not parts:
            empty = np.zeros(0, np.int64)
            return cls(empty, empty, empty, empty, empty)
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("doc", "start", "end", "list", "entry")))


class ListMatcher:
    """Counts the matches of each list in each document of a batch, and the words in them."""

    def __init__(self, lists: list[WordList]) -> None:
        self.names = [word_list.name for word_list in lists]
        ids: dict[tuple[int, str], int] = {}
        entry_sets: dict[str, list[set[int]]] = {}  # language -> per list, its entries for that language
        for number, word_list in enumerate(lists):
            for label, lowered in word_list.distinct_entries().items():
                sets = entry_sets.setdefault(label, [set() for _ in lists])
                sets[number] |= {ids.setdefault((number, entry), len(ids)) for entry in lowered}
        self.texts = [entry for _, entry in ids]
        self.entry_list = np.array([number for number, _ in ids], np.int64)
        entries = pa.array(self.texts, pa.string())
        self.entry_length = pc.utf8_length(entries).to_numpy(zero_copy_only=False).astype(np.int64)
        self.entry_words = pc.count_substring_regex(entries, WORD_PATTERN).to_numpy(zero_copy_only=False)
        anywhere = pc.match_substring_regex(entries, f"[{NO_SPACE_SCRIPTS}]").to_numpy(zero_copy_only=False)
        self.padded = (~anywhere.astype(bool)).astype(np.int64)
        self.keys = [canonical_entry(entry) for entry in self.texts]
        # Where an entry has non-word characters, and which: the text must have the same there.
        checks = [
            [(i, ord(c)) for i, c in enumerate(entry) if key[i] == " "] for entry, key in zip(self.texts, self.keys)
        ]
        self.check_count = np.array([len(c) for c in checks], np.int64)
        self.check_first = np.concatenate([[0], np.cumsum(self.check_count)[:-1]]).astype(np.int64)
        self.check_offset = np.array([i for c in checks for i, _ in c], np.int64)
        self.check_code = np.array([code for c in checks for _, code in c], np.int64)
        self.languages = sorted(set(entry_sets) - {ANY_LANGUAGE})
        # A document is scanned by the "*" automaton and by its language's; an entry in both
        # is found twice at the same place, and counted once (leftmost_longest).
        self.automata = {label: self._automaton(set().union(*sets)) for label, sets in entry_sets.items()}

    def _automaton(self, entry_ids: set[int]) -> _Automaton:
        groups: dict[str, list[int]] = {}
        for entry in sorted(entry_ids):
            key = f" {self.keys[entry]} " if self.padded[entry] else self.keys[entry]
            groups.setdefault(key, []).append(entry)
        automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
        for number, key in enumerate(groups):
            automaton.add_word(key, number)
        automaton.make_automaton()
        sizes = np.fromiter((len(members) for members in groups.values()), np.int64, len(groups))
        starts = np.concatenate([[0], np.cumsum(sizes)])
        return _Automaton(automaton, starts, np.fromiter(itertools.chain(*groups.values()), np.int64, int(starts[-1])))

    def occurrences(self, lowered: pa.Array, langs: pa.Array | pa.ChunkedArray | None = None) -> Occurrences:
        """Every whole-word occurrence, in lower-cased documents, of every entry of the lists
        they use (``langs``: their language labels)."""
        parts = []
        if ANY_LANGUAGE in self.automata:
            parts.append(self._scan(self.automata[ANY_LANGUAGE], lowered, np.arange(len(lowered))))
        if langs is not None and self.languages:
            langs = langs.combine_chunks() if isinstance(langs, pa.ChunkedArray) else langs
            index = pc.index_in(langs, value_set=pa.array(self.languages, pa.string()))
            index = pc.fill_null(index, -1).to_numpy(zero_copy_only=False)
            for number, language in enumerate(self.languages):
                rows = np.flatnonzero(index == number)
                if rows.size:
                    parts.append(self._scan(self.automata[language], lowered.take(rows), rows))
        return Occurrences.concat(parts)

    def _scan(self, compiled: _Automaton, lowered: pa.Array, rows: np.ndarray) -> Occurrences:
        joined = _join(lowered)
        found = np.fromiter(itertools.chain.from_iterable(compiled.automaton.iter(_canonical_text(joined))), np.int64)
        last, groups = found[0::2], found[1::2]
        sizes = compiled.group_starts[groups + 1] - compiled.group_starts[groups]
        if sizes.size and sizes.max() > 1:
            last = np.repeat(last, sizes)
            first = np.repeat(compiled.group_starts[groups], sizes)
            entry = compiled.group_entries[first + _ranks(sizes)]
        else:
            entry = compiled.group_entries[compiled.group_starts[groups]]
        end = last + 1 - self.padded[entry]
        start = end - self.entry_length[entry]
        check = np.flatnonzero(self.check_count[entry])
        if check.size:
            counts = self.check_count[entry[check]]
            candidate = np.repeat(check, counts)
            flat = np.repeat(self.check_first[entry[check]], counts) + _ranks(counts)
            wrong = joined.codes[start[candidate] + self.check_offset[flat]] != self.check_code[flat]
            keep = np.bincount(candidate[wrong], minlength=len(entry)) == 0
            start, end, entry = start[keep], end[keep], entry[keep]
        doc = np.searchsorted(joined.starts, start, "right") - 1
        return Occurrences(
            rows[doc], start - joined.starts[doc], end - joined.starts[doc], self.entry_list[entry], entry
        )

    def count(
        self, texts: pa.Array | pa.ChunkedArray, langs: pa.Array | pa.ChunkedArray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per document and list (rows, and columns in list order): matches, and the words in them."""
        n, lists = len(texts), len(self.names)
        if not n:
            return np.zeros((0, lists), np.int64), np.zeros((0, lists), np.int64)
        lowered = pc.utf8_lower(texts)
        lowered = lowered.combine_chunks() if isinstance(lowered, pa.ChunkedArray) else lowered
        lengths = pc.utf8_length(lowered).to_numpy(zero_copy_only=False).astype(np.int64)
        chosen = leftmost_longest(self.occurrences(lowered, langs), lengths)
        cell = chosen.doc * lists + chosen.list
        matches = np.bincount(cell, minlength=n * lists).reshape(n, lists)
        words = np.bincount(cell, weights=self.entry_words[chosen.entry], minlength=n * lists)
        return matches.astype(np.int64), words.reshape(n, lists).astype(np.int64)


def _ranks(sizes: np.ndarray) -> np.ndarray:
    """0, 1, ... within each of consecutive runs of these sizes."""
    return np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)


def leftmost_longest(found: Occurrences, lengths: np.ndarray) -> Occurrences:
    """Per document and list: the leftmost occurrence, the longest of those starting there,
    then the same from its end on. ``lengths``: the documents' lengths."""
    if not len(found.doc):
        return found
    # Every (list, document) on one line, each after the one before it.
    doc_base = np.zeros(len(lengths), np.int64)
    np.cumsum(lengths[:-1] + 1, out=doc_base[1:])
    line = int(doc_base[-1] + lengths[-1] + 1)
    start = found.list * line + doc_base[found.doc] + found.start
    end = start + (found.end - found.start)
    longest = int((found.end - found.start).max()) + 1
    if (int(found.list.max()) + 1) * line * longest < 2**62:
        order = np.argsort(start * longest + (longest - 1 - (end - start)), kind="stable")
    else:
        order = np.lexsort((-end, start))
    start, end = start[order], end[order]
    first = np.ones(len(order), bool)
    first[1:] = start[1:] != start[:-1]
    order, start, end = order[first], start[first], end[first]
    reach = np.maximum.accumulate(end)
    clear = np.ones(len(start), bool)
    clear[1:] = start[1:] >= reach[:-1]
    if clear.all():
        return found.take(order)
    keep = clear.copy()
    # An occurrence that overlaps an earlier one is in the run after the last clear one:
    # the greedy choice within each such run, in Python.
    heads = np.flatnonzero(clear)
    crowded = np.flatnonzero(~clear)
    run_heads = heads[np.searchsorted(heads, crowded, "right") - 1]
    current, last_end = -1, 0
    for index, head, begin, finish in zip(
        crowded.tolist(), run_heads.tolist(), start[crowded].tolist(), end[crowded].tolist()
    ):
        if head != current:
            current, last_end = head, int(end[head])
        if begin >= last_end:
            keep[index] = True
            last_end = finish
    return found.take(order[keep])
