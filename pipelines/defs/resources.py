"""Dagster resources: the settings, and the two external systems (Feast, MLflow) behind
small ``ConfigurableResource`` classes. The local, embedded implementation is the default;
the ``services`` profile points the same code at PostgreSQL and Redis.

Resources only carry configuration and build clients on demand, so loading the
definitions (``dagster dev``, tests) connects to nothing.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from ranklab.settings import DataSettings, PrivacySettings, Settings, SplitSettings, get_settings


class SettingsResource(dg.ConfigurableResource):
    """The ranklab settings, with the few knobs a run may override shown in the launchpad."""

    state_dir: str
    profile: str = "local"
    data_scale: float = 1.0
    data_seed: int = 7
    data_days: int = DataSettings().n_days
    seed: int = 7
    # The time split: how many of the newest days judge a model (a retraining run over
    # served traffic wants its test days to be served days).
    valid_days: int = SplitSettings().valid_days
    test_days: int = SplitSettings().test_days
    # Days of prediction-log and monitoring partitions kept (pipelines/defs/retention.py).
    retention_days: int = PrivacySettings().retention_days

    @classmethod
    def from_settings(cls, settings: Settings) -> SettingsResource:
        return cls(
            state_dir=str(settings.root),
            profile=settings.profile,
            data_scale=settings.data.scale,
            data_seed=settings.data.seed,
            data_days=settings.data.n_days,
            seed=settings.seed,
            valid_days=settings.split.valid_days,
            test_days=settings.split.test_days,
            retention_days=settings.privacy.retention_days,
        )

    def get(self) -> Settings:
        """The environment's settings with this resource's overrides applied."""
        base = get_settings()
        return base.model_copy(
            update={
                "state_dir": Path(self.state_dir),
                "profile": self.profile,
                "seed": self.seed,
                "data": base.data.model_copy(
                    update={
                        "scale": self.data_scale,
                        "seed": self.data_seed,
                        "n_days": self.data_days,
                    }
                ),
                "split": base.split.model_copy(
                    update={"valid_days": self.valid_days, "test_days": self.test_days}
                ),
                "privacy": base.privacy.model_copy(update={"retention_days": self.retention_days}),
            }
        )


class FeatureStoreResource(dg.ConfigurableResource):
    """The Feast feature store (local provider: parquet offline, SQLite online, file registry)."""

    settings: SettingsResource

    def store(self):  # -> feast.FeatureStore; imported lazily, Feast is slow to import
        from features.store import feature_store

        return feature_store(self.settings.get())


class ModelRegistryResource(dg.ConfigurableResource):
    """The MLflow tracking server and model registry (SQLite under the state folder)."""

    settings: SettingsResource

    def registry(self):  # -> models.registry.Registry
        from models.registry import Registry

        return Registry(self.settings.get())


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    settings_resource = SettingsResource.from_settings(settings)
    return {
        "settings": settings_resource,
        "feature_store": FeatureStoreResource(settings=settings_resource),
        "model_registry": ModelRegistryResource(settings=settings_resource),
    }
