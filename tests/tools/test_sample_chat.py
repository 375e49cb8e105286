"""`refinery sample-chat` and the SFT demo's job on it: every planted problem is found where
the demo says, and the same seed writes the same bytes."""

import json

import pyarrow.parquet as pq
import pytest
import yaml

from pipeline import run_job
from pipeline.cli import main
from pipeline.core.progress import Progress
from pipeline.tools.train_tokenizer import train_tokenizer
from tests.helpers import REPO

pytestmark = pytest.mark.usefixtures("ray_local")


def test_sft_demo_job_on_sample_chat_data(sample_corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["sample-chat", "data/chat", "--conversations", "120", "--seed", "4"]) == 0
    assert "planted: exact_duplicates" in capsys.readouterr().out
    first = {p.name: p.read_bytes() for p in (tmp_path / "data" / "chat").iterdir()}
    assert main(["sample-chat", "again", "--conversations", "120", "--seed", "4"]) == 0
    assert {p.name: p.read_bytes() for p in (tmp_path / "again").iterdir()} == first
    plants = json.loads((tmp_path / "data" / "chat" / "_plants.json").read_text())
    train_tokenizer(
        str(sample_corpus), "models/chat/tokenizer.json", vocab_size=2000, tokenizer_format="tokenizer.json"
    )

    spec = yaml.safe_load((REPO / "jobs" / "sft_quickstart.yaml").read_text())
    spec["stages"]["pack"]["shard_tokens"] = 20000
    # this session's Ray workers started elsewhere: the demo's relative paths, made absolute
    spec["input"]["uri"] = str(tmp_path / spec["input"]["uri"])
    spec["output"]["uri"] = str(tmp_path / spec["output"]["uri"])
    spec["stages"]["tokenize"]["model"] = str(tmp_path / spec["stages"]["tokenize"]["model"])
    result = run_job(spec, progress=Progress(quiet=True))
    report = result.report
    assert report["balance"]["ok"]
    assert report["rejected"]["validate"] == {"consecutive_user_turns": 1, "no_assistant_turn": 1}
    assert report["quarantined"] == {"malformed_openai_record": len(plants["malformed"])}
    assert report["rejected"]["exact_dedup"]["exact_duplicate"] >= len(plants["exact_duplicates"])
    assert report["chat"]["conversations"] == report["totals"]["kept_docs"] > 100
    assert report["pii_replaced"]["EMAIL_ADDRESS"] >= len(plants["pii"]) > 0
    out = tmp_path / "out" / "sft_quickstart"
    manifest = json.loads((out / "manifest.json").read_text())
    rows = [r for s in manifest["shards"] for r in pq.read_table(out / s["files"]["parquet"]["path"]).to_pylist()]
    assert sum(len(r["seq_lengths"]) for r in rows) == report["chat"]["conversations"]
    assert main(["inspect", "out/sft_quickstart"]) == 0
    assert "manifest verified" in capsys.readouterr().out
