import pytest
import yaml

from pipeline.cli import main
from pipeline.config import JobSpec, JobSpecError, load_job_spec
from tests.helpers import REPO


def spec_errors(job) -> str:
    with pytest.raises(JobSpecError) as err:
        load_job_spec(job)
    return str(err.value)


def test_valid_spec_fills_defaults(make_job, sample_corpus, tmp_path):
    spec = load_job_spec(make_job(sample_corpus, tmp_path / "out"))
    assert spec.stages.exact_dedup.enabled is True
    assert spec.stages.pack.mode == "concat"
    assert spec.input.max_document_bytes == 10_000_000


def test_unknown_key_names_path_and_suggests(make_job, sample_corpus, tmp_path):
    job = make_job(sample_corpus, tmp_path / "out")
    job["stages"]["tokenize"]["modle_typo"] = 1
    job["stages"]["pack"]["seqlen"] = 128
    message = spec_errors(job)
    assert "stages.tokenize.modle_typo: unknown key" in message
    assert "stages.pack.seqlen: unknown key; did you mean 'seq_len'?" in message


def test_unknown_key_under_a_user_named_key_lists_what_is_allowed(make_job, sample_corpus, tmp_path):
    job = make_job(sample_corpus, tmp_path / "out")
    job["stages"]["perplexity"] = {"models": {"en": {"lm": "a.arpa", "sp": "a.model", "spm": "x"}}}
    assert "stages.perplexity.models.en.spm: unknown key; did you mean 'sp'? (allowed here: lm, sp)" in spec_errors(job)


def test_unknown_key_in_an_optional_section_or_a_list_item_lists_what_is_allowed(make_job, sample_corpus, tmp_path):
    job = make_job(sample_corpus, tmp_path / "out")
    job["stages"]["tokenize"]["modle"] = "x"
    job["stages"]["mix"] = {"domain_rules": [{"domain": "a", "url_regex": "a"}, {"domian": "b", "url_regex": "b"}]}
    message = spec_errors(job)
    assert "stages.tokenize.modle: unknown key; did you mean 'model'? (allowed here: model, " in message
    assert (
        "stages.mix.domain_rules.1.domian: unknown key; did you mean 'domain'? (allowed here: domain, url_regex, files)"
        in message
    )


def test_wrong_type_and_impossible_value(make_job, sample_corpus, tmp_path):
    job = make_job(sample_corpus, tmp_path / "out")
    job["stages"]["pack"]["seq_len"] = 0
    job["input"]["max_document_bytes"] = "lots"
    job["stages"]["exact_dedup"] = {"enabled": "maybe"}
    message = spec_errors(job)
    assert "stages.pack.seq_len: Input should be greater than 0" in message
    assert "input.max_document_bytes:" in message
    assert "stages.exact_dedup.enabled:" in message


def test_missing_required_and_missing_files(make_job, tmp_path):
    job = make_job(tmp_path / "nothing-here", tmp_path / "out")
    job["stages"]["tokenize"]["model"] = str(tmp_path / "absent.model")
    del job["output"]
    message = spec_errors(job)
    assert "output: required key is missing" in message
    assert "input.uri: no input files found at" in message


def test_missing_tokenizer_file_named(make_job, sample_corpus, tmp_path):
    job = make_job(sample_corpus, tmp_path / "out")
    job["stages"]["tokenize"]["model"] = str(tmp_path / "absent.model")
    with pytest.raises(JobSpecError, match=r"\n  stages.tokenize.model: file not found") as error:
        load_job_spec(job)
    assert "Value error" not in str(error.value) and "(top level)" not in str(error.value)


def test_every_file_problem_in_one_pass(make_job, tmp_path):
    """A missing input, tokenizer, LM and eval set are all reported at once, not one per
    attempt. Mutation that fails it: stop at the first problem (return problems[:1])."""
    job = make_job(tmp_path / "no-input", tmp_path / "out")
    job["stages"]["tokenize"]["model"] = str(tmp_path / "absent.model")
    job["stages"]["perplexity"] = {"enabled": True, "models": {"en": {"lm": "gone.arpa", "sp": "gone.sp.model"}}}
    job["stages"]["contamination"] = {
        "enabled": True,
        "benchmarks": [{"name": "gsm8k", "uri": str(tmp_path / "gone.jsonl"), "preset": "gsm8k"}],
    }
    lines = spec_errors(job).splitlines()[1:]
    assert lines == [
        f"  input.uri: no input files found at '{tmp_path / 'no-input'}'",
        f"  stages.tokenize.model: file not found: '{tmp_path / 'absent.model'}' "
        "(train one with `refinery train-tokenizer CORPUS OUT.model`)",
        "  stages.perplexity.models.en.lm: file not found: 'gone.arpa' (`refinery train-lm` makes both)",
        "  stages.perplexity.models.en.sp: file not found: 'gone.sp.model' (`refinery train-lm` makes both)",
        f"  stages.contamination.benchmarks.0.uri ('gsm8k'): file not found: '{tmp_path / 'gone.jsonl'}'",
    ]


def test_a_tokenizer_that_is_not_one_fails_validate_with_its_key(make_job, sample_corpus, tmp_path, capsys):
    """A corrupt sentencepiece model fails ``refinery validate`` (exit 2, key path named), not
    a worker after annotate and dedup. Mutation that fails it: TokenizeConfig.check_files
    checks existence only."""
    for name, data in [("garbage.model", b"\x00not a model" * 50), ("empty.model", b"")]:
        bad = tmp_path / name
        bad.write_bytes(data)
        job = make_job(sample_corpus, tmp_path / "out")
        job["stages"]["tokenize"]["model"] = str(bad)
        spec = tmp_path / "job.yaml"
        spec.write_text(yaml.safe_dump(job))
        assert main(["validate", str(spec)]) == 2
        err = capsys.readouterr().err
        assert f"stages.tokenize.model: '{bad}' is neither a sentencepiece model nor a tokenizer.json" in err, err
        assert "Traceback" not in err


def test_tokenizer_without_the_pieces_asked_for(make_job, sample_corpus, tmp_path):
    """add_eos (the default) and add_bos on a model with neither piece are spec errors, found
    when the spec is loaded, not in the first tokenize worker."""
    import io

    import sentencepiece as spm

    from pipeline.tools.sample import build_sample_documents

    rows, _ = build_sample_documents(300, seed=3)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([r["text"] for r in rows if r["text"].strip()]),
        model_writer=model,
        vocab_size=300,
        bos_id=-1,
        eos_id=-1,
    )
    path = tmp_path / "no-bos-eos.model"
    path.write_bytes(model.getvalue())
    job = make_job(sample_corpus, tmp_path / "out")
    job["stages"]["tokenize"] |= {"model": str(path), "add_bos": True}
    message = spec_errors(job)
    for flag, piece in (("add_eos", "EOS"), ("add_bos", "BOS")):
        assert (
            f"stages.tokenize.{flag}: the tokenizer '{path}' has no {piece} token; set stages.tokenize.{flag}: false"
            in message
        )


def test_overrides_apply_before_validation(make_job, sample_corpus, tmp_path):
    spec = load_job_spec(
        make_job(sample_corpus, tmp_path / "out"), ["stages.pack.seq_len=4096", "output.write_rejects=false"]
    )
    assert spec.stages.pack.seq_len == 4096 and spec.output.write_rejects is False
    with pytest.raises(JobSpecError, match="stages.pack.nope: unknown key"):
        load_job_spec(make_job(sample_corpus, tmp_path / "out"), ["stages.pack.nope=1"])


def test_overrides_reach_list_items(make_job, sample_corpus, tmp_path):
    evals = tmp_path / "gsm8k.jsonl"
    evals.write_text('{"question": "q", "answer": "a"}\n')
    moved = tmp_path / "moved.jsonl"
    moved.write_text(evals.read_text())
    job = make_job(
        sample_corpus,
        tmp_path / "out",
        stages={
            "contamination": {"enabled": True, "benchmarks": [{"name": "gsm8k", "uri": str(evals), "preset": "gsm8k"}]}
        },
    )
    spec = load_job_spec(job, [f"stages.contamination.benchmarks.0.uri={moved}"])
    assert spec.stages.contamination.benchmarks[0].uri == str(moved)
    with pytest.raises(JobSpecError, match=r"'stages.contamination.benchmarks' is a list of 1 items; '3' is not"):
        load_job_spec(job, ["stages.contamination.benchmarks.3.uri=x"])
    with pytest.raises(JobSpecError, match=r"'stages.pack.seq_len' is not a section"):
        load_job_spec(job, ["stages.pack.seq_len.x=1"])


def test_cli_validate_prints_resolved_spec(make_job, sample_corpus, tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(make_job(sample_corpus, tmp_path / "out")))
    assert main(["validate", str(path), "--set", "seed=9"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["seed"] == 9 and printed["stages"]["pack"]["seq_len"] == 256


def test_cli_validate_reports_bad_key_with_exit_2(make_job, sample_corpus, tmp_path, capsys):
    job = make_job(sample_corpus, tmp_path / "out")
    job["ouput"] = {}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "ouput: unknown key; did you mean 'output'?" in err


def test_bad_yaml_names_file(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    assert main(["validate", str(path)]) == 2
    assert f"{path}: not valid YAML" in capsys.readouterr().err


def _leaves(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list) and node and all(isinstance(item, dict) for item in node):
        for index, item in enumerate(node):
            yield from _leaves(item, (*path, index))
    else:
        yield path, node


def test_shipped_jobs_load_with_every_value_they_set():
    """Every value a shipped spec sets is the value the loaded spec holds (a loader that
    dropped, renamed or coerced a key would fail here)."""
    jobs = sorted((REPO / "jobs").glob("*.yaml"))
    assert [job.name for job in jobs] == [
        "benchmark.yaml",
        "cc_refresh.yaml",
        "evol_instruct.yaml",
        "quickstart.yaml",
        "rephrase.yaml",
        "self_instruct.yaml",
        "sft_quickstart.yaml",
    ]
    for job in jobs:
        loaded = load_job_spec(job, check_files=False).model_dump(mode="json")
        for path, value in _leaves(yaml.safe_load(job.read_text())):
            held = loaded
            for key in path:
                held = held[key]
            expected = list(value) if isinstance(value, tuple) else value
            assert held == expected or (isinstance(held, list) and held == list(expected)), (job.name, path)


def _worker_copies():
    for job in sorted((REPO / "jobs").glob("*.yaml")):
        yield job.name, yaml.safe_load(job.read_text())
    qa = yaml.safe_load((REPO / "jobs" / "rephrase.yaml").read_text())
    qa["generate"]["documents"].pop("keep_source")
    qa["generate"]["documents"].update(template="builtin:documents_qa_pairs", produce="conversations")
    qa["stages"]["tokenize"]["chat"] = {"template": "chatml"}
    qa["stages"]["pack"].update(format="parquet", mode="bestfit")
    yield "rephrase.yaml as question-answer pairs", qa


@pytest.mark.parametrize("name, spec", list(_worker_copies()), ids=lambda v: v if isinstance(v, str) else "")
def test_specs_validate_again_as_their_workers_receive_them(name, spec):
    """Ray workers rebuild the spec from its JSON dump: every dumped spec validates to the
    same spec (a validator that looked at which keys a user set would fail in the workers)."""
    loaded = load_job_spec(spec, check_files=False)
    assert JobSpec.model_validate_json(loaded.model_dump_json()) == loaded, name


def test_demo_job_spec_validates_through_the_cli(tokenizer_model, sample_corpus, tmp_path, capsys):
    """jobs/quickstart.yaml, with its inputs and models pointed at test fixtures."""
    from pipeline.tools.train_lm import train_arpa

    arpa = tmp_path / "en.arpa"
    train_arpa([["a", "b", "c"], ["a", "c"]], arpa, order=2)
    root = REPO
    overrides = [
        f"input.uri={sample_corpus}",
        f"output.uri={tmp_path / 'out'}",
        f"stages.tokenize.model={tokenizer_model}",
        f"stages.perplexity.models.en.lm={arpa}",
        f"stages.perplexity.models.en.sp={tokenizer_model}",
    ]
    assert (
        main(["validate", str(root / "jobs" / "quickstart.yaml"), *(a for o in overrides for a in ("--set", o))]) == 0
    )
    stages = yaml.safe_load(capsys.readouterr().out)["stages"]
    assert stages["language"]["keep"] == ["en"] and stages["quality"]["enabled"]
    assert stages["perplexity"]["keep_buckets"] == ["head", "middle"] and stages["near_dedup"]["enabled"]
