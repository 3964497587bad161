"""Presence service: agent sessions, heartbeats, sign-in / sign-out and expiry."""
