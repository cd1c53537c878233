"""Synthetic click logs under a known position-based model, for the propensity and
offline-estimator tests. Written here with numpy on purpose: the production estimators must
work on logs they did not generate, so the tests do not use the simulator either.

A catalogue of items with a known attraction alpha; each session shows ``slate`` of them.
The logging policy orders a session by logit(alpha) plus noise (so it puts attractive items
on top, imperfectly: the confounding that makes raw clicks misleading). In a share of
sessions it shuffles its top ``top_k`` uniformly (the randomisation intervention). A shown
item is clicked with probability theta(position, device) * alpha, theta = position ** -eta.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ranklab.schema import (
    CLICKED,
    DEVICE,
    ITEM_ID,
    LABEL,
    POLICY_POSITION,
    POSITION,
    PURCHASED,
    RANDOMIZED,
    SESSION_ID,
)

ETAS = {"desktop": 0.5, "tablet": 0.7, "mobile": 1.0}


@dataclass
class PbmLog:
    frame: pd.DataFrame  # the logged columns, one row per impression, in shown order
    alpha: np.ndarray  # true attraction of each row's item (never in the frame)
    policy_score: np.ndarray  # the logging policy's score of each row
    theta: np.ndarray  # true examination probability of each row


def make_pbm_log(
    n_sessions: int = 2000,
    slate: int = 20,
    top_k: int = 10,
    randomized_share: float = 0.5,
    seed: int = 0,
    etas: Mapping[str, float] = ETAS,
    policy_noise: float = 1.0,
    n_items: int = 400,
    purchase_rate: float = 0.3,
    examination: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> PbmLog:
    """``examination(position [S, L], device [S]) -> theta [S, L]`` replaces the power law."""
    rng = np.random.default_rng(seed)
    item_alpha = 1 / (1 + np.exp(-rng.normal(-1.0, 1.2, size=n_items)))
    # Distinct items per session: the first ``slate`` of a random order of the catalogue.
    items = np.argpartition(rng.random((n_sessions, n_items)), slate, axis=1)[:, :slate]
    alpha = item_alpha[items]  # [S, L]
    logit = np.log(alpha / (1 - alpha))
    policy_score = logit + policy_noise * rng.normal(size=alpha.shape)
    policy_position = np.argsort(np.argsort(-policy_score, axis=1), axis=1) + 1  # [S, L]

    randomized_session = rng.random(n_sessions) < randomized_share
    shuffled = np.argsort(np.argsort(rng.random((n_sessions, top_k)), axis=1), axis=1) + 1
    in_top = policy_position <= top_k
    randomized = randomized_session[:, None] & in_top
    # Within the top k, the item at policy rank j is shown at shuffled[j - 1].
    top_rank = np.minimum(policy_position, top_k) - 1
    shown_at = np.take_along_axis(shuffled, top_rank, axis=1)
    position = np.where(randomized, shown_at, policy_position)

    device_names = np.array(list(etas))
    device = device_names[rng.integers(0, len(device_names), size=n_sessions)]
    eta = np.array([etas[d] for d in device])
    theta = position ** -eta[:, None] if examination is None else examination(position, device)
    clicked = rng.random(alpha.shape) < theta * alpha
    purchased = clicked & (rng.random(alpha.shape) < purchase_rate)

    frame = pd.DataFrame(
        {
            SESSION_ID: np.repeat(np.arange(n_sessions), slate),
            ITEM_ID: items.ravel(),
            POSITION: position.ravel(),
            POLICY_POSITION: policy_position.ravel(),
            RANDOMIZED: randomized.ravel(),
            DEVICE: np.repeat(device, slate),
            CLICKED: clicked.ravel().astype(int),
            PURCHASED: purchased.ravel().astype(int),
            LABEL: (clicked.astype(int) + purchased).ravel(),
        }
    )
    order = np.lexsort((frame[POSITION].to_numpy(), frame[SESSION_ID].to_numpy()))
    return PbmLog(
        frame.iloc[order].reset_index(drop=True),
        alpha.ravel()[order],
        policy_score.ravel()[order],
        theta.ravel()[order],
    )
