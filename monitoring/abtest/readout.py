"""The A/B readout: the metric per arm, the lift, the checks, and one decision.

In the order it runs:

1. **Sample ratio mismatch** (chi-square goodness of fit of users per arm against the
   configured weights). A mismatch means the assignment or the logging is broken: the arms
   no longer hold comparable users and no lift can be trusted, so it blocks the readout.
2. **The primary metric per arm**: clicks per session (or CTR: clicks per shown item) with
   its confidence interval.
3. **The lift** of treatment over control, absolute and relative, with a CI and p-value,
   optionally with CUPED (``cuped.py``).
4. **Guardrails** (latency p95, fallback rate, zero-result rate): the treatment must not be
   worse than the control beyond a margin.
5. **The decision**, by the first rule that applies (``decide``).

Why the delta method and not Welch's t-test on sessions: users, not sessions, are
randomised, and one user's sessions are alike (same tastes, same device). Both metrics are
ratios of per-user sums (clicks / sessions, clicks / shown items), so the right variance
treats the user as the unit: the delta method linearises the ratio into one value per user,
``(clicks_u - R * sessions_u) / mean(sessions)``, and the usual variance of a mean applies to
those (Deng, Knoblich and Lu, 2018). A per-session Welch test treats a user's ten sessions as
ten independent draws and understates the variance, so its false-positive rate exceeds its
alpha. With one session per user the two coincide. The p-value is a z-test (two-sided):
the arms hold hundreds of users at least, where the t and normal distributions agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from monitoring.abtest.cuped import CupedFit, fit_cuped
from monitoring.abtest.exposures import (
    ARM,
    CLICKS,
    LATENCY_MS,
    SERVED_BY,
    SERVED_BY_MODEL,
    SHOWN,
    ExposureError,
)
from ranklab.schema import USER_ID

Metric = Literal["clicks_per_session", "ctr"]
Verdict = Literal["ship", "don't ship", "inconclusive", "blocked"]
CUPED_COVARIATES = ("pre_sessions", "pre_clicks")


class ReadoutConfig(BaseModel):
    """How the readout judges. Every threshold is here, and printed with the decision."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    control: str = Field("control", description="The arm the others are compared with.")
    treatment: str = Field("treatment", description="The arm that would ship.")
    metric: Metric = Field("clicks_per_session", description="The primary metric.")
    alpha: float = Field(0.05, gt=0, lt=1, description="Two-sided level of the lift's test.")
    srm_alpha: float = Field(
        0.001,
        gt=0,
        lt=1,
        description="Sample ratio mismatch below this p-value blocks the readout (strict: "
        "the check runs on every readout, and a false block only delays a decision).",
    )
    cuped: bool = Field(False, description="Adjust the lift with pre-experiment activity.")
    latency_margin_ratio: float = Field(
        0.2, ge=0, description="Treatment p95 latency may exceed control's by this share..."
    )
    latency_margin_ms: float = Field(
        5.0, ge=0, description="...or by this many ms, whichever is larger."
    )
    rate_margin: float = Field(
        0.01, ge=0, description="Fallback and zero-result rates may rise by this much (absolute)."
    )
    bootstrap: int = Field(500, ge=100, description="Resamples for the latency p95 interval.")
    seed: int = Field(0, description="Seed of the bootstrap.")


# ---- estimates ----
@dataclass(frozen=True)
class Estimate:
    value: float
    se: float
    lo: float
    hi: float

    @classmethod
    def normal(cls, value: float, se: float, alpha: float) -> Estimate:
        z = float(stats.norm.ppf(1 - alpha / 2))
        return cls(float(value), float(se), float(value - z * se), float(value + z * se))

    def fmt(self, digits: int = 4, percent: bool = False) -> str:
        if percent:
            return f"{self.value:+.2%} [{self.lo:+.2%}, {self.hi:+.2%}]"
        return f"{self.value:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


@dataclass(frozen=True)
class ArmSample:
    """One arm, one row per user: the metric's numerator and denominator, the covariates."""

    arm: str
    numerator: np.ndarray
    denominator: np.ndarray
    covariates: np.ndarray | None = None  # (users, k): pre-experiment activity

    @property
    def users(self) -> int:
        return len(self.numerator)

    @property
    def ratio(self) -> float:
        return float(self.numerator.sum() / self.denominator.sum())


def linearise(sample: ArmSample) -> np.ndarray:
    """The delta method's per-user values: their mean is the ratio's error, to first order."""
    return (sample.numerator - sample.ratio * sample.denominator) / sample.denominator.mean()


def ratio_estimate(sample: ArmSample, alpha: float) -> Estimate:
    """The arm's ratio with its delta-method interval."""
    if sample.users < 2:
        raise ExposureError(f"arm {sample.arm!r} has {sample.users} users; a CI needs at least 2")
    se = linearise(sample).std(ddof=1) / np.sqrt(sample.users)
    return Estimate.normal(sample.ratio, se, alpha)


@dataclass(frozen=True)
class Lift:
    control: Estimate
    treatment: Estimate
    absolute: Estimate  # treatment - control
    relative: Estimate  # treatment / control - 1
    p_value: float
    method: str
    cuped: CupedFit | None = None

    @property
    def significant(self) -> bool:
        return bool(self.absolute.lo > 0 or self.absolute.hi < 0)


def lift(
    control: ArmSample, treatment: ArmSample, alpha: float = 0.05, cuped: bool = False
) -> Lift:
    """Treatment minus control, absolute and relative, with a two-sided z-test.

    With ``cuped`` each arm's ratio and per-user values are adjusted by its pre-experiment
    covariates (``cuped.py``) before the same test."""
    for sample in (control, treatment):
        if sample.users < 2:
            raise ExposureError(f"arm {sample.arm!r} has {sample.users} users; a lift needs 2+")
    values = [linearise(control), linearise(treatment)]
    ratios = [control.ratio, treatment.ratio]
    fit = None
    if cuped:
        if control.covariates is None or treatment.covariates is None:
            raise ExposureError("CUPED needs pre-experiment covariates for both arms")
        fit = fit_cuped(values, [control.covariates, treatment.covariates], CUPED_COVARIATES)
        covariates = [control.covariates, treatment.covariates]
        shifts = [float((x.mean(axis=0) - fit.pooled_mean) @ fit.theta) for x in covariates]
        ratios = [r - s for r, s in zip(ratios, shifts, strict=True)]
        values = [fit.adjust(v, x) for v, x in zip(values, covariates, strict=True)]
    se_c, se_t = (v.std(ddof=1) / np.sqrt(len(v)) for v in values)
    c, t = ratios
    diff_se = float(np.hypot(se_c, se_t))
    p_value = float(2 * stats.norm.sf(abs(t - c) / diff_se)) if diff_se > 0 else 1.0
    # Relative lift t/c - 1 by the delta method (the arms are independent).
    rel_se = float(np.sqrt(se_t**2 / c**2 + t**2 * se_c**2 / c**4)) if c else float("nan")
    method = "delta method, user level" + (" + CUPED" if cuped else "")
    return Lift(
        control=Estimate.normal(c, se_c, alpha),
        treatment=Estimate.normal(t, se_t, alpha),
        absolute=Estimate.normal(t - c, diff_se, alpha),
        relative=Estimate.normal(t / c - 1 if c else float("nan"), rel_se, alpha),
        p_value=p_value,
        method=method,
        cuped=fit,
    )


# ---- per-user samples from exposures ----
def per_user(exposures: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """One row per (user, arm): sessions, shown items, clicks."""
    grouped = exposures.groupby([USER_ID, ARM], sort=False)
    users = grouped.agg(
        sessions=(CLICKS, "size"), shown=(SHOWN, "sum"), clicks=(CLICKS, "sum")
    ).reset_index()
    users["numerator"] = users["clicks"].astype(float)
    users["denominator"] = users["sessions"] if metric == "clicks_per_session" else users[SHOWN]
    users["denominator"] = users["denominator"].astype(float)
    return users


def samples(
    users: pd.DataFrame, arms: Sequence[str], covariates: pd.DataFrame | None = None
) -> dict[str, ArmSample]:
    """``ArmSample`` per arm from ``per_user`` rows; covariates by user id (0 when absent:
    a user with no history before the experiment)."""
    if covariates is not None:
        users = users.merge(covariates, on=USER_ID, how="left", validate="many_to_one")
        users[list(CUPED_COVARIATES)] = users[list(CUPED_COVARIATES)].fillna(0.0)
    out = {}
    for arm in arms:
        rows = users[users[ARM] == arm]
        out[arm] = ArmSample(
            arm,
            rows["numerator"].to_numpy(),
            rows["denominator"].to_numpy(),
            None if covariates is None else rows[list(CUPED_COVARIATES)].to_numpy(dtype=float),
        )
    return out


# ---- sample ratio mismatch ----
@dataclass(frozen=True)
class SampleRatio:
    users: dict[str, int]
    expected_share: dict[str, float]
    chi2: float
    p_value: float
    alpha: float

    @property
    def passed(self) -> bool:
        return self.p_value >= self.alpha


def sample_ratio_check(
    users_per_arm: Mapping[str, int], weights: Mapping[str, float], alpha: float = 0.001
) -> SampleRatio:
    """Chi-square goodness of fit of users per arm against the configured weights."""
    arms = list(weights)
    unknown = sorted(set(users_per_arm) - set(arms))
    if unknown:
        raise ExposureError(f"arms {unknown} are in the log but not in the experiment {arms}")
    observed = np.array([users_per_arm.get(arm, 0) for arm in arms], dtype=float)
    share = np.array([weights[arm] for arm in arms], dtype=float)
    share /= share.sum()
    chi2, p_value = stats.chisquare(observed, f_exp=share * observed.sum())
    return SampleRatio(
        {a: int(n) for a, n in zip(arms, observed, strict=True)},
        {a: float(s) for a, s in zip(arms, share, strict=True)},
        float(chi2),
        float(p_value),
        alpha,
    )


# ---- guardrails ----
@dataclass(frozen=True)
class Guardrail:
    name: str
    control: float
    treatment: float
    difference: Estimate  # treatment - control; higher is worse for every guardrail
    margin: float

    @property
    def breached(self) -> bool:
        """Worse by more than the margin, and worse beyond doubt (the CI excludes 0)."""
        return bool(self.difference.value > self.margin and self.difference.lo > 0)


def guardrails(exposures: pd.DataFrame, config: ReadoutConfig) -> list[Guardrail]:
    control = exposures[exposures[ARM] == config.control]
    treatment = exposures[exposures[ARM] == config.treatment]
    if control.empty or treatment.empty:
        return []  # nothing to compare: the sample ratio check blocks such a readout
    rng = np.random.default_rng(config.seed)
    latency = _p95_difference(
        control[LATENCY_MS].to_numpy(), treatment[LATENCY_MS].to_numpy(), config, rng
    )
    p95_control = float(np.quantile(control[LATENCY_MS], 0.95))
    latency_margin = max(config.latency_margin_ratio * p95_control, config.latency_margin_ms)
    return [
        Guardrail(
            "latency_p95_ms", p95_control, latency.value + p95_control, latency, latency_margin
        ),  # fmt: skip
        _rate_guardrail(
            "fallback_rate",
            control[SERVED_BY] != SERVED_BY_MODEL,
            treatment[SERVED_BY] != SERVED_BY_MODEL,
            config,
        ),  # fmt: skip
        _rate_guardrail("zero_result_rate", control[SHOWN] == 0, treatment[SHOWN] == 0, config),
    ]


def _p95_difference(
    control: np.ndarray, treatment: np.ndarray, config: ReadoutConfig, rng: np.random.Generator
) -> Estimate:
    """p95(treatment) - p95(control) with a percentile bootstrap interval over requests."""
    diff = float(np.quantile(treatment, 0.95) - np.quantile(control, 0.95))
    boots = np.array(
        [
            np.quantile(rng.choice(treatment, len(treatment)), 0.95)
            - np.quantile(rng.choice(control, len(control)), 0.95)
            for _ in range(config.bootstrap)
        ]
    )
    lo, hi = np.quantile(boots, [config.alpha / 2, 1 - config.alpha / 2])
    return Estimate(diff, float(boots.std(ddof=1)), float(lo), float(hi))


def _rate_guardrail(
    name: str, control: pd.Series, treatment: pd.Series, config: ReadoutConfig
) -> Guardrail:
    pc, pt = float(control.mean()), float(treatment.mean())
    se = float(np.sqrt(pc * (1 - pc) / len(control) + pt * (1 - pt) / len(treatment)))
    return Guardrail(name, pc, pt, Estimate.normal(pt - pc, se, config.alpha), config.rate_margin)


# ---- the decision ----
@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    rule: str


def decide(
    srm: SampleRatio, lift_result: Lift | None, checks: Sequence[Guardrail], alpha: float
) -> Decision:
    """The first rule that applies, in order:

    1. sample ratio mismatch (p < srm_alpha) -> blocked: the assignment is broken;
    2. a guardrail breached -> don't ship;
    3. the lift's CI excludes 0 (p < alpha) and the lift is positive -> ship;
    4. the lift's CI excludes 0 and the lift is negative -> don't ship;
    5. otherwise -> inconclusive (the CI holds 0: no effect found at this sample size).
    """
    if not srm.passed:
        return Decision(
            "blocked",
            f"sample ratio mismatch: users per arm {srm.users} against shares "
            f"{srm.expected_share}, chi-square p={srm.p_value:.2g} < {srm.alpha}: the "
            "assignment or the logging is broken; fix it and rerun, no lift is read",
        )
    breached = [g.name for g in checks if g.breached]
    if breached:
        return Decision("don't ship", f"guardrails breached beyond their margins: {breached}")
    if lift_result is None:
        raise ValueError("decide: a readout that passed the sample ratio check needs its lift")
    p = lift_result.p_value
    if p < alpha and lift_result.absolute.value > 0:
        return Decision("ship", f"the lift is positive and significant (p={p:.3g} < {alpha})")
    if p < alpha:
        return Decision("don't ship", f"the lift is negative and significant (p={p:.3g} < {alpha})")
    return Decision(
        "inconclusive",
        f"the lift's {1 - alpha:.0%} CI holds 0 (p={p:.3g} >= {alpha}): no effect found; "
        "run longer (see the power analysis) or stop",
    )


# ---- all of it ----
@dataclass(frozen=True)
class Readout:
    experiment: str
    config: ReadoutConfig
    srm: SampleRatio
    lift: Lift | None  # None when blocked
    cuped_lift: Lift | None  # the same with CUPED, when covariates were given
    guardrails: list[Guardrail]
    decision: Decision
    sessions: dict[str, int]
    mixed_users: int  # users seen in more than one arm: left out

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["config"] = self.config.model_dump()
        for key in ("lift", "cuped_lift"):
            result = getattr(self, key)
            if result is not None and result.cuped is not None:
                out[key]["cuped"] = {
                    "covariates": list(result.cuped.covariates),
                    "theta": result.cuped.theta.tolist(),
                    "variance_reduction": result.cuped.variance_reduction,
                }
        out["guardrails"] = [{**asdict(g), "breached": g.breached} for g in self.guardrails]
        out["srm"]["passed"] = self.srm.passed
        return out


def read_out(
    experiment: str,
    exposures: pd.DataFrame,
    weights: Mapping[str, float],
    config: ReadoutConfig | None = None,
    covariates: pd.DataFrame | None = None,
) -> Readout:
    """The whole readout of ``exposures`` (``exposures.py``) for an experiment whose arms
    were configured with ``weights``. ``covariates``: ``exposures.pre_period_activity``; with
    them the readout also reports the CUPED lift, and decides on it if ``config.cuped``."""
    config = config or ReadoutConfig()
    for arm in (config.control, config.treatment):
        if arm not in weights:
            raise ExposureError(f"arm {arm!r} is not in the experiment's arms {list(weights)}")
    if config.cuped and covariates is None:
        raise ExposureError("ReadoutConfig.cuped needs pre-experiment covariates")
    users = per_user(exposures, config.metric)
    arms_per_user = users.groupby(USER_ID)[ARM].transform("nunique")
    mixed = int(users.loc[arms_per_user > 1, USER_ID].nunique())
    users = users[arms_per_user == 1]
    srm = sample_ratio_check(users[ARM].value_counts().to_dict(), weights, config.srm_alpha)
    checks = guardrails(exposures, config)
    by_arm = samples(users, [config.control, config.treatment], covariates)
    control, treatment = by_arm[config.control], by_arm[config.treatment]
    plain = cuped = None
    if srm.passed:
        plain = lift(control, treatment, config.alpha)
        if covariates is not None:
            cuped = lift(control, treatment, config.alpha, cuped=True)
    decision = decide(srm, cuped if config.cuped else plain, checks, config.alpha)
    return Readout(
        experiment=experiment,
        config=config,
        srm=srm,
        lift=plain,
        cuped_lift=cuped,
        guardrails=checks,
        decision=decision,
        sessions=exposures[ARM].value_counts().to_dict(),
        mixed_users=mixed,
    )
