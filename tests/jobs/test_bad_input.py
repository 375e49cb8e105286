"""Bad input never crashes a run silently or drops data: each case is quarantined with a
reason naming the file and row, or fails with a message naming the file or key."""

import io
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline import run_job
from pipeline.cli import main
from pipeline.core.progress import Progress
from pipeline.core.storage import OutputNotWritable
from pipeline.runner import InputError

pytestmark = pytest.mark.usefixtures("ray_local")

FIFTY_MB = 50 * 1024 * 1024


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad") / "corpus"
    root.mkdir()
    good = [f"A perfectly ordinary document number {i} about rivers and hills." for i in range(20)]
    pq.write_table(pa.table({"id": [f"g{i}" for i in range(20)], "text": good}), root / "a_good.parquet")
    pq.write_table(
        pa.table({"id": ["m1", "m2"], "body": ["no text column", "here"]}), root / "b_missing_column.parquet"
    )
    pq.write_table(
        pa.table({"id": ["n1", "n2", "n3"], "text": ["fine one", None, "fine three"]}), root / "c_null_text.parquet"
    )
    pq.write_table(
        pa.table({"id": ["u1", "u2"], "text": pa.array([b"valid bytes", b"\xc3\x28 broken"], pa.binary())}),
        root / "d_binary.parquet",
    )
    (root / "e_corrupt.parquet").write_bytes(b"PAR1 this is not really parquet at all" * 10)
    pq.write_table(
        pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}), root / "f_empty.parquet"
    )
    pq.write_table(pa.table({"id": ["h1", "h2"], "text": ["y" * FIFTY_MB, "small neighbour"]}), root / "g_huge.parquet")
    return root


@pytest.fixture(scope="module")
def bad_run(bad_corpus, tokenizer_model, tmp_path_factory):
    from tests.helpers import job_dict

    out = tmp_path_factory.mktemp("bad_out") / "out"
    job = job_dict(str(bad_corpus), str(out), str(tokenizer_model))
    # By default an unreadable shard fails the run after annotate, naming every one...
    with pytest.raises(InputError) as error:
        run_job(job)
    message = str(error.value)
    assert message.startswith("2 of 7 input shards could not be read, more than input.max_unreadable_shards (0): ")
    assert (
        "b_missing_column.parquet: missing_text_column" in message
        and "e_corrupt.parquet: unreadable_parquet" in message
    )
    assert message.endswith("or set input.max_unreadable_shards: 2 to go on without them")
    assert not (out / "manifest.json").exists() and len(list((out / "work" / "annotate" / "_markers").iterdir())) == 7
    # ... and a re-run that allows them resumes: annotate is not redone.
    job["input"]["max_unreadable_shards"] = 2
    console = io.StringIO()
    result = run_job(job, progress=Progress(console))
    [done] = [line for line in console.getvalue().splitlines() if "] done: " in line]
    assert done.endswith("counts balance; 2 input shards (" + done.split("counts balance; 2 input shards (")[1])
    assert "could not be read, 1 with documents unknown" in done
    assert result.report["work_units"]["annotate"] == {"total": 7, "reused": 7}
    quarantine = [r for p in sorted((out / "quarantine").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    return out, result.report, quarantine


def _records(quarantine, name):
    return [r for r in quarantine if r["source_uri"].endswith(name)]


def test_counts_balance_with_every_kind_of_bad_input(bad_run, bad_corpus):
    out, report, _ = bad_run
    assert report["balance"]["ok"]
    # 20 + 2 + 3 + 2 + 0 + 2 readable rows; the corrupt file's rows are unknowable
    assert report["totals"]["input_docs"] == 29
    assert report["totals"]["kept_docs"] == 20 + 2 + 1 + 1
    # The unreadable shards are counted, with their bytes, where the counts are read.
    sizes = sum((bad_corpus / name).stat().st_size for name in ("b_missing_column.parquet", "e_corrupt.parquet"))
    totals = report["totals"]
    assert (totals["unreadable_shards"], totals["unreadable_bytes"]) == (2, sizes)
    assert totals["unreadable_shards_documents_unknown"] == 1
    assert report["balance"]["unreadable_shards"] == 2
    summary = f"2 input shards ({sizes / 1e6:,.1f} MB) could not be read, 1 with documents unknown"
    markdown = (out / "report.md").read_text()
    assert f"**{summary}" in markdown
    quarantine_table = markdown.split("## Quarantined, by reason")[1].split("\n\n")[1]
    assert "| unreadable_parquet | unknown (1 shard) |" in quarantine_table and "(none)" not in quarantine_table


def test_missing_text_column_quarantines_shard_with_row_count(bad_run):
    _, report, quarantine = bad_run
    [record] = _records(quarantine, "b_missing_column.parquet")
    assert record["quarantine_reason"] == "missing_text_column"
    assert "no column 'text'" in record["quarantine_detail"] and "body" in record["quarantine_detail"]
    assert report["quarantined"]["missing_text_column"] == 2


def test_null_text_row_named(bad_run):
    _, _, quarantine = bad_run
    [record] = _records(quarantine, "c_null_text.parquet")
    assert (record["row"], record["id"], record["quarantine_reason"]) == (1, "n2", "null_text")


def test_non_utf8_row_named(bad_run):
    _, _, quarantine = bad_run
    [record] = _records(quarantine, "d_binary.parquet")
    assert (record["row"], record["id"], record["quarantine_reason"]) == (1, "u2", "invalid_utf8")
    assert record["text_bytes"] == len(b"\xc3\x28 broken")


def test_corrupt_parquet_listed_in_report(bad_run):
    out, report, quarantine = bad_run
    [record] = _records(quarantine, "e_corrupt.parquet")
    assert record["quarantine_reason"] == "unreadable_parquet" and record["row"] is None
    [shard] = [s for s in report["quarantined_shards"] if s["uri"].endswith("e_corrupt.parquet")]
    assert shard["documents"] is None
    assert "e_corrupt.parquet" in (out / "report.md").read_text()


def test_empty_shard_is_fine(bad_run):
    _, report, _ = bad_run
    [row] = [s for s in report["shards"] if s["uri"].endswith("f_empty.parquet")]
    assert row["input_docs"] == 0 and row["balanced"]


def test_fifty_megabyte_document_quarantined_neighbour_kept(bad_run):
    _, report, quarantine = bad_run
    [record] = _records(quarantine, "g_huge.parquet")
    assert record["quarantine_reason"] == "document_too_large" and record["row"] == 0
    assert record["text_bytes"] == FIFTY_MB
    [row] = [s for s in report["shards"] if s["uri"].endswith("g_huge.parquet")]
    assert row["kept_docs"] == 1


def test_no_raw_text_in_quarantine_records(bad_run):
    """Quarantine records name the row and the reason; no field holds any of the text."""
    _, _, quarantine = bad_run
    assert {r["quarantine_reason"] for r in quarantine} == {
        "missing_text_column",
        "null_text",
        "invalid_utf8",
        "unreadable_parquet",
        "document_too_large",
    }
    fragments = ["no text column", "\xc3\x28 broken", "( broken", "y" * 100, "valid bytes"]
    for record in quarantine:
        assert "text" not in record
        for value in record.values():
            assert not any(fragment in str(value) for fragment in fragments), record


def test_on_bad_shard_fail_names_the_file_and_the_reason(make_job, tmp_path, capsys):
    """``refinery run`` with ``on_bad_shard: fail`` ends with one ``error:`` line that names
    the file, the reason and what to do, exit 1, and no traceback; ``--debug`` adds one.
    Mutation that fails it: run_named wraps UnitFailed like any other exception."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    pq.write_table(pa.table({"id": ["g1"], "text": ["An ordinary document."]}), corpus / "a_good.parquet")
    pq.write_table(pa.table({"id": ["m1"], "body": ["no text column"]}), corpus / "b_missing_column.parquet")
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(make_job(corpus, tmp_path / "out", input={"on_bad_shard": "fail"})))
    assert main(["run", str(spec)]) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert re.fullmatch(
        r"error: input shard \S*b_missing_column.parquet cannot be read: missing_text_column: .*"
        r"input.on_bad_shard is 'fail'; fix or remove the file \(committed work is kept\), or set it to 'quarantine'",
        errors[0],
    ), errors[0]
    assert "Traceback" not in err and err.count("b_missing_column.parquet") == 1
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert main(["--debug", "run", str(spec)]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_unwritable_output_fails_before_work(make_job, sample_corpus, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(OutputNotWritable, match="cannot write to output .*a-file/out"):
        run_job(make_job(sample_corpus, blocker / "out"))


def test_all_shards_bad_is_an_error(tmp_path, make_job):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "x.parquet").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"no input shard could be read \(1 of 1\): .*x.parquet: unreadable_parquet"):
        run_job(make_job(corpus, tmp_path / "out", input={"max_unreadable_shards": 5}))
