"""A whole ``refinery run`` with the stage on: blocked documents are rejected under the
output with their category, the report's counts balance and its section says per category
what was rejected and what the lists left out."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from tests.helpers import REPO
from tests.stages.url_blocklist.conftest import documents_spec, write_ut1


def test_refinery_run_rejects_blocked_documents_and_reports_them(tmp_path):
    urls = {
        "adult-1": "http://www.adult.com/page",
        "adult-2": "https://cdn.adult.com:8443/x.jpg?size=2",
        "adult-3": "http://prefix.org/a/b.html",
        "both": "http://sub.both.net/",
        "gambling": "http://BET.com./",
        "custom": "http://mine.example.org/",
        "near-miss": "http://notadult.com/",
        "prefix-miss": "http://prefix.org/ab",
        "no-url": None,
    }
    rows = [(key, url) for key, url in urls.items()] + [(f"clean-{i}", f"https://site{i}.org/p/{i}") for i in range(30)]
    input_dir = tmp_path / "input"
    input_dir.mkdir()
    for part in range(2):
        chunk = rows[part::2]
        pq.write_table(
            pa.table(
                {
                    "id": [k for k, _ in chunk],
                    "text": [f"Document {k} has a few words of text in it." for k, _ in chunk],
                    "url": pa.array([u for _, u in chunk], pa.string()),
                }
            ),
            input_dir / f"part-{part}.parquet",
        )
    root = write_ut1(
        tmp_path / "ut1",
        {
            "adult": {"domains": ["adult.com", "both.net", "co.uk", "bad host"], "urls": ["prefix.org/a"]},
            "gambling": {"domains": ["bet.com", "both.net"]},
        },
    )
    extra = tmp_path / "extra.txt"
    extra.write_text("# mine\nexample.org/not-a-domain\nmine.example.org\n")
    lists = [{"uri": str(root), "format": "ut1"}, {"uri": str(extra), "format": "domains", "category": "custom"}]
    out = tmp_path / "out"
    spec_path = tmp_path / "job.yaml"
    spec_path.write_text(yaml.safe_dump(documents_spec(str(input_dir), str(out), {"lists": lists})))

    ray_tmp = tempfile.mkdtemp(prefix="rr-", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    try:
        run = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "run", str(spec_path), "--set", "ray.num_cpus=1"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    log = run.stdout + run.stderr
    assert "url_blocklist: 4 domains and 1 URL prefixes in 3 categories" in log
    assert "skipped 1 public-suffix entry, which would block every domain under them: co.uk" in log
    assert "extra.txt: skipped 1 malformed line (line 2)" in log

    rejects = pa.concat_tables(pq.read_table(p) for p in sorted((out / "rejects" / "annotate").glob("*.parquet")))
    found = dict(zip(rejects.column("id").to_pylist(), rejects.column("reject_reason").to_pylist()))
    assert found == {
        "adult-1": "blocked_adult",
        "adult-2": "blocked_adult",
        "adult-3": "blocked_adult",
        "both": "blocked_adult",
        "gambling": "blocked_gambling",
        "custom": "blocked_custom",
    }
    assert set(rejects.column("reject_stage").to_pylist()) == {"url_blocklist"}

    report = json.loads((out / "report.json").read_text())
    assert report["balance"]["ok"]
    assert report["balance"]["input"] == len(rows)
    assert report["balance"]["kept"] + report["balance"]["rejected"] == len(rows)
    assert report["rejected"]["url_blocklist"] == {"blocked_adult": 4, "blocked_gambling": 1, "blocked_custom": 1}
    section = report["url_blocklist"]
    assert section["categories"] == {
        "adult": {"domains": 2, "urls": 1, "rejected": 4, "annotated": 0},
        "gambling": {"domains": 1, "urls": 0, "rejected": 1, "annotated": 0},
        "custom": {"domains": 1, "urls": 0, "rejected": 1, "annotated": 0},
    }
    assert section["public_suffixes_skipped"] == 1 and section["malformed_lines"] == 2
    markdown = (out / "report.md").read_text()
    assert "## URL blocklist" in markdown and "| adult | 2 | 1 | 4 | 0 |" in markdown
