"""The phone recognizer Refinery uses (pipeline/stages/pii/phone.py) returns exactly what
Presidio's PhoneRecognizer returns, and its dry walk never skips a text where Presidio
finds a number."""

import random

import phonenumbers
import pytest
from phonenumbers import PhoneNumberFormat, PhoneNumberMatcher, PhoneNumberType
from presidio_analyzer.predefined_recognizers import PhoneRecognizer as PresidioPhoneRecognizer

from pipeline.stages.pii.phone import (
    PhoneRecognizer,
    _MemoMatcher,
    _never_verifies,
    _Recorder,
    _region_matches,
    _Walker,
    clear_caches,
    reaches_parse,
)
from tests.helpers.pii_corpus import EDGE_CASES, SENTENCES, planted_documents

REGIONS = PresidioPhoneRecognizer.DEFAULT_SUPPORTED_REGIONS
FORMATS = [PhoneNumberFormat.NATIONAL, PhoneNumberFormat.INTERNATIONAL, PhoneNumberFormat.E164]
NUMBER_TYPES = [PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.TOLL_FREE]


def _numbers() -> list[str]:
    """phonenumbers' own example numbers for the default regions (and a few others), in each
    format, plus the same digits with other separators."""
    out = []
    for region in list(REGIONS) + ["AU", "JP", "MX", "ES"]:
        for number_type in NUMBER_TYPES:
            example = phonenumbers.example_number_for_type(region, number_type)
            if example is None:
                continue
            for fmt in FORMATS:
                text = phonenumbers.format_number(example, fmt)
                out += [text, text.replace(" ", "-"), text.replace(" ", "."), text.replace(" ", "")]
    return out


NOISE = [
    "",
    " ",
    "  ",
    "-",
    ".",
    "/",
    ":",
    "(",
    ")",
    "+",
    "x",
    "ext. ",
    "#",
    "$",
    "%",
    "€",
    "a",
    "Z",
    "é",
    "\n",
    "\u00a0",
    "1",
    "12",
    "2024",
    "12/31/2025",
    "9:30",
    "10:45:12",
    "1.5",
    "p. 12-14",
    "No. 7",
]


def _fuzzed(rng: random.Random, numbers: list[str]) -> str:
    parts = []
    for _ in range(rng.randrange(1, 6)):
        parts.append(rng.choice(NOISE))
        if rng.random() < 0.6:
            number = rng.choice(numbers)
            if rng.random() < 0.3:  # a number cut short or grown by a digit
                number = number[:-1] if rng.random() < 0.5 else number + str(rng.randrange(10))
            parts.append(number)
        parts.append(rng.choice(NOISE))
    return "".join(parts)


def _key(results):
    return sorted((r.start, r.end, r.entity_type, r.score) for r in results)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    rng = random.Random(11)
    numbers = _numbers()
    corpus = [_fuzzed(rng, numbers) for _ in range(4000)]
    corpus += planted_documents(80) + EDGE_CASES + SENTENCES
    return corpus


def test_same_results_as_presidio_phone_recognizer(texts):
    stock, ours = PresidioPhoneRecognizer(), PhoneRecognizer()
    clear_caches()
    found = 0
    for text in texts:
        expected = _key(stock.analyze(text, ["PHONE_NUMBER"]))
        assert _key(ours.analyze(text, ["PHONE_NUMBER"])) == expected, repr(text)
        found += len(expected)
    assert found > 2000  # the fuzzed texts hold real numbers that Presidio finds
    # a second pass answers from the memoized plans and parses
    for text in texts[:500]:
        assert _key(ours.analyze(text, ["PHONE_NUMBER"])) == _key(stock.analyze(text, ["PHONE_NUMBER"]))


def test_dry_walk_skips_only_texts_without_numbers(texts):
    stock = PresidioPhoneRecognizer()
    skipped = 0
    for text in texts:
        if not reaches_parse(text):
            skipped += 1
            assert stock.analyze(text, ["PHONE_NUMBER"]) == [], repr(text)
    assert skipped > 200
    # slash dates (with or without a time) are what it skips most in web text
    for text in ["Posted 11/02/2006 - 6:21pm.", "Commission, 6/17/2004]", "Thu, 11/02/2006 - 8:37pm."]:
        assert not reaches_parse(text)


def test_walks_meet_again_on_the_next_line_after_an_inner_match(texts, monkeypatch):
    """Presidio is called on many windows joined by line breaks. After an inner match, a
    region's own matcher walks only to the end of that line; the results over whole joined
    texts stay equal to the stock recognizer's."""
    import pipeline.stages.pii.phone as pii_phone

    line_walks = []

    class Counting(pii_phone._MemoMatcher):
        def __init__(self, text, *args):
            super().__init__(text, *args)
            line_walks.append(len(text))

    monkeypatch.setattr(pii_phone, "_MemoMatcher", Counting)
    rng = random.Random(3)
    stock, ours = PresidioPhoneRecognizer(), PhoneRecognizer()
    clear_caches()
    joined = ["\n".join(rng.sample(texts, 25)) for _ in range(120)]
    for text in joined:
        before = len(line_walks)
        assert _key(ours.analyze(text, ["PHONE_NUMBER"])) == _key(stock.analyze(text, ["PHONE_NUMBER"]))
        line_walks[before:] = [n for n in line_walks[before:] if n < len(text)]
    assert len(line_walks) > 50  # walks that stopped at a line end, not the text's
    for text in joined[:40]:  # each region's matches, before Presidio drops duplicates
        recorder, walker = _Recorder(text, 1), _Walker(text, 1)
        walker.has_next()
        visited = [(c, o, recorder.plan(c, o)) for c, o in walker.visited]
        for region in REGIONS:
            expected = [(m.start, m.end) for m in PhoneNumberMatcher(text, region, leniency=1)]
            assert [(m.start, m.end) for m in _region_matches(text, region, 1, visited, recorder)] == expected


@pytest.mark.parametrize("max_tries", [1, 3, 10, 40])
def test_try_limit_cuts_the_walk_where_phonenumbers_does(texts, max_tries):
    """phonenumbers gives up after max_tries failed candidates; the shared walk hands over
    to a matcher of the region's own near the limit, so a cut-short walk ends in the same
    place."""
    rng = random.Random(max_tries)
    long_texts = [" ".join(rng.sample(texts, 12)) for _ in range(150)]
    for text in long_texts:
        recorder, walker = _Recorder(text, 1), _Walker(text, 1)
        walker.has_next()
        visited = [(c, o, recorder.plan(c, o)) for c, o in walker.visited]
        for region in REGIONS:
            expected = [(m.start, m.end) for m in PhoneNumberMatcher(text, region, leniency=1, max_tries=max_tries)]
            found = _region_matches(text, region, 1, visited, recorder, max_tries=max_tries)
            assert [(m.start, m.end) for m in found] == expected
            matcher = _MemoMatcher(text, region, 1, recorder)
            matcher._max_tries = max_tries
            assert [(m.start, m.end) for m in matcher] == expected


def test_stricter_leniency_is_presidio_own_path():
    text = "call 212-555-0147 or +44 20 7946 0958 today"
    for leniency in (2, 3):
        ours, stock = PhoneRecognizer(leniency=leniency), PresidioPhoneRecognizer(leniency=leniency)
        assert _key(ours.analyze(text, ["PHONE_NUMBER"])) == _key(stock.analyze(text, ["PHONE_NUMBER"]))


def _verifies(candidate: str, region: str) -> bool:
    from phonenumbers import phonenumbermatcher as pm
    from phonenumbers.phonenumberutil import NumberParseException

    try:
        number = pm.parse(candidate, region, keep_raw_input=True)
    except NumberParseException:
        return False
    return bool(pm._verify(pm.Leniency.VALID, number, candidate, None))


def test_never_verifies_skips_only_candidates_that_fail_parse_and_verify():
    """The regex check skips a parse only where phonenumbers' parse + verify fails: checked
    on real numbers of every type, written nationally with and without their trunk prefix,
    with the country code but no plus, and cut or grown by a digit; and on random digits
    with the region's country code, national and international prefixes, separators,
    letters, plus signs and extensions."""
    regions = list(REGIONS) + ["AR", "MX", "JP", "AU", "IT", "RU", "CN", "KR", "ES", "NL"]
    rng = random.Random(5)
    separators = ["", " ", "-", ".", " – ", "/", ") ", "  "]
    skipped, verified = 0, 0
    for region in regions:
        code = str(phonenumbers.country_code_for_region(region))
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        prefixes = [
            "",
            "",
            code,
            "0",
            "1",
            "00",
            "011",
            "9",
            "8",
            metadata.national_prefix or "",
            (metadata.preferred_international_prefix or "") + code,
        ]
        candidates = []
        for number_type in PhoneNumberType.values():
            example = phonenumbers.example_number_for_type(region, number_type)
            if example is None:
                continue
            national = phonenumbers.format_number(example, PhoneNumberFormat.NATIONAL)
            nsn = phonenumbers.national_significant_number(example)
            for text in (
                national,
                nsn,
                code + nsn,
                code + " " + national,
                national.lstrip("0"),
                nsn[:-1],
                nsn + "7",
                (metadata.national_prefix or "") + nsn,
            ):
                candidates += [text, text.replace(" ", "-"), text.replace(" ", "")]
        for _ in range(1500):
            digits = "".join(rng.choice("0123456789") for _ in range(rng.randrange(4, 13)))
            digits = rng.choice(prefixes) + digits
            cuts = sorted(rng.sample(range(1, len(digits)), min(2, len(digits) - 1)))
            candidate = digits[: cuts[0]] + rng.choice(separators) + digits[cuts[0] :]
            if len(cuts) > 1 and rng.random() < 0.5:
                candidate = digits[: cuts[1]] + rng.choice(separators) + digits[cuts[1] :]
            candidate = rng.choice(["", "", "(", "FLOW", "+", "1-800-"]) + candidate
            candidates.append(candidate + rng.choice(["", "", "", " ext. 12", " x9", "#", ";ext=4"]))
        for candidate in candidates:
            if _verifies(candidate, region):
                verified += 1
                assert not _never_verifies(candidate, region), (candidate, region)
            elif _never_verifies(candidate, region):
                skipped += 1
    assert verified > 2500 and skipped > 5000, (verified, skipped)
