"""The OmniNode Bridge on Dagster."""
