"""Presidio's phone recognizer, giving the same results for far less work: one walk of
phonenumbers' candidates for all regions, memoized parses, and no parse where no region
can match or where phonenumbers' own rules rule a region out. Written against
phonenumbers 9.0.43; why each shortcut is exact, and what to re-check on an upgrade:
``docs/pii-phone.md``.
"""

from __future__ import annotations

import functools
import itertools
import re

import phonenumbers
from phonenumbers import phonenumbermatcher as pm
from phonenumbers import phonenumberutil as pu
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


_NOT_ASCII_DIGIT = re.compile("[^0-9]")
# Characters that let parse() read more than a candidate's ASCII digits: letters (vanity
# numbers, extension labels, "tel:"), extension and RFC 3966 marks (# ; , ~) and plus signs.
_BEYOND_DIGITS = re.compile("[A-Za-z#;,~+]")


def _desc_pattern(desc) -> str | None:
    """A number description as one regex: phonenumbers' ``_is_number_matching_desc`` (the
    possible lengths, then the full pattern); None where no number can match it."""
    if desc is None or not desc.national_number_pattern:
        return None
    body = f"(?:{desc.national_number_pattern})"
    lengths = sorted(set(desc.possible_length))
    if not lengths:
        return body
    if min(lengths) < 1:
        return None
    return "(?=(?:" + "|".join(f"[0-9]{{{n}}}" for n in lengths) + r")\Z)" + body


@functools.cache
def _typed_in_country(country_code: int) -> re.Pattern:
    """Matches (fullmatch) exactly the national numbers that phonenumbers'
    ``_number_type_helper`` gives a type other than UNKNOWN in at least one region of the
    country: the general description and one type's description both match."""
    branches = []
    for code in phonenumbers.region_codes_for_country_code(country_code):
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(code)
        general = None if metadata is None else _desc_pattern(metadata.general_desc)
        if general is None:
            continue
        descs = [
            metadata.premium_rate,
            metadata.toll_free,
            metadata.shared_cost,
            metadata.voip,
            metadata.personal_number,
            metadata.pager,
            metadata.uan,
            metadata.voicemail,
            metadata.fixed_line,
        ]
        if not metadata.same_mobile_and_fixed_line_pattern:
            descs.append(metadata.mobile)
        types = [f"(?:{t})" for t in map(_desc_pattern, descs) if t is not None]
        if types:
            branches.append(f"(?:(?={general}\\Z)(?:{'|'.join(types)}))")
    return re.compile("|".join(branches) or "(?!)")


def _national_prefix_may_be_missing(national_number: str, metadata) -> bool:
    """phonenumbers' ``_is_national_prefix_present_if_required`` for a number read in the
    region's own country without its national prefix: whether that is allowed."""
    rule = pu._choose_formatting_pattern_for_number(metadata.number_format, national_number)
    return (
        rule is None
        or not rule.national_prefix_formatting_rule
        or rule.national_prefix_optional_when_formatting
        or bool(pm._formatting_rule_has_first_group_only(rule.national_prefix_formatting_rule))
    )


def _never_verifies(candidate: str, region: str) -> bool:
    """True only if phonenumbers' parse + verify (leniency VALID) of ``candidate`` for
    ``region`` gives no number, found with a few regex matches instead of a parse.

    An ASCII candidate without letters, plus signs or extension marks is read by parse()
    as its digits D, with no extension. Unless the region's international prefix is
    stripped from D, the number is of the region's own country, and its national
    significant number is one of: D or D less its national prefix (the country then comes
    from the region, so verify wants the prefix written where the number's format needs
    it); or, where D starts with the country code, the rest less its national prefix,
    stripped once more with the region's or the country's main metadata. A valid number's
    national number has a type in one of its country's regions; if none of these has one,
    no parse verifies. Each step is phonenumbers' own function, or its pattern as data."""
    facts = _region_facts(region)
    if facts is None or not candidate.isascii() or _BEYOND_DIGITS.search(candidate):
        return False
    metadata, idd, typed, main, code = facts
    digits = _NOT_ASCII_DIGIT.sub("", candidate)
    if idd is not None and pu._parse_prefix_as_idd(idd, digits)[0]:
        return False  # read through the prefix: another country's number
    strip = pu._maybe_strip_national_prefix_carrier_code
    prefix_written = None
    for national in (digits, strip(digits, metadata)[1]):
        if typed(national):
            if prefix_written is None:
                prefix_written = strip(digits, main)[2]
            if prefix_written or _national_prefix_may_be_missing(national, main):
                return False
    if digits.startswith(code):
        rest = strip(digits[len(code) :], metadata)[1]
        if typed(rest) or typed(strip(rest, metadata)[1]) or typed(strip(rest, main)[1]):
            return False
    return True


@functools.cache
def _region_facts(region: str):
    """What ``_never_verifies`` reads of a region: its metadata, compiled international
    prefix, the typed-number pattern of its country, the country's main metadata and code."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is None:
        return None
    country_code = metadata.country_code
    main = phonenumbers.PhoneMetadata.metadata_for_region(phonenumbers.region_code_for_country_code(country_code))
    idd = pu.re_compile(metadata.international_prefix) if metadata.international_prefix else None
    return metadata, idd, _typed_in_country(country_code).fullmatch, main, str(country_code)


def _may_parse(candidate: str) -> bool:
    """parse() raises at once, whatever the region, unless this holds."""
    return len(candidate) > _MAX_INPUT_STRING_LENGTH or _is_viable_phone_number(
        _build_national_number_for_parsing(candidate)
    )


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
        key = (candidate, self.text[offset - 1] if offset else None, self.text[end : end + 3], self.leniency)
        plan = self.plans.get(key)
        if plan is None:
            self.attempts, self._max_tries = [], _UNLIMITED
            self._extract_match(candidate, offset)
            plan = (
                tuple((group, at - offset, tries) for group, at, tries in self.attempts),
                _UNLIMITED - self._max_tries,
            )
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
        if leniency != pm.Leniency.VALID or not _never_verifies(candidate, region):
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


def _region_matches(
    text: str,
    region: str,
    leniency: int,
    visited: list[tuple[str, int, tuple]],
    recorder: _Recorder,
    max_tries: int = _MAX_TRIES,
) -> list[pm.PhoneNumberMatch]:
    """What ``PhoneNumberMatcher(text, region)`` finds. Every region's matcher visits the
    same candidates (``visited``) as long as its matches end where their candidates end.
    After an inner match, this region's own matcher walks on to the end of that line, where
    the walks meet again: no candidate holds a line break (phonenumbers' candidate pattern
    has no line break, lookaround or anchor), so from the next line on both visit the same
    candidates. Near the try limit, the region's own matcher walks the rest.
    ``visited``: (candidate, offset, plan) in the order of the walk."""

    def matcher(search_from: int, tries: int, end: int) -> _MemoMatcher:
        own = _MemoMatcher(text if end == len(text) else text[:end], region, leniency, recorder)
        own._search_index, own._max_tries = search_from, tries
        return own

    found: list[pm.PhoneNumberMatch] = []
    tries, search_from, k = max_tries, 0, 0
    while k < len(visited):
        candidate, offset, (attempts, used) = visited[k]
        if tries <= used + 1:  # the try limit may end the walk inside this candidate
            return found + list(matcher(search_from, tries, len(text)))
        k += 1
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
        search_from = match.end
        if match.end != offset + len(candidate):
            # an inner group matched: the next search starts inside this candidate
            line_end = text.find("\n", match.end)
            line_end = len(text) if line_end < 0 else line_end
            own = matcher(match.end, tries, line_end)
            found += own
            tries, search_from = own._max_tries, line_end
            if tries <= 0:
                return found
            while k < len(visited) and visited[k][1] < line_end:
                k += 1
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
            _region_facts(region)

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
                results.append(
                    self._get_recognizer_result(match, text, self._region_of(match.raw_string, region), nlp_artifacts)
                )
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
