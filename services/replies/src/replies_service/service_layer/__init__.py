"""Use cases (plain async handlers) and the ports they need."""
