"""The one way Refinery names a piece of work by what it depends on."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def short_hash(payload: Any) -> str:
    """16 hex digits of the SHA-256 of ``payload`` as canonical JSON (sorted keys): equal
    for equal JSON values, whatever order their dicts were built in."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
