"""``python -m presence_service`` / ``inbox-presence``: run one presence replica."""

from __future__ import annotations

from inbox_kit.service import serve_main

from presence_service.bootstrap import bootstrap
from presence_service.settings import PresenceSettings


def main() -> None:
    serve_main("presence", PresenceSettings(), bootstrap)


if __name__ == "__main__":
    main()
