"""``refinery run`` with word lists: rejects written with their reasons, per-language files
following the language stage's labels, annotations in the documents output, and counts that
balance in the report."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.cli import main

pytestmark = pytest.mark.usefixtures("ray_local")

ENGLISH = [
    "The committee published its annual report on regional water supplies this morning.",
    "Our garden club meets every second Tuesday to trade seeds and talk about the weather.",
    "The new library opens next week with a reading room, a cafe and a children's corner.",
    "Engineers inspected the old bridge and found that the steel frame is still in good shape.",
    "She spent the afternoon repairing the fence while the dog watched from the porch.",
    "The football final drew a record crowd, and the home team won in extra time.",
    "After the football season ends, the stadium will host a series of summer concerts.",
    "Local farmers expect a good harvest thanks to the mild spring and the late rain.",
]
ENGLISH_SWEARING = [
    "Darn, the train was late again and I missed the first half of the football match.",
    "The printer jammed twice this morning, darn it, so the report went out after lunch.",
    "He said darn when the ladder slipped, but nobody was hurt and the roof got fixed.",
    "Well, darn, the bakery sold out of bread before nine o'clock on a Saturday morning.",
]
ENGLISH_MIST = [
    "A thin mist lay over the valley when the hikers set out before sunrise on Sunday.",
    "The morning mist lifted slowly, and by noon the whole lake was bright with sunshine.",
]
GERMAN_SWEARING = [
    "So ein Mist, der Zug hatte schon wieder eine Stunde Verspätung und ich kam zu spät.",
    "Der Drucker hat heute Morgen nur Mist gedruckt, deshalb kam der Bericht erst am Nachmittag.",
]
GERMAN = ["Die Bibliothek öffnet nächste Woche mit einem Lesesaal, einem Café und einer Kinderecke."]


def test_job_rejects_by_list_and_language_and_counts_balance(tmp_path):
    texts = ENGLISH + ENGLISH_SWEARING + ENGLISH_MIST + GERMAN_SWEARING + GERMAN
    ids = [f"doc{i:02d}" for i in range(len(texts))]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    pq.write_table(pa.table({"id": ids, "text": texts}), corpus / "part-0.parquet")
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "adult.txt").write_text("darn\n\ndang it\n", encoding="utf-8")
    (lists / "adult_de.txt").write_text("mist\nverdammt\n", encoding="utf-8")
    (lists / "topic.txt").write_text("football\nworld cup\n", encoding="utf-8")
    out = tmp_path / "out"
    spec = {
        "name": "word-lists",
        "input": {"uri": str(corpus), "id_column": "id"},
        "output": {"uri": str(out), "kind": "documents"},
        "stages": {
            "exact_dedup": {"enabled": False},
            "near_dedup": {"enabled": False},
            "word_lists": {
                "enabled": True,
                "lists": [
                    {
                        "name": "adult",
                        "files": {"*": str(lists / "adult.txt"), "de": str(lists / "adult_de.txt")},
                        "max_ratio": 0,
                    },
                    {"name": "topic", "files": {"*": str(lists / "topic.txt")}},
                ],
            },
        },
    }
    spec_path = tmp_path / "job.yaml"
    spec_path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    assert main(["run", str(spec_path)]) == 0

    swearing = {ids[texts.index(t)] for t in ENGLISH_SWEARING + GERMAN_SWEARING}
    rejects = pa.concat_tables(pq.read_table(p) for p in sorted((out / "rejects" / "annotate").glob("*.parquet")))
    assert set(rejects.column("id").to_pylist()) == swearing  # "mist" in English text is not the German list's
    assert set(rejects.column("reject_stage").to_pylist()) == {"word_lists"}
    assert set(rejects.column("reject_reason").to_pylist()) == {"word_list_adult"}

    report = json.loads((out / "report.json").read_text())
    balance = report["balance"]
    assert balance["ok"] and balance["input"] == len(texts)
    assert balance["rejected"] == len(swearing) and balance["kept"] == len(texts) - len(swearing)
    assert report["rejected"]["word_lists"] == {"word_list_adult": len(swearing)}
    section = report["word_lists"]
    assert section["adult"] == {"entries": {"*": 2, "de": 2}, "matched_kept": 0, "rejected": 6, "max_ratio": 0.0}
    assert section["topic"]["matched_kept"] == 2 and section["topic"]["rejected"] == 0  # one football doc was rejected
    assert "## Word lists" in (out / "report.md").read_text()

    manifest = json.loads((out / "manifest.json").read_text())
    documents = pa.concat_tables(pq.read_table(out / s["files"]["documents"]["path"]) for s in manifest["shards"])
    annotations = dict(zip(documents.column("id").to_pylist(), documents.column("word_list_counts").to_pylist()))
    assert annotations[ids[5]] == [("topic", 1)] and annotations[ids[0]] == []
    assert set(annotations) == set(ids) - swearing
