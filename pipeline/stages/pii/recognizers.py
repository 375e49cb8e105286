"""Refinery's ``extended`` recognizers: Presidio recognizers that find what stock Presidio
misses on web text, and context rules that leave out what it wrongly redacts.

* ``CardRecognizer`` (CREDIT_CARD): every current IIN range with its lengths (table below),
  12-19 digits, contiguous or in card-shaped groups (4-4-4-4, 4-6-5, ...) with one kind of
  separator, Luhn-checked. Digit runs that continue past the card (an order number inside
  a longer run) and issuer prefixes no scheme uses (ISBNs start 978/979) never match.
* ``ExtendedPhoneRecognizer`` (PHONE_NUMBER): Presidio's phonenumbers search, plus the
  formats people write numbers in around the world (``+CC`` and ``00`` prefixes, area codes
  in parentheses, North American 3-3-4, extensions, national groupings like ``50-98-28-96``
  or ``0431 35 06 90``). Shapes that are phone numbers by themselves count alone; shapes that
  could be anything (``785 8949``) are marked ``weak``: they count only next to a phone word
  ("call", "Tel:", "fax", "mobile", ...). What no phone number looks like (dates, ranges,
  IPv4 addresses, thousands groupings, fewer than six digits) never counts.

The context rules (``keeps``) run on whole documents after the recognizers, as Presidio's
context enhancer does, so the windowed engine's windows stay as small as before. A number
is left alone where a label says it is something else (a licence, passport, account or order
number, a P.O. box, suite or apartment; for cards, an ISBN, order or tracking number) or
where a street name follows it (a house number); a weak phone shape needs a phone word. The
context is the candidate's own line, at most ``CONTEXT_BEFORE`` characters before it and
``CONTEXT_AFTER`` after it.
"""

from __future__ import annotations

import re

from presidio_analyzer import AnalysisExplanation, EntityRecognizer, RecognizerResult

from pipeline.stages.pii.phone import PhoneRecognizer

CONTEXT_BEFORE = 48
CONTEXT_AFTER = 24
# Where the context of a candidate ends: the line breaks of the windowed engine's hard cuts.
_LINE_END = re.compile("[\n\r\v\f\x1c-\x1f\x85\u1680\u2000-\u200a\u2028\u2029\u202f\u205f]")
# recognition_metadata key of a phone shape that counts only next to a phone word
WEAK = "refinery_weak"


# Regions whose national formats phonenumbers searches for, as Presidio does: its eight. More
# regions find few numbers the formats below miss, and each adds false matches on its own (with
# Australia's, Italy's and the Netherlands' plans, page ranges, years and build numbers verify).
EXTENDED_PHONE_REGIONS = ("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR")


def context_before(text: str, start: int) -> str:
    """The text before ``start`` on its line, at most CONTEXT_BEFORE characters, lower case."""
    lo = max(0, start - CONTEXT_BEFORE)
    line = max((m.end() for m in _LINE_END.finditer(text, lo, start)), default=lo)
    return text[line:start].lower()


def context_after(text: str, end: int) -> str:
    """The text after ``end`` on its line, at most CONTEXT_AFTER characters, lower case."""
    hi = min(len(text), end + CONTEXT_AFTER)
    first = _LINE_END.search(text, end, hi)
    return text[end : first.start() if first else hi].lower()


_WORD = re.compile(r"[a-z\u00c0-\u024f]+")
# Labels that say a number is something other than a phone number or SSN.
_OTHER_LABELS = frozenset(
    "licence license licensee dl passport account acct iban order invoice isbn issn serial imei "
    "box pobox suite ste apt apartment unit room rm floor fl bldg building zip postal postcode "
    "plz cp lot parcel tracking policy claim case ticket".split()
)
_PHONE_WORDS = frozenset(
    "phone phones telephone tel tele mobile mob cell cellphone fax call calls calling called reach "
    "contact dial ring answering whatsapp sms landline hotline helpline telefon telefono téléphone "
    "tél handy phoned".split()
)
# Phone labels that only count right before or after the number ("Office: ...", "... -fax").
_PHONE_LABELS = frozenset("office home work main direct switchboard ph tel fax mobile cell phone t m f".split())
_STREET_WORDS = frozenset(
    "street st road rd avenue ave av lane ln boulevard blvd drive dr way court ct place pl terrace "
    "crescent highway hwy parkway pkwy square sq circle cir trail alley close row straße strasse "
    "str weg gasse platz rue chemin via viale calle avenida rua".split()
)
_SSN_WORDS = frozenset("ssn ssns social security ssid".split())


def _last_words(context: str, n: int) -> list[str]:
    return _WORD.findall(context)[-n:]


def labelled_as_other(before: str, own_words: frozenset[str]) -> bool:
    """The last three words before a number hold a label for something else, and no word of
    the entity's own (``own_words``) comes after that label."""
    words = _last_words(before, 3)
    for i in range(len(words) - 1, -1, -1):
        if words[i] in own_words:
            return False
        if words[i] in _OTHER_LABELS:
            return True
    return False


def before_street_name(after: str) -> bool:
    """A street type among the two words after a number: a house number."""
    return any(w in _STREET_WORDS for w in _WORD.findall(after)[:2])


def has_phone_context(before: str, after: str) -> bool:
    """A phone word anywhere in the context before, or a phone label right before or right
    after the number ("Office: ...", "... -fax")."""
    if any(w in _PHONE_WORDS for w in _WORD.findall(before)):
        return True
    last = _last_words(before, 1)
    if last and last[0] in _PHONE_LABELS and re.search(r"[a-z]\W*$", before):
        return True
    first = _WORD.findall(after)[:1]
    return bool(first and first[0] in _PHONE_LABELS | _PHONE_WORDS and re.match(r"[\s\-,.:;/()\\]*[a-z]", after))


# --- phone numbers -------------------------------------------------------------------------

# A run of digit groups as phone numbers are written: an optional +CC, groups of digits
# (one may be in parentheses) joined by one separator each, an optional extension. Not
# inside a word or a longer number. Validated in Python (``phone_shape``).
_PHONE_RUN = re.compile(
    r"(?<![\w+\-./])"
    r"(?:\+[ ]?)?"
    r"(?:\d{1,4}[ \-.]?)?"
    r"(?:\(\d{1,5}\)[ \-]?)?"
    r"\d{1,12}(?:[ \-./]\d{1,12}){0,6}"
    r"(?:[ ]?(?:x|ext\.?|extension)[ ]?\d{1,6})?"
    r"(?![\w])(?![\-./]\d)"
)
_GROUP = re.compile(r"\d+")
_EXTENSION = re.compile(r"[ ]?(?:x|ext\.?|extension)[ ]?(\d{1,6})$")
_NANP = re.compile(r"(?:(?:\+?1|001)[ \-.])?(?:\(\d{3}\)[ ]?|\d{3}([\-.]))\d{3}[\-.]\d{4}")
_YEAR = re.compile(r"1[5-9]\d\d|20\d\d")


def _looks_like_date(groups: list[str], separators: set[str]) -> bool:
    if len(groups) != 3 or not separators <= {"-", ".", "/", " "}:
        return False
    return bool(_YEAR.fullmatch(groups[0]) or _YEAR.fullmatch(groups[2])) and all(
        len(g) <= 2 for g in (groups[1:] if _YEAR.fullmatch(groups[0]) else groups[:2])
    )


def phone_shape(value: str) -> str | None:
    """``"strong"`` for a run written as only phone numbers are (+CC, 00 + CC, an area code
    in parentheses, North American 3-3-4, an extension), ``"weak"`` for digit groups that may
    be a national number, None for what no phone number looks like (dates, IPv4 addresses,
    decimal numbers, thousands groupings, fewer than six or more than fifteen digits)."""
    extension = _EXTENSION.search(value)
    main = value[: extension.start()] if extension else value
    groups = _GROUP.findall(main)
    digits = sum(map(len, groups))
    if not 6 <= digits <= 15:
        return None
    separators = set(re.sub(r"[\d+()]", "", main).replace("  ", " "))
    if "/" in separators and len(groups) != 2:
        return None
    if len(separators - {" "}) > 1 or main.count("(") != main.count(")") or main.count("(") > 1:
        return None
    if main.count("(") and not re.search(r"^(?:\+[ ]?\d{1,3}[ \-.]?)?\(\d", main):
        return None  # parentheses only around the first group (after a +CC)
    paren = re.match(r"\((\d{1,5})\)", main)
    if paren and _YEAR.fullmatch(paren.group(1)):
        return None  # a year in parentheses, before page numbers or a count
    if _looks_like_date(groups, separators):
        return None
    if re.search(r"\d\s+[\u2013\u2014]\s+\d", main):
        return None  # a range: 1971 – 2000, 350 – 380
    if separators == {"."} and len(groups) == 4 and all(len(g) <= 3 for g in groups):
        return None  # an IPv4 address
    if len(groups) > 1 and len(groups[0]) == 1 and all(len(g) == 3 for g in groups[1:]) and not main.startswith("+"):
        return None  # 1 234 567: a thousands grouping
    if len(groups) == 1 and main.isdigit() and digits < 7:
        return None
    if main.startswith("+") or main.startswith("00"):
        return "strong" if digits >= 8 else "weak"
    if extension and digits >= 7:
        return "strong"
    if _NANP.fullmatch(main):
        return "strong"
    if paren and 2 <= len(paren.group(1)) and digits >= 8:
        return "strong"
    return "weak"


def phone_shaped(text: str) -> bool:
    """Whether ``text`` holds a phone-shaped run, whatever its context."""
    return any(phone_shape(m.group()) for m in _PHONE_RUN.finditer(text))


class ExtendedPhoneRecognizer(PhoneRecognizer):
    """PHONE_NUMBER: phonenumbers' search over Presidio's regions (Presidio's recognizer,
    made fast in ``pipeline.stages.pii.phone``) and the phone formats of ``phone_shape``.
    Results whose text no phone number looks like are dropped; a weak shape, or a bare run
    of digits from phonenumbers (2147483647 verifies in the US plan), is marked ``WEAK``."""

    SHAPE_SCORE = 0.4  # Presidio's phone recognizer scores its results 0.4

    def __init__(self, supported_regions=EXTENDED_PHONE_REGIONS, **kwargs) -> None:
        super().__init__(supported_regions=supported_regions, name="ExtendedPhoneRecognizer", **kwargs)

    def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list[RecognizerResult]:
        results = []
        for r in super().analyze(text, entities, nlp_artifacts):
            value = text[r.start : r.end]
            shape = phone_shape(value)
            if shape:
                if shape == "weak" and value.isdigit():
                    r.recognition_metadata[WEAK] = True
                results.append(r)
        taken = [(r.start, r.end) for r in results]
        for m in _PHONE_RUN.finditer(text):
            start, end = m.span()
            shape = phone_shape(m.group())
            if shape is None or any(a < end and start < b for a, b in taken):
                continue
            results.append(
                RecognizerResult(
                    "PHONE_NUMBER",
                    start,
                    end,
                    self.SHAPE_SCORE,
                    analysis_explanation=AnalysisExplanation(
                        recognizer=self.name,
                        original_score=self.SHAPE_SCORE,
                        textual_explanation=f"phone number format ({shape})",
                    ),
                    recognition_metadata={
                        RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                        RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                        WEAK: shape == "weak",
                    },
                )
            )
        return results


def keeps(text: str, start: int, end: int, entity: str, weak: bool = False) -> bool:
    """The context rules, on the whole document ``text``: whether a result stays."""
    if entity not in ("PHONE_NUMBER", "US_SSN", "CREDIT_CARD"):
        return True
    before = context_before(text, start)
    if entity == "CREDIT_CARD":
        words = _last_words(before, 3)
        return not any(w in _CARD_OTHER_LABELS for w in words) or any(w in _CARD_WORDS for w in words)
    after = context_after(text, end)
    if labelled_as_other(before, _PHONE_WORDS if entity == "PHONE_NUMBER" else _SSN_WORDS):
        return False
    if before_street_name(after):
        return False
    return not weak or has_phone_context(before, after)


# --- credit cards --------------------------------------------------------------------------

# (first digits, lowest, highest, lengths): a number whose leading digits fall in
# [lowest, highest] (compared on as many digits as the bounds have) with one of the lengths.
# From the schemes' published IIN ranges (ISO/IEC 7812 issuer identification numbers).
_IIN_RANGES = [
    ("visa", "4", "4", (13, 16, 19)),
    ("mastercard", "51", "55", (16,)),
    ("mastercard", "2221", "2720", (16,)),
    ("amex", "34", "34", (15,)),
    ("amex", "37", "37", (15,)),
    ("discover", "6011", "6011", (16, 17, 18, 19)),
    ("discover", "644", "649", (16, 17, 18, 19)),
    ("discover", "65", "65", (16, 17, 18, 19)),
    ("jcb", "3528", "3589", (16, 17, 18, 19)),
    ("jcb", "1800", "1800", (15,)),
    ("jcb", "2131", "2131", (15,)),
    ("diners", "300", "305", (14, 15, 16, 17, 18, 19)),
    ("diners", "3095", "3095", (14, 15, 16, 17, 18, 19)),
    ("diners", "36", "36", (14, 15, 16, 17, 18, 19)),
    ("diners", "38", "39", (16, 17, 18, 19)),
    ("unionpay", "62", "62", (16, 17, 18, 19)),
    ("unionpay", "81", "81", (16, 17, 18, 19)),
    ("maestro", "50", "50", (12, 13, 14, 15, 16, 17, 18, 19)),
    ("maestro", "56", "69", (12, 13, 14, 15, 16, 17, 18, 19)),
    ("mir", "2200", "2204", (16, 17, 18, 19)),
    ("rupay", "60", "60", (16,)),
    ("rupay", "508", "508", (16,)),
    ("rupay", "82", "82", (16,)),
    ("troy", "9792", "9792", (16,)),
]


def card_scheme(digits: str) -> str | None:
    """The card scheme whose IIN range and lengths hold ``digits``, or None."""
    for scheme, low, high, lengths in _IIN_RANGES:
        if len(digits) in lengths and low <= digits[: len(low)] <= high:
            return scheme
    return None


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# Card-shaped: contiguous, or groups of four with one kind of separator (the last group 1-4
# digits), or 4-6-4/4-6-5 (Diners, Amex). Not inside a word or a longer digit run.
_CARD = re.compile(
    r"(?<![\w\-.,])(?<!\d[ \-.,])"
    r"(?:\d{12,19}"
    r"|\d{4}(?P<s>[ \-])\d{4}(?:(?P=s)\d{4}){0,2}(?:(?P=s)\d{1,4})?"
    r"|\d{4}(?P<t>[ \-])\d{6}(?P=t)\d{4,5})"
    r"(?![\w])(?![\-.,]\d)"
)
_CARD_OTHER_LABELS = frozenset(
    "isbn issn doi order invoice tracking serial imei iccid ref reference transaction confirmation "
    "phone tel fax mobile account iban".split()
)
_CARD_WORDS = frozenset("card cards credit debit visa mastercard amex discover jcb diners maestro unionpay cc".split())


class CardRecognizer(EntityRecognizer):
    """CREDIT_CARD: card-shaped digit runs in a current IIN range with a valid length and a
    valid Luhn check digit."""

    SCORE = 1.0  # what Presidio gives a card whose Luhn check passes

    def __init__(self) -> None:
        super().__init__(supported_entities=["CREDIT_CARD"], name="CardRecognizer", supported_language="en")

    def load(self) -> None:
        pass

    def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list[RecognizerResult]:
        results = []
        for m in _CARD.finditer(text):
            start, end = self._card_in(text, m)
            if start is None:
                continue
            results.append(
                RecognizerResult(
                    "CREDIT_CARD",
                    start,
                    end,
                    self.SCORE,
                    recognition_metadata={
                        RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                        RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                    },
                )
            )
        return results

    @staticmethod
    def _card_in(text: str, m: re.Match) -> tuple[int | None, int]:
        """The match, or its longest valid prefix of whole groups for grouped numbers with a
        space (a card followed by its expiry or security code)."""
        value = m.group()
        groups = _GROUP.findall(value)
        for k in range(len(groups), 0, -1):
            if k < len(groups) and not (m.group("s") == " " and k >= 3):
                break
            digits = "".join(str(int(c)) for c in "".join(groups[:k]))  # ASCII, whatever digits were written
            if 12 <= len(digits) <= 19 and card_scheme(digits) and luhn_valid(digits):
                end = m.start()
                for g in groups[:k]:
                    end = text.index(g, end) + len(g)
                return m.start(), end
        return None, 0


def extended_recognizers(phone_regions=EXTENDED_PHONE_REGIONS) -> list[EntityRecognizer]:
    """The recognizers ``recognizers: extended`` puts in place of Presidio's CREDIT_CARD and
    PHONE_NUMBER recognizers."""
    return [CardRecognizer(), ExtendedPhoneRecognizer(supported_regions=tuple(phone_regions))]
