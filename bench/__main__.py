"""``python -m bench [NAME ...]``: run the benchmarks (all of them by default), one after another.

Each prints its own figures and ratios against a baseline measured in the same run; see the
module of each for its options (``python -m bench.copy --help``).
"""

from __future__ import annotations

import importlib
import sys

ALL = ("seed", "workload", "copy", "validation", "cutover")


def main(argv: list[str] | None = None) -> int:
    names = list(argv if argv is not None else sys.argv[1:]) or list(ALL)
    unknown = [n for n in names if n not in ALL]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(ALL)}", file=sys.stderr)
        return 2
    worst = 0
    for name in names:
        print(f"\n===== bench.{name} =====", flush=True)
        worst = max(worst, int(importlib.import_module(f"bench.{name}").main([]) or 0))
    return worst


if __name__ == "__main__":
    sys.exit(main())
