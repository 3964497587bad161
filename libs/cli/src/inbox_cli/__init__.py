"""inboxctl and the local run-all/demo tooling for the inbox backend."""
