"""A thin kit shared by the inbox services: settings, gRPC server, auth, errors, logs, metrics,
and the Kafka consumer convention. Free of domain logic."""
