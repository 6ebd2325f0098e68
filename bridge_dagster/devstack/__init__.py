"""Embedded development stack: PostgreSQL and a Kafka-protocol broker as child processes."""
