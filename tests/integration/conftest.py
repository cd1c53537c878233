"""Fixtures every integration module can ask for by name (pytest finds them here)."""

from lifecycle_fixtures import default_lifecycle  # noqa: F401 - a fixture
