"""One experiment, end to end on the test split: every trained model evaluated on the same
sessions, the comparison table people read, and the plots. Everything here is computed from
the logs alone: the simulator's grader adds its ground-truth columns beside this table
(``simulation/grading.py``), never inside it.

The Dagster assets in ``pipelines/defs/model_assets.py`` call these functions; so can a
notebook or a benchmark.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from models import plots
from models.calibration import calibration
from models.evaluation import ModelEvaluation, evaluate
from models.metrics import PRIMARY_METRIC
from models.slices import worst_slice
from ranklab.io import write_text
from ranklab.schema import CLICKED, DEBIASED_LABEL, ITEM_ID, LABEL, SESSION_ID, TrainingSet


def evaluate_models(
    ts: TrainingSet, models: Mapping[str, object], seed: int, split: str = "test"
) -> dict[str, ModelEvaluation]:
    """Each model's evaluation on ``split``. Every evaluation sees the same sessions, so any
    two pair up for the gate."""
    frame = ts.part(split)
    slices = ts.slice_columns
    return {
        name: evaluate(frame, model.predict(frame), name, slices, seed=seed)
        for name, model in models.items()
    }


def test_scores(ts: TrainingSet, models: Mapping[str, object], split: str = "test") -> pd.DataFrame:
    """Each model's score of every ``split`` row, beside the keys and the label: what a
    grader outside the system (the simulator's) needs to grade the same orders its own way."""
    frame = ts.part(split)
    keys = [c for c in (SESSION_ID, ITEM_ID, LABEL, DEBIASED_LABEL) if c in frame.columns]
    scores = frame[keys].reset_index(drop=True)
    for name, model in models.items():
        scores[name] = model.predict(frame)
    return scores


def comparison_record(evaluations: Mapping[str, ModelEvaluation]) -> dict[str, object]:
    """The primary metric of every model on every gain, as plain JSON."""
    return {
        name: {
            gain: {"mean": e.mean, "lo": e.lo, "hi": e.hi, "n": e.n}
            for gain, e in ((g, ev.primary(g)) for g in ev.overall)
        }
        for name, ev in evaluations.items()
    }


def comparison_table(evaluations: Mapping[str, ModelEvaluation]) -> pd.DataFrame:
    """One row per model: NDCG@10 with its 95% interval on the position-debiased label (what
    the gate decides on) and on the logged clicks as they are, and the worst slice."""
    rows = []
    for name, ev in evaluations.items():
        row = {"model": name}
        if DEBIASED_LABEL in ev.overall:
            row[f"{PRIMARY_METRIC} (debiased)"] = str(ev.primary(DEBIASED_LABEL))
        row[f"{PRIMARY_METRIC} (clicks)"] = str(ev.primary(LABEL))
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
    if all(DEBIASED_LABEL in e.slices_by_gain for e in evaluations.values()):
        paths.append(
            plots.plot_slices(
                list(evaluations.values()), out_dir / "slices_debiased.png", gain=DEBIASED_LABEL
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
