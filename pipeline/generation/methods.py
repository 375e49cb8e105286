"""The generation methods by the name ``generate.method`` gives them."""

from __future__ import annotations

from typing import Any

from pipeline.generation.evol_instruct import EvolInstruct
from pipeline.generation.grounded import GroundedGeneration
from pipeline.generation.judge import JudgedSampling
from pipeline.generation.self_instruct import SelfInstruct

METHODS = {cls.method: cls for cls in (SelfInstruct, EvolInstruct, JudgedSampling, GroundedGeneration)}


def build_method(generate: Any, seed: int, options: Any = None):
    """The spec's method, with its seeds and templates loaded (``generate``: a GenerateConfig)."""
    return METHODS[generate.method](generate.method_config(), generate.sampling.request_fields(), seed, options)
