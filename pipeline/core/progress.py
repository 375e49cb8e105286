"""Console progress for long phases, to stderr. On a terminal: a live bar per phase with its
rate and ETA (tqdm), redrawn in place, and the phase's summary line when it ends. Elsewhere
(CI, ``refinery logs``, a file): one line per update, rate-limited, and a heartbeat line with
the elapsed time while a phase runs with nothing else to say."""

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
        self,
        stream=None,
        min_interval_s: float = 2.0,
        quiet: bool = False,
        heartbeat_s: float = HEARTBEAT_S,
        live: bool | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.live = (live if live is not None else _is_terminal(self.stream)) and not quiet
        """A redrawn bar per phase (a terminal), or plain lines."""
        self._bar = None
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
                if self._bar is not None:
                    self._bar.write(f"[refinery] {message}", file=self.stream)
                else:
                    print(f"[refinery] {message}", file=self.stream, flush=True)
                self.last = time.perf_counter()

    def _open_bar(self, skipped: int) -> None:
        from tqdm import tqdm

        self._close_bar()
        self._bar_phase, self._bar_line = self.phase, f"{self.done:,}/{plural(self.total, self.unit)}"
        self._bar = tqdm(
            total=self.total,
            initial=skipped,
            desc=f"[refinery] {self.phase}",
            unit=f" {self.unit}",
            file=self.stream,
            dynamic_ncols=True,
            leave=False,
            mininterval=min(self.min_interval_s, 0.5),
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{unit} [{elapsed}<{remaining}{postfix}]",
        )

    def _close_bar(self) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.close()
                self._bar = None

    def _end_phase(self) -> None:
        """Before another phase: a phase that ended short of its total (a generation round
        that met its target early) leaves its summary line too."""
        if self._bar is not None:
            self._close_bar()
            self.log(f"{self._bar_phase}: {self._bar_line}")

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
        self._end_phase()
        self.log(f"{phase}: {plural(total, unit)}{note}")
        if self.live and skipped < total:
            self._open_bar(skipped)
        self._start_heartbeat()

    def reused(self, phase: str, total: int, message: str) -> None:
        """A phase whose every unit an earlier run committed."""
        self.units[phase] = {"total": total, "reused": total}
        self.processed[phase] = {"docs": 0, "bytes": 0}
        self._end_phase()
        self.phase, self.total, self.done, self.probe = phase, total, total, None
        self.log(f"{phase}: {message}")

    def advance(self, n: int = 1, docs: int = 0, nbytes: int = 0) -> None:
        self.done += n
        self.docs += docs
        self.nbytes += nbytes
        self.processed[self.phase] = {"docs": self.docs, "bytes": self.nbytes}
        now = time.perf_counter()
        elapsed = max(now - self.started, 1e-9)
        rates = f"{self.docs:,} docs, {self.docs / elapsed:,.0f} docs/s, {self.nbytes / elapsed / 1e6:.1f} MB/s"
        if self._bar is not None and self.done < self.total:
            self._bar_phase, self._bar_line = self.phase, f"{self.done:,}/{plural(self.total, self.unit)}, {rates}"
            with self._lock:
                self._bar.set_postfix_str(rates, refresh=False)
                self._bar.update(n)
            return
        if now - self.last >= self.min_interval_s or self.done >= self.total:
            self._close_bar()
            self.log(f"{self.phase}: {self.done:,}/{plural(self.total, self.unit)}, {rates}")

    def close(self) -> None:
        """Stops the heartbeat; the run is over, or failed."""
        self._stopped.set()
        self._end_phase()

    def _start_heartbeat(self) -> None:
        if self.quiet or self.heartbeat_s <= 0 or (self._heartbeat and self._heartbeat.is_alive()):
            return
        self._stopped.clear()
        self._heartbeat = threading.Thread(target=self._beat, name="refinery-progress", daemon=True)
        self._heartbeat.start()

    def _beat(self) -> None:
        while not self._stopped.wait(min(1.0, self.heartbeat_s)):
            now = time.perf_counter()
            bar = self._bar
            if bar is not None:  # the bar shows the elapsed time; the probe goes after the rates
                extra = self._probe()
                with self._lock:
                    if extra and self._bar is bar:
                        bar.set_description_str(f"[refinery] {self.phase} ({extra})", refresh=False)
                    if self._bar is bar:
                        bar.refresh()
                continue
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


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
