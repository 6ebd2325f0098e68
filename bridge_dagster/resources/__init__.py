"""Dagster resources: Kafka, PostgreSQL, stamping and tree clients."""
