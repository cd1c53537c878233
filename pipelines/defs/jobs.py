"""Jobs: named selections of the asset graph."""

from __future__ import annotations

import dagster as dg

# The whole lifecycle, data to promotion; every check runs and blocking ones gate downstream.
lifecycle_job = dg.define_asset_job("lifecycle", selection=dg.AssetSelection.all())

# Data and features only: raw events to the training set and the online store.
features_job = dg.define_asset_job(
    "features", selection=dg.AssetSelection.groups("data", "features")
)

JOBS = [lifecycle_job, features_job]
