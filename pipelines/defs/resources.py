"""Dagster resources: the settings, and the two external systems (Feast, MLflow) behind
small ``ConfigurableResource`` classes. The local, embedded implementation is the default;
the ``services`` profile points the same code at PostgreSQL and Redis.

Resources only carry configuration and build clients on demand, so loading the
definitions (``dagster dev``, tests) connects to nothing.

No resource nests another: Dagster 1.13 initialises a nested resource through a deprecated
API of its own (``InitResourceContext.dagster_run``), one DeprecationWarning per run. The
Feast and MLflow resources carry only what locates their system (state folder, profile).
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


class _SystemLocation(dg.ConfigurableResource):
    """Where an external system lives: the state folder and the profile, nothing else."""

    state_dir: str
    profile: str = "local"

    @classmethod
    def from_settings(cls, settings: Settings):
        return cls(state_dir=str(settings.root), profile=settings.profile)

    def settings(self) -> Settings:
        return get_settings().model_copy(
            update={"state_dir": Path(self.state_dir), "profile": self.profile}
        )


class FeatureStoreResource(_SystemLocation):
    """The Feast feature store (local provider: parquet offline, SQLite online, file registry)."""

    def store(self):  # -> feast.FeatureStore; imported lazily, Feast is slow to import
        from features.store import feature_store

        return feature_store(self.settings())


class ModelRegistryResource(_SystemLocation):
    """The MLflow tracking server and model registry (SQLite under the state folder)."""

    def registry(self):  # -> models.registry.Registry
        from models.registry import Registry

        return Registry(self.settings())


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "settings": SettingsResource.from_settings(settings),
        "feature_store": FeatureStoreResource.from_settings(settings),
        "model_registry": ModelRegistryResource.from_settings(settings),
    }
