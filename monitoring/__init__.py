"""Monitoring: traffic simulation, drift reports, A/B readout."""
