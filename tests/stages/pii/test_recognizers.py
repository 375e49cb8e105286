"""The extended recognizers (pipeline/stages/pii/recognizers.py): every card IIN range and
what is not a card, phone formats of many countries and what is not a phone number, SSNs
that a label calls something else; the windowed stage stays exact with their context."""

import pytest

from pipeline.stages.pii import PiiConfig, PiiScrub
from pipeline.stages.pii.recognizers import card_scheme, luhn_valid, phone_shape


def _luhn(body: str) -> str:
    """``body`` with the check digit that makes it Luhn-valid."""
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def _card(prefix: str, length: int) -> str:
    return _luhn(prefix + "4" * (length - len(prefix) - 1))


def _grouped(number: str, sizes: list[int], sep: str = " ") -> str:
    out, i = [], 0
    for size in sizes:
        out.append(number[i : i + size])
        i += size
    return sep.join(out)


@pytest.fixture(scope="module")
def stage():
    stage = PiiScrub(PiiConfig(enabled=True))
    stage.setup()
    return stage


@pytest.fixture(scope="module")
def whole():
    stage = PiiScrub(PiiConfig(enabled=True, windowed=False))
    stage.setup()
    return stage


def _found(stage, text: str) -> list[tuple[str, str]]:
    return sorted((s.entity, text[s.start : s.end]) for s in stage.find([text])[0])


CARDS = [
    ("visa", "4", 13),
    ("visa", "4", 16),
    ("visa", "4", 19),
    ("mastercard", "51", 16),
    ("mastercard", "55", 16),
    ("mastercard", "2221", 16),
    ("mastercard", "2720", 16),
    ("mastercard", "2500", 16),
    ("amex", "34", 15),
    ("amex", "37", 15),
    ("discover", "6011", 16),
    ("discover", "644", 16),
    ("discover", "649", 19),
    ("discover", "65", 16),
    ("jcb", "3528", 16),
    ("jcb", "3589", 19),
    ("jcb", "1800", 15),
    ("jcb", "2131", 15),
    ("diners", "300", 14),
    ("diners", "305", 14),
    ("diners", "36", 14),
    ("diners", "38", 16),
    ("unionpay", "62", 16),
    ("unionpay", "62", 19),
    ("maestro", "5018", 12),
    ("maestro", "6759", 19),
    ("maestro", "6304", 16),
    ("mir", "2200", 16),
]


@pytest.mark.parametrize(("scheme", "prefix", "length"), CARDS)
def test_every_iin_range_is_a_card_in_every_common_layout(stage, scheme, prefix, length):
    number = _card(prefix, length)
    assert card_scheme(number) is not None
    layouts = [number]
    if length == 16:
        layouts += [_grouped(number, [4, 4, 4, 4]), _grouped(number, [4, 4, 4, 4], "-")]
    if length == 15:
        layouts += [_grouped(number, [4, 6, 5])]
    if length == 14:
        layouts += [_grouped(number, [4, 6, 4], "-")]
    if length == 19:
        layouts += [_grouped(number, [4, 4, 4, 4, 3])]
    for value in layouts:
        text = f"Please charge {value} for the order."
        assert ("CREDIT_CARD", value) in _found(stage, text), (scheme, value)


def test_a_card_followed_by_its_expiry_or_code_is_found_alone(stage):
    number = _grouped(_card("2221", 16), [4, 4, 4, 4])
    assert ("CREDIT_CARD", number) in _found(stage, f"card {number} 12/27 cvv 123")


@pytest.mark.parametrize(
    "text",
    [
        f"card {_card('2220', 16)} here",  # just below Mastercard's 2-series
        f"card {_card('2721', 16)} here",  # just above it
        f"card {_card('1801', 15)} here",  # not JCB's 15-digit prefix
        f"card {_card('4', 15)} here",  # Visa has no 15-digit cards
        f"card {_card('0604', 16)} here",  # no issuer number starts with 0 (ISO/IEC 7812)
        f"ISBN {_luhn('978030640615')} and {_luhn('979100000000')}",
        f"order 99{_card('4', 16)}7 shipped",  # a Luhn-valid card inside a longer digit run
        f"ref 1234 {_grouped(_card('4', 16), [4, 4, 4, 4])} end",  # and inside longer groups
        f"mixed {_card('4', 16)[:4]} {_card('4', 16)[4:8]}-{_card('4', 16)[8:12]} {_card('4', 16)[12:]} here",
        f"tracking number {_card('4', 16)} arrives",  # labelled as something else
        "card 4111 1111 1111 1112 here",  # Luhn fails
    ],
)
def test_digit_runs_that_are_not_cards(stage, text):
    assert [e for e, _ in _found(stage, text) if e == "CREDIT_CARD"] == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("They're not answering at 785 8949", "785 8949"),
        ("How can we reach you? You can call 73 448 266", "73 448 266"),
        ("Phone: 88 165 40 96", "88 165 40 96"),
        ("Phone: 02.27.96.63.08", "02.27.96.63.08"),
        ("You can call 0487 23 46 71 after six", "0487 23 46 71"),
        ("Tel. 021-4006034", "021-4006034"),
        ("Kiel\n0431 35 06 90-Office\\,+1-448-414-3381x060-Fax", "0431 35 06 90"),
        ("Chile 89825\n9885 1152 office", "9885 1152"),
        ("2813882583 mobile", "2813882583"),
        ("Ruf mich an, Handy 0151 2345 6789", "0151 2345 6789"),
        ("whatsapp 61 51 81", "61 51 81"),
        # written as only phone numbers are: no context needed
        ("see +1-962-819-8200 soon", "+1-962-819-8200"),
        ("see (311)905-4466x8827 soon", "(311)905-4466x8827"),
        ("see 001-748-088-2851x818 soon", "001-748-088-2851x818"),
        ("see 151.081.7740x2347 soon", "151.081.7740x2347"),
        ("see (11) 4706-6184 soon", "(11) 4706-6184"),
        ("see (03) 5327 5996 soon", "(03) 5327 5996"),
        ("see 166-684-7899 soon", "166-684-7899"),
        ("see +61 2 9374 4000 soon", "+61 2 9374 4000"),
        ("see 0044 20 7946 0958 soon", "0044 20 7946 0958"),
    ],
)
def test_phone_formats_of_many_countries(stage, text, value):
    assert ("PHONE_NUMBER", value) in _found(stage, text)


@pytest.mark.parametrize(
    "text",
    [
        "the billing address with PSC 9236, Box 1684 APO AP 02137 for this",
        "Harpelunde  Barbados 01683",
        "34 Avenida Gomes Freire 1640 Bisegna, AQ 27815",
        "Mrs. Karen Thorkildsen Suite 680 36 4022 Oakridge Lane Dallas",
        "My driver's license number is 425700624",
        "Apt. 812 5534 001 Main Street",
        "after the siege in 1645 and in 1677",
        "Hardcover, $53.00 (ISBN 0375403744).",
        "released 2021-11-05 and 05.11.2021, fixed in 2021/11/05",
        "the server at 192.168.10.25 answered",
        "a city of 1 234 567 people",
        "Nature (2019) 123-145, pp. 139-163",
        "Windows FirefoxInstaller 2004-02-20-08-trunk crashes",
        "stopped at 2003041108 build",
        "the count went from 785 8949 to more",  # a weak shape with no phone word
    ],
)
def test_numbers_that_are_not_phone_numbers(stage, text):
    assert [v for e, v in _found(stage, text) if e in ("PHONE_NUMBER", "US_SSN")] == []


def test_ssns_still_found_where_nothing_says_otherwise(stage):
    assert ("US_SSN", "078-05-1121") in _found(stage, "My social security number is 078-05-1121.")
    assert ("US_SSN", "536-22-1234") in _found(stage, "SSN: 536-22-1234")


def test_phone_shapes():
    assert phone_shape("+1-962-819-8200") == "strong"
    assert phone_shape("785 8949") == "weak"
    assert phone_shape("2021-11-05") is None
    assert phone_shape("12345") is None  # fewer than six digits
    assert phone_shape("1234567890123456") is None  # more than fifteen


def test_stock_mode_keeps_presidio_card_and_phone_results():
    stock = PiiScrub(PiiConfig(enabled=True, recognizers="stock"))
    stock.setup()
    mc2 = _grouped(_card("2221", 16), [4, 4, 4, 4])
    text = f"card {mc2}; call 785 8949; PSC 9236, Box 1684 APO"
    found = _found(stock, text)
    assert ("CREDIT_CARD", mc2) not in found and ("PHONE_NUMBER", "785 8949") not in found
    assert ("PHONE_NUMBER", "1684") in found  # Presidio's false redaction, kept for parity


@pytest.mark.parametrize("pad", [0, 30, 47, 48, 49, 80])
def test_context_across_safe_cuts_is_read_as_in_the_whole_document(stage, whole, pad):
    """A phone word far back on a long line, past several safe cuts: the windowed stage
    sees it exactly when whole-document analysis does."""
    texts = [
        "Please call our " + "friendly " * (pad // 9) + "x" * (pad % 9) + " office at 785 8949 today",
        "785 8949 " + "later " * (pad // 6) + "mobile",
        "contact: " + "word " * (pad // 5) + "0431 35 06 90 and more words here to pad the line",
    ]
    spans = [[(s.start, s.end, s.entity) for s in doc] for doc in whole.find(texts)]
    assert [[(s.start, s.end, s.entity) for s in doc] for doc in stage.find(texts)] == spans


@pytest.mark.parametrize(
    "text",
    [
        "more southwest than the 1971 – 2000 30-year average",
        "about 350 – 380 nautical miles",
        "if filesize is bigger than 2147483647 KB (2^31-1)",
    ],
)
def test_numbers_phonenumbers_verifies_that_are_not_phone_numbers(stage, text):
    assert _found(stage, text) == []
    assert _found(stage, "call 2125550147 today") == [("PHONE_NUMBER", "2125550147")]
