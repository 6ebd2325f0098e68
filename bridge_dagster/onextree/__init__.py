"""Project tree: build, index, query and file intelligence (no Dagster)."""
