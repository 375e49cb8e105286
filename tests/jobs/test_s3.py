"""s3:// input and output through s3fs against a real S3 API (moto) on 127.0.0.1."""

import hashlib
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from pipeline import run_job
from pipeline.core import storage
from tests.helpers import REPO
from tests.helpers.megatron_reader import read_indexed_dataset

pytestmark = pytest.mark.usefixtures("ray_local")


def test_s3_round_trip(s3, s3_endpoint, sample_corpus, tokenizer_model, make_job, tmp_path):
    s3.mkdir("corpus-bucket")
    s3.mkdir("tokens-bucket")
    for path in sorted(sample_corpus.glob("*.parquet")):
        s3.put(str(path), f"corpus-bucket/crawl/{path.name}")
    s3.put(str(tokenizer_model), "corpus-bucket/models/tok.model")
    options = {"endpoint_url": s3_endpoint}
    job = make_job(
        "s3://corpus-bucket/crawl",
        "s3://tokens-bucket/run1",
        input={"storage_options": options},
        output={"storage_options": options},
    )
    job["stages"]["tokenize"].update(model="s3://corpus-bucket/models/tok.model", storage_options=options)

    result = run_job(job)

    assert result.report["balance"]["ok"] and result.report["totals"]["input_docs"] == 500
    s3.invalidate_cache()
    manifest = json.loads(s3.cat("tokens-bucket/run1/manifest.json"))
    assert manifest["totals"]["documents"] == result.report["totals"]["kept_docs"]
    local = tmp_path / "download"
    for shard in manifest["shards"]:
        for entry in shard["files"].values():
            s3.get(f"tokens-bucket/run1/{entry['path']}", str(local / entry["path"]))
        dataset = read_indexed_dataset(local / shard["files"]["bin"]["path"][: -len(".bin")])
        assert int(dataset["lengths"].sum()) == shard["tokens"] == dataset["num_tokens"]
    assert s3.exists("tokens-bucket/run1/report.md")
    from pipeline.cli import main

    assert main(["inspect", "s3://tokens-bucket/run1", "--endpoint-url", s3_endpoint]) == 0
    # the run left charts out (report.charts: false); refinery report makes the page on S3
    assert not s3.exists("tokens-bucket/run1/report.html")
    assert main(["report", "s3://tokens-bucket/run1", "--endpoint-url", s3_endpoint]) == 0
    s3.invalidate_cache()
    page = s3.cat("tokens-bucket/run1/report.html").decode()
    assert 'id="chart-funnel"' in page and s3.exists("tokens-bucket/run1/report_charts/funnel.svg")
    assert not [p for p in s3.find("tokens-bucket/run1") if ".tmp-" in p or "_write_probe" in p]


def test_s3_input_with_local_output_matches_local_run(s3, s3_endpoint, sample_corpus, make_job, tmp_path):
    s3.mkdir("mirror-bucket")
    for path in sorted(sample_corpus.glob("*.parquet")):
        s3.put(str(path), f"mirror-bucket/c/{path.name}")
    remote = run_job(
        make_job("s3://mirror-bucket/c", tmp_path / "from_s3", input={"storage_options": {"endpoint_url": s3_endpoint}})
    )
    local = run_job(make_job(sample_corpus, tmp_path / "from_disk"))
    assert remote.report["totals"] == local.report["totals"]
    # The snapshots' names differ (they hash the inputs' fingerprints: ETags here, mtimes
    # there); their shards are the same bytes.
    remote_manifest = json.loads((tmp_path / "from_s3" / "manifest.json").read_text())
    local_manifest = json.loads((tmp_path / "from_disk" / "manifest.json").read_text())

    def content(manifest):
        return [
            (s["name"], s["tokens"], {role: (e["bytes"], e["sha256"]) for role, e in s["files"].items()})
            for s in manifest["shards"]
        ]

    assert content(remote_manifest) == content(local_manifest) and content(local_manifest)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_interrupted_write_publishes_nothing(where, s3, s3_endpoint, tmp_path):
    from pipeline.core import storage

    if where == "s3":
        s3.mkdir("atomic-bucket")
        uri, options = "s3://atomic-bucket/dir/file.bin", storage.StorageOptions(endpoint_url=s3_endpoint)
    else:
        uri, options = str(tmp_path / "dir" / "file.bin"), None
    with pytest.raises(KeyboardInterrupt):
        with storage.atomic_writer(uri, options) as f:
            f.write(b"x" * (6 * 1024 * 1024))  # past s3fs's first multipart part
            raise KeyboardInterrupt
    s3.invalidate_cache()
    assert not storage.exists(uri, options)
    assert storage.list_files(uri.rsplit("/", 1)[0], options) == []
    storage.write_bytes(uri, b"complete", options)
    assert storage.read_bytes(uri, options) == b"complete"


@pytest.fixture
def fault_proxy(s3_endpoint):
    """Starts tests/helpers/fault_proxy.py, a proxy process in front of the moto server, with a
    schedule of transport faults; returns its endpoint and a reader of what it injected."""
    processes = []

    def start(schedule: list[dict]):
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.helpers.fault_proxy", s3_endpoint.rsplit(":", 1)[1], json.dumps(schedule)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        processes.append(process)
        endpoint = f"http://127.0.0.1:{int(process.stdout.readline())}"
        return endpoint, lambda: json.loads(urllib.request.urlopen(f"{endpoint}/__faults__").read())

    yield start
    for process in processes:
        process.kill()
        process.wait()


def _open_uploads(s3, bucket: str) -> list:
    return s3.call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads", [])


DATA = bytes(range(256)) * 50_000  # 12.8 MB: three 5 MB parts of a multipart upload


def test_transport_faults_the_client_retries_cost_no_upload_retry(s3, fault_proxy):
    """A dropped connection and a 503 SlowDown on parts, and a read cut short: the S3 client's
    own retries absorb them, and the bytes are exact."""
    s3.mkdir("faults-bucket")
    endpoint, injected = fault_proxy(
        [
            {"method": "PUT", "query": "partNumber", "nth": [1], "fault": "drop"},
            {"method": "PUT", "query": "partNumber", "nth": [2], "fault": "503"},  # the retry of the first
            {"method": "GET", "query": "shard.bin", "nth": [1], "fault": "truncate"},
        ]
    )
    uri, options = "s3://faults-bucket/tokens/shard.bin", storage.StorageOptions(endpoint_url=endpoint)
    waits = []
    storage.write_bytes_retrying(uri, DATA, options, storage.UploadConfig(part_size_mb=5), sleep=waits.append)
    assert storage.read_bytes(uri, options) == DATA
    assert waits == [] and [f["fault"] for f in injected()] == ["drop", "503", "truncate"]
    s3.invalidate_cache()
    assert s3.ls("faults-bucket/tokens") == ["faults-bucket/tokens/shard.bin"]
    assert _open_uploads(s3, "faults-bucket") == []


def test_upload_retried_after_the_client_gives_up_aborts_what_it_started(s3, fault_proxy, monkeypatch):
    """Completing the multipart upload fails (500) past the client's retries: the upload is
    retried whole, after a backoff, and the failed attempt's parts are aborted, not left
    behind (they were, before the writer aborted a failed completion)."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    s3.mkdir("retry-bucket")
    endpoint, injected = fault_proxy([{"method": "POST", "query": "uploadId", "nth": [1, 2], "fault": "500"}])
    uri, options = "s3://retry-bucket/tokens/shard.bin", storage.StorageOptions(endpoint_url=endpoint)
    waits = []
    upload = storage.UploadConfig(part_size_mb=5, attempts=4, backoff_s=0.5)
    storage.write_bytes_retrying(uri, DATA, options, upload, sleep=waits.append)
    assert waits == [0.5] and len(injected()) == 2
    s3.invalidate_cache()
    assert s3.cat("retry-bucket/tokens/shard.bin") == DATA
    assert s3.ls("retry-bucket/tokens") == ["retry-bucket/tokens/shard.bin"]
    assert _open_uploads(s3, "retry-bucket") == []


def test_an_upload_that_keeps_failing_names_the_file(s3, fault_proxy, monkeypatch):
    import s3fs

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's own retries off; s3fs's stay
    s3.mkdir("down-bucket")
    endpoint, injected = fault_proxy([{"method": "PUT", "nth": list(range(1, 100)), "fault": "503"}])
    options = storage.StorageOptions(endpoint_url=endpoint)
    waits = []
    with pytest.raises(OSError, match=r"upload of s3://down-bucket/x failed 2 times; last error: "):
        storage.write_bytes_retrying(
            "s3://down-bucket/x", b"x", options, storage.UploadConfig(attempts=2), waits.append
        )
    # s3fs retries SlowDown itself (S3FileSystem.retries times), then the upload is retried once.
    assert waits == [1.0] and len(injected()) == 2 * s3fs.S3FileSystem.retries
    s3.invalidate_cache()
    assert s3.ls("down-bucket") == []


def test_job_killed_while_packing_to_s3_leaves_no_manifest_and_rerun_completes(
    s3, s3_endpoint, sample_corpus, make_job, tmp_path
):
    """SIGKILL the whole job (driver and local Ray) while it uploads token shards; no manifest
    and no partial object may be visible, and a re-run finishes with the same bytes as an
    uninterrupted run."""
    import contextlib
    import hashlib
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    s3.mkdir("killed-bucket")
    options = {"endpoint_url": s3_endpoint}
    job = make_job(
        sample_corpus,
        "s3://killed-bucket/run",
        output={"storage_options": options},
        stages={"pack": {"seq_len": 64, "shard_tokens": 4000}},
    )
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(job))
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", str(spec)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 240
    markers = None
    while time.time() < deadline and process.poll() is None:
        s3.invalidate_cache()
        found = s3.glob("killed-bucket/run/work/pack/*/_markers/*.json")
        if found:
            markers = found[0].rsplit("/", 1)[0]
            break
        time.sleep(0.2)
    assert process.poll() is None, process.stderr.read().decode()[-2000:]
    # Ray's worker processes lead process groups of their own: kill every descendant, and
    # wait until all are gone, so that no task writes after the count below.
    import psutil

    victims = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    os.killpg(process.pid, signal.SIGKILL)
    for proc in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(victims, timeout=30)
    process.wait()
    s3.invalidate_cache()
    assert not s3.exists("killed-bucket/run/manifest.json") and not s3.exists("killed-bucket/run/latest.json")
    # Token files are staged under work/pack/ until their snapshot commits: snapshots/ holds
    # nothing a reader could take for data.
    assert not s3.find("killed-bucket/run/snapshots")
    started = storage.list_dirs("s3://killed-bucket/run/work/pack", storage.StorageOptions(endpoint_url=s3_endpoint))
    assert len(started) == 1 and markers.split("/")[-2] == started[0]  # the re-run will find and resume it
    staged = s3.find(f"killed-bucket/run/work/pack/{started[0]}/tokens")
    left = {path.rsplit("/", 1)[-1]: hashlib.sha256(s3.cat(path)).hexdigest() for path in staged}
    assert left
    done = len(s3.ls(markers))

    result = run_job(job)

    s3.invalidate_cache()
    manifest = json.loads(s3.cat("killed-bucket/run/manifest.json"))
    assert 0 < done < len(manifest["shards"])  # the kill landed mid-pack
    assert result.snapshot == started[0] and result.report["work_units"]["pack"]["reused"] == done
    final = {Path(e["path"]).name: e["sha256"] for s in manifest["shards"] for e in s["files"].values()}
    assert all(final[name] == digest for name, digest in left.items())  # staged files were complete, kept as they were
    s3.invalidate_cache()
    assert not s3.find(f"killed-bucket/run/work/pack/{started[0]}/tokens")  # all moved into the snapshot
    assert all(s3.exists(f"killed-bucket/run/{e['path']}") for s in manifest["shards"] for e in s["files"].values())
    assert result.report["balance"]["ok"]
    reference = run_job(
        make_job(sample_corpus, tmp_path / "uninterrupted", stages={"pack": {"seq_len": 64, "shard_tokens": 4000}})
    )
    assert json.loads(Path(reference.manifest_uri).read_text())["shards"] == manifest["shards"]


def test_refresh_in_the_same_process_sees_shards_that_landed_since(s3, s3_endpoint, sample_corpus, make_job):
    """A second run in one Python process (a notebook, a scheduler calling run_job) lists
    the grown S3 prefix afresh: no cached listing hides the new shards."""
    s3.mkdir("grow-bucket")
    shards = sorted(sample_corpus.glob("*.parquet"))
    for path in shards[:2]:
        s3.put(str(path), f"grow-bucket/c/{path.name}")
    options = {"endpoint_url": s3_endpoint}
    job = make_job(
        "s3://grow-bucket/c",
        "s3://grow-bucket/out",
        input={"storage_options": options},
        output={"storage_options": options},
    )
    first = run_job(job)
    for path in shards[2:]:
        s3.put(str(path), f"grow-bucket/c/{path.name}")
    second = run_job(job)
    assert second.report["work_units"]["annotate"] == {"total": len(shards), "reused": 2}
    assert second.snapshot != first.snapshot and second.report["balance"]["ok"]


def test_s3_documents_output(s3, s3_endpoint, sample_corpus, tmp_path):
    """A documents job on S3 writes the same document shards as on local disk, committed the
    same way (staged, then moved in server-side before the manifest)."""
    from tests.jobs.test_documents_output import documents_job, snapshot_files

    s3.mkdir("docs-bucket")
    for path in sorted(sample_corpus.glob("*.parquet")):
        s3.put(str(path), f"docs-bucket/in/{path.name}")
    options = {"endpoint_url": s3_endpoint}
    job = documents_job("s3://docs-bucket/in", "s3://docs-bucket/out", documents={"shard_bytes": 80_000})
    job["input"]["storage_options"] = options
    job["output"]["storage_options"] = options
    # with a synthetic domain, the report looks up what its duplicates duplicate in other shards
    job["stages"].setdefault("mix", {})["synthetic_domains"] = ["web"]
    remote = run_job(job)
    local_job = documents_job(sample_corpus, tmp_path / "local", documents={"shard_bytes": 80_000})
    local_job["stages"].setdefault("mix", {})["synthetic_domains"] = ["web"]
    local = run_job(local_job)
    assert remote.report["totals"]["kept_docs"] == local.report["totals"]["kept_docs"]
    comparison = remote.report["mixture"]["synthetic_vs_real"]
    assert comparison == local.report["mixture"]["synthetic_vs_real"]
    of = comparison["sides"]["synthetic"]["duplicates_of"]
    assert of and "unlocated" not in of, of
    s3.invalidate_cache()
    manifest = json.loads(s3.cat("docs-bucket/out/manifest.json"))
    assert manifest["kind"] == "documents" and len(manifest["shards"]) >= 2
    remote_hashes = {}
    for shard in manifest["shards"]:
        entry = shard["files"]["documents"]
        data = s3.cat(f"docs-bucket/out/{entry['path']}")
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        remote_hashes[entry["path"].rsplit("/", 1)[-1]] = entry["sha256"]
    local_hashes = {name.rsplit("/", 1)[-1]: sha for name, sha in snapshot_files(tmp_path / "local").items()}
    assert remote_hashes == local_hashes
    assert not [p for p in s3.find("docs-bucket/out/work/pack") if "/documents/" in p]
    from pipeline.cli import main

    assert main(["inspect", "s3://docs-bucket/out", "--endpoint-url", s3_endpoint]) == 0
