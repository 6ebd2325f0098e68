"""HTTP services speaking the MetadataStamping and OnexTree APIs (no Dagster)."""
