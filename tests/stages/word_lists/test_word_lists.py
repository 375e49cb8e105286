"""The word lists stage: counts per list, files per language, the ratio rule and its reasons,
the kept counters and the report section."""

from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.core import columns as cols
from pipeline.core.markers import AnnotateMarker, DedupMarker, RunRecord
from pipeline.stages.word_lists import WORD_LIST_COUNTS, WordLists, WordListsConfig, WordListsFilter


def write(path: Path, *lines: str) -> str:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def stage_for(*lists: dict) -> WordListsFilter:
    stage = WordListsFilter(WordListsConfig(enabled=True, lists=list(lists)))
    stage.setup()
    return stage


def docs(texts: list[str], langs: list[str | None] | None = None) -> pa.Table:
    table = pa.table(
        {cols.ID: pa.array([str(i) for i in range(len(texts))], pa.string()), cols.TEXT: pa.array(texts, pa.string())}
    )
    return table if langs is None else table.append_column(cols.LANG, pa.array(langs, pa.string()))


def counts(table: pa.Table) -> list[dict[str, int]]:
    return [dict(c) for c in table.column(WORD_LIST_COUNTS).to_pylist()]


def test_annotate_only_counts_per_list_and_rejects_nothing(tmp_path):
    stage = stage_for(
        {"name": "adult", "files": {"*": write(tmp_path / "a.txt", "darn", "", "  heck  ", "Dang It")}},
        {"name": "topic", "files": {"*": write(tmp_path / "t.txt", "football", "world cup")}},
    )
    out = stage.process(
        docs(["Darn, darn! Dang it.", "The World Cup football final, heck.", "Nothing here.", "", "darnit heckle"])
    )
    assert out.reject_reasons is None
    assert counts(out.table) == [{"adult": 3}, {"adult": 1, "topic": 2}, {}, {}, {}]
    assert out.table.schema.field(WORD_LIST_COUNTS).type == pa.map_(pa.string(), pa.int32())
    assert stage.count_kept(out.table) == {"adult": 2, "topic": 1}
    assert stage.count_kept(out.table.slice(1, 3)) == {"adult": 1, "topic": 1}


def test_language_files_apply_only_to_documents_of_that_language(tmp_path):
    files = {"*": write(tmp_path / "any.txt", "spam"), "de": write(tmp_path / "de.txt", "mist")}
    stage = stage_for({"name": "bad", "files": files})
    texts = ["spam and mist", "spam und Mist", "Mist", "mist spam"]
    out = stage.process(docs(texts, ["en", "de", "de", None]))
    assert counts(out.table) == [{"bad": 1}, {"bad": 2}, {"bad": 1}, {"bad": 1}]
    # without the language stage's column every document uses "*" only
    assert counts(stage.process(docs(texts)).table) == [{"bad": 1}, {"bad": 1}, {}, {"bad": 1}]


def test_max_ratio_zero_rejects_on_any_match_with_the_lists_reason(tmp_path):
    stage = stage_for({"name": "adult", "files": {"*": write(tmp_path / "a.txt", "darn")}, "max_ratio": 0})
    kept, rejected = stage(docs(["clean text here", "one darn word in a long document of many words", "darned"]))
    assert kept.column(cols.ID).to_pylist() == ["0", "2"]
    assert rejected.column(cols.ID).to_pylist() == ["1"]
    assert rejected.column(cols.REJECT_STAGE).to_pylist() == ["word_lists"]
    assert rejected.column(cols.REJECT_REASON).to_pylist() == ["word_list_adult"]
    assert counts(rejected) == [{"adult": 1}]


def test_a_ratio_between_two_documents_keeps_one_and_rejects_the_other(tmp_path):
    word_list = {"name": "spam", "files": {"*": write(tmp_path / "s.txt", "buy now", "cheap")}, "max_ratio": 0.3}
    texts = [
        "buy now cheap pills",  # 3 of 4 words: 0.75
        "buy now if you like, the shop is open all day",  # 2 of 11 words: 0.18
        "中文 cheap 字",  # 1 of 4 words (each Han character is one): 0.25
    ]
    out = stage_for(word_list).process(docs(texts))
    assert out.reject_reasons.to_pylist() == ["word_list_spam", None, None]
    out = stage_for({**word_list, "max_ratio": 0.2}).process(docs(texts))
    assert out.reject_reasons.to_pylist() == ["word_list_spam", None, "word_list_spam"]
    out = stage_for({**word_list, "max_ratio": 0.1}).process(docs(texts))
    assert out.reject_reasons.to_pylist() == ["word_list_spam"] * 3


def test_min_matches_and_the_first_rejecting_list_names_the_reason(tmp_path):
    first = {"name": "first", "files": {"*": write(tmp_path / "1.txt", "alpha")}, "max_ratio": 0, "min_matches": 2}
    second = {"name": "second", "files": {"*": write(tmp_path / "2.txt", "alpha", "beta")}, "max_ratio": 0}
    out = stage_for(first, second).process(docs(["alpha alpha", "alpha", "beta", "gamma"]))
    assert out.reject_reasons.to_pylist() == ["word_list_first", "word_list_second", "word_list_second", None]


def test_an_empty_batch_keeps_the_column_type(tmp_path):
    stage = stage_for({"name": "l", "files": {"*": write(tmp_path / "l.txt", "x")}, "max_ratio": 0})
    out = stage.process(docs([]))
    assert out.table.schema.field(WORD_LIST_COUNTS).type == pa.map_(pa.string(), pa.int32())
    assert out.reject_reasons is None and stage.count_kept(out.table) == {}


def test_report_section_shows_entries_matches_and_rejects(tmp_path):
    config = WordListsConfig(
        enabled=True,
        lists=[
            {"name": "adult", "files": {"*": "a.txt", "de": "b.txt"}, "max_ratio": 0},
            {"name": "topic", "files": {"*": "t.txt"}},
        ],
    )
    marker = dict(shard_key="s", uri="u", fingerprint={}, config_hash="h")
    run = RunRecord(
        spec=None,
        annotate=[
            AnnotateMarker(**marker, rejected={"word_lists": {"word_list_adult": 3}}, kept_counts={"word_lists": {}}),
            AnnotateMarker(
                **marker, rejected={"word_lists": {"word_list_adult": 1}}, kept_counts={"word_lists": {"topic": 5}}
            ),
        ],
        dedup=DedupMarker(input_hash="x"),
        prepared={"word_lists": {"entries": {"adult": {"*": 400, "de": 120}, "topic": {"*": 2}}}},
    )
    section = WordLists.report_section(config, run)
    assert section.key == "word_lists"
    assert section.data["adult"] == {"entries": {"*": 400, "de": 120}, "matched_kept": 0, "rejected": 4, "max_ratio": 0}
    assert section.data["topic"]["matched_kept"] == 5 and section.data["topic"]["rejected"] == 0
    markdown = "\n".join(section.markdown)
    assert "| adult | * 400, de 120 | reject above ratio 0 (1+ matches) | 0 | 4 |" in markdown
    assert "| topic | * 2 | annotate only | 5 | 0 |" in markdown


@pytest.mark.parametrize("bom", [False, True])
def test_list_files_skip_blank_lines_and_surrounding_space(tmp_path, bom):
    from pipeline.stages.word_lists import read_list

    path = tmp_path / "l.txt"
    path.write_bytes(("\ufeff" if bom else "").encode() + b"  one \r\n\r\n\ttwo words\n \n\xc3\x9f\n")
    assert read_list(str(path)) == ["one", "two words", "ß"]
