"""Every spec in jobs/ passes `refinery validate` with the files it names really there.

Local specs validate in a temporary working directory holding a corpus, a tokenizer, a
KenLM model and eval sets trained or written for the purpose; specs on s3:// validate
against the local S3 server (moto on 127.0.0.1) with those files uploaded under the bucket
names the spec uses, the endpoint given with --set. Validation looks at the files: without
one of them it fails naming the key. A misspelled key fails naming it too.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.cli import main
from pipeline.config import load_job_spec
from tests.helpers import REPO

JOBS = REPO / "jobs"
SPECS = sorted(JOBS.glob("*.yaml"))

_WORDS = (
    "the of and to in is that it was for on are as with his they at be this from have or by one had not "
    "but what all were when we there can an your which their said if do will each about how up out them "
    "then she many some so these would other into has more her two like him see time could no make than "
    "first been its who now people my made over did down only way find use may water long little very "
    "after words called just where most know river garden village morning letter market winter"
).split()


def _spec(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _is_remote(spec: dict[str, Any]) -> bool:
    return any(s.startswith("s3://") for s in _strings(spec))


LOCAL_SPECS = [p for p in SPECS if not _is_remote(_spec(p))]
S3_SPECS = [p for p in SPECS if _is_remote(_spec(p))]


# ---------------------------------------------------------------------------------------------
# Real files for the specs to name


def _documents(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        sentences = [
            " ".join(rng.choices(_WORDS, k=rng.randint(8, 16))).capitalize() + "." for _ in range(rng.randint(3, 8))
        ]
        domain = ("web", "docs", "code")[i % 3]
        rows.append(
            {
                "id": f"doc-{seed}-{i:05d}",
                "text": "\n".join(sentences),
                "domain": domain,
                "url": f"https://{domain}.example.org/{i}",
            }
        )
    return rows


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    """A three-shard Parquet corpus, a sentencepiece model trained on it, a KenLM model
    (ARPA) with its sentencepiece model, and GSM8K- and HumanEval-shaped eval sets."""
    from pipeline.tools.train_lm import train_perplexity_model
    from pipeline.tools.train_tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("spec-assets")
    corpus = root / "corpus"
    corpus.mkdir()
    rows = _documents(240, seed=1)
    for shard in range(3):
        pq.write_table(pa.Table.from_pylist(rows[shard::3]), corpus / f"part-{shard:05d}.parquet")
    tokenizer = root / "tokenizer.model"
    train_tokenizer(str(corpus), str(tokenizer), vocab_size=500, seed=0)
    lm = train_perplexity_model(str(corpus), str(root / "lm"), "en", order=3, sp_model=str(tokenizer))
    gsm8k = root / "gsm8k_test.jsonl"
    gsm8k.write_text(
        "".join(
            json.dumps(
                {
                    "question": f"A garden has {n} rows of {n + 2} trees. How many trees?",
                    "answer": f"{n} * {n + 2} = {n * (n + 2)}\n#### {n * (n + 2)}",
                }
            )
            + "\n"
            for n in range(3, 13)
        )
    )
    humaneval = root / "HumanEval.jsonl.gz"
    with gzip.open(humaneval, "wt") as f:
        for n in range(5):
            f.write(
                json.dumps(
                    {
                        "task_id": f"HumanEval/{n}",
                        "entry_point": f"add_{n}",
                        "prompt": f'def add_{n}(x: int) -> int:\n    """Return x plus {n}."""\n',
                        "canonical_solution": f"    return x + {n}\n",
                        "test": f"def check(f):\n    assert f(1) == {n + 1}\n",
                    }
                )
                + "\n"
            )
    from pipeline.tools.train_classifier import TrainingOptions, train_classifier

    by_domain = {}
    for domain in ("web", "docs"):
        by_domain[domain] = root / domain
        by_domain[domain].mkdir()
        pq.write_table(
            pa.Table.from_pylist([r for r in rows if r["domain"] == domain]), by_domain[domain] / "a.parquet"
        )
    classifier = root / "quality.bin"
    train_classifier(
        {"hq": [str(by_domain["docs"])], "cc": [str(by_domain["web"])]},
        str(classifier),
        TrainingOptions(dim=32, bucket=20_000, per_label=80),
    )
    from pipeline.tools.sample_chat import write_chat_samples

    chat = root / "chat"
    write_chat_samples(str(chat), num_conversations=40)
    chat_tokenizer = root / "chat-tokenizer" / "tokenizer.json"
    train_tokenizer(str(corpus), str(chat_tokenizer), vocab_size=600, tokenizer_format="tokenizer.json")
    from tests.helpers.instruction_grammar import write_seed_tasks

    seed_tasks = write_seed_tasks(root / "seed_tasks.jsonl")
    ut1 = root / "ut1"
    for category in ("adult", "malware", "phishing"):
        (ut1 / category).mkdir(parents=True)
        (ut1 / category / "domains").write_text(f"{category}-site.example\nwww.{category}.example.net\n")
    (ut1 / "adult" / "urls").write_text("pages.example.org/adult/\n")
    return {
        "seed_tasks": seed_tasks,
        "chat": chat,
        "chat_tokenizer": chat_tokenizer,
        "ut1": ut1,
        "classifier": classifier,
        "corpus": corpus,
        "tokenizer": tokenizer,
        "lm": Path(lm["lm"]),
        "sp": Path(lm["sp"]),
        "gsm8k": gsm8k,
        "humaneval": humaneval,
    }


def named_files(spec: dict[str, Any], assets: dict[str, Path]) -> Iterator[tuple[str, str, list[Path]]]:
    """(key path, URI, local files to put there) for every input, model and eval set the spec
    names; a directory URI (the input) gets the corpus shards under it."""
    from pipeline.generation.config import produces_documents

    generate = spec.get("generate")
    if generate is not None:
        chat = not produces_documents(generate)
    else:
        chat = spec["input"].get("chat") is not None
    if generate is not None and generate["method"] == "documents":  # grounded in a corpus
        source = generate["documents"]["source"]
        yield "generate.documents.source", source, sorted(assets["corpus"].glob("*.parquet"))
    elif generate is not None:  # its input is what it generates
        from pipeline.generation.methods import METHODS

        field = METHODS[generate["method"]].SEED_FIELD
        key = f"generate.{generate['method']}.{field}"
        yield key, generate[generate["method"]][field], [assets["seed_tasks"]]
    else:
        inputs = sorted(p for p in assets["chat"].iterdir() if not p.name.startswith("_")) if chat else None
        yield "input.uri", spec["input"]["uri"], inputs or sorted(assets["corpus"].glob("*.parquet"))
    stages = spec.get("stages", {})
    yield "stages.tokenize.model", stages["tokenize"]["model"], [assets["chat_tokenizer" if chat else "tokenizer"]]
    if stages.get("language", {}).get("model"):
        from pipeline.stages.language import bundled_model

        yield "stages.language.model", stages["language"]["model"], [Path(bundled_model())]
    for lang, pair in stages.get("perplexity", {}).get("models", {}).items():
        yield f"stages.perplexity.models.{lang}.lm", pair["lm"], [assets["lm"]]
        yield f"stages.perplexity.models.{lang}.sp", pair["sp"], [assets["sp"]]
    for i, entry in enumerate(stages.get("classifier", {}).get("classifiers", [])):
        yield f"stages.classifier.classifiers.{i}.model", entry["model"], [assets["classifier"]]
    for i, source in enumerate(stages.get("url_blocklist", {}).get("lists", [])):
        yield f"stages.url_blocklist.lists.{i}.uri", source["uri"], [assets["ut1"]]
    for b, eval_set in enumerate(stages.get("contamination", {}).get("benchmarks", [])):
        uri = eval_set["uri"]
        if uri.endswith(".parquet"):
            source = [sorted(assets["corpus"].glob("*.parquet"))[0]]
        elif uri.endswith(".jsonl.gz"):
            source = [assets["humaneval"]]
        else:
            source = [assets["gsm8k"]]
        yield f"stages.contamination.benchmarks.{b}", uri, source


def put_all(spec: dict[str, Any], assets: dict[str, Path], put: Callable[[Path, str], None]) -> list[tuple[str, str]]:
    placed = []
    for key, uri, sources in named_files(spec, assets):
        if key == "input.uri":
            for source in sources:
                put(source, f"{uri.rstrip('/')}/{source.name}")
        elif sources[0].is_dir():  # a list directory: its files under the URI, as laid out
            for source in sorted(p for p in sources[0].rglob("*") if p.is_file()):
                put(source, f"{uri.rstrip('/')}/{source.relative_to(sources[0]).as_posix()}")
        else:
            put(sources[0], uri)
        placed.append((key, uri))
    return placed


def validate(spec_path: Path, overrides: list[str], capsys) -> tuple[int, str, str]:
    argv = ["validate", str(spec_path)]
    for override in overrides:
        argv += ["--set", override]
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def with_bogus_key(spec_path: Path, tmp_path: Path) -> Path:
    data = _spec(spec_path)
    data["stages"].setdefault("pack", {})["seqlen"] = 2048
    copy = tmp_path / f"bogus-{spec_path.name}"
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    return copy


# ---------------------------------------------------------------------------------------------
# Local specs


def _local_put(source: Path, target: str) -> None:
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


@pytest.mark.parametrize("spec_path", LOCAL_SPECS, ids=[p.name for p in LOCAL_SPECS])
def test_local_spec_validates_with_its_files(spec_path, assets, tmp_path, monkeypatch, capsys):
    # relative paths in a spec resolve against the working directory; one level down, so that
    # a spec's ../shared/... lands inside this test's own directory
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    spec = _spec(spec_path)

    code, _, err = validate(spec_path, [], capsys)
    if "generate" in spec:  # a generation job's input is what it generates; its seeds must be there
        key, uri, _ = next(named_files(spec, assets))
        missing = "no input files found at '{}'" if key == "generate.documents.source" else "cannot read seed tasks {}"
        assert code == 2 and f"{key}: {missing.format(uri)}" in err
    else:
        assert code == 2 and f"input.uri: no input files found at '{spec['input']['uri']}'" in err

    placed = put_all(spec, assets, _local_put)
    code, out, err = validate(spec_path, [], capsys)
    assert code == 0, err
    resolved = yaml.safe_load(out.split("# config hash:")[0])
    assert resolved["name"] == spec["name"]
    assert (
        resolved["input"]["uri"] == spec["input"]["uri"]
        if "input" in spec
        else "/generated" in resolved["input"]["uri"]
    )

    for key, uri in placed:
        if key == "input.uri":
            continue
        hidden = Path(f"{uri}.hidden")
        Path(uri).rename(hidden)
        code, _, err = validate(spec_path, [], capsys)
        hidden.rename(uri)
        assert code == 2 and key in err and uri in err, (key, err)


@pytest.mark.parametrize("spec_path", LOCAL_SPECS, ids=[p.name for p in LOCAL_SPECS])
def test_local_spec_with_a_misspelled_key_fails_naming_it(spec_path, assets, tmp_path, monkeypatch, capsys):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    put_all(_spec(spec_path), assets, _local_put)
    code, _, err = validate(with_bogus_key(spec_path, tmp_path), [], capsys)
    assert code == 2
    assert "stages.pack.seqlen: unknown key; did you mean 'seq_len'?" in err


def test_benchmark_spec_runs_every_cpu_stage_on_what_make_demo_builds():
    spec = load_job_spec(JOBS / "benchmark.yaml", check_files=False)
    stages = spec.stages
    assert spec.output.write_rejects and spec.ray.address is None
    for stage in ("language", "quality", "perplexity", "contamination", "pii", "exact_dedup", "near_dedup"):
        assert getattr(stages, stage).enabled, stage
    made = dict(re.findall(r"^(DEMO_\w+) := (\S+)$", (JOBS.parent / "Makefile").read_text(), re.M))
    lm_dir = made["DEMO_LM"].rsplit("/", 1)[0]  # `refinery train-lm ... models --lang en`: models/en.arpa + en.sp.model
    assert spec.input.uri == made["DEMO_CORPUS"]
    assert stages.tokenize.model == made["DEMO_TOKENIZER"]
    assert (stages.perplexity.models["en"].lm, stages.perplexity.models["en"].sp) == (
        made["DEMO_LM"],
        f"{lm_dir}/en.sp.model",
    )
    assert [b.uri for b in stages.contamination.benchmarks] == [f"{made['DEMO_LM_CORPUS']}/part-00000.parquet"]


# ---------------------------------------------------------------------------------------------
# Specs on S3


def s3_overrides(spec: dict[str, Any], endpoint: str) -> list[str]:
    """--set values pointing every storage_options at the local S3 server. The eval sets are
    a list, which --set cannot index into: the list is set whole, as the spec has it."""
    options = f"{{endpoint_url: '{endpoint}'}}"
    overrides = [
        f"input.storage_options={options}",
        f"output.storage_options={options}",
        f"stages.tokenize.storage_options={options}",
    ]
    stages = spec["stages"]
    for stage in ("language", "perplexity", "classifier", "url_blocklist"):
        if stage in stages:
            overrides.append(f"stages.{stage}.storage_options={options}")
    benchmarks = stages.get("contamination", {}).get("benchmarks")
    if benchmarks:
        local = [{**b, "storage_options": {"endpoint_url": endpoint}} for b in benchmarks]
        overrides.append("stages.contamination.benchmarks=" + json.dumps(local))
    return overrides


def assert_every_s3_uri_has_the_endpoint(spec_path: Path, overrides: list[str], endpoint: str) -> None:
    """A guard: nothing in the resolved spec would reach a real S3 endpoint."""
    spec = load_job_spec(spec_path, overrides, check_files=False)
    places = [
        (spec.input.uri, spec.input.storage_options),
        (spec.output.uri, spec.output.storage_options),
        (spec.stages.tokenize.model, spec.stages.tokenize.storage_options),
    ]
    places += [
        (uri, spec.stages.perplexity.storage_options)
        for pair in spec.stages.perplexity.models.values()
        for uri in (pair.lm, pair.sp)
    ]
    places += [(b.uri, b.storage_options) for b in spec.stages.contamination.benchmarks]
    places += [(c.model, spec.stages.classifier.storage_options) for c in spec.stages.classifier.classifiers]
    places += [(source.uri, spec.stages.url_blocklist.storage_options) for source in spec.stages.url_blocklist.lists]
    if spec.stages.language.model:
        places.append((spec.stages.language.model, spec.stages.language.storage_options))
    for uri, options in places:
        assert not uri.startswith("s3://") or options.endpoint_url == endpoint, uri


@pytest.fixture
def s3_put(s3):
    def put(source: Path, uri: str) -> None:
        bucket = uri.removeprefix("s3://").split("/", 1)[0]
        if not s3.exists(bucket):
            s3.mkdir(bucket)
        s3.put(str(source), uri.removeprefix("s3://"))
        s3.invalidate_cache()

    return put


@pytest.mark.parametrize("spec_path", S3_SPECS, ids=[p.name for p in S3_SPECS])
def test_s3_spec_validates_against_a_local_s3_server(spec_path, assets, s3, s3_put, s3_endpoint, capsys):
    spec = _spec(spec_path)
    overrides = s3_overrides(spec, s3_endpoint)
    assert_every_s3_uri_has_the_endpoint(spec_path, overrides, s3_endpoint)
    for bucket in {uri.removeprefix("s3://").split("/", 1)[0] for uri in _strings(spec) if uri.startswith("s3://")}:
        if not s3.exists(bucket):
            s3.mkdir(bucket)  # every bucket the spec names, the output's too

    code, _, err = validate(spec_path, overrides, capsys)
    assert code == 2 and f"input.uri: no input files found at '{spec['input']['uri']}'" in err

    placed = put_all(spec, assets, s3_put)
    code, out, err = validate(spec_path, overrides, capsys)
    assert code == 0, err
    resolved = yaml.safe_load(out.split("# config hash:")[0])
    assert resolved["input"]["storage_options"]["endpoint_url"] == s3_endpoint

    key, uri = next((k, u) for k, u in placed if k.startswith("stages.perplexity"))
    s3.rm(uri.removeprefix("s3://"))
    s3.invalidate_cache()
    code, _, err = validate(spec_path, overrides, capsys)
    assert code == 2 and key in err and uri in err, err
    s3_put(assets["lm"] if key.endswith(".lm") else assets["sp"], uri)


@pytest.mark.parametrize("spec_path", S3_SPECS, ids=[p.name for p in S3_SPECS])
def test_s3_spec_with_a_misspelled_key_fails_naming_it(spec_path, assets, s3_put, s3_endpoint, tmp_path, capsys):
    spec = _spec(spec_path)
    put_all(spec, assets, s3_put)
    code, _, err = validate(with_bogus_key(spec_path, tmp_path), s3_overrides(spec, s3_endpoint), capsys)
    assert code == 2
    assert "stages.pack.seqlen: unknown key; did you mean 'seq_len'?" in err


def test_cc_refresh_runs_every_stage_on_s3():
    spec = load_job_spec(JOBS / "cc_refresh.yaml", check_files=False)
    s = spec.stages
    for stage in (
        "url_blocklist",
        "language",
        "quality",
        "classifier",
        "perplexity",
        "contamination",
        "pii",
        "exact_dedup",
        "near_dedup",
    ):
        assert getattr(s, stage).enabled, stage
    (dclm,) = s.classifier.classifiers
    assert (dclm.label, dclm.min_percentile, dclm.prepare.newlines) == ("__label__hq", 90, "join_lines")
    assert all(getattr(s.quality, rules).enabled for rules in ("gopher_quality", "gopher_repetition", "c4", "fineweb"))
    assert {b.preset for b in s.contamination.benchmarks} >= {"gsm8k", "humaneval"}
    uris = [
        spec.input.uri,
        spec.output.uri,
        s.tokenize.model,
        *(b.uri for b in s.contamination.benchmarks),
        *(uri for pair in s.perplexity.models.values() for uri in (pair.lm, pair.sp)),
        dclm.model,
        *(source.uri for source in s.url_blocklist.lists),
    ]
    assert {c for source in s.url_blocklist.lists for c in source.categories} >= {"adult", "phishing"}
    assert all(uri.startswith("s3://") for uri in uris), uris
    # The refresh keeps earlier decisions: indexed documents survive near dedup.
    assert s.near_dedup.survivor in ("first", "longest")
    assert spec.ray.address is None  # the cluster's address comes from `--address auto` in cluster/rayjob.yaml


def test_every_spec_is_validated_here():
    assert {p.name for p in LOCAL_SPECS} >= {"quickstart.yaml", "benchmark.yaml"}
    assert {p.name for p in S3_SPECS} >= {"cc_refresh.yaml"}
    assert set(LOCAL_SPECS) | set(S3_SPECS) == set(SPECS)
