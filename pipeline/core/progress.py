"""Console progress for long phases: one line per update, rate-limited, to stderr, and a
heartbeat line with the elapsed time while a phase runs with nothing else to say."""

from __future__ import annotations

import sys
import threading
import time

HEARTBEAT_S = 10.0


def plural(n: int, unit: str) -> str:
    """``1 shard``, ``2 shards``, ``1 global pass``, ``3 global passes``."""
    if n == 1:
        return f"{n:,} {unit}"
    return f"{n:,} {unit}{'es' if unit.endswith(('s', 'sh', 'ch', 'x')) else 's'}"


class Progress:
    def __init__(
        self, stream=None, min_interval_s: float = 2.0, quiet: bool = False, heartbeat_s: float = HEARTBEAT_S
    ) -> None:
        self.stream = stream or sys.stderr
        self.min_interval_s = min_interval_s
        self.heartbeat_s = heartbeat_s
        self.quiet = quiet
        self.phase = ""
        self.unit = ""
        self.total = 0
        self.done = 0
        self.docs = self.nbytes = 0
        self.probe = None
        self.started = self.last = time.perf_counter()
        # per phase: units of work, and how many were committed by an earlier run and reused
        self.units: dict[str, dict[str, int]] = {}
        # per phase: documents and bytes of the units done in this run (not the reused ones)
        self.processed: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def log(self, message: str) -> None:
        if not self.quiet:
            with self._lock:
                print(f"[refinery] {message}", file=self.stream, flush=True)
                self.last = time.perf_counter()

    def start(self, phase: str, total: int, unit: str, skipped: int = 0, probe=None) -> None:
        """A phase of ``total`` units (``unit`` in the singular), ``skipped`` of them reused.
        ``probe``, if given, returns what the heartbeat adds about the units in flight."""
        self.phase, self.total, self.unit = phase, total, unit
        self.probe = probe
        self.units[phase] = {"total": total, "reused": skipped}
        self.processed[phase] = {"docs": 0, "bytes": 0}
        self.done, self.docs, self.nbytes = skipped, 0, 0
        self.started = time.perf_counter()
        note = f" ({skipped:,} already committed, skipped)" if skipped else ""
        self.log(f"{phase}: {plural(total, unit)}{note}")
        self._start_heartbeat()

    def reused(self, phase: str, total: int, message: str) -> None:
        """A phase whose every unit an earlier run committed."""
        self.units[phase] = {"total": total, "reused": total}
        self.processed[phase] = {"docs": 0, "bytes": 0}
        self.phase, self.total, self.done, self.probe = phase, total, total, None
        self.log(f"{phase}: {message}")

    def advance(self, n: int = 1, docs: int = 0, nbytes: int = 0) -> None:
        self.done += n
        self.docs += docs
        self.nbytes += nbytes
        self.processed[self.phase] = {"docs": self.docs, "bytes": self.nbytes}
        now = time.perf_counter()
        if now - self.last >= self.min_interval_s or self.done >= self.total:
            elapsed = max(now - self.started, 1e-9)
            self.log(
                f"{self.phase}: {self.done:,}/{plural(self.total, self.unit)}, {self.docs:,} docs, "
                f"{self.docs / elapsed:,.0f} docs/s, {self.nbytes / elapsed / 1e6:.1f} MB/s"
            )

    def close(self) -> None:
        """Stops the heartbeat; the run is over, or failed."""
        self._stopped.set()

    def _start_heartbeat(self) -> None:
        if self.quiet or self.heartbeat_s <= 0 or (self._heartbeat and self._heartbeat.is_alive()):
            return
        self._stopped.clear()
        self._heartbeat = threading.Thread(target=self._beat, name="refinery-progress", daemon=True)
        self._heartbeat.start()

    def _beat(self) -> None:
        while not self._stopped.wait(min(1.0, self.heartbeat_s)):
            now = time.perf_counter()
            if self.done < self.total and now - self.last >= self.heartbeat_s:
                line = f"{self.phase}: {self.done:,}/{plural(self.total, self.unit)} done, {now - self.started:,.0f} s elapsed"
                extra = self._probe()
                self.log(line + (f"; {extra}" if extra else ""))

    def _probe(self) -> str:
        if self.probe is None:
            return ""
        try:
            return self.probe()
        except Exception:  # noqa: BLE001 - a progress line never fails a run
            return ""
