"""Test harness shared by the workspace's test suites."""

from inbox_testing.infra import Infra
from inbox_testing.kafka_probe import TopicProbe, wait_until
from inbox_testing.plugin import TEST_JWT_SECRET, bearer

__all__ = ["TEST_JWT_SECRET", "Infra", "TopicProbe", "bearer", "wait_until"]
