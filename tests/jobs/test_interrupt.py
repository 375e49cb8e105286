"""Ctrl-C and SIGTERM stop ``refinery run`` cleanly in every phase: one line saying that
committed work is kept, exit 130 (SIGINT) or 143 (SIGTERM, what Kubernetes sends), no
traceback, Ray shut down and no process of the run left; the next run resumes and finishes.

Each interrupt lands inside its phase deterministically: a worker of the job is held inside
one of the phase's functions (tests/helpers/stop_in) when the signal is sent.
"""

import signal

import pytest
import yaml

from pipeline.tools.sample import write_sample_corpus
from tests.helpers import job_dict

MESSAGE = "interrupted; committed work is kept: run the same command again to resume"

# (phase, a function of it the job is held in, signal, sent to the whole process group?)
INTERRUPTS = [
    ("annotate", "pipeline.phases.annotate.phase:ShardAnnotator.run", signal.SIGINT, True),
    ("dedup", "pipeline.stages.near_dedup.lsh:_star_edges", signal.SIGTERM, False),
    ("tokenize", "pipeline.phases.tokenize.phase:ShardTokenizer.run", signal.SIGINT, True),
    ("mix", "pipeline.phases.mix.phase:ShardSampler.run", signal.SIGINT, False),
    ("pack", "pipeline.phases.pack.phase:ShardPacker.run", signal.SIGTERM, True),
]


@pytest.fixture(scope="module")
def spec_file(tokenizer_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupt")
    write_sample_corpus(str(root / "corpus"), num_docs=600, num_shards=4, seed=11)
    spec = root / "job.yaml"
    spec.write_text(yaml.safe_dump(job_dict(str(root / "corpus"), str(root / "out"), str(tokenizer_model))))
    return spec, root / "out"


def test_interrupt_in_every_phase_stops_cleanly_and_resumes(spec_file, start_job):
    """Mutations that fail it: no KeyboardInterrupt handler in cli.main (a traceback, exit 1);
    ensure_ray does not put the SIGTERM handler back (Ray's C++ handler: exit 15 and a stack);
    Terminated derived from Exception (Ray Data logs a 'Full stack trace')."""
    spec, out = spec_file
    for phase, function, sig, whole_group in INTERRUPTS:
        job = start_job(spec, stop_in=function)
        assert job.wait_until_stopped() == function
        code, output, left = job.interrupt(sig, whole_group)
        assert code == (130 if sig == signal.SIGINT else 143), output[-3000:]
        assert output.rstrip().endswith(MESSAGE), output[-3000:]
        assert f"[refinery] {phase}: " in output
        for noise in ("Traceback", "Full stack trace", "SIGTERM received", "bug in Ray", "KeyboardInterrupt"):
            assert noise not in output, f"{phase}: {noise}\n{output[-3000:]}"
        assert not left, f"{phase}: processes of the run left behind: {left}"
        assert not (out / "latest.json").exists()
    # The run that finishes starts its local Ray with Ray's default, token authentication
    # (the tests' environment turns it off): Refinery keeps it, and Ray's notice that it chose it
    # is not printed. Ray writes the token it makes under a HOME of the test's own.
    home = out.parent / "home"
    home.mkdir()
    printed = start_job(spec, env_changes={"RAY_AUTH_MODE": None, "HOME": str(home)}).finish()
    assert "annotate: 4 shards (4 already committed, skipped)" in printed
    assert "snapshot 00001-" in printed and (out / "latest.json").exists()
    assert (home / ".ray" / "auth_token").exists()
    assert not [line for line in printed.splitlines() if "Token authentication" in line or "WARNING" in line], printed
