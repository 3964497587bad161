"""Test harness shared by the workspace's test suites (``inbox_testing.poison``: poison records)."""

from inbox_testing.infra import Infra
from inbox_testing.kafka_probe import TopicProbe, wait_until
from inbox_testing.plugin import TEST_JWT_SECRET, bearer
from inbox_testing.processes import ServiceProcess, free_port, stop_process, wait_serving
from inbox_testing.records import consumer_record

__all__ = [
    "TEST_JWT_SECRET",
    "Infra",
    "ServiceProcess",
    "TopicProbe",
    "bearer",
    "consumer_record",
    "free_port",
    "stop_process",
    "wait_serving",
    "wait_until",
]
