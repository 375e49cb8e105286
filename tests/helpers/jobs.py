"""``refinery run`` jobs as subprocesses that a test can watch, stop inside a function,
interrupt or kill: what the crash-safety and interrupt tests share."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from tests.helpers import REPO

ROOT = REPO
STOP_IN = REPO / "tests" / "helpers" / "stop_in"  # sitecustomize.py, see there
WAIT_S = 240  # for any one condition; generous, the machine is shared and slow at times


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Job:
    """``refinery run`` in a session of its own, on a local Ray of one CPU with one task in
    flight, so that units of work run one at a time; its output lines are collected as they
    come."""

    def __init__(
        self,
        spec: Path,
        ray_tmp: str,
        *overrides: str,
        stop_in: str | None = None,
        env_changes: dict[str, str | None] | None = None,
    ) -> None:
        paths = [str(ROOT), os.environ.get("PYTHONPATH")]
        env = {**os.environ, "RAY_TMPDIR": ray_tmp}
        for name, value in (env_changes or {}).items():  # None removes the variable
            env.pop(name, None)
            if value is not None:
                env[name] = value
        self.stop_file = Path(tempfile.mkdtemp(prefix="stop-", dir=ray_tmp)) / "stopped"
        if stop_in:
            # the first call of this function, in whichever process of the job, stops there
            paths.insert(0, str(STOP_IN))
            env |= {"REFINERY_STOP_IN": stop_in, "REFINERY_STOP_FILE": str(self.stop_file)}
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        env.pop("RAY_ADDRESS", None)  # its own local Ray, which the kill takes down with it
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline.cli",
                "run",
                str(spec),
                "--set",
                "ray.num_cpus=1",
                "--set",
                "ray.max_parallel_tasks=1",
                *overrides,
            ],
            cwd=ROOT,
            env=env,
            start_new_session=True,
            # as a terminal's foreground job gets it: a shell that starts the test run in the
            # background (`make test &` in a script) leaves SIGINT ignored, and children inherit that
            preexec_fn=_default_sigint,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.eof = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.eof = True
            self._changed.notify_all()

    def tail(self) -> str:
        with self._changed:
            return "\n".join(self.lines[-40:])

    def wait_for_line(self, pattern: str) -> re.Match:
        """The first output line matching ``pattern``, waiting for it if need be."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + WAIT_S
        with self._changed:
            while True:
                for line in self.lines:
                    match = regex.search(line)
                    if match:
                        return match
                if self.eof or time.monotonic() > deadline:
                    raise AssertionError(
                        f"the job printed no line matching {pattern!r}:\n" + "\n".join(self.lines[-40:])
                    )
                self._changed.wait(timeout=0.5)

    def wait_until_stopped(self) -> str:
        """Waits until a process of the job is held inside the ``stop_in`` function; returns
        that function's name."""
        deadline = time.monotonic() + WAIT_S
        while not self.stop_file.exists():
            assert time.monotonic() < deadline, "the job never reached its stop:\n" + self.tail()
            assert self.process.poll() is None, "the job ended before its stop:\n" + self.tail()
            time.sleep(0.05)
        pid, function = self.stop_file.read_text().split()
        assert int(pid) in {p.pid for p in psutil.Process(self.process.pid).children(recursive=True)}
        return function

    def kill_after_first_unit(self, committed: Callable[[], int]) -> None:
        """SIGKILL the job as soon as one unit of the running phase has committed.

        The driver is held stopped (SIGSTOP) and let run in 20 ms slices; its workers run on.
        The driver starts the next unit only when one finishes and keeps one in flight
        (one CPU), so however slow this watcher is, the phase cannot get far beyond its
        first unit before the kill."""
        pid = self.process.pid
        deadline = time.monotonic() + WAIT_S
        os.kill(pid, signal.SIGSTOP)
        try:
            while committed() == 0:
                assert time.monotonic() < deadline, "no unit committed:\n" + self.tail()
                assert self.process.poll() is None, "the job ended:\n" + self.tail()
                os.kill(pid, signal.SIGCONT)
                time.sleep(0.02)
                os.kill(pid, signal.SIGSTOP)
                time.sleep(0.02)
        finally:
            self.kill()

    def interrupt(self, sig: int, whole_group: bool) -> tuple[int, str, list[psutil.Process]]:
        """Send ``sig`` to the driver, or to its whole process group as a terminal's Ctrl-C
        does; wait for the job to exit. Returns its exit code, its output, and those of its
        processes still running 10 s after it exited."""
        tree = psutil.Process(self.process.pid).children(recursive=True)
        if whole_group:
            os.killpg(self.process.pid, sig)
        else:
            os.kill(self.process.pid, sig)
        try:
            code = self.process.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("the job did not stop:\n" + self.tail()) from None
        self._reader.join(timeout=30)
        _, alive = psutil.wait_procs(tree, timeout=10)
        return code, "\n".join(self.lines), [p for p in alive if running(p)]

    def kill(self) -> None:
        """SIGKILL the process group (driver and local Ray) and wait until all of it is gone."""
        pid = self.process.pid
        try:
            tree = psutil.Process(pid).children(recursive=True)
        except psutil.Error:
            tree = []
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=60)
        _, alive = psutil.wait_procs(tree, timeout=60)
        alive = [p for p in alive if running(p)]
        for process in alive:  # descendants of our job only; not expected
            process.kill()
        assert not alive, f"processes outside the job's process group survived: {alive}"
        self._reader.join(timeout=30)

    def finish(self) -> str:
        try:
            self.process.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("the job did not finish:\n" + self.tail()) from None
        self._reader.join(timeout=30)
        assert self.process.returncode == 0, self.tail()
        return "\n".join(self.lines)


def running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
