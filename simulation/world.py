"""The simulated marketplace as the world outside the system: what it shows, what it hides.

``publish`` generates the marketplace and splits it along the wall:

- what a marketplace's own logs would hold (the contract columns of ``ranklab.schema``)
  lands in ``Settings.landing_dir``, where the pipeline's source adapter
  (``features/events.py``) picks it up, exactly as it would pick up a real export;
- everything else (the users' tastes, the items' latent quality, each impression's true and
  expected utility) stays in ``Settings.world_dir``, for the simulator itself (the traffic it
  simulates later) and for the graders that say they use the truth (``simulation/grading.py``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.events import write_raw
from ranklab.io import write_parquet
from ranklab.schema import RAW_TABLES
from ranklab.settings import Settings
from simulation.generator import generate_marketplace, window

SOURCE = "simulation"


def marketplace_dir(settings: Settings) -> Path:
    """The world's full tables, ground truth included."""
    return settings.world_dir / "marketplace"


def publish(settings: Settings) -> dict[str, pd.DataFrame]:
    """Generate the marketplace of ``settings.data``, keep it whole in the world's folder and
    publish its observable part to the landing folder. Returns the full tables."""
    tables = generate_marketplace(settings.data)
    for name in RAW_TABLES:
        write_parquet(tables[name], marketplace_dir(settings) / f"{name}.parquet")
    # Generated data lives on a fixed calendar: its 'now' is the window's end.
    write_raw(tables, settings.landing_dir, as_of=window(settings.data)[1], source=SOURCE)
    return tables


def load_world(settings: Settings) -> dict[str, pd.DataFrame]:
    """The full tables ``publish`` kept (latents and truth included)."""
    directory = marketplace_dir(settings)
    missing = [n for n in RAW_TABLES if not (directory / f"{n}.parquet").is_file()]
    if missing:
        raise FileNotFoundError(
            f"the simulated world has no {missing} at {directory}: run `ranklab run` first"
        )
    return {name: pd.read_parquet(directory / f"{name}.parquet") for name in RAW_TABLES}
