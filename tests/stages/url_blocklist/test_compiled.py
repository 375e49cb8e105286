"""The compiled lists: written once per job under work/url_blocklist/, reused while the list
files are unchanged and rebuilt when one changes; workers map the file instead of copying
it, through a node-local copy when it lies on an object store."""

import mmap
import os

import numpy as np

from pipeline.config import load_job_spec
from pipeline.core.progress import Progress
from pipeline.stages.url_blocklist import (
    URL_BLOCKLIST_CATEGORY,
    UrlBlocklistCheck,
    UrlBlocklistConfig,
    compile_blocklist,
    load_blocklist,
    prepare_blocklist,
    save_blocklist,
)
from pipeline.stages.url_blocklist import store as store_module
from tests.stages.url_blocklist.conftest import documents_spec, url_docs, write_ut1

URLS = ["http://www.adult.com/", "http://bet.com/x", "http://prefix.org/a/b", "http://ok.org/", None]


def _spec(tiny_input, tmp_path):
    root = write_ut1(
        tmp_path / "ut1",
        {"adult": {"domains": ["adult.com"], "urls": ["prefix.org/a"]}, "gambling": {"domains": ["bet.com"]}},
    )
    section = {"lists": [{"uri": str(root), "format": "ut1"}]}
    return load_job_spec(documents_spec(str(tiny_input), str(tmp_path / "out"), section)), root


def _mapped(array: np.ndarray) -> bool:
    while array is not None and not isinstance(array, mmap.mmap):
        array = getattr(array, "base", None)
    return isinstance(array, mmap.mmap)


def test_compiled_once_reused_and_rebuilt_when_a_list_changes(tiny_input, tmp_path, monkeypatch, capsys):
    spec, root = _spec(tiny_input, tmp_path)
    compiles = []
    monkeypatch.setattr(store_module, "compile_blocklist", lambda c: compiles.append(1) or compile_blocklist(c))
    progress = Progress()
    first = prepare_blocklist(spec, progress)
    work = tmp_path / "out" / "work" / "url_blocklist"
    files = sorted(p.name for p in work.iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".npy")
    assert first["domains"] == 2 and first["urls"] == 1 and len(compiles) == 1
    assert "url_blocklist: 2 domains and 1 URL prefixes in 2 categories" in capsys.readouterr().err
    written = (work / files[1]).stat().st_mtime_ns

    assert prepare_blocklist(spec, progress) == first
    assert len(compiles) == 1 and (work / files[1]).stat().st_mtime_ns == written
    assert "compiled by an earlier run, reused" in capsys.readouterr().err

    (root / "gambling" / "domains").write_text("bet.com\ncasino.com\n")
    changed = prepare_blocklist(spec, progress)
    assert len(compiles) == 2 and changed["domains"] == 3
    assert len(list(work.iterdir())) == 4  # the earlier compile stays, under its own name


def test_workers_map_the_compiled_file_and_match_as_compiled_in_memory(tiny_input, tmp_path):
    spec, _ = _spec(tiny_input, tmp_path)
    prepare_blocklist(spec)
    bound = UrlBlocklistCheck(spec.stages.url_blocklist)
    bound.bind_job(spec)
    bound.setup()
    for name in ("domain_hashes", "domain_codes", "url_host_hashes", "url_hashes", "url_codes"):
        assert _mapped(getattr(bound.blocklist, name)), name
    alone = UrlBlocklistCheck(spec.stages.url_blocklist)
    alone.setup()
    expected = ["adult", "gambling", "adult", None, None]
    for stage in (bound, alone):
        assert stage.process(url_docs(URLS)).table.column(URL_BLOCKLIST_CATEGORY).to_pylist() == expected


def test_a_compiled_file_on_an_object_store_is_copied_once_per_node(tmp_path, monkeypatch):
    import tempfile

    root = write_ut1(tmp_path / "ut1", {"adult": {"domains": ["adult.com"]}})
    blocklist = compile_blocklist(UrlBlocklistConfig(enabled=True, lists=[{"uri": str(root), "format": "ut1"}]))
    uri = "memory://refinery-test/work/url_blocklist/blocklist-0123abcd.npy"
    save_blocklist(blocklist, uri)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "node"))
    loaded = load_blocklist(uri)
    cached = tmp_path / "node" / "refinery-cache" / "url_blocklist-blocklist-0123abcd.npy"
    assert cached.exists() and _mapped(loaded.domain_hashes)
    assert np.array_equal(loaded.domain_hashes, blocklist.domain_hashes)
    assert loaded.categories == ["adult"] and loaded.summary == blocklist.summary
    before = os.stat(cached).st_mtime_ns
    load_blocklist(uri)
    assert os.stat(cached).st_mtime_ns == before
    assert not [p for p in cached.parent.iterdir() if ".tmp-" in p.name]


def test_an_empty_blocklist_round_trips(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n")
    config = UrlBlocklistConfig(enabled=True, lists=[{"uri": str(empty), "format": "domains", "category": "x"}])
    save_blocklist(compile_blocklist(config), str(tmp_path / "b.npy"))
    loaded = load_blocklist(str(tmp_path / "b.npy"))
    assert loaded.categories == ["x"] and len(loaded.domain_hashes) == 0
    assert loaded.match(url_docs(URLS).column("url")).tolist() == [np.iinfo(np.int32).max] * len(URLS)
