"""PII scrubbing with presidio-analyzer's recognizers, at corpus throughput.

Presidio runs offline on a blank spaCy pipeline (or the spaCy NER model a user names).
For the six default entities it runs only on windows that can hold a match
(``pipeline.stages.pii.windows``). Each window is asked only for the entities whose anchor
matches in it, the windows of a whole batch of documents go in a few calls, results are
cached by window text, and these calls need no spaCy at all (see ``build_analyzer``). It
finds exactly what a whole-document ``AnalyzerEngine.analyze`` with the blank pipeline
finds. Other entities, or an NER model (whose context can reach anywhere), analyze whole
documents.

Found spans are replaced right to left; overlapping spans (Presidio may return an IP
that is also a phone number) merge into one, labelled by the highest-scoring result.
``pii_counts`` records replaced spans per entity type. The values themselves never
reach a log, the report or an error message.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import os
import re
from collections import OrderedDict

import pyarrow as pa

from pipeline.core import columns as cols
from pipeline.stages.base import DocumentStage, StageOutput
from pipeline.stages.pii.windows import (
    WINDOWED_ENTITIES,
    anchor_hits,
    entities_in,
    may_hold_pii,
    windows,
)

PII_COUNTS = "pii_counts"
SALT_ENV = "REFINERY_PII_SALT"
# Whole-document analysis splits text at line breaks into pieces below spaCy's max_length.
_MAX_PIECE = 500_000
_LINE_BREAK = re.compile("[\n\r\v\f\x1c-\x1f\x85\u1680\u2000-\u200a\u2028\u2029\u202f\u205f]")
# Characters of windows per Presidio call. Calls have a fixed cost of about 0.25 ms; but the
# phone recognizer gives up after 65,535 tries per call, which a call of a few thousand
# characters cannot reach.
_CALL_CHARS = 4_000
_CACHE_WINDOWS = 100_000


def build_analyzer(
    nlp_model: str | None = None,
    tokenize: bool = True,
    recognizers: str = "stock",
    phone_regions: list[str] | None = None,
):
    """An AnalyzerEngine that never touches the network.

    ``tokenize=False`` gives Presidio no NLP pipeline at all (its NoOpNlpEngine) and no
    context enhancement. With a blank spaCy pipeline every lemma is empty, so context words
    never match and the enhancer never changes a score; skipping both saves the spaCy
    tokenization of every call and the enhancer's scan of every token for every result.
    The windowed stage uses it; tests hold its spans equal to whole-document analysis with
    spaCy and the enhancer.

    ``recognizers="extended"`` puts Refinery's card and phone recognizers
    (``pipeline.stages.pii.recognizers``) in place of Presidio's.
    """
    analyzer = _analyzer(nlp_model, tokenize)
    registry = analyzer.registry
    if recognizers == "extended":
        from pipeline.stages.pii.recognizers import EXTENDED_PHONE_REGIONS, extended_recognizers

        for name in ("CreditCardRecognizer", "PhoneRecognizer"):
            registry.remove_recognizer(name)
        for recognizer in extended_recognizers(phone_regions or EXTENDED_PHONE_REGIONS):
            registry.add_recognizer(recognizer)
    elif phone_regions:
        stock = [r for r in registry.recognizers if r.name == "PhoneRecognizer"][0]
        registry.remove_recognizer("PhoneRecognizer")
        registry.add_recognizer(type(stock)(supported_regions=tuple(phone_regions), leniency=stock.leniency))
    return analyzer


def _analyzer(nlp_model: str | None, tokenize: bool):
    import spacy
    import tldextract.tldextract
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer
    from presidio_analyzer.nlp_engine import NoOpNlpEngine, SpacyNlpEngine

    from pipeline.stages.pii.phone import PhoneRecognizer

    # EmailRecognizer validates domains with tldextract, whose default extractor fetches the
    # public suffix list (no timeout); use the snapshot bundled with tldextract instead.
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    if not tokenize:
        if nlp_model:
            raise ValueError("an NER model needs tokenization")

        class NoContext(ContextAwareEnhancer):
            def __init__(self) -> None:
                super().__init__(0, 0, 0, 0)

            def enhance_using_context(self, text, raw_results, nlp_artifacts, recognizers, context=None):
                return raw_results

        engine = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
        engine.load()
        analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"], context_aware_enhancer=NoContext())
        # Same results as Presidio's phone recognizer, far fewer parses (pipeline/stages/pii/phone.py).
        stock = [r for r in analyzer.registry.recognizers if r.name == "PhoneRecognizer"]
        analyzer.registry.remove_recognizer("PhoneRecognizer")
        analyzer.registry.add_recognizer(
            PhoneRecognizer(supported_regions=stock[0].supported_regions, leniency=stock[0].leniency)
        )
        return analyzer
    if nlp_model:
        try:
            nlp = spacy.load(nlp_model)
        except OSError as exc:
            raise ValueError(
                f"stages.pii.nlp_model: cannot load spaCy pipeline '{nlp_model}' (install the "
                f"package or give a path; nothing is downloaded): {exc}"
            ) from None
    else:
        nlp = spacy.blank("en")
    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": nlp_model or "blank:en"}])
    engine.nlp = {"en": nlp}  # counts as loaded: Presidio's load() (which may download) never runs
    return AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])


class Span:
    __slots__ = ("start", "end", "entity", "score", "weak")

    def __init__(self, start: int, end: int, entity: str, score: float, weak: bool = False) -> None:
        self.start, self.end, self.entity, self.score, self.weak = start, end, entity, score, weak

    def shifted(self, offset: int) -> Span:
        return Span(self.start + offset, self.end + offset, self.entity, self.score, self.weak)


def merge_spans(results: list[Span]) -> list[Span]:
    """Overlapping results as one span each, labelled by the best result (highest score,
    then longest, then entity name)."""
    merged: list[Span] = []
    for r in sorted(results, key=lambda r: (r.start, -r.end)):
        if merged and r.start < merged[-1].end:
            last = merged[-1]
            best = min((last, r), key=lambda s: (-s.score, -(s.end - s.start), s.entity))
            merged[-1] = Span(last.start, max(last.end, r.end), best.entity, best.score)
        else:
            merged.append(Span(r.start, r.end, r.entity, r.score))
    return merged


class _LruCache:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: OrderedDict = OrderedDict()

    def get(self, key):
        value = self.items.get(key)
        if value is not None:
            self.items.move_to_end(key)
        return value

    def put(self, key, value) -> None:
        self.items[key] = value
        if len(self.items) > self.capacity:
            self.items.popitem(last=False)


def run_salt(job_name: str, seed: int) -> str:
    return hashlib.sha256(f"refinery-pii\x00{job_name}\x00{seed}".encode()).hexdigest()


class PiiScrub(DocumentStage):
    name = "pii"

    job_salt = run_salt("", 0)

    def bind_job(self, spec) -> None:
        self.job_salt = run_salt(spec.name, spec.seed)

    def setup(self) -> None:
        c = self.config
        self.windowed = c.windowed and not c.nlp_model and set(c.entities) <= WINDOWED_ENTITIES
        self.extended = c.recognizers == "extended"
        self.analyzer = build_analyzer(c.nlp_model, not self.windowed, c.recognizers, c.phone_regions)
        self.keeps, self.weak_key = None, None
        if self.extended:
            from pipeline.stages.pii.recognizers import WEAK, keeps

            self.keeps, self.weak_key = keeps, WEAK
        self.salt = (os.environ.get(SALT_ENV) or self.job_salt).encode()
        # Presidio's results on a window depend only on its text (the entities asked for
        # follow from it); web text repeats the same footers, dates and contact lines page
        # after page.
        self.cache = _LruCache(_CACHE_WINDOWS)

    def clear_caches(self) -> None:
        """Start cold, as a fresh worker does (for benchmarks)."""
        from pipeline.stages.pii.phone import clear_caches

        self.cache.items.clear()
        clear_caches()

    # --- finding ---------------------------------------------------------------------------

    def _analyze(self, text: str, entities: list[str] | None = None) -> list[Span]:
        results = self.analyzer.analyze(
            text, language="en", entities=entities or self.config.entities, score_threshold=self.config.score_threshold
        )
        return [
            Span(r.start, r.end, r.entity_type, r.score, bool(r.recognition_metadata.get(self.weak_key)))
            for r in results
        ]

    def find(self, texts: list[str], prefiltered: bool = False, array: pa.Array | None = None) -> list[list[Span]]:
        """Presidio's results per document, as a whole-document analyze would give them.
        Documents Presidio fails on (it raises on some non-ASCII digits) land in ``failed``.
        ``prefiltered``: every text already passed ``may_hold_pii``; ``array``: the same
        texts as a pyarrow array, if the caller has one. With the extended recognizers, the
        context rules then run on each whole document."""
        found = self._recognized(texts, prefiltered, array)
        if self.keeps is None:
            return found
        return [
            [s for s in spans if self.keeps(text, s.start, s.end, s.entity, s.weak)] if spans else spans
            for text, spans in zip(texts, found)
        ]

    def _recognized(self, texts: list[str], prefiltered: bool, array: pa.Array | None) -> list[list[Span]]:
        found: list[list[Span]] = [[] for _ in texts]
        self.failed: set[int] = set()
        if not self.windowed:
            for i, text in enumerate(texts):
                try:
                    for start, piece in _pieces(text):
                        found[i] += [s.shifted(start) for s in self._analyze(piece)]
                except Exception:
                    self.failed.add(i)
            return found
        # Windows are grouped by the entities that can occur in them (the others' recognizers
        # would find nothing there) and joined by "\n" into calls of about _CALL_CHARS.
        wanted = frozenset(self.config.entities)
        # Per entity set: windows waiting for Presidio, each distinct text once, with every
        # (document, offset) where it occurs.
        pending: dict[frozenset[str], dict[str, list[tuple[int, int]]]] = {}
        sizes: dict[frozenset[str], int] = {}
        array = pa.array(texts, pa.string()) if array is None else array
        candidates = [True] * len(texts) if prefiltered else may_hold_pii(array)
        hits = anchor_hits(array)
        for i, text in enumerate(texts):
            if not candidates[i]:
                continue
            for a, b in windows(text, hits[i]):
                piece = text[a:b]
                cached = self.cache.get(piece)
                if cached is not None:
                    found[i] += [s.shifted(a) for s in cached]
                    continue
                entities = entities_in(piece, 0, len(piece), self.extended) & wanted
                if not entities:
                    self.cache.put(piece, [])
                    continue
                waiting = pending.setdefault(entities, {})
                if piece not in waiting:
                    waiting[piece] = []
                    sizes[entities] = sizes.get(entities, 0) + len(piece) + 1
                waiting[piece].append((i, a))
                if sizes[entities] >= _CALL_CHARS:
                    self._analyze_windows(pending.pop(entities), entities, found)
                    sizes[entities] = 0
        for entities, waiting in pending.items():
            self._analyze_windows(waiting, entities, found)
        return found

    def _analyze_windows(
        self, waiting: dict[str, list[tuple[int, int]]], entities: frozenset[str], found: list[list[Span]]
    ) -> None:
        pieces = list(waiting)
        starts, position = [], 0
        for piece in pieces:
            starts.append(position)
            position += len(piece) + 1
        try:
            results = self._analyze("\n".join(pieces), sorted(entities))
        except Exception:
            if len(pieces) == 1:
                self.failed.update(doc for doc, _ in waiting[pieces[0]])
                return
            for piece in pieces:  # find the window Presidio cannot read; the others still count
                self._analyze_windows({piece: waiting[piece]}, entities, found)
            return
        per_piece: list[list[Span]] = [[] for _ in pieces]
        for span in results:
            k = bisect.bisect_right(starts, span.start) - 1
            per_piece[k].append(span.shifted(-starts[k]))
        for piece, spans in zip(pieces, per_piece):
            self.cache.put(piece, spans)
            for doc, offset in waiting[piece]:
                found[doc] += [s.shifted(offset) for s in spans]

    # --- replacing -------------------------------------------------------------------------

    def replacement(self, span: Span, value: str) -> str:
        mode = self.config.replace_with
        if mode == "placeholder":
            return f"<{span.entity}>"
        if mode == "mask":
            return self.config.mask
        digest = hmac.new(self.salt, value.encode(), hashlib.sha256).hexdigest()[:12]
        return f"<{span.entity}:{digest}>"

    def scrub(self, text: str, spans: list[Span]) -> tuple[str, dict[str, int]]:
        merged = merge_spans(spans)
        counts: dict[str, int] = {}
        pieces, last = [], len(text)
        for span in reversed(merged):
            pieces.append(text[span.end : last])
            pieces.append(self.replacement(span, text[span.start : span.end]))
            last = span.start
            counts[span.entity] = counts.get(span.entity, 0) + 1
        pieces.append(text[:last])
        return "".join(reversed(pieces)), counts

    def scrub_examples(self, texts: list[str | None]) -> list[str | None]:
        present = [i for i, text in enumerate(texts) if text is not None]
        found = self.find([texts[i] for i in present])
        out = list(texts)
        for k, (i, spans) in enumerate(zip(present, found)):
            if k in self.failed:
                out[i] = None
            elif spans:
                out[i] = self.scrub(texts[i], spans)[0]
        return out

    def count_kept(self, kept: pa.Table) -> dict[str, int]:
        """Replaced spans per entity type."""
        column = kept.column(PII_COUNTS)
        flat = pa.concat_arrays(column.chunks) if column.num_chunks else None
        if flat is None or len(flat) == 0:
            return {}
        pairs = pa.table({"k": flat.keys, "v": flat.items.cast(pa.int64())})
        return {row["k"]: row["v_sum"] for row in pairs.group_by("k").aggregate([("v", "sum")]).to_pylist()}

    def process(self, docs: pa.Table) -> StageOutput:
        column = docs.column(cols.TEXT)
        n = docs.num_rows
        # Only documents the prefilter passes become Python strings (windowed mode).
        rows = [i for i, flag in enumerate(may_hold_pii(column)) if flag] if self.windowed else list(range(n))
        subset = column.take(pa.array(rows, pa.int64()))
        texts = subset.to_pylist()
        found = self.find(texts, prefiltered=True, array=subset)
        counts: list[list[tuple[str, int]]] = [[] for _ in range(n)]
        scrubbed: dict[int, str] = {}
        for row, text, spans in zip(rows, texts, found):
            if spans:
                scrubbed[row], per_entity = self.scrub(text, spans)
                counts[row] = sorted(per_entity.items())
        table = cols.with_texts_replaced(docs, scrubbed)
        table = table.append_column(PII_COUNTS, pa.array(counts, pa.map_(pa.string(), pa.int32())))
        failed = {rows[k] for k in self.failed}
        limit = self.config.max_entities
        reasons = [
            "pii_unscannable"
            if i in failed
            else "pii_too_many_entities"
            if limit is not None and sum(n for _, n in c) > limit
            else None
            for i, c in enumerate(counts)
        ]
        return StageOutput(table, pa.array(reasons, pa.string()) if any(reasons) else None)


def _pieces(text: str) -> list[tuple[int, str]]:
    """The text in pieces under spaCy's length limit, cut only at line breaks (which no
    recognizer's match crosses); one piece for ordinary documents."""
    if len(text) <= _MAX_PIECE:
        return [(0, text)]
    out, start = [], 0
    while len(text) - start > _MAX_PIECE:
        cut = None
        for m in _LINE_BREAK.finditer(text, start + _MAX_PIECE // 2, start + _MAX_PIECE):
            cut = m.end()
        if cut is None:  # one enormous line: cut anyway; a match across the cut may be lost
            cut = start + _MAX_PIECE
        out.append((start, text[start:cut]))
        start = cut
    out.append((start, text[start:]))
    return out
