"""Batched, sharded, resumable anonymization jobs."""
