"""The bridge-dagster command line."""
