"""Serving: the BentoML service, fallback chain, prediction log."""
