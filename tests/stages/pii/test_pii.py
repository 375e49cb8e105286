"""PII: windowed Presidio finds exactly what whole-document Presidio finds; replacement
policies; other languages, long documents and text Presidio fails on."""

import json
from types import SimpleNamespace

import pyarrow as pa
import pytest

from pipeline.core import columns as cols
from pipeline.stages.pii import PII_COUNTS, PiiConfig, PiiScrub, Span, merge_spans
from tests.helpers import SHARED_DATA
from tests.helpers.documents import docs_table
from tests.helpers.pii_corpus import PII, planted_documents

_STAGES: dict[tuple[str, bool], PiiScrub] = {}


def _stage(recognizers: str = "extended", windowed: bool = True) -> PiiScrub:
    if (recognizers, windowed) not in _STAGES:
        stage = PiiScrub(PiiConfig(enabled=True, recognizers=recognizers, windowed=windowed))
        stage.setup()
        _STAGES[recognizers, windowed] = stage
    return _STAGES[recognizers, windowed]


@pytest.fixture(scope="module")
def windowed():
    return _stage()


@pytest.fixture(scope="module")
def whole():
    return _stage(windowed=False)


@pytest.fixture(params=["extended", "stock"])
def pair(request):
    """The windowed stage and whole-document Presidio, with either set of recognizers."""
    return _stage(request.param), _stage(request.param, windowed=False)


def _spans(found):
    return [sorted((s.start, s.end, s.entity, round(s.score, 6)) for s in doc) for doc in found]


def test_windowed_finds_exactly_what_whole_document_presidio_finds(pair):
    windowed, whole = pair
    texts = planted_documents(150)
    assert windowed.windowed and not whole.windowed
    expected = _spans(whole.find(texts))
    assert _spans(windowed.find(texts)) == expected
    found_types = {span[2] for doc in expected for span in doc}
    assert found_types == set(PII)  # every default type is exercised


@pytest.mark.skipif(not (SHARED_DATA / "pii").exists(), reason="../shared/data/pii absent")
def test_windowed_parity_on_presidio_generated_records(pair):
    windowed, whole = pair
    records = json.loads((SHARED_DATA / "pii" / "presidio_generated_large.json").read_text())
    texts = [r["full_text"] for r in records]
    full = _spans(whole.find(texts))
    mine = _spans(windowed.find(texts))
    total = sum(len(doc) for doc in full)
    recalled = sum(len(set(a) & set(b)) for a, b in zip(full, mine))
    assert total > 400 and recalled / total >= 0.99
    assert mine == full


@pytest.mark.skipif(not (SHARED_DATA / "cc_samples").exists(), reason="../shared/data/cc_samples absent")
def test_windowed_parity_on_common_crawl_documents(pair):
    windowed, whole = pair
    texts = [
        json.loads(line)["text"]
        for path in sorted((SHARED_DATA / "cc_samples").glob("*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    assert len(texts) >= 20
    # Real crawl text has few matches of its own; plant values at random word boundaries
    # so that they sit inside real web context (dates, prices, navigation, punctuation).
    import random

    rng = random.Random(3)
    planted = []
    for text in texts:
        words = text.split(" ")
        for _ in range(4):
            entity = rng.choice(sorted(PII))
            words.insert(rng.randrange(len(words) + 1), rng.choice(PII[entity]))
        planted.append(" ".join(words))
    full = _spans(whole.find(texts + planted))
    assert sum(map(len, full)) > 60
    assert _spans(windowed.find(texts + planted)) == full


def test_placeholder_replacement_and_counts(windowed):
    text = "Mail jane.doe@example.com or call (212) 555-0147; card 4111 1111 1111 1111."
    out = windowed.process(docs_table([text, "nothing here at all"], id_prefix="")).table
    assert out.column(cols.TEXT).to_pylist() == [
        "Mail <EMAIL_ADDRESS> or call <PHONE_NUMBER>; card <CREDIT_CARD>.",
        "nothing here at all",
    ]
    assert out.column(PII_COUNTS).to_pylist() == [[("CREDIT_CARD", 1), ("EMAIL_ADDRESS", 1), ("PHONE_NUMBER", 1)], []]
    assert out.column(cols.TEXT_BYTES).to_pylist()[0] == len(out.column(cols.TEXT)[0].as_py().encode())


def test_mask_hash_and_max_entities():
    text = "a jane.doe@example.com b jane.doe@example.com c 10.0.0.1"
    mask = PiiScrub(PiiConfig(enabled=True, replace_with="mask", mask="[X]"))
    mask.setup()
    assert mask.process(docs_table([text], id_prefix="")).table.column(cols.TEXT)[0].as_py() == "a [X] b [X] c [X]"

    hashed = PiiScrub(PiiConfig(enabled=True, replace_with="hash"))
    hashed.bind_job(SimpleNamespace(name="job", seed=1))
    hashed.setup()
    out = hashed.process(docs_table([text], id_prefix="")).table.column(cols.TEXT)[0].as_py()
    first, second = out.split(" ")[1], out.split(" ")[3]
    assert first == second and first.startswith("<EMAIL_ADDRESS:") and len(first) == len("<EMAIL_ADDRESS:>") + 12
    assert "jane" not in out
    other_run = PiiScrub(PiiConfig(enabled=True, replace_with="hash"))
    other_run.bind_job(SimpleNamespace(name="job", seed=2))
    other_run.setup()
    assert other_run.process(docs_table([text], id_prefix="")).table.column(cols.TEXT)[0].as_py().split(" ")[1] != first

    strict = PiiScrub(PiiConfig(enabled=True, max_entities=2))
    strict.setup()
    kept, rejected = strict(docs_table([text, "one: 10.0.0.1"], id_prefix=""))
    assert kept.column(cols.ID).to_pylist() == ["1"]
    assert rejected.column(cols.REJECT_REASON).to_pylist() == ["pii_too_many_entities"]
    assert "jane" not in rejected.column(cols.TEXT)[0].as_py()  # rejects keep the scrubbed text


def test_overlapping_results_merge_under_the_best_label():
    merged = merge_spans(
        [Span(0, 12, "PHONE_NUMBER", 0.4), Span(0, 12, "IP_ADDRESS", 0.6), Span(20, 25, "US_SSN", 0.05)]
    )
    assert [(s.start, s.end, s.entity) for s in merged] == [(0, 12, "IP_ADDRESS"), (20, 25, "US_SSN")]


def test_other_languages_long_documents_and_unreadable_text(windowed, whole):
    german = "Kontakt: max.mustermann@beispiel.de, Telefon +49 30 901820. Vielen Dank!"
    chinese = "请联系 wang.li@example.cn 或致电 +86 10 6552 9988，谢谢。"
    filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\n" * 40000  # 2.3 M characters
    long_doc = "start 078-05-1121\n" + filler + "middle jane.doe@example.com\n" + filler + "end 10.0.0.1"
    assert len(long_doc) > 2_000_000
    out = windowed.process(docs_table([german, chinese, long_doc], id_prefix="")).table
    texts = out.column(cols.TEXT).to_pylist()
    assert texts[0] == "Kontakt: <EMAIL_ADDRESS>, Telefon <PHONE_NUMBER>. Vielen Dank!"
    assert "<EMAIL_ADDRESS>" in texts[1] and "wang.li" not in texts[1]
    assert texts[2].startswith("start <US_SSN>\n") and texts[2].endswith("end <IP_ADDRESS>")
    assert "middle <EMAIL_ADDRESS>\n" in texts[2]
    # whole-document Presidio cannot take 2.3 M characters at once (spaCy's max_length);
    # the unwindowed path cuts it at line breaks and finds the same
    assert _spans(whole.find([long_doc])) == _spans(windowed.find([long_doc]))

    # Presidio's card recognizer raises on a card-like number with digits newer than Python's
    # Unicode tables (Garay digits, U+10D40: the regex module matches them as \d, int() cannot
    # read them); that document is rejected as unscannable, and its neighbours are still
    # scrubbed. (The extended card recognizer reads only digits Python knows.)
    odd = "card 4111 1111 1111 11\U00010d41\U00010d41 here"
    with pytest.raises(ValueError):
        _stage("stock", windowed=False).analyzer.analyze(odd, language="en")
    assert windowed.find([odd]) == [[]] and not windowed.failed
    for stage in (_stage("stock"), _stage("stock", windowed=False)):
        kept, rejected = stage(docs_table(["mail a@example.com", odd, "ip 10.0.0.1"], id_prefix=""))
        assert kept.column(cols.TEXT).to_pylist() == ["mail <EMAIL_ADDRESS>", "ip <IP_ADDRESS>"]
        assert rejected.column(cols.REJECT_REASON).to_pylist() == ["pii_unscannable"]


PLANTED = ["@example.org", "555-01", "192.0.2.", "198.51.100.", "4111 1111 1111 1111", "DE89 3704", "078-05-1120"]


@pytest.mark.usefixtures("ray_local")
def test_job_scrubs_pii_and_never_reports_values(make_job, sample_corpus, tokenizer_model, tmp_path, capfd):
    import sentencepiece as spm

    from pipeline import run_job
    from tests.helpers.megatron_reader import read_indexed_dataset

    plants = json.loads((sample_corpus / "_plants.json").read_text())
    assert plants["pii"]
    out = tmp_path / "out"
    result = run_job(make_job(sample_corpus, out, stages={"pii": {"enabled": True}}))
    replaced = result.report["pii_replaced"]
    assert replaced.get("EMAIL_ADDRESS", 0) > 0 and replaced.get("IP_ADDRESS", 0) > 0
    assert set(replaced) <= set(PII) and "## PII replaced" in (out / "report.md").read_text()

    manifest = json.loads((out / "manifest.json").read_text())
    processor = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    output_text = "".join(
        processor.Decode(seq.tolist())
        for shard in manifest["shards"]
        for seq in read_indexed_dataset(out / shard["files"]["bin"]["path"][:-4])["sequences"]
    )
    assert "<EMAIL_ADDRESS>" in output_text
    logs = capfd.readouterr()
    for value in PLANTED:
        assert value not in output_text, value
        for text in ((out / "report.md").read_text(), (out / "report.json").read_text(), logs.out, logs.err):
            assert value not in text, value


def test_vectorized_prefilter_is_a_superset_of_the_anchor():
    """The RE2 prefilter may only skip documents where the Python anchor cannot match."""
    import random
    import unicodedata

    import pyarrow.compute as pc

    from pipeline.stages.pii.windows import ANCHOR, may_hold_pii
    from tests.helpers.pii_corpus import EDGE_CASES

    digits = [c for c in map(chr, range(0x110000)) if unicodedata.category(c) == "Nd"]
    assert all(pc.match_substring_regex(pa.array(digits), r"^\p{Nd}$").to_pylist())
    rng = random.Random(0)
    alphabet = list("0123456789 -./()@:+xXabcDEF\n\t") + [
        "\u00a0",
        "\u3000",
        "\u0661",
        "\uff10",
        "\u2013",
        "\U00010d41",
        "é",
        "ß",
        "Ж",
        "中",
        "_",
        "\u2028",
        "\v",
        "#",
    ]
    fuzz = ["".join(rng.choice(alphabet) for _ in range(rng.randint(3, 40))) for _ in range(50000)]
    texts = fuzz + planted_documents(300) + EDGE_CASES + [d + "" for d in digits]
    flags = may_hold_pii(pa.array(texts))
    hits = [ANCHOR.search(t) is not None for t in texts]
    assert sum(hits) > 20000
    assert not [t for t, hit, flag in zip(texts, hits, flags) if hit and not flag]
    assert may_hold_pii(pa.array(["plain words only, nothing else.", "see chapter 3"])) == [False, False]


def test_vectorized_hits_cover_every_anchor_hit():
    """Each Python ANCHOR hit starts inside a span anchor_hits gives (RE2), or where one ends,
    or the document is left to the Python scan; the windows built from either hold every hit
    whole."""
    import random

    from pipeline.stages.pii.windows import ANCHOR, anchor_hits, windows
    from tests.helpers.pii_corpus import EDGE_CASES

    rng = random.Random(1)
    alphabet = list("0123456789" * 4 + " -./()@:+xXabcDEFGHz\n\t") + [
        "\u00a0",
        "\u3000",
        "\u2013",
        "é",
        "Ж",
        "_",
        "#",
        "\u2028",
    ]
    fuzz = ["".join(rng.choice(alphabet) for _ in range(rng.randint(3, 60))) for _ in range(40000)]
    fuzz += [
        "".join(rng.choice(alphabet + ["\x00", "\x01", "\u0661"]) for _ in range(rng.randint(3, 60)))
        for _ in range(3000)
    ]
    # IBAN-like runs after emails, IPv6 groups and other IBANs, where the match before may
    # take the letters an IBAN hit wants in front of its digits
    pieces = [
        "DE89",
        "AB12",
        "44AB",
        "12",
        "3704",
        "0044",
        " ",
        "-",
        "x@y.",
        "a@b.c",
        ":1:2:3:4:5:",
        "a",
        "Zé",
        "12 February",
        "(",
        "9",
    ]
    fuzz += ["".join(rng.choice(pieces) for _ in range(rng.randint(2, 12))) for _ in range(20000)]
    texts = fuzz + planted_documents(300) + EDGE_CASES
    in_python = covered = at_end = 0
    for text, hits in zip(texts, anchor_hits(pa.array(texts))):
        if hits is None:
            in_python += 1
            assert any(c in text for c in "\x00\u0661") or not text.isascii()
            continue
        for match in ANCHOR.finditer(text):
            assert any(a <= match.start() <= b for a, b in hits), (text, match.span(), hits)
            at_end += not any(a <= match.start() < b for a, b in hits)
            covered += 1
        spans = windows(text, hits)
        assert all(any(a <= m.start() and m.end() <= b for a, b in spans) for m in ANCHOR.finditer(text))
    assert covered > 40000 and 1000 < in_python < 3000 and at_end > 0
    # a day of the month before a word is no IBAN hit: it needs two letters before its digits
    day, iban = anchor_hits(pa.array(["on 12 February 2006", "DE89 3704 0044 0532 0130 00"]))
    assert day == [] and iban[0] == (0, 14)


def test_safe_cuts_are_the_nearest_by_their_definition():
    """_cut_before and _cut_after return the nearest safe cut, checked at every position of
    fuzzed texts against the definition: next to a hard character (a window ends before it
    and starts after it), or at a soft letter that follows whitespace with no IBAN start in
    the 46 characters before it."""
    import random
    import re

    from pipeline.stages.pii.windows import _cut_after, _cut_before

    hard = set("\n\r\v\f\x1c\x1d\x1e\x1f\x85\u1680\u2028\u2029\u202f\u205f") | {chr(c) for c in range(0x2000, 0x200B)}
    soft = set("bcdfghjklmnopqrstuvwyzBCDFGHJKLMNOPQRSTUVWYZ")
    iban_start = re.compile(r"[^\W\d_]{2}[0-9]{2}")

    def soft_cut(text: str, p: int) -> bool:
        return (
            0 < p < len(text)
            and text[p] in soft
            and text[p - 1].isspace()
            and iban_start.search(text, max(0, p - 46), p) is None
        )

    def starts(text: str, p: int) -> bool:
        return (p > 0 and text[p - 1] in hard) or soft_cut(text, p)

    def ends(text: str, p: int) -> bool:
        return (p < len(text) and text[p] in hard) or soft_cut(text, p)

    rng = random.Random(7)
    alphabet = list("abexiBDZ0123 \t-.@") + ["DE", "12", "\n", "\u00a0", "\u2003", "\u3000", "é"]
    checked = 0
    for _ in range(400):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 160)))
        reversed_text = text[::-1]
        for pos in range(len(text) + 1):
            before = max([p for p in range(pos + 1) if starts(text, p)], default=0)
            after = min([p for p in range(pos, len(text) + 1) if ends(text, p)], default=len(text))
            if pos < len(text):
                assert _cut_before(text, pos, reversed_text) == before, (text, pos)
            assert _cut_after(text, pos) == after, (text, pos)
            checked += 1
    assert checked > 20000
