"""The OpenAI-compatible backend against a real server process (``transformers serve`` on
127.0.0.1 with a small Llama built offline), with a fault proxy process in front of it
where a test needs 429s, 500s or a refused key; requests that reached the server are
counted by the proxy, on the server's side of the wire."""

from __future__ import annotations

import asyncio
import time

import pytest

from pipeline.generation.cache import ResponseCache
from pipeline.generation.client import BackendError, ChatRequest, OpenAIBackend, RateLimiter
from pipeline.generation.config import BackendConfig, SamplingConfig

CHAT = "POST /v1/chat/completions"


def requests(n: int, offset: int = 0, max_tokens: int = 8) -> list[ChatRequest]:
    sampling = SamplingConfig(temperature=0.0, max_tokens=max_tokens).request_fields()
    return [
        ChatRequest(({"role": "user", "content": f"Write task number {i}."},), sampling, seed=i)
        for i in range(offset, offset + n)
    ]


def backend(base_url: str, model: str, **fields) -> OpenAIBackend:
    return OpenAIBackend(BackendConfig(base_url=base_url, model=model, backoff_s=0.05, **fields))


def test_answers_come_back_in_order_with_usage_and_are_deterministic(llm_server):
    client = backend(llm_server.base_url, llm_server.model, concurrency=4)
    client.check()
    first = client.complete(requests(6))
    again = backend(llm_server.base_url, llm_server.model, concurrency=2).complete(requests(6))
    assert [r.error for r in first] == [None] * 6
    assert all(r.text and r.completion_tokens > 0 and r.prompt_tokens > 0 for r in first)
    assert [r.key for r in first] == [q.key(client.config) for q in requests(6)]
    assert [r.text for r in first] == [r.text for r in again]  # greedy decode of fixed weights
    stats = client.stats
    assert (stats.requests, stats.sent, stats.retries, stats.failures) == (6, 6, 0, {})
    assert stats.prompt_tokens == sum(r.prompt_tokens for r in first)


def test_a_resumed_run_sends_only_what_the_cache_lacks(llm_server, fault_proxy, tmp_path):
    proxy = fault_proxy(llm_server.port, [])
    cache_uri = str(tmp_path / "cache")
    client = OpenAIBackend(
        BackendConfig(base_url=proxy.base_url, model=llm_server.model), cache=ResponseCache(cache_uri, flush_every=2)
    )
    first = client.complete(requests(5))
    assert proxy.state("forwarded")[CHAT] == 5

    resumed = OpenAIBackend(
        BackendConfig(base_url=proxy.base_url, model=llm_server.model), cache=ResponseCache(cache_uri)
    )  # fmt: skip
    answers = resumed.complete(requests(7))
    assert proxy.state("forwarded")[CHAT] == 7  # only the two new requests went out
    assert [r.cached for r in answers] == [True] * 5 + [False] * 2
    assert [r.text for r in answers[:5]] == [r.text for r in first]
    assert resumed.stats.cache_hits == 5 and resumed.stats.sent == 2
    assert len(ResponseCache(cache_uri)) == 7


def test_429_and_500_are_retried_with_backoff(llm_server, fault_proxy):
    schedule = [
        {"method": "POST", "query": "/chat/completions", "nth": [1, 2], "fault": "429"},
        {"method": "POST", "query": "/chat/completions", "nth": [4], "fault": "500"},
        {"method": "POST", "query": "/chat/completions", "nth": [5], "fault": "drop"},
    ]
    proxy = fault_proxy(llm_server.port, schedule)
    client = backend(proxy.base_url, llm_server.model, concurrency=1)
    answers = client.complete(requests(4))
    assert [r.error for r in answers] == [None] * 4
    assert [f["fault"] for f in proxy.state("faults")] == ["429", "429", "500", "drop"]
    assert proxy.state("forwarded")[CHAT] == 4
    assert client.stats.retries == 4 and client.stats.sent == 8
    assert answers[0].attempts == 3
    # exponential backoff (0.05 s, then 0.1 s) between the first request's attempts
    faults, arrivals = proxy.state("faults"), proxy.state("arrivals")
    assert faults[1]["at"] - faults[0]["at"] >= 0.05 and arrivals[0] - faults[1]["at"] >= 0.1


def test_an_answer_that_is_no_chat_completion_is_a_named_failure(llm_server, fault_proxy):
    """A 200 whose body is an HTML page: that request fails as ``bad_response`` (saying what
    came back), the others are answered, and the failure is counted by kind."""
    proxy = fault_proxy(
        llm_server.port, [{"method": "POST", "query": "/chat/completions", "nth": [2], "fault": "html"}]
    )
    client = backend(proxy.base_url, llm_server.model, concurrency=1)
    answers = client.complete(requests(3))
    assert [r.error for r in answers] == [None, "bad_response", None]
    assert answers[1].text is None and "not a chat completion: <html>" in answers[1].detail
    assert client.stats.failures == {"bad_response": 1} and proxy.state("forwarded")[CHAT] == 2


def test_an_endpoint_that_keeps_failing_stops_the_batch(llm_server, fault_proxy, tmp_path):
    """A 5xx through every retry is the endpoint's failure, not the request's: the batch stops
    at the first such request (rather than rejecting every request left), keeping the answers
    it got in the cache."""
    proxy = fault_proxy(
        llm_server.port, [{"method": "POST", "query": "/chat/completions", "nth": list(range(3, 40)), "fault": "500"}]
    )
    config = BackendConfig(
        base_url=proxy.base_url, model=llm_server.model, backoff_s=0.05, max_retries=2, concurrency=1
    )
    client = OpenAIBackend(config, cache=ResponseCache(str(tmp_path / "cache"), writer="w"))
    with pytest.raises(BackendError, match=r"stopped answering: server errors \(HTTP 5xx\) through 3 attempts") as err:
        client.complete(requests(6))
    assert "The 2 answers received in this batch are cached" in str(err.value)
    assert len(ResponseCache(str(tmp_path / "cache"))) == 2
    assert len(proxy.state("faults")) == 3  # one request's attempts, then no more requests


def test_an_unreachable_endpoint_is_named_before_any_work(llm_server):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once the socket closes
    client = backend(f"http://127.0.0.1:{port}/v1", llm_server.model)
    with pytest.raises(BackendError, match=rf"cannot reach the LLM endpoint http://127.0.0.1:{port}/v1"):
        client.check()


def test_an_unknown_model_names_what_the_endpoint_serves(llm_server):
    client = backend(llm_server.base_url, "no-such-model")
    with pytest.raises(BackendError, match="does not serve model 'no-such-model'.*generate.backend.model"):
        client.check()


def test_a_refused_key_says_so_without_printing_it(llm_server, fault_proxy, monkeypatch):
    secret = "sk-test-5be1d2c0a9f34e71"
    monkeypatch.setenv("REFINERY_TEST_LLM_KEY", secret)
    proxy = fault_proxy(llm_server.port, [{"query": "/v1/", "nth": list(range(1, 10)), "fault": "401"}])
    client = backend(proxy.base_url, llm_server.model, api_key_env="REFINERY_TEST_LLM_KEY")
    with pytest.raises(BackendError) as raised:
        client.check()
    assert "HTTP 401" in str(raised.value) and "$REFINERY_TEST_LLM_KEY" in str(raised.value)
    with pytest.raises(BackendError) as mid_run:
        client.complete(requests(2))
    for message in (str(raised.value), str(mid_run.value), repr(client.stats.to_json())):
        assert secret not in message


def test_a_missing_key_variable_is_an_error_naming_it(llm_server, monkeypatch):
    monkeypatch.delenv("REFINERY_TEST_LLM_KEY", raising=False)
    client = backend(llm_server.base_url, llm_server.model, api_key_env="REFINERY_TEST_LLM_KEY")
    with pytest.raises(BackendError, match="REFINERY_TEST_LLM_KEY, which is not set"):
        client.check()


def test_the_request_rate_limit_holds_at_the_server(llm_server, fault_proxy):
    proxy = fault_proxy(llm_server.port, [])
    client = backend(proxy.base_url, llm_server.model, concurrency=8, rate_limit={"requests_per_s": 8})
    client.complete(requests(17, max_tokens=2))
    arrivals = proxy.state("arrivals")
    measured = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    assert len(arrivals) == 17
    assert abs(measured - 8) / 8 <= 0.10, measured


def test_the_token_budget_waits_for_refill_and_settles_actual_usage():
    async def scenario() -> tuple[float, float]:
        limiter = RateLimiter(None, tokens_per_min=600)  # 10 tokens/s, a bucket of 600
        waited_full = await limiter.acquire(600)  # the whole minute's budget: no wait
        limiter.settle(600, 590)  # the server used 10 fewer
        started = time.monotonic()
        await limiter.acquire(15)  # 10 back from settling + refill: about half a second
        return waited_full, time.monotonic() - started

    waited_full, waited = asyncio.run(scenario())
    assert waited_full < 0.05
    assert 0.4 <= waited <= 0.9, waited


def test_backend_config_rejects_unknown_keys_and_bad_urls():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="concurrent"):
        BackendConfig(base_url="http://127.0.0.1:1/v1", model="m", concurrent=4)
    with pytest.raises(ValidationError, match="must start with http"):
        BackendConfig(base_url="127.0.0.1:8000/v1", model="m")


def test_a_timed_out_attempt_is_retried(llm_server, fault_proxy):
    proxy = fault_proxy(
        llm_server.port, [{"method": "POST", "query": "/chat/completions", "nth": [1], "fault": "stall"}]
    )
    client = backend(proxy.base_url, llm_server.model, timeout_s=1.0)
    (answer,) = client.complete(requests(1))
    assert (answer.error, answer.attempts) == (None, 2)
    assert client.stats.retries == 1
