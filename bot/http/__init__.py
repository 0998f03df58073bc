"""HTTP API adapter (`doppel serve`)."""
