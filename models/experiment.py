"""One experiment, end to end on the test split: every trained model and the oracle evaluated
on the same sessions, the comparison table people read, and the plots.

The Dagster assets in ``pipelines/defs/model_assets.py`` call these functions; so can a
notebook or a benchmark.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from models import plots
from models.calibration import calibration
from models.evaluation import ModelEvaluation, evaluate, oracle_scores
from models.metrics import PRIMARY_METRIC
from models.slices import worst_slice
from ranklab.io import write_text
from ranklab.schema import CLICKED, LABEL, TRUE_RELEVANCE, TrainingSet

ORACLE = "oracle"


def evaluate_models(
    ts: TrainingSet, models: Mapping[str, object], seed: int, split: str = "test"
) -> dict[str, ModelEvaluation]:
    """Each model's evaluation on ``split``, plus the oracle (the ceiling) where the truth
    is known. Every evaluation sees the same sessions, so any two pair up for the gate."""
    frame = ts.part(split)
    slices = ts.slice_columns
    evaluations = {
        name: evaluate(frame, model.predict(frame), name, slices, seed=seed)
        for name, model in models.items()
    }
    if ts.has_ground_truth:
        evaluations[ORACLE] = evaluate(frame, oracle_scores(frame), ORACLE, slices, seed=seed)
    return evaluations


def comparison_table(evaluations: Mapping[str, ModelEvaluation]) -> pd.DataFrame:
    """One row per model: NDCG@10 with its 95% interval on the observed label and on the
    truth, the share of the oracle reached, and the worst slice."""
    oracle = evaluations.get(ORACLE)
    rows = []
    for name, ev in evaluations.items():
        row = {"model": name, f"{PRIMARY_METRIC} (clicks)": str(ev.primary(LABEL))}
        if TRUE_RELEVANCE in ev.overall:
            truth = ev.primary(TRUE_RELEVANCE)
            row[f"{PRIMARY_METRIC} (truth)"] = str(truth)
            if oracle is not None:
                row["of oracle"] = f"{truth.mean / oracle.primary(TRUE_RELEVANCE).mean:.1%}"
        row["worst slice (clicks)"] = _worst(ev.slices)
        rows.append(row)
    return pd.DataFrame(rows)


def _worst(table: pd.DataFrame) -> str:
    try:
        worst = worst_slice(table)
    except ValueError:  # every slice too small to judge
        return "n/a"
    return f"{worst['slice']}={worst['value']} {worst['mean']:.3f} (n={worst['n_sessions']})"


def write_plots(
    ts: TrainingSet,
    models: Mapping[str, object],
    evaluations: Mapping[str, ModelEvaluation],
    out_dir: Path,
    split: str = "test",
) -> list[Path]:
    """Slice bars with intervals, the ranker's training curves, and the reliability curve of
    every model that outputs click probabilities."""
    paths = [plots.plot_slices(list(evaluations.values()), out_dir / "slices_clicks.png")]
    if ts.has_ground_truth:
        paths.append(
            plots.plot_slices(
                list(evaluations.values()), out_dir / "slices_truth.png", on_truth=True
            )
        )
    histories = {n: m.history_ for n, m in models.items() if getattr(m, "history_", None)}
    if histories:
        paths.append(plots.plot_training_curves(histories, out_dir / "training_curves.png"))
    frame = ts.part(split)
    for name, model in models.items():
        if CLICKED in frame.columns and hasattr(model, "predict_proba"):
            table, ece = calibration(frame, model.predict_proba(frame))
            paths.append(
                plots.plot_reliability(table, ece, out_dir / f"reliability_{name}.png", name)
            )
    return paths


def write_comparison(table: pd.DataFrame, path: Path) -> Path:
    return write_text(table.to_markdown(index=False) + "\n", path)
