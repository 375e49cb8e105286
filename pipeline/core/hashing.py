"""The one way Refinery names a piece of work by what it depends on, and the one 64-bit mix."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np


def short_hash(payload: Any) -> str:
    """16 hex digits of the SHA-256 of ``payload`` as canonical JSON (sorted keys): equal
    for equal JSON values, whatever order their dicts were built in."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer over uint64 values: every output bit depends on every input bit
    (a polynomial n-gram hash's low bits depend only on its units' low bits; row numbers are
    consecutive)."""
    with np.errstate(over="ignore"):
        x = values.astype(np.uint64, copy=True)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x
