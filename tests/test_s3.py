"""s3:// input and output through s3fs against a real S3 API (moto) on 127.0.0.1."""

import json

import pytest

from pipeline import run_job
from tests.megatron_reader import read_indexed_dataset

pytestmark = pytest.mark.usefixtures("ray_local")


def test_s3_round_trip(s3, s3_endpoint, sample_corpus, tokenizer_model, make_job, tmp_path):
    s3.mkdir("corpus-bucket")
    s3.mkdir("tokens-bucket")
    for path in sorted(sample_corpus.glob("*.parquet")):
        s3.put(str(path), f"corpus-bucket/crawl/{path.name}")
    s3.put(str(tokenizer_model), "corpus-bucket/models/tok.model")
    options = {"endpoint_url": s3_endpoint}
    job = make_job("s3://corpus-bucket/crawl", "s3://tokens-bucket/run1",
                   input={"storage_options": options}, output={"storage_options": options})
    job["stages"]["tokenize"].update(model="s3://corpus-bucket/models/tok.model", storage_options=options)

    result = run_job(job)

    assert result.report["balance"]["ok"] and result.report["totals"]["input_docs"] == 500
    s3.invalidate_cache()
    manifest = json.loads(s3.cat("tokens-bucket/run1/manifest.json"))
    assert manifest["totals"]["documents"] == result.report["totals"]["kept_docs"]
    local = tmp_path / "download"
    for shard in manifest["shards"]:
        for name in (shard["bin"], shard["idx"]):
            s3.get(f"tokens-bucket/run1/{name}", str(local / name))
        dataset = read_indexed_dataset(local / shard["bin"][: -len(".bin")])
        assert int(dataset["lengths"].sum()) == shard["tokens"] == dataset["num_tokens"]
    assert s3.exists("tokens-bucket/run1/report.md")
    assert not [p for p in s3.find("tokens-bucket/run1") if ".tmp-" in p or "_write_probe" in p]


def test_s3_input_with_local_output_matches_local_run(s3, s3_endpoint, sample_corpus, make_job, tmp_path):
    s3.mkdir("mirror-bucket")
    for path in sorted(sample_corpus.glob("*.parquet")):
        s3.put(str(path), f"mirror-bucket/c/{path.name}")
    remote = run_job(make_job("s3://mirror-bucket/c", tmp_path / "from_s3",
                              input={"storage_options": {"endpoint_url": s3_endpoint}}))
    local = run_job(make_job(sample_corpus, tmp_path / "from_disk"))
    assert remote.report["totals"] == local.report["totals"]
    remote_manifest = json.loads((tmp_path / "from_s3" / "manifest.json").read_text())
    local_manifest = json.loads((tmp_path / "from_disk" / "manifest.json").read_text())
    assert [s["bin_sha256"] for s in remote_manifest["shards"]] == [s["bin_sha256"] for s in local_manifest["shards"]]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_interrupted_write_publishes_nothing(where, s3, s3_endpoint, tmp_path):
    from pipeline import storage

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
