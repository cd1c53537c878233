"""Monitoring, from the logs alone: drift and quality reports, the reference, alerts, the A/B readout."""
