"""Holds a process inside one function of the pipeline, for tests that kill a job there.

A test puts this directory first on ``PYTHONPATH`` of a job it starts, with
``REFINERY_STOP_IN=<module>:<function>`` (or ``<module>:<Class>.<method>``) and
``REFINERY_STOP_FILE=<path>`` (``REFINERY_STOP_AFTER=N`` lets each process's first N calls
run). Every Python process of the job imports this file at start-up (Ray's workers inherit the driver's
environment); when the module is imported, its function is replaced by one that writes
``<path>`` (its pid and the function's name) and then sleeps until the test kills the job.
So the kill lands inside that function deterministically, however short its real work is,
and the job's own code is not changed for the test. Ray Data ships the replaced function to
its workers by reference (same module and name), so they run the replacement too.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import os
import sys
import time

_TARGET = os.environ.get("REFINERY_STOP_IN", "")
_STOP_FILE = os.environ.get("REFINERY_STOP_FILE", "")
_LET_THROUGH = int(os.environ.get("REFINERY_STOP_AFTER", "0"))  # calls that run before the stop


def _stopped(function):
    calls = [0]

    @functools.wraps(function)
    def stop(*args, **kwargs):
        calls[0] += 1
        if calls[0] <= _LET_THROUGH:
            return function(*args, **kwargs)
        partial = f"{_STOP_FILE}.{os.getpid()}"
        with open(partial, "w") as f:
            f.write(f"{os.getpid()} {function.__module__}:{function.__qualname__}\n")
        os.replace(partial, _STOP_FILE)
        while True:
            time.sleep(60)

    return stop


class _ReplaceAfterImport(importlib.abc.MetaPathFinder):
    def __init__(self, module: str, function: str) -> None:
        self.module, self.function = module, function

    def find_spec(self, name, path, target=None):
        if name != self.module:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module) -> None:
            execute(module)
            *owners, name = self.function.split(".")
            owner = functools.reduce(getattr, owners, module)
            setattr(owner, name, _stopped(getattr(owner, name)))

        spec.loader.exec_module = exec_module
        return spec


if _TARGET and _STOP_FILE:
    _module, _function = _TARGET.split(":")
    sys.meta_path.insert(0, _ReplaceAfterImport(_module, _function))
