"""Console progress for long phases: one line per update, rate-limited, to stderr."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, stream=None, min_interval_s: float = 2.0, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.min_interval_s = min_interval_s
        self.quiet = quiet
        self.phase = ""
        self.total = 0
        self.done = 0
        # per phase: units of work, and how many were committed by an earlier run and reused
        self.units: dict[str, dict[str, int]] = {}

    def log(self, message: str) -> None:
        if not self.quiet:
            print(f"[refinery] {message}", file=self.stream, flush=True)

    def start(self, phase: str, total: int, unit: str, skipped: int = 0) -> None:
        self.phase, self.total, self.unit = phase, total, unit
        self.units[phase] = {"total": total, "reused": skipped}
        self.done, self.docs, self.nbytes = skipped, 0, 0
        self.started = self.last = time.perf_counter()
        note = f" ({skipped} already committed, skipped)" if skipped else ""
        self.log(f"{phase}: {total} {unit}{note}")

    def advance(self, n: int = 1, docs: int = 0, nbytes: int = 0) -> None:
        self.done += n
        self.docs += docs
        self.nbytes += nbytes
        now = time.perf_counter()
        if now - self.last >= self.min_interval_s or self.done >= self.total:
            self.last = now
            elapsed = max(now - self.started, 1e-9)
            self.log(
                f"{self.phase}: {self.done}/{self.total} {self.unit}, {self.docs:,} docs, "
                f"{self.docs / elapsed:,.0f} docs/s, {self.nbytes / elapsed / 1e6:.1f} MB/s"
            )
