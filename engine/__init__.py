"""Doppel's platform-free engine: personas, scheduling of model work, storage."""
