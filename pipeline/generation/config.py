"""The spec's LLM backend and sampling settings, validated at load time."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class RateLimitConfig(BaseModel):
    """Limits for the whole job; each worker process takes an equal share."""

    model_config = ConfigDict(extra="forbid")

    requests_per_s: float | None = Field(None, gt=0)
    tokens_per_min: int | None = Field(None, gt=0)
    """Prompt plus completion tokens; a request is charged its estimate before it is sent
    (prompt characters / 4 + ``max_tokens``) and the difference once the server reports usage."""


class BackendConfig(BaseModel):
    """An OpenAI-compatible chat completions endpoint (vLLM, SGLang, llama.cpp server,
    ``transformers serve``, a hosted API)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["openai"] = "openai"
    base_url: str
    """Up to and including ``/v1``, e.g. ``http://127.0.0.1:8000/v1``."""
    model: str
    api_key_env: str | None = None
    """Name of the environment variable that holds the API key (sent as a bearer token; never
    logged, never written to the report or manifest). None: no Authorization header."""
    concurrency: int = Field(8, ge=1, le=4096)
    """Requests in flight at once, per worker process."""
    timeout_s: float = Field(120.0, gt=0)
    """Per attempt, connect to last byte."""
    max_retries: int = Field(6, ge=0)
    """Retries of one request after a 429, a 5xx, a timeout or a dropped connection."""
    backoff_s: float = Field(0.5, gt=0)
    """First retry waits this long, doubling each time (a server's Retry-After wins when longer)."""
    max_backoff_s: float = Field(30.0, gt=0)
    rate_limit: RateLimitConfig = RateLimitConfig()

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {value!r}")
        return value.rstrip("/")


class SamplingConfig(BaseModel):
    """Sampling parameters sent with every request (part of each request's cache key)."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(512, ge=1)
    stop: list[str] | None = None

    def request_fields(self) -> dict:
        fields = {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}
        if self.stop:
            fields["stop"] = list(self.stop)
        return fields
