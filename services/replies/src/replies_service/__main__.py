"""``python -m replies_service`` / ``inbox-replies``: run the replies service."""

from __future__ import annotations

import gc

from inbox_kit.service import serve_main

from replies_service.bootstrap import bootstrap
from replies_service.settings import RepliesSettings


def main() -> None:
    # searches allocate many short-lived objects: collect the young generation less often
    # (each young collection is cheap; the search index itself is frozen, see SearchIndex)
    gc.set_threshold(10_000, 20, 20)
    settings = RepliesSettings()
    serve_main(settings.service_name, settings, bootstrap)


if __name__ == "__main__":
    main()
