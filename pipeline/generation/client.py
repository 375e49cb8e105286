"""An OpenAI-compatible chat completions client: bounded concurrency, retries with
exponential backoff, a rate limit, a response cache, and counts of everything it did.

Why not Ray Data LLM's ``HttpRequestProcessorConfig``: its stage retries only 429/408/502/
503/504 (not 500 or a dropped connection), limits requests per second per worker only (no
tokens per minute), has no cache to resume from, and returns responses in request order, so
one slow request holds back the batch. The methods here need all four; they run this client
inside their own Ray tasks instead, one code path locally and on a cluster.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.generation.config import BackendConfig

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


# Failures that outlast every retry because the endpoint, not the request, is the problem: the
# batch stops at the first (a job would otherwise turn every request left into a reject).
# Other failures (HTTP 400 for one prompt, a timeout, a malformed answer) stay per request.
ENDPOINT_DOWN = {
    "connection": "no connection",
    "server_error": "server errors (HTTP 5xx)",
    "rate_limited": "rate limited (HTTP 429)",
}


class BackendError(RuntimeError):
    """The endpoint cannot serve the job at all (unreachable, key refused, unknown model);
    raised before work starts, or when it happens mid-run, instead of failing every request."""


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion. ``context`` (a template's name and sha256, a method's round)
    is part of the cache key but never sent."""

    messages: tuple[dict[str, Any], ...]
    sampling: dict[str, Any]
    seed: int | None = None
    context: dict[str, Any] = field(default_factory=dict)

    def key(self, backend: BackendConfig) -> str:
        payload = {
            "kind": backend.kind,
            "model": backend.model,
            "messages": list(self.messages),
            "sampling": self.sampling,
            "seed": self.seed,
            "context": self.context,
        }
        canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def body(self, model: str) -> dict[str, Any]:
        body = {"model": model, "messages": list(self.messages), **self.sampling}
        if self.seed is not None:
            body["seed"] = self.seed
        return body

    def estimated_tokens(self) -> int:
        prompt_chars = sum(len(str(m.get("content") or "")) for m in self.messages)
        return prompt_chars // 4 + int(self.sampling.get("max_tokens", 0))


@dataclass
class ChatResponse:
    """The outcome of one request. ``error`` names the failure kind (``http_400``,
    ``rate_limited``, ``server_error``, ``timeout``, ``connection``, ``bad_response``) when
    every attempt failed; ``detail`` says what the server said."""

    key: str
    text: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    detail: str | None = None
    attempts: int = 0
    cached: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChatResponse:
        return cls(**data)


@dataclass
class BackendStats:
    """What a backend did; merged over workers for the report."""

    requests: int = 0
    sent: int = 0
    retries: int = 0
    cache_hits: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    rate_limit_wait_s: float = 0.0
    seconds: float = 0.0

    def merge(self, other: BackendStats) -> None:
        self.requests += other.requests
        self.sent += other.sent
        self.retries += other.retries
        self.cache_hits += other.cache_hits
        for kind, n in other.failures.items():
            self.failures[kind] = self.failures.get(kind, 0) + n
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.rate_limit_wait_s += other.rate_limit_wait_s
        self.seconds = max(self.seconds, other.seconds)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class RateLimiter:
    """Requests spaced at ``1 / requests_per_s`` (no bursts, so a measured rate equals the
    limit) and a token bucket of ``tokens_per_min`` refilled continuously. Each worker
    process gets ``1 / share`` of both. A limiter lives for one batch of requests; a job's
    steps are spaced by its driver (``pipeline.phases.generate.Sender``)."""

    def __init__(self, requests_per_s: float | None, tokens_per_min: int | None, share: int = 1) -> None:
        self.interval = share / requests_per_s if requests_per_s else 0.0
        self.capacity = tokens_per_min / share if tokens_per_min else None
        self.refill_per_s = self.capacity / 60 if self.capacity else 0.0
        self.level = self.capacity or 0.0
        self.next_slot = 0.0
        self.refilled_at = time.monotonic()

    async def acquire(self, tokens: int) -> float:
        """Waits for a slot and ``tokens``; returns the seconds waited."""
        started = time.monotonic()
        if self.capacity is not None:
            need = min(tokens, self.capacity)  # a request bigger than a minute's budget waits for a full bucket
            while True:
                self._refill()
                if self.level >= need:
                    self.level -= tokens
                    break
                await asyncio.sleep((need - self.level) / self.refill_per_s)
        if self.interval:
            now = time.monotonic()
            slot = max(now, self.next_slot)
            self.next_slot = slot + self.interval
            if slot > now:
                await asyncio.sleep(slot - now)
        return time.monotonic() - started

    def settle(self, estimated: int, actual: int) -> None:
        if self.capacity is not None:
            self.level += estimated - actual

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.refilled_at) * self.refill_per_s)
        self.refilled_at = now


class OpenAIBackend:
    """Sends ``ChatRequest``s to ``{base_url}/chat/completions``. ``share``: the number of
    worker processes the rate limit is divided among. ``cache``: answered requests are
    taken from it and new answers added to it."""

    def __init__(self, config: BackendConfig, share: int = 1, cache: Any = None) -> None:
        self.config = config
        self.share = share
        self.cache = cache
        self.stats = BackendStats()

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.config.api_key_env:
            key = os.environ.get(self.config.api_key_env)
            if not key:
                raise BackendError(
                    f"generate.backend.api_key_env names {self.config.api_key_env}, which is not set in the "
                    "environment: export it (on a cluster, in the job's runtime_env env_vars)"
                )
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def check(self) -> None:
        """Fails fast, naming the endpoint, when it is unreachable, refuses the key, or does
        not serve the model."""
        url = f"{self.config.base_url}/models"
        request = urllib.request.Request(url, headers=self._headers())
        try:
            with urllib.request.urlopen(request, timeout=min(self.config.timeout_s, 30)) as reply:
                listing = json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise BackendError(self._refused(exc.code)) from None
            if exc.code == 404:  # some servers have no /models; the first request will tell
                return
            raise BackendError(f"{url} answered HTTP {exc.code}: {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BackendError(
                f"cannot reach the LLM endpoint {self.config.base_url} ({reason}): start the server, or fix "
                "generate.backend.base_url"
            ) from None
        served = [m.get("id") for m in listing.get("data", []) if isinstance(m, dict)]
        if served and self.config.model not in served:
            raise BackendError(
                f"the endpoint {self.config.base_url} does not serve model {self.config.model!r}; it serves "
                f"{', '.join(map(str, served[:10]))}: fix generate.backend.model"
            )

    def _refused(self, status: int) -> str:
        where = f"the key in ${self.config.api_key_env}" if self.config.api_key_env else "requests without a key"
        return (
            f"the LLM endpoint {self.config.base_url} refused {where} (HTTP {status}): check the key, or set "
            "generate.backend.api_key_env to the variable that holds it"
        )

    def complete(
        self, requests: Sequence[ChatRequest], on_response: Callable[[ChatResponse], None] | None = None
    ) -> list[ChatResponse]:
        """One response per request, in request order; ``on_response`` sees each as it arrives."""
        started = time.perf_counter()
        try:
            return asyncio.run(self._complete_all(requests, on_response))
        finally:
            self.stats.seconds += time.perf_counter() - started

    async def _complete_all(
        self, requests: Sequence[ChatRequest], on_response: Callable[[ChatResponse], None] | None
    ) -> list[ChatResponse]:
        import aiohttp

        limiter = RateLimiter(
            self.config.rate_limit.requests_per_s, self.config.rate_limit.tokens_per_min, self.share
        )  # fmt: skip
        headers = self._headers()
        results: list[ChatResponse | None] = [None] * len(requests)
        pending: list[int] = []
        for i, request in enumerate(requests):
            key = request.key(self.config)
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                results[i] = ChatResponse.from_json({**hit, "key": key, "cached": True})
                self._count(results[i])
                if on_response:
                    on_response(results[i])
            else:
                pending.append(i)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in pending:
            queue.put_nowait(i)
        connector = aiohttp.TCPConnector(limit=self.config.concurrency)
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        gone: list[ChatResponse] = []  # a request that could not reach the endpoint, retries spent
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:

            async def worker() -> None:
                while not queue.empty() and not gone:
                    i = queue.get_nowait()
                    response = await self._send(session, limiter, requests[i])
                    results[i] = response
                    self._count(response)
                    if response.error in ENDPOINT_DOWN:
                        gone.append(response)
                    if self.cache is not None and response.error is None:
                        self.cache.put(response)
                    if on_response:
                        on_response(response)

            tasks = [asyncio.create_task(worker()) for _ in range(min(self.config.concurrency, len(pending)))]
            try:
                await asyncio.gather(*tasks)
            finally:
                for task in tasks:
                    task.cancel()
                if self.cache is not None:
                    self.cache.flush()
        if gone:
            # A dead endpoint would turn every request left into a reject, silently; stop instead.
            answered = sum(1 for r in results if r is not None and r.error is None)
            raise BackendError(
                f"{self.config.base_url} stopped answering: {ENDPOINT_DOWN[gone[0].error]} through "
                f"{gone[0].attempts} attempts ({gone[0].detail or 'no detail'}). The {answered} answers received "
                "in this batch are cached: once the endpoint is back, run the job again and it resumes without "
                "sending them again"
            )
        return [r for r in results if r is not None]

    def _count(self, response: ChatResponse) -> None:
        stats = self.stats
        stats.requests += 1
        stats.cache_hits += response.cached
        if not response.cached:
            stats.sent += response.attempts
            stats.retries += max(0, response.attempts - 1)
            stats.prompt_tokens += response.prompt_tokens
            stats.completion_tokens += response.completion_tokens
        if response.error:
            stats.failures[response.error] = stats.failures.get(response.error, 0) + 1

    async def _send(self, session: Any, limiter: RateLimiter, request: ChatRequest) -> ChatResponse:
        import aiohttp

        key = request.key(self.config)
        url = f"{self.config.base_url}/chat/completions"
        body = json.dumps(request.body(self.config.model))
        estimated = request.estimated_tokens()
        error, detail = "connection", ""
        for attempt in range(1, self.config.max_retries + 2):
            self.stats.rate_limit_wait_s += await limiter.acquire(estimated)
            retry_after = None
            try:
                async with session.post(url, data=body) as reply:
                    text = await reply.text()
                    if reply.status == 200:
                        response = _parse(key, text, attempt)
                        limiter.settle(estimated, response.prompt_tokens + response.completion_tokens)
                        return response
                    limiter.settle(estimated, 0)
                    if reply.status in (401, 403):
                        raise BackendError(self._refused(reply.status))
                    detail = f"HTTP {reply.status}: {text[:300]}"
                    if reply.status not in RETRYABLE_STATUS:
                        return ChatResponse(key, error=f"http_{reply.status}", detail=detail, attempts=attempt)
                    error = "rate_limited" if reply.status == 429 else "server_error"
                    retry_after = _seconds(reply.headers.get("Retry-After"))
            except TimeoutError:
                limiter.settle(estimated, 0)
                error, detail = "timeout", f"no complete answer within {self.config.timeout_s:g} s"
            except aiohttp.ClientError as exc:
                limiter.settle(estimated, 0)
                error, detail = "connection", f"{type(exc).__name__}: {exc}"
            if attempt <= self.config.max_retries:
                wait = min(self.config.max_backoff_s, self.config.backoff_s * 2 ** (attempt - 1))
                await asyncio.sleep(max(wait, retry_after or 0.0))
        return ChatResponse(key, error=error, detail=detail, attempts=self.config.max_retries + 1)


def _parse(key: str, text: str, attempt: int) -> ChatResponse:
    try:
        data = json.loads(text)
        choice = data["choices"][0]
        content = choice["message"].get("content")
        usage = data.get("usage") or {}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return ChatResponse(key, error="bad_response", detail=f"not a chat completion: {text[:300]}", attempts=attempt)
    return ChatResponse(
        key,
        text=content if isinstance(content, str) else "",
        finish_reason=choice.get("finish_reason"),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        attempts=attempt,
    )


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
