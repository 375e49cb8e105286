"""The dedup index: a run on a grown input deduplicates only the new shards, against the
documents earlier runs kept, and leaves earlier decisions and shards alone."""

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import run_job
from pipeline.core.layout import OutputLayout
from pipeline.core.progress import Progress

pytestmark = pytest.mark.usefixtures("ray_local")

WORDS = [f"w{i}" for i in range(3000)]


def _doc(rng: random.Random, n: int = 120) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _near_copy(rng: random.Random, text: str) -> str:
    words = text.split()
    words[rng.randrange(len(words))] = "changed"  # one substitution: Jaccard about 0.92
    return " ".join(words)


def _write(path: Path, docs: list[tuple[str, str]]) -> None:
    pq.write_table(pa.table({"id": [i for i, _ in docs], "text": [t for _, t in docs]}), path)


def _removals(output: Path) -> dict[str, tuple[str, str]]:
    table = pq.read_table(output / "rejects" / "dedup")
    return {r["id"]: (r["reject_reason"], r["duplicate_of"]) for r in table.to_pylist()}


@pytest.fixture
def grown_input(tmp_path):
    rng = random.Random(11)
    corpus = tmp_path / "in"
    corpus.mkdir()
    old = [(f"a{i}", _doc(rng)) for i in range(40)]
    old.append(("a-copy", old[3][1]))  # an exact duplicate inside the first delivery
    _write(corpus / "2026-01.parquet", old)
    new = [(f"b{i}", _doc(rng)) for i in range(20)] + [
        ("b-exact", old[5][1]),
        ("b-near", _near_copy(rng, old[7][1])),
        ("b-inner", _doc(rng)),
        ("b-inner-copy", None),
    ]
    new[-1] = ("b-inner-copy", new[-2][1])
    return corpus, new


def _spec(make_job, corpus, output, **near):
    return make_job(corpus, output, output={"write_rejects": True}, stages={"near_dedup": {"enabled": True, **near}})


def test_refresh_dedups_new_shards_against_the_index(make_job, grown_input, tmp_path):
    corpus, new_docs = grown_input
    output = tmp_path / "out"
    layout = OutputLayout(str(output))
    first = run_job(_spec(make_job, corpus, output), progress=Progress(quiet=True))
    assert _removals(output) == {"a-copy": ("exact_duplicate", "a3")}
    old_key = first.report["shards"][0]["shard_key"]
    tokenize_marker_before = Path(layout.tokenize_marker(old_key)).read_text()
    annotate_marker_before = Path(layout.annotate_marker(old_key)).read_text()

    _write(corpus / "2026-02.parquet", new_docs)
    second = run_job(_spec(make_job, corpus, output), progress=Progress(quiet=True))

    marker = json.loads(Path(layout.dedup_marker).read_text())
    assert marker["index"] == {"indexed_shards": 1, "new_shards": 1}
    assert _removals(output) == {
        "a-copy": ("exact_duplicate", "a3"),
        "b-exact": ("exact_duplicate", "a5"),
        "b-near": ("near_duplicate", "a7"),
        "b-inner-copy": ("exact_duplicate", "b-inner"),
    }
    # The first delivery was neither re-annotated nor re-tokenized.
    assert Path(layout.annotate_marker(old_key)).read_text() == annotate_marker_before
    assert Path(layout.tokenize_marker(old_key)).read_text() == tokenize_marker_before
    assert "new shards (1) were deduplicated against the index of shards kept by earlier runs (1)" in (
        Path(second.report_uri).read_text()
    )
    assert second.report["balance"]["ok"] and second.report["totals"]["kept_docs"] == 40 + 21
    index = json.loads(Path(layout.index_manifest).read_text())
    assert {e["kept_docs"] for e in index["shards"].values()} == {40, 21}

    # Deduplicating both deliveries from scratch decides the same.
    fresh = tmp_path / "fresh"
    run_job(_spec(make_job, corpus, fresh), progress=Progress(quiet=True))
    assert _removals(fresh) == _removals(output)


def test_changed_dedup_config_rebuilds_the_index(make_job, grown_input, tmp_path):
    corpus, _ = grown_input
    output = tmp_path / "out"
    run_job(_spec(make_job, corpus, output), progress=Progress(quiet=True))
    run_job(_spec(make_job, corpus, output, threshold=0.7), progress=Progress(quiet=True))
    marker = json.loads(Path(OutputLayout(str(output)).dedup_marker).read_text())
    assert marker["index"] == {"indexed_shards": 0, "new_shards": 1}
    assert _removals(output) == {"a-copy": ("exact_duplicate", "a3")}


def _read_back(output: Path, manifest: dict) -> int:
    """Reads every token shard a manifest lists (Megatron's format, its own reader's logic),
    checks each file's sha256, and returns the number of documents (EOS tokens) in them."""
    import hashlib

    from tests.helpers.megatron_reader import read_indexed_dataset

    eos, documents = manifest["tokenizer"]["eos_id"], 0
    for shard in manifest["shards"]:
        for entry in shard["files"].values():
            assert hashlib.sha256((output / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
        dataset = read_indexed_dataset(output / shard["files"]["bin"]["path"][: -len(".bin")])
        documents += sum(int((seq == eos).sum()) for seq in dataset["sequences"])
    return documents


def test_refresh_commits_a_new_snapshot_and_leaves_the_old_one_readable(make_job, grown_input, tmp_path):
    from pipeline.tools.inspect import inspect_output

    corpus, new_docs = grown_input
    output = tmp_path / "out"
    first = run_job(_spec(make_job, corpus, output), progress=Progress(quiet=True))
    old = first.snapshot
    assert old.startswith("00001-") and json.loads((output / "latest.json").read_text())["snapshot"] == old
    old_files = {p: p.read_bytes() for p in (output / "snapshots" / old).rglob("*") if p.is_file()}
    old_manifest = json.loads((output / "snapshots" / old / "manifest.json").read_text())
    assert _read_back(output, old_manifest) == old_manifest["totals"]["documents"] == 40

    _write(corpus / "2026-02.parquet", new_docs)
    second = run_job(_spec(make_job, corpus, output), progress=Progress(quiet=True))
    new = second.snapshot
    assert new.startswith("00002-") and new != old
    assert json.loads((output / "latest.json").read_text()) == {
        "snapshot": new,
        "manifest": f"snapshots/{new}/manifest.json",
    }
    new_manifest = json.loads((output / "snapshots" / new / "manifest.json").read_text())
    assert json.loads((output / "manifest.json").read_text()) == new_manifest
    # 40 + 24 new, less the exact copy, the near copy of a7 and the copy inside the delivery
    assert _read_back(output, new_manifest) == new_manifest["totals"]["documents"] == 61
    # The first snapshot is untouched and still reads back whole.
    assert {p: p.read_bytes() for p in (output / "snapshots" / old).rglob("*") if p.is_file()} == old_files
    assert _read_back(output, old_manifest) == 40
    assert inspect_output(str(output), snapshot=old) and inspect_output(str(output))
    # Only the new shard was annotated and tokenized; the report says so.
    units = second.report["work_units"]
    assert units["annotate"] == {"total": 2, "reused": 1} and units["tokenize"] == {"total": 2, "reused": 1}
    assert "| annotate | 2 | 1 | 1 |" in Path(second.report_uri).read_text()

    # Nothing new: the same snapshot, nothing packed again, the pointer where it was.
    third = run_job(_spec(make_job, corpus, output), progress=Progress(quiet=True))
    assert third.snapshot == new and third.report["work_units"]["pack"]["reused"] == len(new_manifest["shards"])
    assert json.loads((output / "latest.json").read_text())["snapshot"] == new
