"""Crash-safe resume: a job SIGKILLed in the middle of any phase, then re-run,
ends with the same bytes and the same counts as a run that was never interrupted; a Ray
worker killed in the middle of annotating a shard is retried and changes nothing.

The jobs run on real local Ray over real Parquet. The killed jobs are ``refinery run``
subprocesses in their own session, so that one ``killpg(SIGKILL)`` takes the driver and
its whole local Ray at once, as a crash or an OOM kill of the machine's job would.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import threading
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline import run_job
from pipeline.core.layout import OutputLayout, shard_key
from pipeline.core.progress import Progress
from tests.helpers import job_dict
from tests.helpers.jobs import WAIT_S, running

SAMPLE_SHARDS = 10
INPUT_SHARDS = SAMPLE_SHARDS + 1  # and one shard with rows that are quarantined


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Ten shards of the sample corpus (empty texts, exact duplicates, three domains), and
    one more whose first rows already hold a reject and a quarantined row, so that its
    annotate task writes to both sinks for most of its run."""
    from pipeline.tools.sample import write_sample_corpus

    out = tmp_path_factory.mktemp("resume") / "corpus"
    write_sample_corpus(str(out), num_docs=1500, num_shards=SAMPLE_SHARDS, seed=7)
    rows = 300
    texts = [
        None
        if i % 9 == 4
        else ""
        if i % 11 == 2
        else f"Extra page {i}. " + " ".join(f"Sentence {j} of page {i} says little." for j in range(3 + i % 5))
        for i in range(rows)
    ]
    table = pa.table(
        {
            "id": [None if i == 7 else f"extra-{i}" for i in range(rows)],
            "text": texts,
            "domain": ["web"] * rows,
            "url": [f"https://extra.example.com/{i}" for i in range(rows)],
        },
        schema=pa.schema([("id", pa.string()), ("text", pa.string()), ("domain", pa.string()), ("url", pa.string())]),
    )
    pq.write_table(table, out / f"part-{SAMPLE_SHARDS:05d}.parquet")
    return out


def _job(corpus: Path, output: Path, tokenizer: Path) -> dict:
    # Small row batches, so that a shard's sinks are open for most of its annotate task;
    # weights that downsample two domains, so that the mix phase writes rejects too; small
    # output shards, so that the pack phase has many units.
    return job_dict(
        str(corpus),
        str(output),
        str(tokenizer),
        input={"batch_rows": 16},
        output={"write_rejects": True},
        stages={
            "pack": {"seq_len": 64, "shard_tokens": 6000},
            "mix": {"weights": {"docs": 0.3, "code": 0.4, "web": 0.3}},
        },
    )


@pytest.fixture(scope="module")
def reference(ray_local, corpus, tokenizer_model, tmp_path_factory):
    """The same job, never interrupted (in this process, on the session's 2-CPU Ray)."""
    out = tmp_path_factory.mktemp("resume-reference") / "out"
    result = run_job(_job(corpus, out, tokenizer_model), progress=Progress(quiet=True))
    assert result.report["balance"]["ok"]
    return out, result


def _count(directory: Path, pattern: str = "*.json") -> int:
    return len(list(directory.glob(pattern)))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sink(out: Path, name: str, columns: list[str]) -> list[dict]:
    """The rows of every committed file of a sink (``rejects/<stage>``, ``quarantine``); the
    directory read as a Parquet dataset, as a reader of the sink would, holds the same rows."""
    directory = out / name
    if not directory.exists():
        return []
    rows = [r for p in sorted(directory.glob("*.parquet")) for r in pq.read_table(p, columns=columns).to_pylist()]
    assert pads.dataset(directory, format="parquet").count_rows() == len(rows), (
        f"{name}: files other than its committed ones: {sorted(p.name for p in directory.iterdir())}"
    )
    return rows


def _check_sinks(out: Path, report: dict) -> tuple[set, set]:
    """Every reject and quarantined row is in its sink exactly once, and the sinks hold as many
    as the report counts, by stage and reason."""
    rejects = [
        r
        for stage in ("annotate", "dedup", "mix")
        for r in _sink(out, f"rejects/{stage}", ["id", "shard_key", "row", "reject_stage", "reject_reason"])
    ]
    documents = [(r["shard_key"], r["row"]) for r in rejects]
    assert len(set(documents)) == len(documents), "a rejected document is in the rejects twice"
    assert len({r["id"] for r in rejects}) == len(rejects)
    assert len(rejects) == report["totals"]["rejected_docs"]
    by_reason: dict[str, dict[str, int]] = {}
    for (stage, reason), n in collections.Counter((r["reject_stage"], r["reject_reason"]) for r in rejects).items():
        by_reason.setdefault(stage, {})[reason] = n
    assert by_reason == report["rejected"]
    quarantined = _sink(out, "quarantine", ["shard_key", "row", "id", "quarantine_reason"])
    rows = [(r["shard_key"], r["row"]) for r in quarantined]
    assert len(set(rows)) == len(rows) == report["totals"]["quarantined_docs"] > 0
    return (
        {(r["shard_key"], r["row"], r["id"], r["reject_stage"], r["reject_reason"]) for r in rejects},
        {(r["shard_key"], r["row"], r["id"], r["quarantine_reason"]) for r in quarantined},
    )


def _check_same_output(out: Path, reference: tuple[Path, object]) -> dict:
    """The committed output equals the uninterrupted run's: snapshot, counts, sinks, and every
    token file byte for byte."""
    reference_out, reference_result = reference
    report = json.loads((out / "report.json").read_text())
    assert report["balance"]["ok"]
    balance = report["balance"]
    assert balance["input"] == balance["kept"] + balance["rejected"] + balance["quarantined"]
    for key in ("totals", "rejected", "quarantined", "balance", "languages_after_annotate", "snapshot", "mixture"):
        assert report[key] == reference_result.report[key], key
    snapshot = report["snapshot"]
    assert json.loads((out / "latest.json").read_text()) == {
        "snapshot": snapshot,
        "manifest": f"snapshots/{snapshot}/manifest.json",
    }
    manifest = json.loads((out / "manifest.json").read_text())
    reference_manifest = json.loads((reference_out / "manifest.json").read_text())
    assert manifest == json.loads((out / "snapshots" / snapshot / "manifest.json").read_text())
    assert manifest["snapshot"] == snapshot and manifest["shards"] == reference_manifest["shards"]
    assert manifest["totals"] == reference_manifest["totals"]
    assert manifest["totals"]["documents"] == report["totals"]["kept_docs"]
    for shard in manifest["shards"]:
        for entry in shard["files"].values():
            data = (out / entry["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
            assert data == (reference_out / entry["path"]).read_bytes()
    tokens = sorted(p.name for p in (out / "snapshots" / snapshot / "tokens").iterdir())
    assert tokens == sorted(p.name for p in (reference_out / "snapshots" / snapshot / "tokens").iterdir())
    assert _check_sinks(out, report) == _check_sinks(reference_out, reference_result.report)
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name], "partly written files were left"
    return report


# Where the dedup phase is killed: inside near dedup's global pass (one Ray Data plan with no
# commits of its own), in its connected components, after its bands were sorted; then while
# index shards are written after the removals.
DEDUP_STEPS = [
    ("components", "pipeline.stages.near_dedup.components:_large_star"),
    ("index", "pipeline.phases.dedup:ShardIndexer.run"),
]


def test_job_killed_in_every_phase_resumes_to_the_same_output(corpus, tokenizer_model, reference, tmp_path, start_job):
    """One job, SIGKILLed (driver and local Ray) once in each phase, each re-run resuming the
    last; then it finishes. Each kill is checked to have landed inside its phase:

    - annotate, tokenize, mix, pack (one unit per input or output shard): after the phase's
      start line and at least one of its units committed, before all of them did
      (``1 <= markers < units``); the re-run reports exactly those as already committed,
      and (pack) leaves the killed run's markers and token files as they were; those files
      are staged under work/pack/, and snapshots/ has nothing until the commit.
    - dedup, one global pass with no finer units to commit: twice, with a process of the job
      held inside one step (tests/helpers/stop_in): near dedup's connected components, then
      the writing of index shards after the removals. Each time every annotate marker is there, no dedup commit
      marker, index manifest or tokenize work, and removals only in the last; each re-run
      does the pass again from scratch.

    To land inside phases whose units take tens of milliseconds (mix), the driver is held
    stopped between short slices while the first unit runs (Job.kill_after_first_unit).

    No run before the last leaves a report, a snapshot manifest, ``manifest.json`` or
    ``latest.json``. The finished output equals an uninterrupted run's: the same snapshot,
    byte-identical token files, equal totals, and every rejected or quarantined document
    in its sink exactly once. Last, a refresh with other pack settings, killed while it
    packs its new snapshot, leaves ``latest.json`` on the committed one."""
    out = tmp_path / "out"
    layout = OutputLayout(str(out))
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(_job(corpus, out, tokenizer_model)))
    work = out / "work"

    def nothing_committed() -> None:
        assert not (out / "latest.json").exists() and not (out / "manifest.json").exists()
        assert not (out / "report.json").exists() and not list(out.glob("snapshots/*/manifest.json"))

    # 1. annotate
    job = start_job(spec)
    job.wait_for_line(rf"\[refinery\] annotate: {INPUT_SHARDS} shards$")
    job.kill_after_first_unit(lambda: _count(work / "annotate" / "_markers"))
    annotated = _count(work / "annotate" / "_markers")
    assert 1 <= annotated < INPUT_SHARDS
    assert not (work / "dedup").exists()
    nothing_committed()

    # 2. dedup, killed in each step of near dedup's global pass, then while indexing
    for step, function in DEDUP_STEPS:
        job = start_job(spec, stop_in=function)
        if step == DEDUP_STEPS[0][0]:  # the first re-run finishes annotate
            job.wait_for_line(rf"annotate: {INPUT_SHARDS} shards \({annotated} already committed, skipped\)$")
        else:
            job.wait_for_line(rf"annotate: {INPUT_SHARDS} shards \({INPUT_SHARDS} already committed, skipped\)$")
        job.wait_for_line(r"\[refinery\] dedup: 1 global pass$")
        assert job.wait_until_stopped() == function, step
        job.kill()
        assert _count(work / "annotate" / "_markers") == INPUT_SHARDS
        assert not Path(layout.dedup_marker).exists() and not Path(layout.index_manifest).exists(), step
        # the removals are written before the index, and only then
        assert any((work / "dedup").rglob("*.parquet")) == (step == "index"), step
        assert not (work / "tokenize").exists()
        nothing_committed()

    # 3. tokenize
    job = start_job(spec)
    job.wait_for_line(rf"annotate: {INPUT_SHARDS} shards \({INPUT_SHARDS} already committed, skipped\)$")
    job.wait_for_line(r"\[refinery\] dedup: 1 global pass$")  # not "already committed"
    job.wait_for_line(rf"\[refinery\] tokenize: {INPUT_SHARDS} shards$")
    # dedup ran its Ray Data executions in this process: none of Ray Data's false alarms
    # (progress bars off, "no available CPUs" between back-to-back executions) was printed
    assert not [line for line in job.lines if "Progress bars disabled" in line or "available CPUs" in line]
    job.kill_after_first_unit(lambda: _count(work / "tokenize" / "_markers"))
    tokenized = _count(work / "tokenize" / "_markers")
    assert 1 <= tokenized < INPUT_SHARDS
    assert Path(layout.dedup_marker).exists() and not (work / "mix").exists()
    nothing_committed()

    # 4. mix
    job = start_job(spec)
    job.wait_for_line(r"dedup: already committed for these annotated shards, skipped$")
    job.wait_for_line(rf"tokenize: {INPUT_SHARDS} shards \({tokenized} already committed, skipped\)$")
    job.wait_for_line(rf"\[refinery\] mix: {INPUT_SHARDS} shards$")
    job.kill_after_first_unit(lambda: _count(work / "mix" / "_markers"))
    mixed = _count(work / "mix" / "_markers")
    assert 1 <= mixed < INPUT_SHARDS
    assert not Path(layout.mix_plan).exists() and not (work / "pack").exists()
    nothing_committed()

    # 5. pack
    job = start_job(spec)
    job.wait_for_line(rf"mix: {INPUT_SHARDS} shards \({mixed} already committed, skipped\)$")
    output_shards = int(job.wait_for_line(r"\[refinery\] pack: (\d+) output shards$").group(1))
    assert output_shards >= 10
    snapshot = job.wait_for_line(r"\[refinery\] pack: snapshot (\S+)$").group(1)
    markers = work / "pack" / snapshot / "_markers"
    job.kill_after_first_unit(lambda: _count(markers))
    packed = _count(markers)
    assert 1 <= packed < output_shards
    nothing_committed()
    left_markers = {p.name: p.read_bytes() for p in markers.glob("*.json")}
    left_tokens = {
        p.name: _sha256(p)
        for p in (work / "pack" / snapshot / "tokens").glob("shard-*")
        if re.fullmatch(r"shard-\d{5}\.(bin|idx)", p.name)
    }
    assert left_tokens
    # Uncommitted token files are staged under work/: nothing under snapshots/ for a reader
    # that globs it or takes the highest number to mistake for data.
    assert not (out / "snapshots").exists()

    # 6. the run that finishes
    job = start_job(spec)
    printed = job.finish()
    assert f"pack: {output_shards} output shards ({packed} already committed, skipped)" in printed
    report = _check_same_output(out, reference)
    assert report["snapshot"] == snapshot
    units = report["work_units"]
    assert units["pack"] == {"total": output_shards, "reused": packed}
    for phase in ("annotate", "tokenize", "mix"):
        assert units[phase] == {"total": INPUT_SHARDS, "reused": INPUT_SHARDS}, phase
    # What the killed pack run committed was kept as it was, not packed again.
    assert {p.name: p.read_bytes() for p in markers.glob("*.json") if p.name in left_markers} == left_markers
    manifest = json.loads((out / "manifest.json").read_text())
    final = {Path(e["path"]).name: e["sha256"] for s in manifest["shards"] for e in s["files"].values()}
    assert {name: final[name] for name in left_tokens} == left_tokens

    # 7. a refresh with other pack settings, killed while packing its own snapshot
    def snapshot_files() -> dict[Path, str]:
        return {p.relative_to(out): _sha256(p) for p in (out / "snapshots" / snapshot).rglob("*") if p.is_file()}

    committed = snapshot_files()
    pointers = {name: (out / name).read_bytes() for name in ("latest.json", "manifest.json", "report.json")}
    job = start_job(spec, "--set", "stages.pack.shard_tokens=9000")
    refresh_shards = int(job.wait_for_line(r"\[refinery\] pack: (\d+) output shards$").group(1))
    refresh = job.wait_for_line(r"\[refinery\] pack: snapshot (\S+)$").group(1)
    assert refresh.startswith("00002-")
    job.kill_after_first_unit(lambda: _count(work / "pack" / refresh / "_markers"))
    assert 1 <= _count(work / "pack" / refresh / "_markers") < refresh_shards
    assert not (out / "snapshots" / refresh).exists() and any((work / "pack" / refresh / "tokens").iterdir())
    assert {name: (out / name).read_bytes() for name in pointers} == pointers
    assert snapshot_files() == committed
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == [snapshot]


def test_worker_killed_while_annotating_is_retried(ray_local, corpus, tokenizer_model, reference, tmp_path):
    """SIGKILL the Ray worker process that is annotating an input shard, caught in the middle
    of writing that shard's rejects or quarantine file (it has the input shard open and a
    temporary file of a sink, and the shard has no marker yet); Ray runs the task again
    (``max_retries``), the job finishes, counts balance and the output equals an
    uninterrupted run's, sinks included. Only workers of this session's own Ray are looked
    at: descendants of this process, running a ``ray::_run_item`` task."""
    out = tmp_path / "out"
    markers = out / "work" / "annotate" / "_markers"
    inputs = {os.path.realpath(p): shard_key(str(corpus), str(p)) for p in corpus.glob("*.parquet")}
    sinks = tuple(os.path.realpath(out / name) + os.sep for name in ("rejects", "quarantine"))
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = run_job(_job(corpus, out, tokenizer_model), progress=Progress(quiet=True))
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    me = psutil.Process()
    victim = None
    deadline = time.monotonic() + WAIT_S
    while victim is None and thread.is_alive() and time.monotonic() < deadline:
        for worker in me.children(recursive=True):
            try:
                if not " ".join(worker.cmdline()).startswith("ray::_run_item"):
                    continue
                files = [f.path for f in worker.open_files()]
            except psutil.Error:
                continue
            annotating = [inputs[path] for path in files if path in inputs]
            writing = [path for path in files if path.startswith(sinks) and ".tmp-" in path]
            if not annotating or not writing or (markers / f"{annotating[0]}.json").exists():
                continue
            killed_at = time.time_ns()
            worker.kill()
            try:
                worker.wait(timeout=30)
            except psutil.TimeoutExpired:
                pytest.fail(f"worker {worker.pid} did not die")
            # The task had not finished: its marker, written last, is not there. (A retry
            # starts the task again on another worker, far later than this check.)
            if not (markers / f"{annotating[0]}.json").exists():
                victim = (worker.pid, annotating[0], writing, killed_at)
                break
        time.sleep(0.005)
    thread.join(timeout=WAIT_S)
    assert not thread.is_alive(), "the job did not finish"
    assert "error" not in outcome, outcome.get("error")
    assert victim is not None, "no worker was caught writing an annotated shard's sinks"
    pid, key, writing, killed_at = victim
    assert not psutil.pid_exists(pid) or not running(psutil.Process(pid))
    # The shard was annotated again after the kill, by Ray's retry of the task.
    assert (markers / f"{key}.json").stat().st_mtime_ns > killed_at, f"killed while writing {writing}"
    assert _count(markers) == INPUT_SHARDS
    result = outcome["result"]
    assert result.report["work_units"]["annotate"] == {"total": INPUT_SHARDS, "reused": 0}
    _check_same_output(out, reference)
