"""Datagate service: API, pipeline, storage, metadata, CLI. Composes privacy and lineage."""
