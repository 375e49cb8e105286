"""Presidio's phone recognizer, giving the same results for far less work.

Presidio's ``PhoneRecognizer`` runs phonenumbers' ``PhoneNumberMatcher`` once per region
(8 by default). The matcher walks candidate digit runs; for each candidate, and each
inner group of a failed candidate, it first applies checks that do not depend on the
region (brackets, publication pages, a Latin letter or currency sign next to it), and
only then calls ``parse`` and ``_verify``, which are pure functions of (candidate text,
region) and hold nearly all of the cost. Web text is full of candidates: dates, years,
prices, version numbers.

Two exact savings:

* ``reaches_parse(text)`` walks the matcher's candidates once, without a region, and
  says whether any of them passes the region-independent checks and parse()'s own first
  checks (length, "viable number"). If none does, no region can match anything: the walk
  of a real matcher is the same until its first match, and a match needs a parse. Most
  phone-anchored windows of real web text are dates and times that stop here.
* ``PhoneRecognizer`` (a subclass of Presidio's) memoizes parse + verify per (candidate,
  region); years, short groups and repeated numbers are parsed once per worker.

Written against phonenumbers 9.0.43, whose ``PhoneNumberMatcher._parse_and_verify`` the
two matchers below follow line by line (Apache-2.0, the Libphonenumber Authors).
``tests/test_pii_phone.py`` holds both equal to the stock recognizer; re-run it when
phonenumbers is upgraded.
"""

from __future__ import annotations

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


class _MemoMatcher(pm.PhoneNumberMatcher):
    """phonenumbers' matcher for one region, with each candidate's plan (what it would
    parse) made once for all regions and texts, and parse + verify results per (candidate,
    region)."""

    verified: dict = {}

    def __init__(self, text: str, region: str, leniency: int, recorder: _Recorder) -> None:
        super().__init__(text, region, leniency=leniency)
        self.recorder = recorder

    def _verified(self, candidate: str):
        key = (candidate, self.preferred_region, self.leniency)
        numobj = self.verified.get(key, _UNSEEN)
        if numobj is _UNSEEN:
            numobj = None
            try:
                parsed = pm.parse(candidate, self.preferred_region, keep_raw_input=True)
                if pm._verify(self.leniency, parsed, candidate, self):
                    parsed.country_code_source = pm.CountryCodeSource.UNSPECIFIED
                    parsed.raw_input = None
                    parsed.preferred_domestic_carrier_code = None
                    numobj = parsed
            except NumberParseException:
                pass
            if len(self.verified) >= _VERIFIED_CAPACITY:
                self.verified.clear()
            self.verified[key] = numobj
        return numobj

    def _extract_match(self, candidate, offset):
        attempts, tries = self.recorder.plan(candidate, offset)
        if self._max_tries <= tries + 1:  # the try limit could cut the walk short: phonenumbers' own code
            return super()._extract_match(candidate, offset)
        for group, group_offset, tries_before in attempts:
            numobj = self._verified(group)
            if numobj is not None:
                self._max_tries -= tries_before
                return pm.PhoneNumberMatch(offset + group_offset, group, numobj)
        self._max_tries -= tries
        return None

    def _parse_and_verify(self, candidate, offset):
        if not (_passes_region_independent_checks(self, candidate, offset) and _may_parse(candidate)):
            return None
        numobj = self._verified(candidate)
        return None if numobj is None else pm.PhoneNumberMatch(offset, candidate, numobj)


class PhoneRecognizer(PresidioPhoneRecognizer):
    """Presidio's PhoneRecognizer (same regions, leniency, score and explanations), with the
    dry walk first and the regions sharing candidate plans and parses."""

    number_regions: dict = {}

    def analyze(self, text, entities, nlp_artifacts=None):
        if not reaches_parse(text, self.leniency):
            return []
        recorder, results = _Recorder(text, self.leniency), []
        for region in self.supported_regions:
            for match in _MemoMatcher(text, region, self.leniency, recorder):
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
    _MemoMatcher.verified.clear()
    _Recorder.plans.clear()
    PhoneRecognizer.number_regions.clear()
