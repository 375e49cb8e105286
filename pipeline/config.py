"""The job spec: one YAML file, validated by typed models when it is loaded.

Unknown keys, wrong types, impossible values and missing files are errors that name the
key path (``stages.tokenize.model``). The ``stages:`` section has one section per
registered capability (its config model lives in its package) and the packing phases'.
"""

from __future__ import annotations

import difflib
import json
import re
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from pipeline.core import storage
from pipeline.core.hashing import short_hash
from pipeline.core.sentencepiece import load_sentencepiece
from pipeline.phases.annotate.validation import InputConfig
from pipeline.phases.mix.plan import MixConfig
from pipeline.phases.pack.packing import PackConfig
from pipeline.phases.tokenize.tokenizer import TokenizeConfig
from pipeline.stages.registry import capabilities


class OutputConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    uri: str
    """Where token shards, rejects, quarantine, the manifest and the report go."""
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
    fields |= {"tokenize": (TokenizeConfig, ...), "mix": (MixConfig, MixConfig()), "pack": (PackConfig, PackConfig())}
    return create_model("StagesConfig", __base__=_StagesBase, **fields)


StagesConfig = _stages_model()


class JobSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    seed: int = 0
    input: InputConfig
    output: OutputConfig
    ray: RayConfig = RayConfig()
    stages: StagesConfig

    @field_validator("input")
    @classmethod
    def _input_exists(cls, value: InputConfig, info: ValidationInfo) -> InputConfig:
        if _checking_files(info) and not storage.list_files(value.uri, value.storage_options, suffix=".parquet"):
            raise ValueError(f"no Parquet files found at input.uri '{value.uri}'")
        return value

    @model_validator(mode="after")
    def _models_exist(self, info: ValidationInfo) -> JobSpec:
        if not _checking_files(info):
            return self
        tokenizer = self.stages.tokenize
        if not storage.exists(tokenizer.model, tokenizer.storage_options):
            raise ValueError(
                f"stages.tokenize.model: file not found: '{tokenizer.model}' "
                "(train one with `refinery train-tokenizer CORPUS OUT.model`)"
            )
        pack = self.stages.pack
        if pack.mode == "bestfit" or pack.pad_id is not None:
            pack.check_pad_id(load_sentencepiece(tokenizer.model, tokenizer.storage_options), tokenizer.model)
        for cap in capabilities():
            config = getattr(self.stages, cap.key)
            if config.enabled:
                config.check_files(f"stages.{cap.key}")
        return self

    def config_hash(self) -> str:
        """Hash of everything that changes the output: the spec (``ray`` settings aside) and
        the model files it names, by size and change token."""
        payload = {
            "spec": self.model_dump(mode="json", exclude={"ray": True, "output": {"upload"}}),
            "models": self.model_fingerprints(),
        }
        return short_hash(payload)

    def model_files(self) -> dict[str, tuple[str, storage.StorageOptions]]:
        """Every model file the enabled stages read, by key path."""
        tokenize = self.stages.tokenize
        files = {"stages.tokenize.model": (tokenize.model, tokenize.storage_options)}
        for cap in capabilities():
            config = getattr(self.stages, cap.key)
            if config.enabled:
                files |= config.model_files(f"stages.{cap.key}")
        return files

    def capability_settings(self) -> dict[str, Any]:
        """Every capability's section (the packing phases' aside): what annotate and dedup
        work depends on."""
        return self.stages.model_dump(mode="json", exclude=set(PACKING_SECTIONS))

    def model_fingerprints(self, exclude: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
        """Size and change token (mtime, ETag) of each model file, so that a model retrained
        in place invalidates the work that used it."""
        return {
            key: storage.file_info(uri, options)
            for key, (uri, options) in self.model_files().items()
            if key not in exclude
        }


def _checking_files(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("check_files"))


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
        return JobSpec.model_validate(data, context={"check_files": check_files})
    except ValidationError as exc:
        raise JobSpecError(f"{label}: invalid job spec\n" + describe_errors(exc)) from None


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
                node[int(key)] = yaml.safe_load(value)
            else:
                node = node[int(key)]
            continue
        if not isinstance(node, dict):
            raise JobSpecError(f"--set {path}: '{'.'.join(keys[:depth])}' is not a section")
        if last:
            node[key] = yaml.safe_load(value)
        else:
            node = node.setdefault(key, {})


def describe_errors(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "(top level)"
        if error["type"] == "extra_forbidden":
            allowed = _allowed_keys(error["loc"][:-1])
            hint = difflib.get_close_matches(str(error["loc"][-1]), allowed, n=1)
            message = "unknown key" + (f"; did you mean '{hint[0]}'?" if hint else "")
            message += f" (allowed here: {', '.join(allowed)})"
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
    model: Any = JobSpec
    parts = list(location)
    while parts:
        if typing.get_origin(model) is dict:  # a user-chosen key (e.g. a language): its value's model
            model = typing.get_args(model)[1]
            parts.pop(0)
            continue
        part = parts.pop(0)
        field = model.model_fields.get(str(part)) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return []
        model = field.annotation
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []
