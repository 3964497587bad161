"""Thin adapters from gRPC and Kafka to the service-layer handlers."""
