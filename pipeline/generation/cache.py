"""The response cache: every answered request, keyed by its ``ChatRequest.key`` (model,
messages, sampling, seed and the method's context), so a killed job resumes without sending
a finished request again.

On local disk a writer appends each answer to its own segment (``<writer>-000000.jsonl``) as
it comes, so a job killed at any moment (SIGKILL included) resends nothing it was answered.
Object stores have no append, so there a writer adds immutable segments (``<writer>-<n>.jsonl``)
every ``flush_every`` answers or ``flush_s`` seconds: a killed job resends at most the answers
of each worker's last ``flush_s`` seconds. A reader loads all segments; a line cut short by the
kill is skipped. A request answered twice (two writers racing) keeps the first segment's
answer in name order, so a resumed run reads the same answer whichever writer wrote last.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

from pipeline.core import storage
from pipeline.generation.client import ChatResponse

_KEPT = ("text", "finish_reason", "prompt_tokens", "completion_tokens", "attempts")


class ResponseCache:
    def __init__(
        self,
        uri: str,
        options: storage.StorageOptions | None = None,
        writer: str | None = None,
        flush_every: int = 256,
        flush_s: float = 10.0,
    ) -> None:
        self.uri = uri
        self.options = options
        self.writer = writer or uuid.uuid4().hex[:12]
        self.flush_every = flush_every
        self.flush_s = flush_s
        self.answers: dict[str, dict[str, Any]] = {}
        self.buffer: list[str] = []
        self.segments = 0
        self.flushed_at = time.monotonic()
        self.local = storage.is_local(uri)
        self._appending: Any = None  # the local segment, opened by the first answer
        self._load()

    def _load(self) -> None:
        if not storage.exists(self.uri, self.options):
            return
        for segment in sorted(storage.list_files(self.uri, self.options, suffix=".jsonl")):
            for line in storage.read_bytes(segment, self.options).decode().splitlines():
                if not line:
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:  # a segment cut short by a crash of the store: its whole lines still count
                    continue
                self.answers.setdefault(entry["key"], {k: entry[k] for k in _KEPT if k in entry})

    def __len__(self) -> int:
        return len(self.answers)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.answers.get(key)

    def put(self, response: ChatResponse) -> None:
        entry = {"key": response.key, **{k: getattr(response, k) for k in _KEPT}}
        self.answers.setdefault(response.key, {k: entry[k] for k in _KEPT})
        if self.local:  # in the kernel's hands once written: a killed process loses nothing
            if self._appending is None:
                path = storage.join(self.uri, f"{self.writer}-000000.jsonl")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                self._appending = open(path, "a", encoding="utf-8")  # noqa: SIM115 (open while the writer lives)
            self._appending.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self._appending.flush()
            return
        self.buffer.append(json.dumps(entry, ensure_ascii=False))
        if len(self.buffer) >= self.flush_every or time.monotonic() - self.flushed_at >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        self.flushed_at = time.monotonic()
        if self._appending is not None:  # the batch is done: the next answer opens it again
            self._appending.close()
            self._appending = None
            return
        if not self.buffer:
            return
        data = ("\n".join(self.buffer) + "\n").encode()
        storage.write_bytes(storage.join(self.uri, f"{self.writer}-{self.segments:06d}.jsonl"), data, self.options)
        self.segments += 1
        self.buffer = []
