"""Canonical BLAKE3 hashing, ONEX stamps and stamp validation (no Dagster)."""
