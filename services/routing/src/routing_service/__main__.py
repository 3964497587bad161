"""``python -m routing_service`` / ``inbox-routing``: run the routing service until SIGTERM."""

from __future__ import annotations

from inbox_kit.service import serve_main

from routing_service.bootstrap import bootstrap
from routing_service.settings import RoutingSettings


def main() -> None:
    serve_main("routing", RoutingSettings(), bootstrap)


if __name__ == "__main__":
    main()
