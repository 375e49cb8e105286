"""The sample corpus plants something for every stage to find, deterministically."""

import json
import re

import pyarrow.parquet as pq

from pipeline.cli import main
from pipeline.tools.sample import multilingual_sentences


def test_sample_corpus_plants_every_kind(tmp_path, capsys):
    out = tmp_path / "corpus"
    assert main(["sample", str(out), "--docs", "800", "--shards", "3", "--seed", "4"]) == 0
    assert "wrote 800 documents in 3 shards" in capsys.readouterr().out
    rows = {r["id"]: r for p in sorted(out.glob("*.parquet")) for r in pq.read_table(p).to_pylist()}
    assert len(rows) == 800
    assert {r["domain"] for r in rows.values()} == {"docs", "code", "web"}
    plants = json.loads((out / "_plants.json").read_text())
    assert all(plants[kind] for kind in ("exact_duplicates", "near_duplicates", "non_english", "pii", "junk"))
    for pair in plants["exact_duplicates"]:
        a, b = rows[pair["id"]]["text"], rows[pair["of"]]["text"]
        assert " ".join(a.lower().split()) == " ".join(b.lower().split())
    for pair in plants["near_duplicates"]:
        a, b = rows[pair["id"]]["text"].split(" "), rows[pair["of"]]["text"].split(" ")
        assert len(a) == len(b) and sum(x != y for x, y in zip(a, b)) <= max(1, len(a) // 40)
    languages = multilingual_sentences()
    for planted in plants["non_english"]:
        text = rows[planted["id"]]["text"]
        assert planted["lang"] != "en" and sum(s in text for s in languages[planted["lang"]]) >= 2
    pii_pattern = re.compile(r"@example\.org|555-01|192\.0\.2\.|4111 1111|DE89 3704|078-05-1120")
    assert all(pii_pattern.search(rows[i]["text"]) for i in plants["pii"])
    assert any(not rows[i]["text"].strip() for i in plants["junk"])


def test_sample_corpus_is_deterministic(tmp_path):
    for name in ("a", "b"):
        main(["sample", str(tmp_path / name), "--docs", "300", "--shards", "2", "--seed", "1"])
    for shard in ("part-00000.parquet", "part-00001.parquet"):
        assert pq.read_table(tmp_path / "a" / shard).equals(pq.read_table(tmp_path / "b" / shard))
