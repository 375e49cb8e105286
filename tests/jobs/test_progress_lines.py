"""A single big input file that cannot be split (gzip) still shows progress on the console:
the phase heartbeat adds how many documents the running units have read."""

import gzip
import json
import re

import pyarrow.parquet as pq
import yaml

from pipeline.tools.sample import write_sample_corpus
from tests.helpers import job_dict

BATCH_ROWS = 100


def test_heartbeat_counts_documents_read_inside_a_running_unit(tokenizer_model, tmp_path, start_job):
    """The only unit is held in language ID's fourth batch: three batches are read, the
    worker reported the first, and the heartbeat says so. Mutation that fails it: the
    worker writes no progress file (the heartbeat has only the elapsed time)."""
    write_sample_corpus(str(tmp_path / "sample"), num_docs=1500, num_shards=1, seed=2)
    [shard] = sorted((tmp_path / "sample").glob("*.parquet"))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    lines = [json.dumps(row, ensure_ascii=False) for row in pq.read_table(shard).to_pylist()]
    (corpus / "all.jsonl.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
    spec = tmp_path / "job.yaml"
    job = job_dict(str(corpus), str(tmp_path / "out"), str(tokenizer_model), input={"batch_rows": BATCH_ROWS})
    spec.write_text(yaml.safe_dump(job))

    function = "pipeline.stages.language.stage:LanguageId.process"
    running = start_job(spec, stop_in=function, env_changes={"REFINERY_STOP_AFTER": "3"})
    assert running.wait_until_stopped() == function
    line = running.wait_for_line(
        r"annotate: 0/1 shard done, \d+ s elapsed; [\d,]+ documents read by the units running$"
    )
    docs = int(re.search(r"; ([\d,]+) documents read", line.group(0)).group(1).replace(",", ""))
    assert BATCH_ROWS <= docs <= 3 * BATCH_ROWS, line.group(0)
    assert (tmp_path / "out" / "work" / "annotate" / "_progress").is_dir()
    running.kill()
