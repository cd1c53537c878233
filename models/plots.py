"""Figures for the evaluation report, written as PNG files (never shown on a screen).

Figures are built with matplotlib's object API (``Figure``, not ``pyplot``): no global
state, no display backend, safe in a Dagster worker. Each function returns the written path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from models.evaluation import ModelEvaluation
from models.metrics import PRIMARY_METRIC
from ranklab.io import atomic_path
from ranklab.schema import LABEL


def plot_slices(evaluations: Sequence[ModelEvaluation], path: Path, gain: str = LABEL) -> Path:
    """NDCG@10 per slice value on ``gain``, one bar per model, 95% intervals as error bars.

    Slices too small to judge are drawn hollow.
    """
    lacking = [e.model for e in evaluations if gain not in e.slices_by_gain]
    if lacking:
        raise ValueError(f"plot_slices: evaluations {lacking} were not made on the gain {gain!r}")
    tables = {e.model: e.slices_by_gain[gain] for e in evaluations}
    first = next(iter(tables.values()))
    labels = [f"{s}={v}" for s, v in zip(first["slice"], first["value"], strict=True)]
    y = np.arange(len(labels))
    height = 0.8 / len(tables)

    fig = Figure(figsize=(8, 0.35 * len(labels) * max(1, len(tables) / 2) + 1.5))
    ax = fig.subplots()
    for i, (model, table) in enumerate(tables.items()):
        offsets = y + (i - (len(tables) - 1) / 2) * height
        errors = np.vstack([table["mean"] - table["lo"], table["hi"] - table["mean"]])
        bars = ax.barh(offsets, table["mean"], height, xerr=errors, label=model, capsize=2)
        for bar, too_small in zip(bars, table["too_small"], strict=True):
            if too_small:
                bar.set_edgecolor(bar.get_facecolor())
                bar.set_fill(False)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel(f"{PRIMARY_METRIC} ({gain}); hollow = too few sessions to judge")
    ax.legend(loc="best", fontsize="small")
    return _save(fig, path)


def plot_training_curves(
    histories: Mapping[str, Sequence[Mapping[str, float]]], path: Path
) -> Path:
    """Training loss and validation NDCG@10 per epoch, one line per ranker variant."""
    fig = Figure(figsize=(10, 4))
    loss_ax, valid_ax = fig.subplots(1, 2)
    valid_key = f"valid_{PRIMARY_METRIC}"
    for name, history in histories.items():
        frame = pd.DataFrame(history)
        loss_ax.plot(frame["epoch"], frame["train_loss"], label=name)
        if valid_key in frame:
            valid_ax.plot(frame["epoch"], frame[valid_key], label=name)
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="training loss")
    valid_ax.set(xlabel="epoch", ylabel=PRIMARY_METRIC, title="validation (early stopping)")
    for ax in (loss_ax, valid_ax):
        ax.legend(fontsize="small")
    return _save(fig, path)


def plot_reliability(table: pd.DataFrame, ece: float, path: Path, model: str = "") -> Path:
    """Observed CTR against mean predicted probability per bin (``calibration``'s table)."""
    filled = table[table["n"] > 0]
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.plot(filled["mean_predicted"], filled["observed_ctr"], marker="o", label=model or "model")
    for row in filled.itertuples():  # how many rows stand behind each point
        ax.annotate(f"n={row.n:,}", (row.mean_predicted, row.observed_ctr), fontsize=7)
    ax.set(
        xlabel="mean predicted click probability",
        ylabel="observed click rate",
        title=f"reliability (ECE = {ece:.4f})",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(loc="upper left", fontsize="small")
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(path)
