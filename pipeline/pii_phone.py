"""Presidio's phone recognizer, giving the same results for far less work.

Presidio's ``PhoneRecognizer`` runs phonenumbers' ``PhoneNumberMatcher`` once per region
(8 by default). The matcher walks candidate digit runs; for each candidate, and each
inner group of a failed candidate, it first applies checks that do not depend on the
region (brackets, publication pages, a Latin letter or currency sign next to it), and
only then calls ``parse`` and ``_verify``, which are pure functions of (candidate text,
region) and hold nearly all of the cost. Web text is full of candidates: dates, years,
prices, version numbers.

Exact savings, each tested against the stock recognizer:

* ``reaches_parse(text)`` walks the matcher's candidates once, without a region, and
  says whether any of them passes the region-independent checks and parse()'s own first
  checks (length, "viable number"). If none does, no region can match anything: the walk
  of a real matcher is the same until its first match, and a match needs a parse. Most
  phone-anchored windows of real web text are dates and times that stop here.
* Every region's matcher visits the same candidates until its first match, so the walk
  and each candidate's plan (which groups it would parse, in order) are made once for all
  regions; a region gets a matcher of its own only after a match.
* parse + verify are memoized per (candidate, region); a number read through its leading
  plus sign is parsed once for all regions; candidates of up to 3 characters, which no
  region accepts (checked at startup against the installed metadata), are not parsed.
* A candidate with too few digits for a region's country is not parsed for that region
  (``_too_short_for``): most years, ranges and short number groups need only the German
  parse. The bound holds only where parse() cannot read another country's code or lengthen
  the number; each region's metadata is checked for that when it is first used.

Written against phonenumbers 9.0.43 (pinned in pyproject.toml): its matcher's own
methods do the walking and planning, and ``_passes_region_independent_checks`` follows
the checks at the top of its ``_parse_and_verify`` line by line (Apache-2.0, the
Libphonenumber Authors). ``tests/test_pii_phone.py`` holds the results equal to the stock
recognizer; re-run it when phonenumbers is upgraded.
"""

from __future__ import annotations

import functools
import itertools
import re

import phonenumbers
from phonenumbers import phonenumbermatcher as pm
from phonenumbers.phonenumberutil import (
    _MAX_INPUT_STRING_LENGTH,
    NumberParseException,
    _build_national_number_for_parsing,
    _is_viable_phone_number,
)
from presidio_analyzer import EntityRecognizer
from presidio_analyzer.predefined_recognizers import PhoneRecognizer as PresidioPhoneRecognizer

_VERIFIED_CAPACITY = 200_000
_UNSEEN = object()
_UNLIMITED = 1 << 62
_MAX_TRIES = 65535  # PhoneNumberMatcher's default, which Presidio uses


def _passes_region_independent_checks(matcher: pm.PhoneNumberMatcher, candidate: str, offset: int) -> bool:
    """phonenumbers' checks in ``_parse_and_verify`` before it calls parse()."""
    if not pm.fullmatch(pm._MATCHING_BRACKETS, candidate) or pm._PUB_PAGES.search(candidate):
        return False
    if matcher.leniency >= pm.Leniency.VALID:
        if offset > 0 and not pm._LEAD_PATTERN.match(candidate):
            previous_char = matcher.text[offset - 1]
            if matcher._is_invalid_punctuation_symbol(previous_char) or matcher._is_latin_letter(previous_char):
                return False
        last_char_index = offset + len(candidate)
        if last_char_index < len(matcher.text):
            next_char = matcher.text[last_char_index]
            if matcher._is_invalid_punctuation_symbol(next_char) or matcher._is_latin_letter(next_char):
                return False
    return True


@functools.cache
def _never_valid_up_to(region: str, leniency: int) -> int:
    """The largest length (at most 3) up to which no candidate verifies in ``region``.

    parse() reads a candidate as its digits (each character gives at most one) and whether
    it starts with a plus sign; validity depends on nothing else. So if no string of up to
    k digits, with or without a plus, verifies, no candidate of up to k characters does.
    Checked here by trying them all (2,220 parses), so that it holds for the installed
    phonenumbers metadata; years and short number groups then need no parse at all.
    """
    for length in range(1, 4):
        for digits in itertools.product("0123456789", repeat=length):
            for candidate in ("".join(digits), "+" + "".join(digits)):
                try:
                    if pm._verify(leniency, pm.parse(candidate, region, keep_raw_input=True), candidate, None):
                        return length - 1
                except NumberParseException:
                    pass
    return 3


def _top_level_alternation(pattern: str) -> bool:
    depth, escaped = 0, False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "|" and depth == 0:
            return True
    return False


@functools.cache
def _min_national_length(region: str) -> int:
    """The fewest digits a valid number of ``region``'s country has (0: no usable bound).

    A number written without a plus sign, whose first digit is not 0, is read by parse()
    as one of the region's own country: every international prefix checked here begins
    with a literal 0. Its national number is then its digits (letters of an alpha number
    included) less any country code, national prefix, carrier code or extension, as long
    as the national prefix rule only keeps captured groups. A valid number's length is
    one of its region's general possible lengths."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is None:
        return 0
    prefix, rule = metadata.international_prefix, metadata.national_prefix_transform_rule
    if (not prefix or prefix[0] != "0" or prefix[1:2] in ("?", "*", "{", "")
            or _top_level_alternation(prefix)):
        return 0
    if rule and not re.fullmatch(r"(?:\\[0-9]|\$[0-9])+", rule):
        return 0
    lengths = []
    for code in phonenumbers.region_codes_for_country_code(metadata.country_code):
        country_metadata = phonenumbers.PhoneMetadata.metadata_for_region(code)
        if country_metadata is None or not country_metadata.general_desc.possible_length:
            return 0
        lengths.append(min(country_metadata.general_desc.possible_length))
    return min(lengths)


_PLUS_CHARS = frozenset("+\uff0b")
_ASCII_DIGITS = frozenset("0123456789")
_ASCII_ALNUM = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ASCII_OR_PUNCTUATION = re.compile("[\\x00-\\x7f" + pm._VALID_PUNCTUATION + "]*")


def _too_short_for(candidate: str, region: str) -> bool:
    """True only if no parse of ``candidate`` for ``region`` is a valid number: it has no
    plus sign, no non-ASCII digit or letter, its first digit is not 0, and it has fewer
    digits and letters than any valid number of the region's country."""
    minimum = _min_national_length(region)
    if not minimum or _PLUS_CHARS.intersection(candidate) or not _ASCII_OR_PUNCTUATION.fullmatch(candidate):
        return False
    first_digit = next((c for c in candidate if c in _ASCII_DIGITS), "0")
    return first_digit != "0" and sum(c in _ASCII_ALNUM for c in candidate) < minimum


def _may_parse(candidate: str) -> bool:
    """parse() raises at once, whatever the region, unless this holds."""
    return len(candidate) > _MAX_INPUT_STRING_LENGTH or _is_viable_phone_number(
        _build_national_number_for_parsing(candidate))


class _Recorder(pm.PhoneNumberMatcher):
    """Runs phonenumbers' own candidate logic without a region and records each attempt
    that would reach a real parse, with the tries used before it; matches nothing."""

    def __init__(self, text: str, leniency: int, stop_at_first: bool = False) -> None:
        super().__init__(text, "US", leniency=leniency, max_tries=_UNLIMITED)
        self.attempts: list[tuple[str, int, int]] = []
        self.stop_at_first = stop_at_first

    def _parse_and_verify(self, candidate, offset):
        if _passes_region_independent_checks(self, candidate, offset) and _may_parse(candidate):
            self.attempts.append((candidate, offset, _UNLIMITED - self._max_tries))
            if self.stop_at_first:
                self._max_tries = 0  # ends the walk
        return None

    plans: dict = {}

    def plan(self, candidate: str, offset: int) -> tuple[tuple[tuple[str, int, int], ...], int]:
        """What ``_extract_match(candidate, offset)`` would parse, in order (with offsets
        relative to the candidate), and the tries it uses when nothing matches."""
        end = offset + len(candidate)
        # All that phonenumbers looks at besides the candidate: the character before it, the
        # one after it, and the timestamp suffix check (":" and two digits) after it.
        key = (candidate, self.text[offset - 1] if offset else None, self.text[end:end + 3], self.leniency)
        plan = self.plans.get(key)
        if plan is None:
            self.attempts, self._max_tries = [], _UNLIMITED
            self._extract_match(candidate, offset)
            plan = (tuple((group, at - offset, tries) for group, at, tries in self.attempts),
                    _UNLIMITED - self._max_tries)
            if len(self.plans) >= _VERIFIED_CAPACITY:
                self.plans.clear()
            self.plans[key] = plan
        return plan


def reaches_parse(text: str, leniency: int = pm.Leniency.VALID) -> bool:
    """False only if no region's matcher can find a phone number in ``text``: a real
    matcher walks the same candidates until its first match, and a match needs a parse."""
    recorder = _Recorder(text, leniency, stop_at_first=True)
    recorder.has_next()
    return bool(recorder.attempts)


_verified_numbers: dict = {}


def _parse_and_verify(candidate: str, region: str, leniency: int, key: tuple) -> tuple:
    """(the verified number or None, the memo key it holds for)."""
    try:
        parsed = pm.parse(candidate, region, keep_raw_input=True)
    except NumberParseException:
        return None, key
    if parsed.country_code_source == pm.CountryCodeSource.FROM_NUMBER_WITH_PLUS_SIGN:
        key = (candidate, None, leniency)
    if not pm._verify(leniency, parsed, candidate, None):  # VALID and POSSIBLE ignore the matcher
        return None, key
    parsed.country_code_source = pm.CountryCodeSource.UNSPECIFIED
    parsed.raw_input = None
    parsed.preferred_domestic_carrier_code = None
    return parsed, key


def _verified(candidate: str, region: str, leniency: int):
    """phonenumbers' parse + verify of a candidate for a region: the number, or None."""
    if len(candidate) <= _never_valid_up_to(region, leniency):
        return None
    # A number that parse() read through its leading plus sign does not depend on the
    # region (the region's metadata is only consulted when it is the number's own); nor,
    # at leniency VALID, does its verification. One parse serves every region.
    numobj = _verified_numbers.get((candidate, None, leniency), _UNSEEN)
    if numobj is not _UNSEEN:
        return numobj
    key = (candidate, region, leniency)
    numobj = _verified_numbers.get(key, _UNSEEN)
    if numobj is _UNSEEN:
        numobj = None
        if leniency != pm.Leniency.VALID or not _too_short_for(candidate, region):
            numobj, key = _parse_and_verify(candidate, region, leniency, key)
        if len(_verified_numbers) >= _VERIFIED_CAPACITY:
            _verified_numbers.clear()
        _verified_numbers[key] = numobj
    return numobj


class _Walker(pm.PhoneNumberMatcher):
    """Records the candidates phonenumbers' matcher visits while it finds nothing."""

    def __init__(self, text: str, leniency: int) -> None:
        super().__init__(text, "US", leniency=leniency, max_tries=_UNLIMITED)
        self.visited: list[tuple[str, int]] = []

    def _extract_match(self, candidate, offset):
        self.visited.append((candidate, offset))
        return None


class _MemoMatcher(pm.PhoneNumberMatcher):
    """phonenumbers' matcher for one region, with each candidate's plan (what it would
    parse) made once for all regions and texts, and parse + verify memoized."""

    def __init__(self, text: str, region: str, leniency: int, recorder: _Recorder) -> None:
        super().__init__(text, region, leniency=leniency)
        self.recorder = recorder

    def _extract_match(self, candidate, offset):
        attempts, tries = self.recorder.plan(candidate, offset)
        if self._max_tries <= tries + 1:  # the try limit could cut the walk short: phonenumbers' own code
            return super()._extract_match(candidate, offset)
        for group, group_offset, tries_before in attempts:
            numobj = _verified(group, self.preferred_region, self.leniency)
            if numobj is not None:
                self._max_tries -= tries_before
                return pm.PhoneNumberMatch(offset + group_offset, group, numobj)
        self._max_tries -= tries
        return None

    def _parse_and_verify(self, candidate, offset):
        if not (_passes_region_independent_checks(self, candidate, offset) and _may_parse(candidate)):
            return None
        numobj = _verified(candidate, self.preferred_region, self.leniency)
        return None if numobj is None else pm.PhoneNumberMatch(offset, candidate, numobj)


def _region_matches(text: str, region: str, leniency: int, visited: list[tuple[str, int, tuple]],
                    recorder: _Recorder, max_tries: int = _MAX_TRIES) -> list[pm.PhoneNumberMatch]:
    """What ``PhoneNumberMatcher(text, region)`` finds. Every region's matcher visits the
    same candidates (``visited``) as long as its matches end where their candidates end;
    only after an inner match, or near the try limit, does this region need a matcher of
    its own, resumed in the state phonenumbers' would be in.
    ``visited``: (candidate, offset, plan) in the order of the walk."""

    def resume(search_from: int, tries: int) -> list[pm.PhoneNumberMatch]:
        matcher = _MemoMatcher(text, region, leniency, recorder)
        matcher._search_index, matcher._max_tries = search_from, tries
        return list(matcher)

    found: list[pm.PhoneNumberMatch] = []
    tries, search_from = max_tries, 0
    for candidate, offset, (attempts, used) in visited:
        if tries <= used + 1:  # the try limit may end the walk inside this candidate
            return found + resume(search_from, tries)
        match = None
        for group, group_offset, tries_before in attempts:
            numobj = _verified(group, region, leniency)
            if numobj is not None:
                match = pm.PhoneNumberMatch(offset + group_offset, group, numobj)
                tries -= tries_before
                break
        if match is None:
            tries -= used + 1
            search_from = offset + len(candidate)
            continue
        found.append(match)
        if match.end != offset + len(candidate):
            # an inner group matched: the next search starts inside this candidate
            return found + resume(match.end, tries)
        search_from = match.end  # where the shared walk goes on too
    return found


class PhoneRecognizer(PresidioPhoneRecognizer):
    """Presidio's PhoneRecognizer (same regions, leniency, score and explanations), with the
    regions sharing one walk over the candidates, their plans and parses; a text where no
    plan would parse anything is answered without a region."""

    number_regions: dict = {}

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        # phonenumbers' own switch: keep its compiled metadata patterns instead of asking
        # re.compile for them on every use. Eight regions (and the 25 that share +1) hold
        # more patterns than re's cache, which then recompiles them; measured 13-17% of
        # the stage's time at high phone density.
        phonenumbers.re_util.enable_pattern_cache()
        for region in self.supported_regions:  # at setup, not on the first document
            _never_valid_up_to(region, self.leniency)
            _min_national_length(region)

    def analyze(self, text, entities, nlp_artifacts=None):
        if self.leniency > pm.Leniency.VALID:  # the grouping checks read the matcher: Presidio's own path
            return super().analyze(text, entities, nlp_artifacts)
        recorder, walker, results = _Recorder(text, self.leniency), _Walker(text, self.leniency), []
        walker.has_next()
        visited = [(candidate, offset, recorder.plan(candidate, offset)) for candidate, offset in walker.visited]
        if not any(attempts for _, _, (attempts, _) in visited):  # nothing would reach a parse: no region matches
            return []
        for region in self.supported_regions:
            for match in _region_matches(text, region, self.leniency, visited, recorder):
                results.append(self._get_recognizer_result(match, text, self._region_of(match.raw_string, region),
                                                           nlp_artifacts))
        return EntityRecognizer.remove_duplicates(results)

    def _region_of(self, number: str, matcher_region: str) -> str:
        """The region Presidio names in the explanation: the number's own when it parses
        without a default region (international format), else the matcher's."""
        if number not in self.number_regions:
            try:
                own = phonenumbers.region_code_for_number(phonenumbers.parse(number))
            except NumberParseException:
                own = None
            if len(self.number_regions) >= _VERIFIED_CAPACITY:
                self.number_regions.clear()
            self.number_regions[number] = own
        return self.number_regions[number] or matcher_region


def clear_caches() -> None:
    """Forget every memoized parse, plan and region (benchmarks start each repeat cold)."""
    _verified_numbers.clear()
    _Recorder.plans.clear()
    PhoneRecognizer.number_regions.clear()
