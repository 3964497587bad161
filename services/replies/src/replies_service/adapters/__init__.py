"""I/O: MongoDB repositories, the contacts gRPC client, the Kafka publisher."""
