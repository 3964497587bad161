"""``python -m bench [NAME]``: run one benchmark (presence, routing, contacts, replies) or all.

Like the test session, it finds its infrastructure first: ``KAFKA_BOOTSTRAP_SERVERS`` +
``MONGODB_URI`` when both are set, else the devstack (reused when up, otherwise started for
the run and stopped after it; ``INBOX_KEEP_STACK=1`` keeps it). The benchmarks and the service
processes they start read it from the environment set here.
"""

from __future__ import annotations

import importlib
import os
import sys

NAMES = ("presence", "routing", "contacts", "replies", "console", "assignment", "tracing")
SERVICE_PREFIXES = ("PRESENCE_", "ROUTING_", "CONTACTS_", "REPLIES_")


def _export(kafka_bootstrap: str, mongodb_uri: str) -> None:
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    os.environ["MONGODB_URI"] = mongodb_uri
    for prefix in SERVICE_PREFIXES:
        os.environ.setdefault(f"{prefix}KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
        os.environ.setdefault(f"{prefix}MONGODB_URI", mongodb_uri)


def main(argv: list[str]) -> int:
    names = argv or list(NAMES)
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {NAMES}", file=sys.stderr)
        return 2
    from inbox_testing.infra import provide_infra

    with provide_infra() as infra:
        print(f"infrastructure ({infra.kind}): kafka {infra.kafka_bootstrap}, {infra.mongodb_uri}")
        _export(infra.kafka_bootstrap, infra.mongodb_uri)
        for name in names:
            module = importlib.import_module(f"bench.{name}")
            module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
