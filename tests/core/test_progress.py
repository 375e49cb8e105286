"""Console progress: counts in words, and a heartbeat while a phase has nothing to report."""

import io
import time

from pipeline.core.progress import Progress, plural


def test_units_are_pluralized():
    assert [plural(n, "shard") for n in (0, 1, 2, 1500)] == ["0 shards", "1 shard", "2 shards", "1,500 shards"]
    assert plural(1, "global pass") == "1 global pass" and plural(3, "global pass") == "3 global passes"
    stream = io.StringIO()
    progress = Progress(stream, heartbeat_s=0)
    progress.start("dedup", total=1, unit="global pass")
    progress.advance(1, docs=12, nbytes=3000)
    assert stream.getvalue().splitlines()[0] == "[refinery] dedup: 1 global pass"
    assert stream.getvalue().splitlines()[1].startswith("[refinery] dedup: 1/1 global pass, 12 docs, ")


def test_a_long_unit_prints_a_heartbeat_with_the_elapsed_time_until_it_ends():
    """Mutation that fails it: _beat never logs (a silent phase, as dedup was)."""
    stream = io.StringIO()
    progress = Progress(stream, heartbeat_s=0.2)
    progress.start("dedup", total=1, unit="global pass")
    deadline = time.monotonic() + 30
    while "elapsed" not in stream.getvalue():
        assert time.monotonic() < deadline, stream.getvalue()
        time.sleep(0.05)
    assert "[refinery] dedup: 0/1 global pass done, " in stream.getvalue()
    progress.advance(1)
    progress.close()
    time.sleep(0.5)
    ended = stream.getvalue()
    time.sleep(0.5)
    assert stream.getvalue() == ended  # no beat after the phase's last unit or after close
    assert progress.processed["dedup"] == {"docs": 0, "bytes": 0}


def test_a_quiet_progress_starts_no_thread():
    progress = Progress(quiet=True, heartbeat_s=0.1)
    progress.start("annotate", total=3, unit="shard", skipped=1)
    assert progress._heartbeat is None and progress.units["annotate"] == {"total": 3, "reused": 1}


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_live_bar_with_rate_and_eta_and_the_plain_summary_at_the_end():
    stream = _Terminal()
    progress = Progress(stream, min_interval_s=0, heartbeat_s=0)
    assert progress.live and not Progress(io.StringIO()).live and not Progress(_Terminal(), quiet=True).live
    progress.start("annotate", total=4, unit="shard", skipped=1)
    progress.advance(1, docs=500, nbytes=10**6)
    progress.log("a message in between")
    progress.advance(1, docs=500, nbytes=10**6)
    drawn = stream.getvalue()
    assert "\r" in drawn  # redrawn in place
    assert "[refinery] annotate:  75%|" in drawn and "3/4 shard [00:00<00:00, 1,000 docs, " in drawn
    assert "1,000 docs" in drawn and "docs/s" in drawn
    assert "[refinery] a message in between\n" in drawn
    assert "[refinery] annotate: 2/4" not in drawn  # no plain progress lines while the bar runs
    progress.advance(1, docs=500, nbytes=10**6)
    assert stream.getvalue().splitlines()[-1].startswith("[refinery] annotate: 4/4 shards, 1,500 docs, ")
    progress.close()


def test_a_stream_that_is_not_a_terminal_keeps_plain_lines():
    stream = io.StringIO()
    progress = Progress(stream, min_interval_s=0, heartbeat_s=0)
    progress.start("tokenize", total=2, unit="shard")
    progress.advance(1, docs=10)
    progress.advance(1, docs=10)
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert [line.split(",")[0] for line in lines] == [
        "[refinery] tokenize: 2 shards",
        "[refinery] tokenize: 1/2 shards",
        "[refinery] tokenize: 2/2 shards",
    ]


def test_a_phase_that_ends_short_of_its_total_still_leaves_its_line():
    stream = _Terminal()
    progress = Progress(stream, min_interval_s=0, heartbeat_s=0)
    progress.start("generate", total=5, unit="round")
    progress.advance(1, docs=40)
    progress.start("annotate", total=1, unit="shard")  # the target was met after one round
    lines = [line.rsplit("\r", 1)[-1] for line in stream.getvalue().splitlines()]
    assert any(line.startswith("[refinery] generate: 1/5 rounds, 40 docs, ") for line in lines)
    assert "[refinery] annotate: 1 shard" in lines
    progress.close()
