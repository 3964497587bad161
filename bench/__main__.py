"""``python -m bench [NAME]``: run one benchmark (presence, routing, contacts, replies,
assignment) or all."""

from __future__ import annotations

import importlib
import sys

NAMES = ("presence", "routing", "contacts", "replies", "assignment")


def main(argv: list[str]) -> int:
    names = argv or list(NAMES)
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {NAMES}", file=sys.stderr)
        return 2
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
