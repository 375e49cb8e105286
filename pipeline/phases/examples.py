"""Examples of what each rule did, for the report: per stage and reason, a few rejected
documents with a snippet and what the stage recorded about them.

Chosen deterministically: per (stage, reason), the documents with the smallest seeded key
of (shard, row), so that the same run picks the same examples however it is split; each
unit keeps its ``KEPT_PER_REASON`` smallest and the report merges them. A snippet is the
start of the text, cut at ``SNIPPET_CHARS``, after every document stage's
``scrub_examples`` (PII scrubbing replaces what it finds, so a snippet never shows a value
it would remove); a stage with ``example_text = False`` (contamination: its documents hold
eval text) gives none. What a stage recorded is the columns it added (a language and its
score, a perplexity, the rule values, ...), cut short when long.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from pipeline.core import columns as cols
from pipeline.phases.mix.plan import uniform_keys

if TYPE_CHECKING:
    from pipeline.stages.base import DocumentStage

KEPT_PER_REASON = 5
SNIPPET_CHARS = 400
SCRUB_MARGIN = 200
"""Scrubbed past the cut, so that a value across it is found whole, then cut away."""
DETAIL_CHARS = 200
_SALT = 0x5EED_E8A3


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, list) and value and isinstance(value[0], tuple) and len(value[0]) == 2:
        return {str(k): _jsonable(v) for k, v in value}  # an Arrow map
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, str) and len(value) > DETAIL_CHARS:
        return value[:DETAIL_CHARS] + "…"
    return value


class ExampleSampler:
    """One unit's examples (``to_json``), offered rejected rows batch by batch."""

    def __init__(self, seed: int, shard_key: str) -> None:
        self.seed, self.shard_key = seed, shard_key
        self.kept: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def offer(
        self, rejected: pa.Table, detail_columns: list[str], with_text: bool = True, hidden: np.ndarray | None = None
    ) -> None:
        """Rejected rows (``reject_stage``, ``reject_reason``, ``row``, ``id``, ``text``);
        ``hidden``: rows whose text no example may show."""
        if not rejected.num_rows:
            return
        with_text = with_text and cols.TEXT in rejected.column_names
        rows = rejected.column(cols.ROW).to_numpy()
        keys = uniform_keys(self.seed ^ _SALT, self.shard_key, rows)
        stages = rejected.column(cols.REJECT_STAGE).to_pylist()
        reasons = rejected.column(cols.REJECT_REASON).to_pylist()
        groups: dict[tuple[str, str], list[int]] = {}
        for i, group in enumerate(zip(stages, reasons)):
            groups.setdefault(group, []).append(i)
        details = [name for name in detail_columns if name in rejected.column_names]
        for group, members in groups.items():
            kept = self.kept.setdefault(group, [])
            bound = kept[-1]["key"] if len(kept) >= KEPT_PER_REASON else np.inf
            chosen = [i for i in members if keys[i] < bound]
            chosen = sorted(chosen, key=lambda i: keys[i])[:KEPT_PER_REASON]
            if not chosen:
                continue
            taken = rejected.take(pa.array(chosen, pa.int64()))
            texts = taken.column(cols.TEXT).to_pylist() if with_text else [None] * len(chosen)
            if hidden is not None:
                texts = [None if hidden[i] else t for i, t in zip(chosen, texts)]
            ids = taken.column(cols.ID).to_pylist() if cols.ID in taken.column_names else [None] * len(chosen)
            values = {name: taken.column(name).to_pylist() for name in details}
            for j, i in enumerate(chosen):
                text = texts[j]
                window = SNIPPET_CHARS + SCRUB_MARGIN
                kept.append(
                    {
                        "key": float(keys[i]),
                        "shard": self.shard_key,
                        "row": int(rows[i]),
                        "id": ids[j],
                        # cut to a snippet later, after scrubbing
                        "text": None if text is None else text[:window],
                        "cut": text is not None and len(text) > window,
                        "detail": {name: _jsonable(values[name][j]) for name in details},
                    }
                )
            kept.sort(key=lambda e: e["key"])
            del kept[KEPT_PER_REASON:]

    def to_json(self, scrubbers: list[DocumentStage]) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """The examples, their texts scrubbed by every stage and cut to snippets."""
        examples = [e for kept in self.kept.values() for e in kept]
        texts = scrubbed_snippets([(e["text"], e.pop("cut")) for e in examples], scrubbers)
        for example, text in zip(examples, texts):
            example["text"] = text
        out: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for (stage, reason), kept in sorted(self.kept.items()):
            out.setdefault(stage, {})[reason] = kept
        return out


def scrubbed_snippets(texts: list[tuple[str | None, bool]], scrubbers: list[DocumentStage]) -> list[str | None]:
    """Snippets of (text, cut) pairs: a text is at most a window of ``SNIPPET_CHARS +
    SCRUB_MARGIN`` characters of a document (``cut`` where the document was longer), collapsed
    to one line and then scrubbed by every stage, so that the snippet shows what the scrubbers
    saw. Where the window cut the document, a value cut in two is not recognized: it sits at
    the end, so the margin is dropped."""
    present = [i for i, (text, _) in enumerate(texts) if text is not None]
    scrubbed: list[str | None] = [collapse(texts[i][0]) for i in present]
    for stage in scrubbers:
        scrubbed = stage.scrub_examples(scrubbed)
    out: list[str | None] = [None] * len(texts)
    for i, text in zip(present, scrubbed):
        cut = texts[i][1]
        if text is not None:
            out[i] = snippet(text[: max(0, len(text) - SCRUB_MARGIN)] if cut else text, cut=cut)
    return out


def collapse(text: str) -> str:
    """One line: chat messages' breaks and every run of whitespace become one space."""
    return " ".join(text.replace(cols.SEGMENT_BREAK, "\n").split())


def snippet(text: str, cut: bool = False) -> str:
    """The start of a collapsed (and scrubbed) text, at most ``SNIPPET_CHARS``, ended at a
    word; `` …`` where text was left out."""
    cut = cut or len(text) > SNIPPET_CHARS
    text = text[:SNIPPET_CHARS]
    return (text.rsplit(" ", 1)[0] if " " in text else text) + " …" if cut else text


def merge(units: list[dict[str, dict[str, list[dict[str, Any]]]]], per_reason: int) -> dict[str, Any]:
    """The run's examples: per stage and reason, the ``per_reason`` of smallest key."""
    merged: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for unit in units:
        for stage, reasons in unit.items():
            for reason, examples in reasons.items():
                copies = [{**e, "detail": dict(e["detail"])} for e in examples]  # the report edits them
                merged.setdefault(stage, {}).setdefault(reason, []).extend(copies)
    return {
        stage: {
            reason: sorted(examples, key=lambda e: (e["key"], e["shard"], e["row"]))[:per_reason]
            for reason, examples in sorted(reasons.items())
        }
        for stage, reasons in sorted(merged.items())
    }


def hidden_texts(stages: list[DocumentStage], rejected: pa.Table) -> np.ndarray | None:
    """Rows whose text the report's examples may not show, by any stage's say."""
    hidden = None
    for stage in stages:
        mask = stage.hides_example_text(rejected)
        if mask is not None:
            flags = np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)
            hidden = flags if hidden is None else hidden | flags
    return hidden
