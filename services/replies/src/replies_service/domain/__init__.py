"""Pure rules of saved replies: no I/O."""
