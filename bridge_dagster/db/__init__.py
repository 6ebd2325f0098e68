"""SQLAlchemy tables and the Alembic migration chain (no Dagster)."""
