"""The simulator's grader: the system's test-day orders, graded with the ground truth it never saw.

The pipeline leaves, under its reports folder, each model's score of every test row
(``evaluation/test_scores.parquet``), its own comparison on the logs (``comparison.json``:
the debiased metric the gate used and the raw clicks) and its estimated examination curve
(``position_bias/curve.json``). This module joins the first to the world's truth and adds
what only the world can say:

- NDCG@10 on the true relevance grades, with 95% intervals;
- "of oracle" against the **noise-free** oracle (ranking by expected utility: what a model
  knowing every latent could do), with the noisy oracle (ranking by the realised utility,
  which knows the dice) beside it: the first says how much headroom is real;
- the paired difference debiased - naive ranker on the truth: does debiasing pay?
- the estimated examination curve against the true one (the click model's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.bootstrap import Estimate, bootstrap_ci, paired_bootstrap_diff
from models.metrics import PRIMARY_METRIC, per_session_metrics, resolve_no_relevant
from models.propensity import PropensityCurve
from models.train import RANKER_IPW, RANKER_NAIVE
from ranklab.schema import DEBIASED_LABEL, DEVICES, ITEM_ID, LABEL, SESSION_ID
from ranklab.settings import Settings
from simulation.click_model import ClickModel
from simulation.truth import EXPECTED_UTILITY, TRUE_RELEVANCE, TRUE_UTILITY
from simulation.world import load_world

ORACLE = "oracle (noise-free)"
NOISY_ORACLE = "oracle (knows the noise)"
CURVE_POSITIONS = 10  # the positions NDCG@10 looks at


@dataclass(frozen=True)
class Grading:
    table: pd.DataFrame  # a row per model: the system's own metrics and the truth beside them
    debiasing_gain: Estimate | None  # ranker_ipw - ranker_naive, NDCG@10 on the truth
    curve_error: pd.DataFrame | None  # per device: estimated vs true examination, positions 1-10

    def to_markdown(self) -> str:
        lines = [
            "Graded by the simulator with the ground truth the system never saw "
            "(simulation/grading.py):",
            self.table.to_markdown(index=False),
        ]
        if self.debiasing_gain is not None:
            lines.append(
                f"debiased - naive ranker, {PRIMARY_METRIC} on the truth: {self.debiasing_gain}"
            )
        if self.curve_error is not None:
            errors = self.curve_error.set_index("device")["max relative error"]
            lines.append(
                "estimated examination curve vs the true one, positions 1-10, largest "
                "relative error: " + ", ".join(f"{d} {e:.1%}" for d, e in errors.items())
            )
        return "\n".join(lines)


def impression_truth(settings: Settings) -> pd.DataFrame:
    """session_id, item_id and the truth of every impression the world generated."""
    impressions = load_world(settings)["impressions"]
    return impressions[[SESSION_ID, ITEM_ID, TRUE_UTILITY, TRUE_RELEVANCE, EXPECTED_UTILITY]]


def grade_run(settings: Settings, n_boot: int = 1000) -> Grading:
    """Grade the models of the pipeline run whose reports are under ``settings``."""
    evaluation_dir = settings.reports_dir / "evaluation"
    scores = pd.read_parquet(evaluation_dir / "test_scores.parquet")
    system = json.loads((evaluation_dir / "comparison.json").read_text(encoding="utf-8"))
    frame = scores.merge(impression_truth(settings), on=[SESSION_ID, ITEM_ID], how="left")
    if frame[TRUE_RELEVANCE].isna().any():
        raise ValueError("test rows the world did not generate: the run is not this world's")
    models = [c for c in scores.columns if c in system]  # the pipeline's line-up order
    truth = {name: _truth_ndcg(frame, frame[name].to_numpy()) for name in models}
    truth[ORACLE] = _truth_ndcg(frame, frame[EXPECTED_UTILITY].to_numpy())
    truth[NOISY_ORACLE] = _truth_ndcg(frame, frame[TRUE_UTILITY].to_numpy())
    table = _table(system, truth, n_boot, settings.seed)
    gain = None
    if RANKER_IPW in truth and RANKER_NAIVE in truth:
        gain = paired_bootstrap_diff(
            truth[RANKER_IPW].to_numpy(), truth[RANKER_NAIVE].to_numpy(), n_boot=n_boot, seed=0
        )
    return Grading(table, gain, curve_error(settings.reports_dir / "position_bias" / "curve.json"))


def _truth_ndcg(frame: pd.DataFrame, scores: np.ndarray) -> pd.Series:
    per_session = per_session_metrics(frame, scores, gain_column=TRUE_RELEVANCE)
    return resolve_no_relevant(per_session, "skip")[PRIMARY_METRIC]


def _table(
    system: dict[str, dict[str, dict[str, float]]],
    truth: dict[str, pd.Series],
    n_boot: int,
    seed: int,
) -> pd.DataFrame:
    oracle = truth[ORACLE].mean()
    noisy = truth[NOISY_ORACLE].mean()
    rows = []
    for name, per_session in truth.items():
        estimate = bootstrap_ci(per_session.to_numpy(), n_boot=n_boot, seed=seed)
        own = system.get(name, {})
        rows.append(
            {
                "model": name,
                f"{PRIMARY_METRIC} debiased (gate)": _fmt(own.get(DEBIASED_LABEL)),
                f"{PRIMARY_METRIC} clicks": _fmt(own.get(LABEL)),
                f"{PRIMARY_METRIC} truth": str(estimate),
                "of oracle": f"{estimate.mean / oracle:.1%}",
                "of noisy oracle": f"{estimate.mean / noisy:.1%}",
            }
        )
    return pd.DataFrame(rows)


def _fmt(record: dict[str, float] | None) -> str:
    if record is None:
        return "-"
    return f"{record['mean']:.3f} [{record['lo']:.3f}, {record['hi']:.3f}]"


def curve_error(path: Path, click_model: ClickModel | None = None) -> pd.DataFrame | None:
    """Per device, the largest relative error of the estimated examination curve at
    positions 1-10 against the click model's true curve (None: no curve was estimated)."""
    if not path.exists():
        return None
    curve = PropensityCurve.from_dict(json.loads(path.read_text(encoding="utf-8")))
    click_model = click_model or ClickModel()
    positions = np.arange(1, CURVE_POSITIONS + 1)
    rows = []
    for device in DEVICES:
        devices = np.full(len(positions), device)
        estimated = np.asarray(curve.examination(positions, devices), dtype=float)
        true = click_model.examination(positions, devices)
        rows.append(
            {"device": device, "max relative error": float(np.max(np.abs(estimated / true - 1)))}
        )
    return pd.DataFrame(rows)
