"""Giving freed memory back to the system between units of work.

A worker process runs many units, and in between Ray Data's tasks of the global phases
(sorts, joins) run in the same process. Neither Arrow's allocator nor glibc's ``malloc``
returns freed pages on its own: a process would keep the high-water mark of everything it
ever ran, and the next unit's peak would stack on top of it. Measured on a 1M-conversation
SFT job: a pack task that peaks at 580 MB in a fresh process kept 240-290 MB after each
task (120 MB once trimmed), and reached 824 MB in a Ray worker that had run the earlier
phases.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import pyarrow as pa


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


def release_free_memory() -> None:
    """Return the free pages of Arrow's pool and of glibc's heap to the system."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
