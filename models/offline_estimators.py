"""Counterfactual (debiased) offline metrics from click logs, to choose and promote models.

A logged click says "examined and attractive". Raw-click metrics therefore reward a model
for putting first what the logging policy showed first (those items were examined most),
whatever users actually want. Weighting each click by 1 / theta(logged position, device)
(a ``PropensityCurve``, estimated from the system's own randomised logs) undoes that under
the position-based model, because E[click / theta] = alpha, the item's attraction
(Joachims, Swaminathan & Schnabel, 2017, "Unbiased Learning-to-Rank with Biased Feedback";
Schnabel et al., 2016, "Recommendations as Treatments" for SNIPS in this setting).

For a model's scores on the logged sessions, with rank(i) the model's rank of item i in its
session and lambda(r) = 1 / log2(1 + r) for r <= k, else 0 (k = 10), each estimator is:

| name       | per session                                   | sessions without a click      |
|------------|-----------------------------------------------|-------------------------------|
| raw_ndcg   | NDCG@k with gain = label (``models/metrics``) | dropped ("skip")              |
| ips_ndcg   | NDCG@k with gain = label * w, normalised by   | dropped ("skip")              |
|            | the same session's ideal order of those gains |                               |
| ips_dcg    | sum_i click_i * w_i * lambda(rank_i)          | kept, as 0                    |
| snips      | sum_i c w lambda / sum over ALL sessions of   | kept, as 0 (they add nothing  |
|            | c w, times the number of sessions             | to either sum)                |

with w = min(1 / theta, max_weight). Why each treats click-less sessions so:

- The NDCG variants follow ``resolve_no_relevant(..., "skip")``, the convention for click
  labels (``models/evaluation.default_no_relevant``): a session without a click has no ideal
  order, and which sessions are dropped depends on the labels only, so two models are always
  judged on the same sessions. ``ips_ndcg`` is what ``ListwiseRanker._validation_ndcg``
  computes with IPW targets.

  Caveat, measured in the tests: the per-session ideal cancels the weights wherever a
  session has a single click (DCG and ideal DCG both scale with that click's weight), so
  there ``ips_ndcg`` equals ``raw_ndcg`` and keeps its position bias. Only sessions with two
  or more clicks are debiased. On confounded logs it moves a long way from raw NDCG toward
  the truth but may not reach it; prefer ``snips`` (or ``ips_dcg``) to choose or promote.
- ``ips_dcg`` estimates, without bias (uncapped: ``max_weight=None``), the DCG@k the model
  would get with attraction probabilities as gains: E[ips_dcg] = sum_i alpha_i lambda(rank_i).
  A session without a click is an observation of that sum (0 this time); dropping it
  would bias the estimate upwards.
- SNIPS (self-normalised IPS): sum c w lambda / sum c w over all clicked rows, the average
  discount the model gives a (propensity-weighted) click. Dividing by the weights' own sum
  removes most of the variance the large weights bring, for a small bias. It is a ratio of
  sums, not a mean over sessions: ``snips()`` and ``paired_diff(..., "snips")`` resample
  numerator and denominator together. Its per-session form (``debiased_session_metric``)
  is the numerator scaled so that the mean over sessions equals SNIPS; a paired bootstrap
  of it treats the denominator as fixed, an approximation (it is the same for both models).

The cap (``max_weight``, default 20 as ``RankerConfig.max_propensity_weight``) trades a
little downward bias at deep positions (theta < 1 / max_weight) for much less variance.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import pandas as pd

from models.bootstrap import Estimate, paired_bootstrap_diff
from models.metrics import per_session_metrics
from models.propensity import PropensityCurve
from ranklab.schema import CLICKED, DEVICE, LABEL, POSITION, SESSION_ID

Estimator = Literal["raw_ndcg", "ips_ndcg", "ips_dcg", "snips"]
ESTIMATORS: tuple[str, ...] = get_args(Estimator)
DEFAULT_MAX_WEIGHT = 20.0
DEFAULT_K = 10
_REQUIRED = (SESSION_ID, POSITION, DEVICE, CLICKED, LABEL)
_BLOCK = 2**22  # bootstrap indices drawn in blocks of about this many, as models/bootstrap.py


# ---- weights and ranks ---------------------------------------------------------------------------


def ips_weights(
    frame: pd.DataFrame, curve: PropensityCurve, max_weight: float | None = DEFAULT_MAX_WEIGHT
) -> np.ndarray:
    """min(1 / theta(logged position, device), max_weight) per row; ``None``: uncapped."""
    missing = [c for c in (POSITION, DEVICE) if c not in frame.columns]
    if missing:
        raise KeyError(f"ips_weights: frame lacks columns {missing}")
    if max_weight is not None and max_weight < 1:
        raise ValueError(f"max_weight must be >= 1 (theta <= 1 at the top), got {max_weight}")
    weights = 1.0 / curve.examination(frame[POSITION].to_numpy(), frame[DEVICE].to_numpy())
    return weights if max_weight is None else np.minimum(weights, max_weight)


def model_ranks(session_codes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """1-based rank of each row inside its session by descending score; ties by row order."""
    order = np.lexsort((np.arange(len(scores)), -scores, session_codes))
    sorted_codes = session_codes[order]
    is_start = np.r_[True, sorted_codes[1:] != sorted_codes[:-1]]
    start = np.maximum.accumulate(np.where(is_start, np.arange(len(order)), 0))
    ranks = np.empty(len(order))
    ranks[order] = np.arange(len(order)) - start + 1
    return ranks


def discount(ranks: np.ndarray, k: int = DEFAULT_K) -> np.ndarray:
    """lambda(rank) = 1 / log2(1 + rank) in the top k, 0 below it."""
    return np.where(ranks <= k, 1.0 / np.log2(1.0 + ranks), 0.0)


# ---- per-session values --------------------------------------------------------------------------


def per_session_estimates(
    frame: pd.DataFrame,
    scores: np.ndarray,
    curve: PropensityCurve,
    max_weight: float | None = DEFAULT_MAX_WEIGHT,
    k: int = DEFAULT_K,
) -> pd.DataFrame:
    """Every session (first-appearance order): raw_ndcg, ips_ndcg (NaN without a click),
    ips_dcg, and SNIPS's per-session sums snips_numerator and snips_denominator."""
    scores = _checked(frame, scores)
    codes, sessions = pd.factorize(frame[SESSION_ID], sort=False)
    clicks = frame[CLICKED].to_numpy(dtype=float)
    weights = ips_weights(frame, curve, max_weight)
    weighted_label = frame[LABEL].to_numpy(dtype=float) * weights
    gains = pd.DataFrame({SESSION_ID: frame[SESSION_ID].to_numpy(), "ips_gain": weighted_label})
    lam = discount(model_ranks(codes, scores), k)
    ndcg = f"ndcg@{k}"
    per_session_sum = _summer(codes, len(sessions))
    numerator = per_session_sum(clicks * weights * lam)
    return pd.DataFrame(
        {
            "raw_ndcg": per_session_metrics(frame, scores, LABEL, k_values=(k,))[ndcg].to_numpy(),
            "ips_ndcg": per_session_metrics(gains, scores, "ips_gain", k_values=(k,))[
                ndcg
            ].to_numpy(),
            "ips_dcg": numerator,
            "snips_numerator": numerator,
            "snips_denominator": per_session_sum(clicks * weights),
        },
        index=pd.Index(sessions, name=SESSION_ID),
    )


def debiased_session_metric(
    frame: pd.DataFrame,
    scores: np.ndarray,
    curve: PropensityCurve,
    estimator: Estimator = "snips",
    max_weight: float | None = DEFAULT_MAX_WEIGHT,
    k: int = DEFAULT_K,
) -> pd.Series:
    """One NaN-free value per session (index session_id), for the gate's paired bootstrap.

    The default, ``snips``, is debiased in every session (``ips_ndcg`` is not in one-click
    sessions) and on the scale of a discount (0-1) like NDCG, so the gate's margins keep
    their meaning; ``ips_dcg`` is exactly unbiased but on the scale of a sum of weights.
    Within a slice, the mean of the ``snips`` series is the slice's SNIPS times a constant
    (the slice's share of the click weight over its share of the sessions): the sign of a
    paired difference is kept, its size is scaled.

    Sessions without a click are dropped for the NDCG estimators and kept (as 0) for
    ``ips_dcg`` and ``snips`` (see the module docstring); either way the sessions depend only
    on the logs, so two models' series align.
    """
    _check_estimator(estimator)
    table = per_session_estimates(frame, scores, curve, max_weight, k)
    if estimator in ("raw_ndcg", "ips_ndcg"):
        values = table[estimator].dropna()
        if values.empty:
            raise ValueError(f"{estimator}: no session has a click (label > 0)")
        return values.rename(estimator)
    if estimator == "ips_dcg":
        return table["ips_dcg"].rename(estimator)
    denominator = table["snips_denominator"].sum()
    if denominator <= 0:
        raise ValueError("snips: no click in the frame, the estimator is undefined")
    return (table["snips_numerator"] * len(table) / denominator).rename(estimator)


# ---- SNIPS and paired differences ------------------------------------------------------------------


def snips(
    frame: pd.DataFrame,
    scores: np.ndarray,
    curve: PropensityCurve,
    max_weight: float | None = DEFAULT_MAX_WEIGHT,
    k: int = DEFAULT_K,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> Estimate:
    """SNIPS = sum c w lambda / sum c w, with a percentile-bootstrap interval over sessions."""
    table = per_session_estimates(frame, scores, curve, max_weight, k)
    return _ratio_bootstrap(
        table["snips_numerator"].to_numpy(),
        table["snips_denominator"].to_numpy(),
        n_boot,
        seed,
        alpha,
    )


def paired_diff(
    frame: pd.DataFrame,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    curve: PropensityCurve,
    estimator: Estimator = "snips",
    max_weight: float | None = DEFAULT_MAX_WEIGHT,
    k: int = DEFAULT_K,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> Estimate:
    """Estimator(a) - estimator(b) on the same logged sessions, the same resamples for both.

    The per-session estimators use ``models.bootstrap.paired_bootstrap_diff`` (what the gate
    uses); SNIPS resamples the difference of numerators over the shared denominator.
    """
    _check_estimator(estimator)
    if estimator == "snips":
        a = per_session_estimates(frame, scores_a, curve, max_weight, k)
        b = per_session_estimates(frame, scores_b, curve, max_weight, k)
        numerator = (a["snips_numerator"] - b["snips_numerator"]).to_numpy()
        return _ratio_bootstrap(numerator, a["snips_denominator"].to_numpy(), n_boot, seed, alpha)
    a = debiased_session_metric(frame, scores_a, curve, estimator, max_weight, k)
    b = debiased_session_metric(frame, scores_b, curve, estimator, max_weight, k)
    return paired_bootstrap_diff(
        a.to_numpy(), b.reindex(a.index).to_numpy(), n_boot=n_boot, seed=seed, alpha=alpha
    )


def _ratio_bootstrap(
    numerator: np.ndarray, denominator: np.ndarray, n_boot: int, seed: int, alpha: float
) -> Estimate:
    """sum(numerator) / sum(denominator), sessions resampled with replacement (index matrices)."""
    total = denominator.sum()
    if total <= 0:
        raise ValueError("snips: no click in the frame, the estimator is undefined")
    if n_boot < 1 or not 0 < alpha < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < alpha < 1, got {n_boot}, {alpha}")
    rng = np.random.default_rng(seed)
    n = len(numerator)
    block = max(1, _BLOCK // n)
    ratios = []
    for start in range(0, n_boot, block):
        index = rng.integers(0, n, size=(min(block, n_boot - start), n))
        resampled_denominator = denominator[index].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratios.append(numerator[index].sum(axis=1) / resampled_denominator)
    ratios = np.concatenate(ratios)
    lo, hi = np.nanquantile(
        np.where(np.isfinite(ratios), ratios, np.nan), [alpha / 2, 1 - alpha / 2]
    )
    return Estimate(float(numerator.sum() / total), float(lo), float(hi), n)


# ---- helpers ---------------------------------------------------------------------------------------


def _checked(frame: pd.DataFrame, scores: np.ndarray) -> np.ndarray:
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise KeyError(f"offline estimators: frame lacks columns {missing}")
    scores = np.asarray(scores, dtype=float)
    if scores.shape != (len(frame),):
        raise ValueError(
            f"offline estimators: expected one score per row ({len(frame)}), got shape "
            f"{scores.shape}"
        )
    if not np.isfinite(scores).all():
        raise ValueError("offline estimators: scores contain NaN or infinite values")
    clicked = frame[CLICKED].to_numpy(dtype=float)
    if np.isnan(clicked).any() or not np.isin(clicked, (0.0, 1.0)).all():
        raise ValueError(f"offline estimators: {CLICKED} must be 0/1 (or bool)")
    return scores


def _check_estimator(estimator: str) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; expected one of {ESTIMATORS}")


def _summer(codes: np.ndarray, n_sessions: int):
    def per_session_sum(values: np.ndarray) -> np.ndarray:
        return np.bincount(codes, weights=values, minlength=n_sessions)

    return per_session_sum
