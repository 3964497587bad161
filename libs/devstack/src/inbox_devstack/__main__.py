"""``python -m inbox_devstack {up,down,status,provision}``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from .config import DevstackConfig
from .errors import DevstackError
from .stack import Devstack

EXIT_ERROR = 1
EXIT_NOT_ALL_UP = 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="devstack",
        description="Local Kafka (KRaft) + FerretDB for the inbox monorepo, bound to 127.0.0.1.",
        epilog="Environment: DEVSTACK_DIR, DEVSTACK_KAFKA_PORT, DEVSTACK_KAFKA_CONTROLLER_PORT, "
        "DEVSTACK_MONGO_PORT, DEVSTACK_TOPIC_PARTITIONS.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="provision, start and wait for Kafka + FerretDB; create topics")
    sub.add_parser("down", help="stop the processes that 'up' started")
    st = sub.add_parser("status", help="show what runs; exit 0 if all up, 3 otherwise")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("provision", help="download Kafka jars and build the FerretDB runner only")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="devstack: %(message)s", stream=sys.stderr)
    if not args.verbose:
        # aiokafka logs every failed connection attempt while the broker starts.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        cfg = DevstackConfig.from_env()
        stack = Devstack(cfg)
        if args.command == "up":
            t0 = time.monotonic()
            status = stack.up()
            print(f"devstack is up ({time.monotonic() - t0:.1f}s), dir {cfg.devstack_dir}")
            print(status.describe())
            print(f"KAFKA_BOOTSTRAP={cfg.kafka_bootstrap}")
            print(f"MONGODB_URI={cfg.mongodb_uri}")
            return 0
        if args.command == "down":
            status = stack.down()
            print(
                "devstack is down"
                if not any(c.pid for c in status.components.values())
                else "devstack: some processes are still running"
            )
            print(status.describe())
            return 0
        if args.command == "status":
            status = stack.status()
            if args.json:
                print(json.dumps(status.as_dict(), indent=2))
            else:
                print(status.describe())
            return 0 if status.all_up else EXIT_NOT_ALL_UP
        if args.command == "provision":
            stack.provision()
            print(
                f"provisioned: Kafka jars in {cfg.kafka_libs_dir}, "
                f"FerretDB runner at {cfg.ferretdb_binary}"
            )
            return 0
    except DevstackError as exc:
        print(f"devstack: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
