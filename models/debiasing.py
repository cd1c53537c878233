"""Position debiasing from the system's own logs: the estimated examination curve turned into
the debiased label every later stage trains, chooses and promotes on.

1. ``estimate_curve``: the examination curve per position and device, estimated from the
   randomised sessions of the training days (``models/propensity.py``). No curve is assumed
   and none is taken from the simulator: on real data this is the only way it is known.
2. ``with_debiased_label``: ``label_ipw = label / P(examined | logged position, device)``,
   capped at ``max_weight``. Under the position-based click model its expectation is the
   label's expectation had the item been examined for sure, whatever position the old ranker
   chose (Joachims et al., 2017): the IPW ranker's target, and the gain of the debiased
   offline metric (NDCG@10 on ``label_ipw``) that picks the candidate and that the gate
   judges on.

Data without logged positions (LETOR's graded labels) needs none of this: the frame passes
through unchanged, and every stage falls back to the label itself.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from models.propensity import PropensityCurve, estimate_from_randomized
from ranklab.schema import (
    DEBIASED_LABEL,
    DEVICE,
    DEVICES,
    LABEL,
    POSITION,
    RANDOMIZED,
    TrainingSet,
)
from ranklab.settings import PositionBiasSettings, Settings

CURVE_METADATA = "propensity_curve"  # where the curve travels in TrainingSet.metadata


def can_estimate(ts: TrainingSet) -> bool:
    """Whether the frame logs what the estimator needs: positions, devices, the intervention."""
    frame = ts.frame
    return all(c in frame.columns for c in (POSITION, DEVICE, RANDOMIZED)) and bool(
        frame[RANDOMIZED].any()
    )


def estimate_curve(ts: TrainingSet, config: PositionBiasSettings, seed: int) -> PropensityCurve:
    """The examination curve from the randomised sessions of the train split only: the valid
    and test days stay untouched for choosing and judging."""
    if not can_estimate(ts):
        raise ValueError(
            "no randomised sessions in the training set: position bias cannot be estimated. "
            "Run the randomisation intervention (serving: RANKLAB_SERVING__RANDOMIZED_SHARE) "
            "for a while, or train without debiasing"
        )
    return estimate_from_randomized(
        ts.part("train"),
        n_boot=config.n_boot,
        seed=seed,
        min_sessions=config.min_sessions,
        devices=DEVICES,
    )


def debiased_labels(frame, curve: PropensityCurve, max_weight: float) -> np.ndarray:
    """``label / examination(position, device)``, the weight capped at ``max_weight``."""
    examination = curve.examination(frame[POSITION].to_numpy(), frame[DEVICE].to_numpy())
    weight = np.minimum(1.0 / np.asarray(examination, dtype=float), max_weight)
    return frame[LABEL].to_numpy(dtype=float) * weight


def debiased(ts: TrainingSet, settings: Settings) -> TrainingSet:
    """``ts`` as the pipeline's ``debiased_training_data`` asset makes it from ``settings``
    (the same curve: the estimate is deterministic from the seed)."""
    return with_debiased_label(ts, settings.position_bias, seed=settings.seed)[0]


def with_debiased_label(
    ts: TrainingSet, config: PositionBiasSettings, seed: int
) -> tuple[TrainingSet, PropensityCurve | None]:
    """``ts`` with the ``label_ipw`` column and its curve in the metadata; unchanged (and
    no curve) when the data logs no randomised positions."""
    if not can_estimate(ts):
        return ts, None
    curve = estimate_curve(ts, config, seed)
    frame = ts.frame.copy()
    frame[DEBIASED_LABEL] = debiased_labels(frame, curve, config.max_weight)
    metadata = {**ts.metadata, CURVE_METADATA: curve.to_dict()}
    return dataclasses.replace(ts, frame=frame, metadata=metadata), curve
