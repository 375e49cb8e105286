"""Bad lists fail ``refinery validate`` (``load_job_spec`` with file checks), every problem
named by its key path in one pass; malformed lines inside a list never do."""

import pytest

from pipeline.config import JobSpecError, load_job_spec
from tests.stages.url_blocklist.conftest import documents_spec, write_ut1


def _load(tiny_input, tmp_path, **section):
    return load_job_spec(documents_spec(str(tiny_input), str(tmp_path / "out"), section), check_files=True)


def _problems(tiny_input, tmp_path, **section) -> str:
    with pytest.raises(JobSpecError) as error:
        _load(tiny_input, tmp_path, **section)
    return str(error.value)


def test_a_valid_section_loads_with_its_defaults(tiny_input, tmp_path):
    root = write_ut1(tmp_path / "ut1", {"adult": {"domains": ["a.com"]}})
    spec = _load(tiny_input, tmp_path, lists=[{"uri": str(root), "format": "ut1"}])
    config = spec.stages.url_blocklist
    assert config.action == "reject" and config.lists[0].categories == []
    assert list(spec.model_files()) == [
        "stages.url_blocklist.lists.0.adult.domains",
        "stages.url_blocklist.public_suffix_snapshot",  # a tldextract upgrade redoes the work
    ]


def test_missing_lists_and_wrong_kinds_of_path(tiny_input, tmp_path):
    root = write_ut1(tmp_path / "ut1", {"adult": {"domains": ["a.com"]}})
    message = _problems(
        tiny_input,
        tmp_path,
        lists=[
            {"uri": str(tmp_path / "absent"), "format": "ut1"},
            {"uri": str(tmp_path / "absent.txt"), "format": "domains", "category": "x"},
            {"uri": str(root / "adult" / "domains"), "format": "ut1"},
            {"uri": str(root), "format": "domains", "category": "x"},
        ],
    )
    assert f"stages.url_blocklist.lists.0.uri: file not found: '{tmp_path / 'absent'}'" in message
    assert "stages.url_blocklist.lists.1.uri: file not found" in message
    assert "stages.url_blocklist.lists.2.uri: " in message and "is a file; a ut1 list is a directory" in message
    assert "stages.url_blocklist.lists.3.uri: " in message and "is a directory; a domains list is one file" in message


def test_ut1_categories_not_found_are_listed_with_those_found(tiny_input, tmp_path):
    root = write_ut1(
        tmp_path / "ut1", {"adult": {"domains": ["a.com"]}, "gambling": {"urls": ["b.com/x"]}, "notes": {}}
    )
    (root / "README").write_text("not a category\n")
    message = _problems(tiny_input, tmp_path, lists=[{"uri": str(root), "format": "ut1", "categories": ["porn"]}])
    assert "stages.url_blocklist.lists.0.categories: porn not found in" in message
    assert "(it has: adult, gambling)" in message
    empty = tmp_path / "empty"
    (empty / "adult").mkdir(parents=True)
    message = _problems(tiny_input, tmp_path, lists=[{"uri": str(empty), "format": "ut1"}])
    assert "stages.url_blocklist.lists.0.uri: no category in" in message


def test_linked_category_directories_count(tiny_input, tmp_path):
    """UT1 ships some categories as links to others (an alias); naming one works."""
    root = write_ut1(tmp_path / "ut1", {"adult": {"domains": ["a.com"], "urls": ["b.com/x"]}})
    (root / "porn").symlink_to("adult")
    spec = _load(tiny_input, tmp_path, lists=[{"uri": str(root), "format": "ut1", "categories": ["porn"]}])
    assert list(spec.model_files()) == [
        "stages.url_blocklist.lists.0.porn.domains",
        "stages.url_blocklist.lists.0.porn.urls",
        "stages.url_blocklist.public_suffix_snapshot",
    ]


def test_section_errors_name_their_key(tiny_input, tmp_path):
    root = write_ut1(tmp_path / "ut1", {"adult": {"domains": ["a.com"]}})
    domains = tmp_path / "d.txt"
    domains.write_text("a.com\n")
    message = _problems(
        tiny_input,
        tmp_path,
        lists=[
            {"uri": str(domains), "format": "domains"},
            {"uri": str(root), "format": "ut1", "categories": ["ok", "no/slash"]},
            {"uri": str(domains), "format": "domains", "category": "has space"},
            {"uri": str(domains), "format": "csv", "category": "x"},
            {"uri": str(root), "format": "ut1", "categoies": []},
        ],
        action="drop",
    )
    assert "stages.url_blocklist.lists.0: format 'domains' needs 'category'" in message
    assert "stages.url_blocklist.lists.1.categories.1: String should match pattern" in message
    assert "stages.url_blocklist.lists.2.category: String should match pattern" in message
    assert "stages.url_blocklist.lists.3.format: " in message
    assert "stages.url_blocklist.lists.4.categoies: unknown key" in message
    assert "stages.url_blocklist.action: " in message
    assert "name at least one list" in _problems(tiny_input, tmp_path, lists=[])


def test_malformed_lines_are_not_errors(tiny_input, tmp_path):
    domains = tmp_path / "d.txt"
    domains.write_bytes(b"a b c\n\xff\xfe\n/x\nok.com\n")
    _load(tiny_input, tmp_path, lists=[{"uri": str(domains), "format": "domains", "category": "x"}])
