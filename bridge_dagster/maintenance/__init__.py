"""Upkeep of Dagster's own storage: run and event-log retention."""
