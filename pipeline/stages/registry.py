"""The capability registry: each package under ``pipeline/stages/`` registers its
``Capability`` with ``@register``, and everything else asks the registry.

The spec's ``stages:`` section, the document stages annotate runs, the global stages
dedup runs, the model files that invalidate work and the report's sections all come from
here, so adding a capability is adding its package. Packages are found on first use by
walking ``pipeline/stages/`` and by importing the modules that installed distributions
name in the ``refinery.stages`` entry-point group (a capability kept outside this tree).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pipeline.stages.base import Capability, DocumentStage, GlobalStage, StageConfig

if TYPE_CHECKING:
    from pipeline.config import JobSpec

ENTRY_POINT_GROUP = "refinery.stages"

_REGISTERED: dict[str, type[Capability]] = {}
_discovered = False


class RegistryError(RuntimeError):
    """Two capabilities claim one key, or a capability is incomplete."""


def register(capability: type[Capability]) -> type[Capability]:
    """Class decorator: make ``capability`` part of every job (its section under ``stages:``
    is ``capability.key``)."""
    key = getattr(capability, "key", None)
    if not key or not isinstance(getattr(capability, "order", None), int):
        raise RegistryError(f"{capability.__qualname__}: a capability needs a key and an integer order")
    if not (isinstance(getattr(capability, "config", None), type) and issubclass(capability.config, StageConfig)):
        raise RegistryError(f"capability '{key}': its config must be a StageConfig subclass")
    if capability.document_stage is None and capability.global_stage is None:
        raise RegistryError(f"capability '{key}': it has neither a document stage nor a global stage")
    for stage in (capability.document_stage, capability.global_stage):
        if stage is not None and stage.name != key:
            raise RegistryError(f"capability '{key}': its stage {stage.__qualname__} is named '{stage.name}'")
    existing = _REGISTERED.get(key)
    if existing is not None and existing.__qualname__ != capability.__qualname__:
        raise RegistryError(
            f"capability '{key}' is registered twice: {existing.__qualname__} and {capability.__qualname__}"
        )
    _REGISTERED[key] = capability
    return capability


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    import pipeline.stages as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.ispkg:
            importlib.import_module(f"{package.__name__}.{module.name}")
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            importlib.import_module(entry_point.value.split(":")[0])
        except ImportError as exc:
            raise RegistryError(
                f"entry point '{entry_point.name}' ({ENTRY_POINT_GROUP}) names module "
                f"'{entry_point.value}', which cannot be imported: {exc}"
            ) from exc
    _discovered = True


def capabilities() -> list[type[Capability]]:
    """Every registered capability, in order."""
    _discover()
    return sorted(_REGISTERED.values(), key=lambda c: (c.order, c.key))


def capability(key: str) -> type[Capability]:
    _discover()
    try:
        return _REGISTERED[key]
    except KeyError:
        raise RegistryError(f"no capability '{key}'; registered: {', '.join(c.key for c in capabilities())}") from None


def enabled(spec: JobSpec) -> Iterator[tuple[type[Capability], StageConfig]]:
    """The enabled capabilities of a job, in order, with their configs."""
    for cap in capabilities():
        config = getattr(spec.stages, cap.key)
        if config.enabled:
            yield cap, config


def document_stages(spec: JobSpec) -> list[DocumentStage]:
    stages = [cap.document_stage(config) for cap, config in enabled(spec) if cap.document_stage]
    for stage in stages:
        stage.bind_job(spec)
    return stages


def global_stages(spec: JobSpec) -> list[GlobalStage]:
    return [cap.global_stage(config) for cap, config in enabled(spec) if cap.needs_global_stage(config)]
