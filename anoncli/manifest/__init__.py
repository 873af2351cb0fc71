"""Parquet manifests: one row per input file, written in parts, read as one table."""
