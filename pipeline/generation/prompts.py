"""Prompt templates: Jinja in a sandbox with strict undefined variables, built in
(``builtin:<name>``, files under ``pipeline/resources/generation/``) or a user's file. A
template names itself and its sha256 in every record's provenance; a variable the method does
not provide is an error at validate time, naming it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from pipeline.core import storage

BUILTIN = "builtin:"


class TemplateError(ValueError):
    """A prompt template that cannot be read, parsed or rendered with its method's variables."""


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    source: str
    sha256: str

    @classmethod
    def load(cls, ref: str, variables: set[str], options: storage.StorageOptions | None = None) -> PromptTemplate:
        """``ref``: ``builtin:<name>`` or a path/URI of a ``.jinja`` file; ``variables``: what
        the method passes to it."""
        if ref.startswith(BUILTIN):
            name = ref.removeprefix(BUILTIN)
            path = resources.files("pipeline.resources").joinpath("generation").joinpath(f"{name}.jinja")
            if not path.is_file():
                known = sorted(p.name.removesuffix(".jinja") for p in path.parent.iterdir())
                raise TemplateError(f"no built-in template {name!r}; built in: {', '.join(known)}")
            source = path.read_text()
        else:
            name = ref.rsplit("/", 1)[-1].removesuffix(".jinja")
            try:
                source = storage.read_bytes(ref, options).decode()
            except (OSError, UnicodeDecodeError) as exc:
                raise TemplateError(f"cannot read template {ref}: {exc}") from None
        template = cls(name, source, hashlib.sha256(source.encode()).hexdigest())
        template._check(variables)
        return template

    def _check(self, variables: set[str]) -> None:
        from jinja2 import TemplateSyntaxError, meta

        try:
            parsed = _environment().parse(self.source)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template {self.name}: line {exc.lineno}: {exc.message}") from None
        unknown = meta.find_undeclared_variables(parsed) - variables
        if unknown:
            raise TemplateError(
                f"template {self.name} uses {', '.join(sorted(unknown))}, which this method does not provide "
                f"(it provides {', '.join(sorted(variables))})"
            )

    def render(self, **variables: Any) -> str:
        from jinja2 import TemplateError as JinjaError

        try:
            return _compiled(self.source).render(**variables).strip()
        except JinjaError as exc:
            raise TemplateError(f"template {self.name}: {exc}") from None

    def provenance(self) -> dict[str, str]:
        return {"template": self.name, "template_sha256": self.sha256}


_COMPILED: dict[str, Any] = {}


def _environment():
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _compiled(source: str):
    if source not in _COMPILED:
        _COMPILED[source] = _environment().from_string(source)
    return _COMPILED[source]
