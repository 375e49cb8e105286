"""The word lists stage's section of the job spec, and how a list file is read."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.core import storage
from pipeline.stages.base import ModelFiles, StageConfig

ANY_LANGUAGE = "*"
"""The ``files`` key of the list file every document uses, whatever its language."""


class WordListConfig(BaseModel):
    """One list: its files by language label, and the rule that rejects by it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    """Names the reject reason (``word_list_<name>``) and the list's key in ``word_list_counts``."""
    files: dict[str, str]
    """Language label (the language stage's ``lang``) -> list file: UTF-8 text, one word or
    phrase per line, blank lines skipped. ``*`` applies to every document; a document uses
    ``*`` and the file of its own ``lang``, if the list has one."""
    max_ratio: float | None = Field(None, ge=0)
    """Reject when the words in the list's matches over the words in the document exceed
    this; 0 rejects on any match (C4's bad-words rule). Null: annotate only."""
    min_matches: int = Field(1, ge=1)
    """Matches a document needs before ``max_ratio`` can reject it."""

    @field_validator("files")
    @classmethod
    def _files_named(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError(f"name at least one list file ('{ANY_LANGUAGE}' for every language)")
        for label in value:
            if not label or label != label.strip() or "." in label:
                raise ValueError(f"'{label}' is not a language label (such as en, de, eng_Latn) or '{ANY_LANGUAGE}'")
        return value


class WordListsConfig(StageConfig):
    enabled: bool = False
    storage_options: storage.StorageOptions = storage.StorageOptions()
    """How to reach list files on an object store (s3://)."""
    lists: list[WordListConfig] = []

    @model_validator(mode="after")
    def _lists_named_once(self) -> WordListsConfig:
        if self.enabled and not self.lists:
            raise ValueError("lists: name at least one word list")
        seen: dict[str, int] = {}
        for number, word_list in enumerate(self.lists):
            if word_list.name in seen:
                raise ValueError(
                    f"lists.{number}.name: '{word_list.name}' is already the name of lists.{seen[word_list.name]}; "
                    "list names must be unique"
                )
            seen[word_list.name] = number
        return self

    def model_files(self, key: str) -> ModelFiles:
        return {
            f"{key}.lists.{number}.files.{label}": (uri, self.storage_options)
            for number, word_list in enumerate(self.lists)
            for label, uri in word_list.files.items()
        }

    def open_file(self, path: str, uri: str, options: storage.StorageOptions) -> None:
        read_list(uri, options)

    def check_job(self, stages, key: str) -> None:
        if stages.language.enabled:
            return
        for number, word_list in enumerate(self.lists):
            for label in word_list.files:
                if label != ANY_LANGUAGE:
                    raise ValueError(
                        f"{key}.lists.{number}.files.{label}: a list file for one language needs "
                        f"stages.language enabled (documents find it by their lang); or use '{ANY_LANGUAGE}'"
                    )


def read_list(uri: str, options: storage.StorageOptions | None = None) -> list[str]:
    """The entries of a list file: its lines without surrounding whitespace, blank lines
    skipped. Raises ``ValueError`` naming the file when it is not UTF-8 or has no entries."""
    data = storage.read_bytes(uri, options)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"list file '{uri}' is not UTF-8: line {line}: {exc.reason}") from None
    entries = [line.strip() for line in text.removeprefix("\ufeff").split("\n")]
    entries = [entry for entry in entries if entry]
    if not entries:
        raise ValueError(f"list file '{uri}' has no entries (one word or phrase per line; blank lines are skipped)")
    return entries
