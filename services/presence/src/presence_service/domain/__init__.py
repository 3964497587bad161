"""Pure presence rules (no I/O)."""
