"""``stages.word_lists`` in a job spec: every problem is an error at load time (``refinery
validate``, the start of ``run``) naming its key path and, for a file, the file."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import JobSpecError, load_job_spec
from pipeline.stages.word_lists import WordListsFilter
from tests.helpers import job_dict


def spec(tmp_path, lists: list[dict], language: bool = True, **section) -> dict:
    corpus = tmp_path / "corpus"
    corpus.mkdir(exist_ok=True)
    pq.write_table(pa.table({"id": ["a"], "text": ["text"]}), corpus / "a.parquet")
    stages = {"word_lists": {"enabled": True, "lists": lists, **section}, "language": {"enabled": language}}
    job = job_dict(str(corpus), str(tmp_path / "out"), "unused", stages=stages, output={"kind": "documents"})
    del job["stages"]["tokenize"]
    return job


def errors(job: dict) -> str:
    with pytest.raises(JobSpecError) as error:
        load_job_spec(job, check_files=True)
    return str(error.value)


@pytest.fixture
def good(tmp_path) -> str:
    path = tmp_path / "good.txt"
    path.write_text("darn\nheck\n", encoding="utf-8")
    return str(path)


def test_a_valid_section_loads_and_names_its_files_for_invalidation(tmp_path, good):
    loaded = load_job_spec(spec(tmp_path, [{"name": "adult", "files": {"*": good, "de": good}, "max_ratio": 0}]))
    section = loaded.stages.word_lists
    assert section.lists[0].min_matches == 1 and section.lists[0].max_ratio == 0
    assert set(loaded.model_files()) >= {"stages.word_lists.lists.0.files.*", "stages.word_lists.lists.0.files.de"}


def test_missing_empty_and_non_utf8_files_name_key_and_file(tmp_path, good):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n\t\n", encoding="utf-8")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("ok\nfine\nStra\xdfe\n".encode("latin-1"))
    lists = [
        {"name": "missing", "files": {"*": str(tmp_path / "absent.txt")}},
        {"name": "empty", "files": {"*": good, "de": str(empty)}},
        {"name": "latin", "files": {"*": str(latin1)}},
    ]
    message = errors(spec(tmp_path, lists))
    assert f"stages.word_lists.lists.0.files.*: file not found: '{tmp_path / 'absent.txt'}'" in message
    assert f"stages.word_lists.lists.1.files.de: list file '{empty}' has no entries" in message
    assert f"stages.word_lists.lists.2.files.*: list file '{latin1}' is not UTF-8: line 3" in message


def test_names_ratios_and_keys_are_checked(tmp_path, good):
    duplicate = [{"name": "adult", "files": {"*": good}}, {"name": "adult", "files": {"*": good}}]
    assert "stages.word_lists: lists.1.name: 'adult' is already the name of lists.0" in errors(
        spec(tmp_path, duplicate)
    )
    message = errors(spec(tmp_path, [{"name": "Adult-Words", "files": {"*": good}, "max_ratio": -0.1}]))
    assert "stages.word_lists.lists.0.name: String should match pattern '^[a-z0-9_]+$'" in message
    assert "stages.word_lists.lists.0.max_ratio: Input should be greater than or equal to 0" in message
    message = errors(spec(tmp_path, [{"name": "a", "files": {"*": good}, "min_matches": 0, "ratio": 1}]))
    assert "stages.word_lists.lists.0.min_matches: Input should be greater than or equal to 1" in message
    assert "stages.word_lists.lists.0.ratio: unknown key" in message
    assert "stages.word_lists.lists.0.files: name at least one list file" in errors(
        spec(tmp_path, [{"name": "a", "files": {}}])
    )
    assert "stages.word_lists: lists: name at least one word list" in errors(spec(tmp_path, []))


def test_a_language_file_needs_the_language_stage(tmp_path, good):
    lists = [{"name": "a", "files": {"*": good}}, {"name": "b", "files": {"de": good}}]
    message = errors(spec(tmp_path, lists, language=False))
    assert "stages.word_lists.lists.1.files.de: a list file for one language needs stages.language enabled" in message
    load_job_spec(spec(tmp_path, lists[:1], language=False))  # "*" alone needs no language stage


def test_list_files_load_from_s3(s3, s3_endpoint, tmp_path):
    s3.mkdir("lists")
    s3.pipe("lists/adult.txt", b"darn\n")
    options = {"endpoint_url": s3_endpoint}
    job = spec(tmp_path, [{"name": "adult", "files": {"*": "s3://lists/adult.txt"}}], storage_options=options)
    stage = WordListsFilter(load_job_spec(job).stages.word_lists)
    stage.setup()
    counts = stage.process(pa.table({"text": ["Darn it", "fine"]})).table.column("word_list_counts").to_pylist()
    assert counts == [[("adult", 1)], []]
    missing = spec(tmp_path, [{"name": "adult", "files": {"*": "s3://lists/none.txt"}}], storage_options=options)
    assert "stages.word_lists.lists.0.files.*: file not found: 's3://lists/none.txt'" in errors(missing)
