"""What tests share besides fixtures: where the repository and ../shared/data are, and
a minimal job spec."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

# ../shared/data beside the checkout (see the project brief); REFINERY_SHARED_DATA overrides.
SHARED_DATA = Path(os.environ.get("REFINERY_SHARED_DATA") or REPO.parent / "shared" / "data")

SAMPLE_CORPUS = {"num_docs": 500, "num_shards": 4, "seed": 7}
"""The session's sample corpus (tests/conftest.py), which the test LLM is trained on too."""


def job_dict(input_uri: str, output_uri: str, tokenizer: str, **sections: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "test",
        "input": {"uri": input_uri, "id_column": "id"},
        "output": {"uri": output_uri},
        # Every stage at its default (near dedup included), as users run them.
        "stages": {"tokenize": {"model": tokenizer}, "pack": {"seq_len": 256, "shard_tokens": 40000}},
        # the page and its SVGs cost about a second per run; the report's own tests turn them on
        "report": {"charts": False},
    }
    for key, value in sections.items():
        spec[key] = {**spec.get(key, {}), **value}
    return spec
