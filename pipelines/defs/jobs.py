"""Jobs: named selections of the asset graph."""

from __future__ import annotations

import dagster as dg

# Data to promotion, and the promoted model's monitoring reference; every check runs and
# blocking ones gate downstream. Monitoring windows are not part of it: they follow traffic.
LIFECYCLE = dg.AssetSelection.groups("data", "features", "models") | dg.AssetSelection.assets(
    "monitoring_reference"
)
lifecycle_job = dg.define_asset_job("lifecycle", selection=LIFECYCLE)

# The same lifecycle over the newest data: what the retraining sensor launches, with run
# config extending the raw events with the served traffic (pipelines/defs/sensors.py).
retrain_job = dg.define_asset_job(
    "retrain",
    selection=LIFECYCLE,
    description="Retrain over the raw events plus the served traffic; the same checks and gate.",
)

# One served day of monitoring (partitioned by served day).
monitoring_job = dg.define_asset_job(
    "monitoring", selection=dg.AssetSelection.assets("monitoring_window")
)

# Data and features only: raw events to the training set and the online store.
features_job = dg.define_asset_job(
    "features", selection=dg.AssetSelection.groups("data", "features")
)

JOBS = [lifecycle_job, features_job, retrain_job, monitoring_job]
