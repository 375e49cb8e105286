"""The url_blocklist stage's section of the job spec: the lists, and what a match does."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.core import storage
from pipeline.stages.base import ModelFiles, StageConfig

CATEGORY_PATTERN = r"^[A-Za-z0-9_.-]+$"
Category = Annotated[str, Field(pattern=CATEGORY_PATTERN)]
UT1_FILES = ("domains", "urls")


class BlocklistSource(BaseModel):
    """One list: a UT1 directory (``<category>/domains`` and ``<category>/urls`` files, as in
    the Université Toulouse 1 blacklists) or a file of domains, one per line."""

    model_config = ConfigDict(extra="forbid")

    uri: str
    """Local path or s3:// URI: the directory (ut1) or the file (domains)."""
    format: Literal["ut1", "domains"]
    categories: list[Category] = []
    """ut1: the categories to use, in precedence order; [] = every category directory found
    (sorted)."""
    category: Category | None = None
    """domains: the category its entries block (required)."""

    @model_validator(mode="after")
    def _category_named(self) -> BlocklistSource:
        if self.format == "domains" and self.category is None:
            raise ValueError("format 'domains' needs 'category': the category its entries block")
        if self.format == "domains" and self.categories:
            raise ValueError("'categories' picks directories of a ut1 list; a domains list has one 'category'")
        if self.format == "ut1" and self.category is not None:
            raise ValueError("'category' names the category of a domains list; a ut1 list picks 'categories'")
        return self


class UrlBlocklistConfig(StageConfig):
    """``stages.url_blocklist``: the lists, in precedence order (when several categories block
    a URL, the one that appears first wins), and what a match does."""

    enabled: bool = False
    storage_options: storage.StorageOptions = storage.StorageOptions()
    """For lists on s3://."""
    lists: list[BlocklistSource] = []
    action: Literal["reject", "annotate"] = "reject"
    """``reject``: a blocked document is rejected (reason ``blocked_<category>``);
    ``annotate``: only the ``url_blocklist_category`` column."""

    @model_validator(mode="after")
    def _lists_named(self) -> UrlBlocklistConfig:
        if self.enabled and not self.lists:
            raise ValueError("stages.url_blocklist.lists: name at least one list")
        return self

    def list_files(self) -> list[tuple[str, str, str, str]]:
        """(key path under the section, category, ``domains`` or ``urls``, file URI) of every
        file the lists name that exists, in precedence order: lists in order, then a ut1
        list's categories."""
        files = []
        for number, source in enumerate(self.lists):
            if source.format == "domains":
                if storage.exists(source.uri, self.storage_options):
                    files.append((f"lists.{number}.uri", source.category, "domains", source.uri))
                continue
            found = ut1_categories(source.uri, self.storage_options)
            for category in source.categories or sorted(found):
                for kind, uri in sorted(found.get(category, {}).items()):
                    files.append((f"lists.{number}.{category}.{kind}", category, kind, uri))
        return files

    def model_files(self, key: str) -> ModelFiles:
        files = {f"{key}.{path}": (uri, self.storage_options) for path, _, _, uri in self.list_files()}
        # the public-suffix snapshot decides which entries count: a tldextract upgrade redoes the work
        files[f"{key}.public_suffix_snapshot"] = (public_suffix_snapshot(), storage.StorageOptions())
        return files

    def check_files(self, key: str) -> list[str]:
        problems = []
        for number, source in enumerate(self.lists):
            path = f"{key}.lists.{number}.uri"
            if not storage.exists(source.uri, self.storage_options):
                problems.append(f"{path}: file not found: '{source.uri}'")
                continue
            fs, local = storage.filesystem(source.uri, self.storage_options)
            is_dir = fs.isdir(local)
            if source.format == "domains":
                if is_dir:
                    problems.append(f"{path}: '{source.uri}' is a directory; a domains list is one file")
                continue
            if not is_dir:
                problems.append(
                    f"{path}: '{source.uri}' is a file; a ut1 list is a directory of <category>/domains "
                    "and <category>/urls files (or use format: domains)"
                )
                continue
            found = ut1_categories(source.uri, self.storage_options)
            if not found:
                problems.append(
                    f"{path}: no category in '{source.uri}': expected directories holding a 'domains' or 'urls' file"
                )
                continue
            missing = [c for c in source.categories if c not in found]
            if missing:
                problems.append(
                    f"{key}.lists.{number}.categories: {', '.join(missing)} not found in '{source.uri}' "
                    f"(it has: {', '.join(sorted(found))})"
                )
        return problems


def ut1_categories(uri: str, options: storage.StorageOptions) -> dict[str, dict[str, str]]:
    """The categories of a UT1 directory: {category: {"domains"/"urls": file URI}}, for every
    subdirectory with a valid category name that holds either file."""
    root = storage.normalize_uri(uri).rstrip("/")
    found: dict[str, dict[str, str]] = {}
    for file_uri in storage.list_files(uri, options):
        relative = file_uri[len(root) :].lstrip("/") if file_uri.startswith(root) else ""
        parts = relative.split("/")
        if len(parts) == 2 and parts[1] in UT1_FILES and re.fullmatch(CATEGORY_PATTERN, parts[0]):
            found.setdefault(parts[0], {})[parts[1]] = file_uri
    # A listing does not descend into linked directories, which UT1 uses for categories' aliases.
    fs, path = storage.filesystem(uri, options)
    try:
        entries = fs.ls(path, detail=True) if fs.isdir(path) else []
    except (FileNotFoundError, NotADirectoryError):
        entries = []
    for entry in entries:
        name = posixpath.basename(entry["name"].rstrip("/"))
        if entry.get("islink") and name not in found and re.fullmatch(CATEGORY_PATTERN, name):
            for kind in UT1_FILES:
                file_uri = storage.join(uri, name, kind)
                if storage.exists(file_uri, options):
                    found.setdefault(name, {})[kind] = file_uri
    return {category: found[category] for category in sorted(found)}


def public_suffix_snapshot() -> str:
    """The public-suffix list tldextract ships (``.tld_set_snapshot``), by path."""
    import importlib.util

    spec = importlib.util.find_spec("tldextract")
    return str(Path(spec.origin).parent / ".tld_set_snapshot")
