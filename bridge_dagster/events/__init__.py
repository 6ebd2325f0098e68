"""Event envelope v1, event types, topic names and stamp requests (no Dagster)."""
