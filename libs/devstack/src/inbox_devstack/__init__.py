"""Local infrastructure for the inbox monorepo: Kafka 4.4 (KRaft) + FerretDB, no Docker.

Usage::

    from inbox_devstack import Devstack, DevstackConfig

    cfg = DevstackConfig.from_env()
    stack = Devstack(cfg)
    stack.up()          # idempotent, blocks until Kafka and FerretDB answer, creates topics
    stack.status()      # StackStatus: .kafka / .ferretdb -> ComponentStatus(up, pid, address)
    stack.down()        # stops what up started
"""

from .config import DevstackConfig, find_repo_root
from .errors import DevstackError, MissingToolError
from .stack import ComponentStatus, Devstack, StackStatus
from .topics import create_topics, list_topics, topic_names

__all__ = [
    "ComponentStatus",
    "Devstack",
    "DevstackConfig",
    "DevstackError",
    "MissingToolError",
    "StackStatus",
    "create_topics",
    "find_repo_root",
    "list_topics",
    "topic_names",
]
