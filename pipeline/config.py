"""The job spec: one YAML file, validated by typed models when it is loaded.

Unknown keys, wrong types, impossible values and missing files are errors that name the
key path (``stages.tokenize.model``). The ``stages:`` section has one section per
registered capability (its config model lives in its package) and the packing phases'.
"""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    model_validator,
)

from pipeline.core import storage
from pipeline.core.hashing import short_hash
from pipeline.generation.config import GenerateConfig, produces_documents
from pipeline.phases.annotate.validation import InputConfig, settings_for_hash
from pipeline.phases.examples import KEPT_PER_REASON
from pipeline.phases.mix.plan import MixConfig
from pipeline.phases.pack.packing import PackConfig
from pipeline.phases.tokenize.tokenizer import TokenizeConfig
from pipeline.stages.base import StageConfig
from pipeline.stages.registry import capabilities


class DocumentsOutputConfig(BaseModel):
    """The curated document shards of ``output.kind: documents`` or ``both``."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["parquet", "jsonl.gz"] = "parquet"
    """``parquet`` (zstd-compressed), or gzip-compressed JSON lines (one object per document;
    non-string values as JSON)."""
    shard_bytes: int = Field(256 * 1024 * 1024, gt=0)
    """Target text bytes per document shard (uncompressed UTF-8) when the output has no
    tokens; with tokens, document shard ``j`` holds exactly the documents of token shard ``j``.
    A pack worker holds about three times a shard's documents in memory while it writes one."""
    row_group_rows: int = Field(8192, gt=0)
    """Rows per Parquet row group: what a reader fetches at a time."""
    chat_format: Literal["openai", "sharegpt", "alpaca", "chatml"] | None = None
    """Chat jobs (``input.chat``): the format the kept conversations are written in, one JSON
    lines record each with its ``id`` (``format: jsonl.gz``); unset writes ``openai``. A
    conversation the format cannot hold (Alpaca holds one exchange and no tools; ChatML no
    tool calls) is rejected as ``not_representable_as_<format>``."""

    def settings_for_hash(self) -> dict:
        """The section as work hashes hold it: ``chat_format`` only when set."""
        return self.model_dump(mode="json", exclude={"chat_format"} if self.chat_format is None else set())


class OutputConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    uri: str
    """Where the snapshots (token and/or document shards), rejects, quarantine, the manifest
    and the report go."""
    kind: Literal["tokens", "documents", "both"] = "tokens"
    """``tokens``: packed token shards for pretraining (needs ``stages.tokenize``).
    ``documents``: the kept documents with their annotations, as Parquet or JSON lines shards,
    to tokenize later with any tokenizer (no tokenizer needed). ``both``: both, from one mix:
    document shard ``j`` holds the documents of token shard ``j``, in the same order."""
    documents: DocumentsOutputConfig = DocumentsOutputConfig()

    @property
    def writes_tokens(self) -> bool:
        return self.kind in ("tokens", "both")

    @property
    def writes_documents(self) -> bool:
        return self.kind in ("documents", "both")

    storage_options: storage.StorageOptions = storage.StorageOptions()
    write_rejects: bool = True
    """Write rejected documents (with text and reason) under ``rejects/``; when false only counts are kept."""
    upload: storage.UploadConfig = storage.UploadConfig()


class RayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str | None = None
    """Existing cluster (``auto``, ``ray://host:10001``); unset starts a local Ray sized to this machine."""
    num_cpus: int | None = Field(None, ge=1)
    """CPUs for a local Ray; unset uses every core."""
    object_store_memory_mb: int | None = Field(None, ge=64)
    shuffle_strategy: Literal["sort_shuffle_pull_based", "hash_shuffle", "shuffle_v2"] = "sort_shuffle_pull_based"
    """Ray Data shuffle used by global stages. The task-based sort shuffle starts no
    aggregator actors: measured 4-5x faster than the actor-based ones on small clusters."""
    progress_bars: bool = False
    """Ray Data's own progress bars, in addition to Refinery's per-phase progress lines."""
    units_per_worker: int | None = Field(32, ge=1)
    """Units of work (input shards, output shards) one worker process runs before Ray replaces
    it with a fresh one, which sets its phase up again (models loaded, seconds). A long-lived
    process keeps the fragments of everything it ran, in Python's allocator and C's, so its
    memory would creep up with the size of the job (measured: a worker's private memory 22%
    higher at 1M conversations than at 100k, for units of the same size). Unset: never."""
    max_parallel_tasks: int | None = Field(None, ge=1)
    """Per-shard tasks in flight at once (one CPU each). Unset: the cluster's CPUs when the
    run starts. On an autoscaling cluster, set it to the most CPUs the cluster may grow to:
    the queued tasks are the demand that makes the autoscaler add nodes."""


# Sections of ``stages:`` that configure the phases after dedup, not a capability:
# changing them never redoes annotate or dedup work.
PACKING_SECTIONS = frozenset({"tokenize", "mix", "pack"})


class _StagesBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _checks_across_sections(self) -> _StagesBase:
        for cap in capabilities():
            config = getattr(self, cap.key)
            if config.enabled:
                config.check_job(self, f"stages.{cap.key}")
        return self


def _stages_model() -> type[BaseModel]:
    """``stages:``: one section per registered capability, then the packing phases'."""
    fields: dict[str, Any] = {cap.key: (cap.config, cap.config()) for cap in capabilities()}
    fields |= {
        "tokenize": (TokenizeConfig | None, None),
        "mix": (MixConfig, MixConfig()),
        "pack": (PackConfig, PackConfig()),
    }
    return create_model("StagesConfig", __base__=_StagesBase, **fields)


StagesConfig = _stages_model()


# Spec keys added after outputs were first committed, with their defaults: at the default
# they stay out of ``config_hash``, so that upgrading does not redo committed work.
_ADDED_WITH_DEFAULTS: dict[tuple[str, ...], Any] = {
    ("output", "kind"): "tokens",
    ("output", "documents"): DocumentsOutputConfig().model_dump(mode="json"),
    ("stages", "mix", "budget_bytes"): None,
    ("stages", "mix", "rehydration"): [],
    ("stages", "mix", "synthetic_domains"): [],
    ("stages", "mix", "min_real_fraction"): 0.2,
    ("stages", "mix", "on_real_floor"): "fail",
    ("stages", "mix", "max_synthetic_share"): None,
    ("stages", "tokenize", "bos_token"): None,
    ("stages", "tokenize", "eos_token"): None,
    ("stages", "tokenize", "pad_token"): None,
    ("stages", "tokenize", "chat"): None,
}


class ReportConfig(BaseModel):
    """What the run report shows beyond its counts."""

    model_config = ConfigDict(extra="forbid")

    examples: bool = True
    """Examples of what each stage rejected, per reason, in report.json, report.md and
    report.html: the id, the start of the text (PII scrubbed as the pii stage would; none for
    contamination, whose documents hold eval text) and what the stage recorded; a near or
    exact duplicate beside the document it duplicates. false leaves them out."""
    examples_per_reason: int = Field(3, ge=1, le=KEPT_PER_REASON)
    charts: bool = True
    """report.html and the charts' SVGs (report_charts/, shown by report.md); about a second
    per run. false writes report.json and report.md only (``refinery report`` makes the
    page later)."""


class JobSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    seed: int = 0
    input: InputConfig
    output: OutputConfig
    ray: RayConfig = RayConfig()
    stages: StagesConfig
    report: ReportConfig = ReportConfig()
    generate: GenerateConfig | None = None
    """A generation job: its records (OpenAI chat messages, or text documents, written under
    ``generated/`` in the output) are the job's input, so ``input`` is left out."""

    @model_validator(mode="before")
    @classmethod
    def _generated_input(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("generate") is None:
            return data
        output = data.get("output")
        if not isinstance(output, dict) or not isinstance(output.get("uri"), str):
            return data  # output's own error says what is missing
        given = data.get("input")
        if given is not None:
            # a spec dumped after validation (as workers get it) carries the derived input
            if isinstance(given, dict) and given.get("uri") == storage.join(output["uri"], "generated"):
                return data
            raise ValueError(
                "input: a generation job reads the records it generates (under the output's generated/); "
                "leave input out"
            )
        generated = {"uri": storage.join(output["uri"], "generated"), "id_column": "id", "url_column": None}
        if not produces_documents(data["generate"]):
            section = data["generate"]
            dedup_on = section.get("dedup_on") if isinstance(section, dict) else getattr(section, "dedup_on", None)
            # a bad value is generate.dedup_on's own error, not one at a key the user never wrote
            valid = dedup_on in ("conversation", "first_user_turn")
            generated["chat"] = {"format": "openai", "dedup_on": dedup_on if valid else "conversation"}
        if output.get("storage_options") is not None:
            generated["storage_options"] = output["storage_options"]
        return {**data, "input": generated}

    @model_validator(mode="after")
    def _generated_input_follows_generate(self) -> JobSpec:
        chat = self.input.chat if self.generate is not None else None
        if chat is not None and chat.dedup_on != self.generate.dedup_on:
            raise ValueError(
                f"input.chat.dedup_on: {chat.dedup_on}, but generate.dedup_on is {self.generate.dedup_on}; a "
                "generation job's input is derived from its generate section: leave input out"
            )
        return self

    @model_validator(mode="after")
    def _output_needs(self) -> JobSpec:
        mix = self.stages.mix
        if self.output.writes_tokens:
            if self.stages.tokenize is None:
                raise ValueError(
                    f"stages.tokenize: required for output.kind '{self.output.kind}' (it names the "
                    "tokenizer of the token shards); set output.kind: documents to write documents only"
                )
            if mix.budget_bytes is not None:
                raise ValueError(
                    "stages.mix.budget_bytes: a token output is mixed in tokens; set budget_tokens instead"
                )
        elif mix.budget_tokens is not None:
            raise ValueError(
                "stages.mix.budget_tokens: output.kind 'documents' has no tokens; its mix is measured in "
                "text bytes: set budget_bytes instead"
            )
        self._chat_checks()
        return self

    def _chat_checks(self) -> None:
        """A chat job (``input.chat``) renders conversations and writes SFT rows; a document
        job does neither."""
        tokenize, pack = self.stages.tokenize, self.stages.pack
        chat = self.input.chat is not None
        if not chat and self.output.documents.chat_format is not None:
            raise ValueError("output.documents.chat_format: only for chat jobs; set input.chat to read chat data")
        if not chat:
            if tokenize is not None and tokenize.chat is not None:
                raise ValueError("stages.tokenize.chat: only for chat jobs; set input.chat to read chat data")
            if self.output.writes_tokens and pack.format == "parquet":
                raise ValueError("stages.pack.format: parquet (SFT rows) is for chat jobs (input.chat)")
            if pack.mode == "none":
                raise ValueError("stages.pack.mode: none is for chat jobs; documents use concat or bestfit")
            return
        if self.output.writes_tokens:
            if tokenize.chat is None:
                raise ValueError(
                    "stages.tokenize.chat: required for a chat job's token output: it names the chat template "
                    "of the model to be trained (e.g. chat: {template: path/to/tokenizer_config.json}, or chatml)"
                )
            if pack.format != "parquet":
                raise ValueError(
                    f"stages.pack.format: a chat job writes SFT rows with loss masks, which {pack.format} cannot "
                    "hold; set format: parquet"
                )
            if pack.mode == "concat":
                raise ValueError(
                    "stages.pack.mode: concat would cut conversations apart; set bestfit (whole conversations "
                    "packed) or none (one per sequence)"
                )
        if self.output.writes_documents and self.output.documents.format != "jsonl.gz":
            raise ValueError(
                "output.documents.format: a chat job writes its conversations as JSON lines, one record each in "
                "output.documents.chat_format; set format: jsonl.gz"
            )
        contamination = getattr(self.stages, "contamination", None)
        if contamination is not None and contamination.enabled and contamination.action == "excise":
            raise ValueError(
                "stages.contamination.action: excise would cut text out of a conversation's turns; use drop "
                "(reject contaminated conversations) or annotate"
            )

    @property
    def counts_duplicates(self) -> bool:
        """Whether dedup counts each kept document's duplicate cluster: for document outputs
        (``duplicate_count``) and rehydration (copies by cluster size); other jobs skip it."""
        return self.output.writes_documents or bool(self.stages.mix.rehydration)

    @property
    def mix_unit(self) -> str:
        """What the mix's weights, budget and shard sizes count: tokens when the output has
        any, else the documents' UTF-8 text bytes."""
        return "tokens" if self.output.writes_tokens else "bytes"

    def file_problems(self) -> list[str]:
        """Every problem with the files the spec names, each starting with its key path."""
        sections = {cap.key: getattr(self.stages, cap.key) for cap in capabilities()}
        tokenize = self.stages.tokenize if self.output.writes_tokens else None
        if self.generate is not None:  # its input does not exist before it runs
            return self.generate.file_problems(self.output.storage_options) + _file_problems(
                None, tokenize, self.stages.pack, sections
            )
        return _file_problems(self.input, tokenize, self.stages.pack, sections)

    def config_hash(self) -> str:
        """Hash of everything that changes the output: the spec (``ray``, upload settings and
        ``input.max_unreadable_shards`` aside) and
        the model files it names, by size and change token."""
        # a generation job's records are its input, fingerprinted per file like any input
        spec = self.model_dump(
            mode="json", exclude={"ray": True, "report": True, "output": {"upload"}, "generate": True}
        )
        spec["input"] = settings_for_hash(self.input, {"max_unreadable_shards"})
        spec["stages"] |= self.capability_settings()
        for key in self._unused_later_capabilities():
            del spec["stages"][key]
        for path, default in _ADDED_WITH_DEFAULTS.items():
            *parents, name = path
            section = spec
            for parent in parents:
                section = section.get(parent) or {}
            if name in section and section[name] == default:
                del section[name]
        return short_hash({"spec": spec, "models": self.model_fingerprints()})

    def model_files(self) -> dict[str, tuple[str, storage.StorageOptions]]:
        """Every model file the enabled stages read, by key path."""
        tokenize = self.stages.tokenize
        files = {}
        if tokenize is not None and self.output.writes_tokens:
            files["stages.tokenize.model"] = (tokenize.model, tokenize.storage_options)
        for cap in capabilities():
            config = getattr(self.stages, cap.key)
            if config.enabled:
                files |= config.model_files(f"stages.{cap.key}")
        return files

    def capability_settings(self) -> dict[str, Any]:
        """Every capability's section (the packing phases' aside): what annotate and dedup
        work depends on."""
        unused = self._unused_later_capabilities()
        return {
            cap.key: getattr(self.stages, cap.key).settings_for_hash()
            for cap in capabilities()
            if cap.key not in unused
        }

    def _unused_later_capabilities(self) -> set[str]:
        """Capabilities that stay out of work hashes while unused (``hashed_when_unused``)
        whose sections are at their defaults."""
        return {
            cap.key
            for cap in capabilities()
            if not cap.hashed_when_unused and getattr(self.stages, cap.key).model_dump() == cap.config().model_dump()
        }

    def model_fingerprints(self, exclude: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
        """Size and change token (mtime, ETag) of each model file, so that a model retrained
        in place invalidates the work that used it."""
        return {
            key: storage.file_info(uri, options)
            for key, (uri, options) in self.model_files().items()
            if key not in exclude
        }


def _file_problems(
    input: InputConfig | None,
    tokenize: TokenizeConfig | None,
    pack: PackConfig | None,
    sections: dict[str, StageConfig],
) -> list[str]:
    """Problems with the files named by these sections (None: a section that is itself
    invalid): an input with no Parquet files, a model or eval set that is missing or not
    usable as what it is (opened as cheaply as tells: ``pipeline.core.model_files``)."""
    problems = []
    if input is not None and not storage.list_files(input.uri, input.storage_options):
        problems.append(f"input.uri: no input files found at '{input.uri}'")
    if tokenize is not None:
        problems += tokenize.check_files("stages.tokenize", pack or PackConfig())
    for key, config in sections.items():
        if config.enabled:
            problems += config.check_files(f"stages.{key}")
    return problems


def _file_problems_of_valid_sections(data: Any) -> list[str]:
    """File problems of the sections that are valid on their own, for a spec that is not:
    so that one ``validate`` shows the spec's errors and its files' together."""

    def valid(model: type[BaseModel], value: Any) -> Any:
        try:
            return model.model_validate(value if value is not None else {})
        except ValidationError:
            return None

    if not isinstance(data, dict):
        return []
    stages = data.get("stages") if isinstance(data.get("stages"), dict) else {}
    sections = {}
    for cap in capabilities():
        config = valid(cap.config, stages.get(cap.key))
        if config is not None:
            sections[cap.key] = config
    input = valid(InputConfig, data.get("input")) if "input" in data else None
    output = data.get("output") if isinstance(data.get("output"), dict) else {}
    writes_tokens = output.get("kind", "tokens") != "documents"
    tokenize = valid(TokenizeConfig, stages.get("tokenize")) if "tokenize" in stages and writes_tokens else None
    try:
        return _file_problems(input, tokenize, valid(PackConfig, stages.get("pack")), sections)
    except Exception:  # noqa: BLE001 - a best effort beside errors already found
        return []


class JobSpecError(ValueError):
    """A job spec that cannot run, with every problem named by key path."""


def load_job_spec(
    source: str | Path | dict[str, Any], overrides: list[str] | None = None, check_files: bool = True
) -> JobSpec:
    """Load a spec from a YAML file (path or URI) or a dict, apply ``key.path=value`` overrides, validate."""
    label = "job spec"
    if isinstance(source, dict):
        data = json.loads(json.dumps(source))
    else:
        label = str(source)
        try:
            raw = storage.read_bytes(str(source))
        except FileNotFoundError:
            raise JobSpecError(f"{label}: file not found") from None
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise JobSpecError(f"{label}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise JobSpecError(f"{label}: expected a mapping of keys at the top level")
    for override in overrides or []:
        apply_override(data, override)
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        problems = _file_problems_of_valid_sections(data) if check_files else []
        raise JobSpecError(
            f"{label}: invalid job spec\n" + describe_errors(exc) + "".join(f"\n  {p}" for p in problems)
        ) from None
    problems = spec.file_problems() if check_files else []
    if problems:
        raise JobSpecError(f"{label}: invalid job spec\n" + "\n".join(f"  {p}" for p in problems))
    return spec


def apply_override(data: dict[str, Any], override: str) -> None:
    """``stages.pack.seq_len=4096``: the value is parsed as YAML (numbers, booleans, lists).
    A number picks an item of a list: ``stages.contamination.benchmarks.0.uri=s3://...``."""
    if "=" not in override:
        raise JobSpecError(f"--set {override!r}: expected KEY.PATH=VALUE")
    path, _, value = override.partition("=")
    keys = path.strip().split(".")
    node: Any = data
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise JobSpecError(
                    f"--set {path}: '{'.'.join(keys[:depth])}' is a list of {len(node)} items; "
                    f"'{key}' is not one of its indexes (0 to {len(node) - 1})"
                )
            if last:
                node[int(key)] = _override_value(override, value)
            else:
                node = node[int(key)]
            continue
        if not isinstance(node, dict):
            raise JobSpecError(f"--set {path}: '{'.'.join(keys[:depth])}' is not a section")
        if last:
            node[key] = _override_value(override, value)
        else:
            node = node.setdefault(key, {})


def _override_value(override: str, value: str) -> Any:
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise JobSpecError(
            f"--set {override!r}: the value is not valid YAML ({problem}); quote it to pass a string, "
            "e.g. --set 'key.path=\"[a, b\"'"
        ) from None


def describe_errors(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "(top level)"
        if error["type"] == "extra_forbidden":
            allowed = _allowed_keys(error["loc"][:-1])
            hint = difflib.get_close_matches(str(error["loc"][-1]), allowed, n=1)
            message = "unknown key" + (f"; did you mean '{hint[0]}'?" if hint else "")
            message += f" (allowed here: {', '.join(allowed)})" if allowed else ""
        elif error["type"] == "missing":
            message = "required key is missing"
        else:
            message = error["msg"]
            if error["type"] != "value_error" and "input" in error and not isinstance(error["input"], dict):
                message += f" (got {error['input']!r})"
            if error["type"] == "value_error":
                message = message.removeprefix("Value error, ")
                # A check across sections names its own key path: say it once, as the location.
                named = re.match(r"([A-Za-z_][\w]*(?:\.[\w-]+)+): (.*)", message, re.S)
                if not error["loc"] and named:
                    location, message = named.groups()
        lines.append(f"  {location}: {message}")
    return "\n".join(lines)


def _allowed_keys(location: tuple) -> list[str]:
    """The keys the section at ``location`` (a pydantic error location) may hold: through
    optional sections, list items and user-named keys (e.g. a language) to the model there."""
    model: Any = JobSpec
    parts = list(location)
    while True:
        origin, args = typing.get_origin(model), typing.get_args(model)
        if origin in (typing.Union, types.UnionType):  # an optional section: the model it holds
            models = [a for a in args if a is not type(None)]
            if len(models) != 1:
                return []
            model = models[0]
        elif origin in (list, tuple) and parts and isinstance(parts[0], int):  # a list item
            model, _ = args[0], parts.pop(0)
        elif origin is dict and parts:  # a user-chosen key: its value's model
            model, _ = args[1], parts.pop(0)
        elif parts and isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(str(parts.pop(0)))
            if field is None:
                return []
            model = field.annotation
        else:
            break
    if not parts and isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []
