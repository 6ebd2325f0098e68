"""The health and metrics exporter: `/health` and Prometheus `/metrics`, read from what is
stored (PostgreSQL, the broker's offsets, the Dagster instance) at each request."""
