"""The spec's LLM backend and sampling settings, validated at load time."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


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


# The paper's filter (self_instruct/bootstrap_instructions.py), plus video, audio and diagrams.
UNUSABLE_WORDS = [
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
    "draw", "plot", "go to", "video", "audio", "flowchart", "diagram",
]  # fmt: skip


class SelfInstructConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed_tasks: str
    """JSON lines of seed tasks in the paper's format: ``id``, ``instruction``, ``instances``
    (a list of ``{input, output}``), optional ``name`` and ``is_classification``."""
    target: int = Field(100, ge=1)
    """New instructions to keep (each becomes one record)."""
    max_rounds: int = Field(20, ge=1)
    requests_per_round: int = Field(16, ge=1)
    """Task-list requests per round; each may give several instructions."""
    examples_per_prompt: int = Field(8, ge=1)
    machine_examples: int = Field(2, ge=0)
    """Of the examples, how many come from earlier generations once there are enough."""
    instance_examples: int = Field(3, ge=0)
    """Seed tasks with their first instance shown in each input/output request."""
    max_similarity: float = Field(0.7, gt=0, le=1)
    """ROUGE-L F above which a new instruction is a near copy of the pool (seeds and kept ones)."""
    min_words: int = Field(4, ge=1)
    max_words: int = Field(150, ge=1)
    unusable_words: list[str] = UNUSABLE_WORDS
    tasks_template: str = "builtin:self_instruct_tasks"
    """Variables: ``examples`` (instruction texts)."""
    instance_template: str = "builtin:self_instruct_instance"
    """Variables: ``instruction``, ``examples`` (dicts of instruction, input, output)."""

    @model_validator(mode="after")
    def _ranges(self) -> SelfInstructConfig:
        if self.machine_examples > self.examples_per_prompt:
            raise ValueError("machine_examples cannot exceed examples_per_prompt")
        if self.min_words > self.max_words:
            raise ValueError("min_words cannot exceed max_words")
        return self


EVOLUTIONS = ("add_constraints", "deepen", "concretize", "increase_reasoning", "complicate_input", "breadth")


class EvolInstructConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed_instructions: str
    """JSON lines with ``instruction`` (and optional ``input``): Alpaca records, Self-Instruct
    seed tasks, or earlier generated records."""
    max_seed_instructions: int | None = Field(None, ge=1)
    """Use only the first this many."""
    rounds: int = Field(4, ge=1)
    """Evolutions of the whole pool (the paper: 4)."""
    operations: list[Literal[EVOLUTIONS]] = list(EVOLUTIONS)
    """Drawn uniformly per instruction and round: the five in-depth methods and in-breadth."""
    equality_check: bool = True
    """Ask the model whether an evolved instruction equals its original (no information gain: dropped)."""
    depth_template: str = "builtin:evol_instruct_depth"
    """Variables: ``instruction``, ``method`` (the in-depth method's text)."""
    breadth_template: str = "builtin:evol_instruct_breadth"
    """Variables: ``instruction``."""
    equal_template: str = "builtin:evol_instruct_equal"
    """Variables: ``first``, ``second``."""

    @field_validator("operations")
    @classmethod
    def _some(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("give at least one operation")
        return sorted(set(value), key=EVOLUTIONS.index)


class JudgeConfig(BaseModel):
    """Rejection sampling with an LLM judge."""

    model_config = ConfigDict(extra="forbid")

    backend: BackendConfig | None = None
    """The judge's own endpoint and model (a stronger model than the generator, say), with its
    own concurrency, retries and rate limit; unset: the generator's backend judges too."""
    prompts: str
    """JSON lines with ``instruction`` (and optional ``input``)."""
    candidates: int = Field(4, ge=1, le=64)
    """Answers sampled per prompt, each with its own seed."""
    keep: Literal["best", "above_min"] = "best"
    """``best``: the highest-scored answer of a prompt (at or above ``min_score`` if set);
    ``above_min``: every answer scored at or above ``min_score``."""
    min_score: float | None = None
    judge_template: str = "builtin:judge_score"
    """Variables: ``instruction``, ``response``. The built-in one is MT-Bench's single-answer
    grading prompt, asking for ``Score: N`` from 1 to 10."""
    score_pattern: str = r"(?i)score\s*[:=]?\s*\[*\s*(\d+(?:\.\d+)?)"
    """A regular expression whose first group is the score; the last match in range counts."""
    score_range: tuple[float, float] = (1.0, 10.0)
    judge_sampling: SamplingConfig = SamplingConfig(temperature=0.0, max_tokens=256)

    @model_validator(mode="after")
    def _consistent(self) -> JudgeConfig:
        if self.keep == "above_min" and self.min_score is None:
            raise ValueError("keep: above_min needs min_score")
        try:
            groups = re.compile(self.score_pattern).groups
        except re.error as exc:
            raise ValueError(f"score_pattern is not a regular expression: {exc}") from None
        if groups < 1:
            raise ValueError("score_pattern needs a group around the score, e.g. Score: (\\d+)")
        if self.score_range[0] > self.score_range[1]:
            raise ValueError("score_range: the low end is above the high end")
        return self


class DocumentsConfig(BaseModel):
    """Document-grounded generation: ``template`` applied to each document of ``source``
    (``pipeline.generation.grounded``)."""

    model_config = ConfigDict(extra="forbid")

    source: str
    """The corpus: a file, directory, prefix or glob of Parquet or JSON lines (local or s3://,
    read with the output's storage options), files in name order."""
    format: Literal["auto", "parquet", "jsonl"] = "auto"
    text_column: str = "text"
    id_column: str | None = "id"
    """Unset: ``<file key>:<row>`` names a document (its parent id in the provenance)."""
    max_documents: int = Field(1000, ge=1)
    """The first this many documents with text are used (one request each)."""
    max_chars: int = Field(6000, ge=100)
    """A document longer than this is cut at a space before it goes into the prompt."""
    template: str = "builtin:documents_rephrase_wikipedia"
    """Variables: ``document``. Built in: ``documents_rephrase_wikipedia`` (WRAP's and
    Nemotron-CC's Wikipedia-style rephrasing), ``documents_qa_pairs`` (``Question:``/``Answer:``
    pairs, for ``produce: conversations``), ``documents_describe_code``."""
    produce: Literal["documents", "conversations"] = "documents"
    """``documents``: each answer is a new document (the job's input is text records, for
    pretraining output); ``conversations``: each ``Question:``/``Answer:`` pair of an answer is
    a single-turn conversation (the job is a chat job)."""
    keep_source: bool | None = None
    """``produce: documents``: the source documents are records too (in ``source_domain``,
    real data), beside their rewrites, so the mix can keep its floor of real data. Unset: true
    for ``produce: documents``; ``produce: conversations`` keeps no source text."""
    source_domain: str = Field("real", min_length=1)
    min_words: int = Field(20, ge=1)
    """A rewrite with fewer words is rejected (``too_short``)."""

    @model_validator(mode="after")
    def _consistent(self) -> DocumentsConfig:
        if self.produce == "conversations" and self.keep_source:
            raise ValueError("keep_source: only for produce: documents (conversations keep no source text)")
        if self.keep_source is None:  # resolved here, so that a dumped spec validates again as it was
            self.keep_source = self.produce == "documents"
        return self


METHOD_SECTIONS = ("self_instruct", "evol_instruct", "judge", "documents")


def produces_documents(generate: Any) -> bool:
    """Whether a ``generate`` section (validated or as written in the spec) makes text
    records rather than conversations."""
    if isinstance(generate, GenerateConfig):
        return generate.method == "documents" and generate.documents.produce == "documents"
    if not isinstance(generate, dict) or generate.get("method") != "documents":
        return False
    section = generate.get("documents")
    return not isinstance(section, dict) or section.get("produce", "documents") == "documents"


class GenerateConfig(BaseModel):
    """A generation job (``generate:`` in the spec): rounds of requests to an LLM backend
    whose answers become the job's input records (OpenAI chat messages, or text documents
    for ``documents`` with ``produce: documents``; with provenance), which then go through
    the same stages as any chat data or documents."""

    model_config = ConfigDict(extra="forbid")

    backend: BackendConfig
    sampling: SamplingConfig = SamplingConfig()
    method: Literal["self_instruct", "evol_instruct", "judge", "documents"]
    self_instruct: SelfInstructConfig | None = None
    """The method's settings; required when ``method: self_instruct``."""
    evol_instruct: EvolInstructConfig | None = None
    """Required when ``method: evol_instruct``."""
    judge: JudgeConfig | None = None
    """Required when ``method: judge``."""
    documents: DocumentsConfig | None = None
    """Required when ``method: documents`` (document-grounded generation)."""
    max_requests: int = Field(10_000, ge=1)
    """Refuse to start when the method could need more requests than this (its upper bound:
    ``refinery run --dry-run`` prints it)."""
    workers: int | None = Field(None, ge=1)
    """Ray tasks sending requests at once (each with ``backend.concurrency`` in flight).
    Unset: one per CPU of the cluster."""
    domain: str = Field("synthetic", min_length=1)
    """The records' domain (for the mix; they are marked synthetic in the manifest)."""
    dedup_on: Literal["conversation", "first_user_turn"] = "conversation"
    """Conversation records: what exact and near dedup compare (``input.chat.dedup_on`` of the
    job's generated input): the whole conversation, or only its prompt, so that two answers to
    the same or a near-identical prompt keep one."""

    @model_validator(mode="after")
    def _method_section(self) -> GenerateConfig:
        if getattr(self, self.method) is None:
            raise ValueError(f"{self.method}: required for method: {self.method}")
        for other in METHOD_SECTIONS:
            if other != self.method and getattr(self, other) is not None:
                raise ValueError(f"{other}: given, but method is {self.method}")
        if self.dedup_on != "conversation" and produces_documents(self):
            raise ValueError("dedup_on: for conversation records; documents are deduplicated on their text")
        return self

    def method_config(self):
        return getattr(self, self.method)

    def backends(self) -> dict[str, BackendConfig]:
        """The backends by role: ``generator``, and ``judge`` where the judge has its own."""
        roles = {"generator": self.backend}
        if self.judge is not None and self.judge.backend is not None:
            roles["judge"] = self.judge.backend
        return roles

    def backend_for(self, role: str) -> BackendConfig:
        return self.backends().get(role, self.backend)

    def file_problems(self, options: Any = None) -> list[str]:
        """The method's seed file and templates, read and checked as a run would."""
        from pipeline.generation.methods import METHODS
        from pipeline.generation.prompts import PromptTemplate, TemplateError

        method = METHODS[self.method]
        config = self.method_config()
        key = f"generate.{self.method}"
        problems = [f"{key}.{problem}" for problem in method.source_problems(config, options)]
        for field_name, variables in method.TEMPLATE_VARIABLES.items():
            try:
                PromptTemplate.load(getattr(config, field_name), variables, options)
            except TemplateError as exc:
                problems.append(f"{key}.{field_name}: {exc}")
        return problems
