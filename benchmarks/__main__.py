"""python -m benchmarks <name> [options]: run one benchmark of benchmarks.BENCHMARKS."""

from __future__ import annotations

import importlib
import sys

from benchmarks import BENCHMARKS

USAGE = "usage: python -m benchmarks {list,<name>} [options]    (python -m benchmarks <name> --help)"


def listing() -> str:
    width = max(map(len, BENCHMARKS))
    return "benchmarks:\n" + "\n".join(f"  {name:<{width}}  {summary}" for name, (_, summary) in BENCHMARKS.items())


def main(argv: list[str]) -> int:
    if not argv:
        print(f"{USAGE}\n\n{listing()}", file=sys.stderr)
        return 2
    name, rest = argv[0], argv[1:]
    if name in ("-h", "--help", "list"):
        print(f"{USAGE}\n\n{listing()}")
        return 0
    if name not in BENCHMARKS:
        print(f"{USAGE}\nerror: unknown benchmark '{name}'; choose from: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    module, function = BENCHMARKS[name][0].split(":")
    return getattr(importlib.import_module(module), function)(rest) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
