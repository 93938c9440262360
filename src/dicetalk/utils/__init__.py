"""Shared helpers: atomic file writes, video and audio I/O, seeding."""
