"""Persona memory: ingest mail and documents, embed, retrieve with citations."""
