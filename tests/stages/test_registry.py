"""Capabilities register themselves: the spec, annotate, dedup and the report find them in
the registry, and a capability added from outside the tree (an entry point) runs in a real
job without any other change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import PACKING_SECTIONS, JobSpecError, StagesConfig, load_job_spec
from pipeline.stages.base import Capability, DocumentStage, StageConfig, StageOutput
from pipeline.stages.registry import RegistryError, capabilities, register

BUILT_IN = [
    "url_blocklist",
    "language",
    "word_lists",
    "quality",
    "classifier",
    "perplexity",
    "contamination",
    "pii",
    "exact_dedup",
    "near_dedup",
]


def test_every_capability_has_its_spec_section_in_order():
    keys = [cap.key for cap in capabilities()]
    assert keys == BUILT_IN
    assert list(StagesConfig.model_fields) == keys + ["tokenize", "mix", "pack"]
    assert set(PACKING_SECTIONS) == {"tokenize", "mix", "pack"}
    for cap in capabilities():
        assert StagesConfig.model_fields[cap.key].annotation is cap.config
        for stage in (cap.document_stage, cap.global_stage):
            assert stage is None or stage.name == cap.key


def test_registration_rejects_incomplete_or_clashing_capabilities():
    class NoStage(Capability):
        key, config, order = "no_stage", StageConfig, 5

    with pytest.raises(RegistryError, match="neither a document stage nor a global stage"):
        register(NoStage)

    class Named(DocumentStage):
        name = "other"

        def process(self, docs):
            return StageOutput(docs)

    class Misnamed(Capability):
        key, config, order, document_stage = "misnamed", StageConfig, 5, Named

    with pytest.raises(RegistryError, match="is named 'other'"):
        register(Misnamed)

    class Language(Capability):
        key, config, order, document_stage = "language", StageConfig, 5, Named

    Named.name = "language"
    with pytest.raises(RegistryError, match="registered twice"):
        register(Language)
    assert [cap.key for cap in capabilities()] == BUILT_IN


def test_checks_across_sections_come_from_the_configs(tokenizer_model):
    base = {
        "name": "x",
        "input": {"uri": "in"},
        "output": {"uri": "out"},
        "stages": {"tokenize": {"model": str(tokenizer_model)}},
    }
    spec = json.loads(json.dumps(base))
    spec["stages"]["perplexity"] = {"enabled": True}
    with pytest.raises(JobSpecError, match=r"stages.perplexity.models: name at least one language"):
        load_job_spec(spec, check_files=False)
    spec["stages"]["near_dedup"] = {"survivor": "lowest_perplexity"}
    spec["stages"]["perplexity"] = {"enabled": False}
    with pytest.raises(JobSpecError, match=r"stages.near_dedup.survivor: lowest_perplexity needs stages.perplexity"):
        load_job_spec(spec, check_files=False)


PLUGIN = '''
"""A capability that lives outside Refinery's tree: rejects documents containing a word."""

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core import columns as cols
from pipeline.core import storage
from pipeline.stages.base import Capability, DocumentStage, ReportSection, StageConfig, StageOutput
from pipeline.stages.registry import register


class WordFilterConfig(StageConfig):
    enabled: bool = False
    word: str = "lantern"
    wordlist: str | None = None

    def model_files(self, key):
        return {f"{key}.wordlist": (self.wordlist, storage.StorageOptions())} if self.wordlist else {}

    def missing_file_hint(self, path):
        return " (write one word per line)"


class WordFilter(DocumentStage):
    name = "word_filter"

    def process(self, docs):
        hit = pc.match_substring(docs.column(cols.TEXT), self.config.word)
        reasons = pc.if_else(hit, "contains_word", pa.nulls(docs.num_rows, pa.string()))
        return StageOutput(docs.append_column("word_free", pc.invert(hit)), reasons)

    def count_kept(self, kept):
        return {"kept": kept.num_rows}


@register
class WordFilterCapability(Capability):
    key = "word_filter"
    config = WordFilterConfig
    order = 25
    document_stage = WordFilter

    @classmethod
    def report_section(cls, config, run):
        kept = run.kept_counts(cls.key).get("kept", 0)
        return ReportSection(cls.key, {"kept": kept}, ["## Word filter", "", f"{kept:,} documents passed."])
'''

DRIVER = """
import json, sys
from pipeline import run_job
from pipeline.config import JobSpecError, load_job_spec

spec = json.loads(sys.argv[1])
bad = json.loads(sys.argv[1])
bad["stages"]["word_filter"]["wrod"] = "x"
try:
    load_job_spec(bad)
except JobSpecError as exc:
    print("ERROR", str(exc).replace("\\n", " "))
missing = json.loads(sys.argv[1])
missing["stages"]["word_filter"]["wordlist"] = "no-such-list.txt"
try:
    load_job_spec(missing)
except JobSpecError as exc:
    print("ERROR", str(exc).replace("\\n", " "))
result = run_job(spec)
print("REPORT", json.dumps(result.report))
"""


def test_a_capability_added_from_outside_runs_in_a_real_job(tmp_path, tokenizer_model):
    plugin = tmp_path / "plugin"
    (plugin / "refinery_word_filter").mkdir(parents=True)
    (plugin / "refinery_word_filter" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    dist = plugin / "refinery_word_filter-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: refinery-word-filter\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[refinery.stages]\nword_filter = refinery_word_filter\n")

    texts = [f"document {i} about {'a lantern' if i % 4 == 0 else 'a kettle'} and other things" for i in range(40)]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(40)], "text": texts}), corpus / "part-0.parquet")
    spec = {
        "name": "plugin",
        "input": {"uri": str(corpus), "id_column": "id"},
        "output": {"uri": str(tmp_path / "out")},
        "ray": {"num_cpus": 2},
        "stages": {
            "language": {"enabled": False},
            "near_dedup": {"enabled": False},
            "word_filter": {"enabled": True, "word": "lantern"},
            "tokenize": {"model": str(tokenizer_model)},
            "pack": {"seq_len": 64},
        },
    }
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(plugin), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "RAY_AUTH_MODE": "disabled",
    }
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    errors = [line for line in done.stdout.splitlines() if line.startswith("ERROR")]
    assert "stages.word_filter.wrod: unknown key; did you mean 'word'?" in errors[0]
    assert "stages.word_filter.wordlist: file not found: 'no-such-list.txt' (write one word per line)" in errors[1]
    report = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("REPORT"))[7:])
    assert report["rejected"]["word_filter"] == {"contains_word": 10}
    assert report["word_filter"] == {"kept": 30} and report["balance"]["ok"]
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "## Word filter" in markdown and "30 documents passed." in markdown
    annotated = pq.read_table(next((tmp_path / "out" / "work" / "annotate").glob("*.parquet")))
    assert "word_free" in annotated.column_names and all(annotated.column("word_free").to_pylist())


def test_a_global_stage_the_settings_leave_idle_is_left_out():
    """The classifier's global stage cuts at run-wide percentiles: a spec with thresholds
    only has no dedup work for it."""
    from pipeline.config import load_job_spec
    from pipeline.stages.registry import global_stages

    entry = {"name": "q", "model": "m.bin", "label": "hq", "min_score": 0.5}
    spec = {
        "name": "t",
        "input": {"uri": "in"},
        "output": {"uri": "out", "kind": "documents"},
        "stages": {"classifier": {"enabled": True, "classifiers": [entry]}},
    }
    assert "classifier" not in [s.name for s in global_stages(load_job_spec(spec, check_files=False))]
    spec["stages"]["classifier"]["classifiers"] = [{**entry, "min_score": None, "min_percentile": 90}]
    stages = global_stages(load_job_spec(spec, check_files=False))
    assert [s.name for s in stages] == ["classifier", "exact_dedup", "near_dedup"]
    assert stages[0].index_columns == ("classifier_q",)
