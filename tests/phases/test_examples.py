"""The report's examples: chosen by the seed however a unit is split into batches, bounded,
scrubbed by the stages' hooks before they are cut, and merged across units."""

import pyarrow as pa
import pytest

from pipeline.core import columns as cols
from pipeline.phases.examples import KEPT_PER_REASON, SNIPPET_CHARS, ExampleSampler, merge


def _rejected(rows: range, stage: str = "quality", reason: str = "gopher_word_count", text: str = "word") -> pa.Table:
    return pa.table(
        {
            cols.ID: [f"doc-{r}" for r in rows],
            cols.ROW: pa.array(list(rows), pa.int64()),
            cols.TEXT: [f"{text} {r} " * 3 for r in rows],
            cols.REJECT_STAGE: [stage] * len(rows),
            cols.REJECT_REASON: [reason] * len(rows),
            "score": [r / 10 for r in rows],
        }
    )


def test_the_same_examples_however_the_rows_arrive():
    whole = ExampleSampler(seed=3, shard_key="shard-a")
    whole.offer(_rejected(range(200)), ["score"])
    batched = ExampleSampler(seed=3, shard_key="shard-a")
    for start in range(0, 200, 17):
        batched.offer(_rejected(range(start, min(start + 17, 200))), ["score"])
    chosen = whole.to_json([])["quality"]["gopher_word_count"]
    assert chosen == batched.to_json([])["quality"]["gopher_word_count"]
    assert len(chosen) == KEPT_PER_REASON
    assert [e["id"] for e in chosen] != [f"doc-{r}" for r in range(KEPT_PER_REASON)]  # a sample, not the first rows
    example = chosen[0]
    assert example["detail"] == {"score": round(example["row"] / 10, 4)}
    assert example["text"] == f"word {example['row']} word {example['row']} word {example['row']}"
    other_seed = ExampleSampler(seed=4, shard_key="shard-a")
    other_seed.offer(_rejected(range(200)), ["score"])
    assert other_seed.to_json([])["quality"]["gopher_word_count"] != chosen


def test_units_merge_to_the_examples_of_the_whole_run():
    units = []
    for shard in ("a", "b", "c"):
        sampler = ExampleSampler(seed=1, shard_key=shard)
        sampler.offer(_rejected(range(50)), [])
        sampler.offer(_rejected(range(50, 60), stage="language", reason="language_not_kept"), [])
        units.append(sampler.to_json([]))
    merged = merge(units, per_reason=3)
    assert set(merged) == {"language", "quality"}
    chosen = merged["quality"]["gopher_word_count"]
    pool = sorted((e for u in units for e in u["quality"]["gopher_word_count"]), key=lambda e: e["key"])
    assert chosen == pool[:3]
    assert merge(list(reversed(units)), per_reason=3) == merged


def test_snippets_are_scrubbed_before_they_are_cut_and_hidden_where_asked():
    class Redact:
        def scrub_examples(self, texts):
            return [None if t is not None and "secret" in t else t.replace("555-0100", "<PHONE_NUMBER>") for t in texts]

    sampler = ExampleSampler(seed=0, shard_key="s")
    long_text = "call 555-0100 now " + "filler " * 200
    table = _rejected(range(3))
    table = table.set_column(table.column_names.index(cols.TEXT), cols.TEXT, pa.array([long_text, "a secret", "x"]))
    sampler.offer(table, [])
    sampler.offer(_rejected(range(3, 5), stage="contamination", reason="contaminated"), [], with_text=False)
    out = sampler.to_json([Redact()])
    texts = {e["row"]: e["text"] for e in out["quality"]["gopher_word_count"]}
    assert texts[0].startswith("call <PHONE_NUMBER> now filler") and texts[0].endswith(" …")
    assert len(texts[0]) <= SNIPPET_CHARS + 2 and "555-0100" not in texts[0]
    assert texts[1] is None and texts[2] == "x"
    assert all(e["text"] is None for e in out["contamination"]["contaminated"])


@pytest.mark.parametrize("planted", ["Call me at (212) 555-0100 today.", "Mail jordan.lee@example.org now."])
def test_the_pii_stage_scrubs_examples_of_every_stage(planted):
    from pipeline.stages.pii import PiiConfig, PiiScrub

    stage = PiiScrub(PiiConfig(enabled=True))
    stage.setup()
    (scrubbed,) = stage.scrub_examples([planted])
    assert scrubbed != planted and ("555-0100" not in scrubbed and "example.org" not in scrubbed)
    assert stage.scrub_examples([None, "nothing here"]) == [None, "nothing here"]


def test_no_piece_of_a_value_survives_the_window_or_a_line_break():
    """A value the 600-character window cuts in two is not recognized: it is dropped with the
    margin. A card number across a line break is scrubbed as the snippet shows it (one line)."""
    from pipeline.stages.pii import PiiConfig, PiiScrub

    stage = PiiScrub(PiiConfig(enabled=True))
    stage.setup()
    names = ["ann", "bob", "cyd", "dee", "eve", "fay", "gus", "hal", "ivy", "jon", "kim", "lou", "max"]
    emails = "Contacts: " + ", ".join(f"{n}.{k}@examplecorp.com" for k in range(3) for n in names)
    card = "Card on file: 4111 1111\n1111 1111, expiry 12/29."
    table = _rejected(range(2), stage="pii", reason="pii_too_many_entities")
    table = table.set_column(table.column_names.index(cols.TEXT), cols.TEXT, pa.array([emails, card]))
    sampler = ExampleSampler(seed=0, shard_key="s")
    sampler.offer(table, [])
    texts = {e["row"]: e["text"] for e in sampler.to_json([stage])["pii"]["pii_too_many_entities"]}
    assert len(emails) > SNIPPET_CHARS + 200 and texts[0].startswith("Contacts: <EMAIL_ADDRESS>, ")
    assert "@" not in texts[0] and "examplecorp" not in texts[0] and texts[0].endswith(" …")
    assert "4111" not in texts[1] and "<CREDIT_CARD>" in texts[1]


def test_documents_contamination_flagged_show_no_text_whatever_rejected_them():
    """With ``action: annotate`` a contaminated document goes on; if dedup or another stage then
    rejects it, its example names it but shows none of its (eval) text."""
    from pipeline.phases.examples import hidden_texts
    from pipeline.stages.contamination import ContaminationCheck, ContaminationConfig
    from pipeline.stages.contamination.stage import CONTAMINATION, CONTAMINATION_TYPE

    table = _rejected(range(3), stage="exact_dedup", reason="exact_duplicate")
    flagged = [[{"benchmark": "gsm8k", "item": "gsm8k-7", "ngrams": 4, "fraction": 1.0}], [], None]
    table = table.append_column(CONTAMINATION, pa.array(flagged, CONTAMINATION_TYPE))
    stage = ContaminationCheck(ContaminationConfig())
    hidden = hidden_texts([stage], table)
    assert hidden.tolist() == [True, False, False]
    assert hidden_texts([stage], _rejected(range(2))) is None  # no contamination column: nothing hidden
    sampler = ExampleSampler(seed=0, shard_key="s")
    sampler.offer(table, [], hidden=hidden)
    texts = {e["row"]: e["text"] for e in sampler.to_json([])["exact_dedup"]["exact_duplicate"]}
    assert texts[0] is None and texts[1] and texts[2]
