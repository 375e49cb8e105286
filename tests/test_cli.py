"""The ``refinery`` command itself: expected failures are one ``error:`` line with the
documented exit code, and nothing heavy is imported to print help."""

import os
import subprocess
import sys

import yaml

from pipeline import __version__
from pipeline.cli import main
from tests.helpers import REPO


def _refinery(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=REPO, env=env, text=True, **kwargs)


def test_invalid_yaml_in_an_override_is_a_spec_error(make_job, sample_corpus, tmp_path, capsys):
    """Mutation that fails it: apply_override calls yaml.safe_load unguarded (a traceback, exit 1)."""
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(make_job(sample_corpus, tmp_path / "out")))
    assert main(["validate", str(spec), "--set", "stages.language.keep=[en,"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --set 'stages.language.keep=[en,': the value is not valid YAML (")
    assert len(err.strip().splitlines()) == 1


def test_a_reader_that_leaves_early_is_not_an_error(make_job, sample_corpus, tmp_path):
    """``refinery validate spec | head``: stdout is a pipe whose reader is gone. Exit 141 (as
    a shell reports SIGPIPE), nothing on stderr. Mutation that fails it: no BrokenPipeError
    handler in main."""
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(make_job(sample_corpus, tmp_path / "out")))
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader left before the first line
    try:
        result = _refinery("validate", str(spec), stdout=write_end, stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    assert result.returncode == 141
    assert result.stderr == ""


def test_help_and_version_load_no_stage_library():
    """``--help`` and ``--version`` answer without importing Ray, Presidio, spaCy, datasketch
    or pydantic models of the spec. Mutation that fails it: pipeline/__init__.py imports
    pipeline.config eagerly."""
    probe = (
        "import sys\n"
        "from pipeline.cli import main\n"
        "for argv in (['--help'], ['--version'], ['run', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = ['ray', 'presidio_analyzer', 'spacy', 'datasketch', 'pipeline.config', 'pyarrow']\n"
        "print('LOADED', [m for m in heavy if m in sys.modules])\n"
    )
    result = _refinery_python(probe)
    assert f"refinery {__version__}" in result.stdout
    assert "LOADED []" in result.stdout, result.stdout[-500:]


def _refinery_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, text=True, capture_output=True, check=True)


def test_validate_loads_no_library_the_spec_does_not_use(make_job, sample_corpus, tmp_path):
    """``refinery validate`` of a spec without PII imports neither Presidio nor spaCy, nor
    datasketch (scipy) or Ray: the spec and its files are checked with what they need.
    Mutation that fails it: pii/windows.py imports pii.phone (and so Presidio) at module level."""
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(make_job(sample_corpus, tmp_path / "out")))
    probe = (
        "import sys\n"
        "from pipeline.cli import main\n"
        f"assert main(['validate', {str(spec)!r}]) == 0\n"
        "heavy = ['ray', 'presidio_analyzer', 'spacy', 'datasketch', 'scipy', 'torch']\n"
        "print('LOADED', [m for m in heavy if m in sys.modules])\n"
    )
    result = _refinery_python(probe)
    assert "LOADED []" in result.stdout, result.stdout[-500:]


def test_every_flag_and_argument_has_help():
    """Each command's --help says what every argument does. Mutation that fails it: drop the
    help of train-tokenizer's --max-documents."""
    import argparse

    from pipeline.cli import build_parser

    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    missing = [
        f"{name} {action.option_strings or action.dest}"
        for name, command in commands.choices.items()
        for action in command._actions
        if not action.help and not isinstance(action, argparse._HelpAction)
    ]
    assert not missing, missing
    assert "20000" in commands.choices["train-tokenizer"].format_help()


def test_an_unreachable_cluster_address_is_one_line(make_job, sample_corpus, tmp_path):
    """``run --address`` to a port where nothing listens fails with one line naming it, exit 1,
    instead of Ray's minutes of retries behind its warnings. Mutation that fails it:
    ensure_ray does not call _check_reachable."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed when the block ends: nothing listens there
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(make_job(sample_corpus, tmp_path / "out")))
    result = _refinery("run", str(spec), "--address", f"127.0.0.1:{port}", capture_output=True, timeout=120)
    assert result.returncode == 1, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot reach the Ray cluster at 127.0.0.1:{port} ("), lines
