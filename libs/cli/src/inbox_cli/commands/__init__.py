"""The command groups of ``inboxctl``, one module per service (and ``publish`` for Kafka)."""
