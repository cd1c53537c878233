"""Pipelines: the Dagster definitions that run the lifecycle."""
