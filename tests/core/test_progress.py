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
