"""Power analysis: how many sessions an A/B test needs before it starts.

The inputs are the baseline's rate and variance, measured on traffic the team already has
(the logged sessions of the training window, or a previous run), and the minimum effect
worth detecting (MDE). The sample size per arm for a two-sided z-test is::

    n = (z_{1-alpha/2} + z_{power})^2 * 2 * sigma^2 / mde^2

``statsmodels``' ``NormalIndPower`` solves it (and handles unequal splits).

``sigma`` is the *effective* per-session standard deviation: the delta method's variance of
the ratio metric at the user level, times the number of sessions it was measured on. When
every user searches once it is the plain per-session standard deviation; when users search
several times and their sessions are alike, it is larger (the design effect), and so is
the sample size. Sessions, not users, are what a team can count on a dashboard, so the
answer is in sessions. It holds while users search about as often during the experiment
as in the baseline: with a fixed set of users, a longer test gives each more sessions,
a larger design effect, and so needs somewhat more sessions than this says.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from statsmodels.stats.power import NormalIndPower

from monitoring.abtest.exposures import ARM, CLICKS, SHOWN
from monitoring.abtest.readout import ArmSample, Metric, linearise, per_user


@dataclass(frozen=True)
class Baseline:
    """The primary metric on baseline traffic, and its effective per-session spread."""

    metric: Metric
    mean: float
    sd: float  # effective per-session standard deviation (see the module docstring)
    sessions: int
    users: int

    @property
    def sessions_per_user(self) -> float:
        return self.sessions / self.users


def baseline_of(sessions: pd.DataFrame, metric: Metric = "clicks_per_session") -> Baseline:
    """The baseline from a frame with ``user_id``, ``clicks`` and ``shown`` per session
    (exposures, or the logged sessions of ``baseline_sessions``); arms are ignored."""
    frame = sessions.assign(**{ARM: "baseline"})
    users = per_user(frame, metric)
    sample = ArmSample("baseline", users["numerator"].to_numpy(), users["denominator"].to_numpy())
    var_of_mean = linearise(sample).var(ddof=1) / sample.users
    return Baseline(metric, sample.ratio, float(np.sqrt(var_of_mean * len(frame))), len(frame),
                    sample.users)  # fmt: skip


def baseline_sessions(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The raw tables' logged sessions as a per-session frame (``user_id``, ``clicks``,
    ``shown``): the traffic before any experiment, ranked by the logging policy."""
    sessions, impressions, clicks = tables["sessions"], tables["impressions"], tables["clicks"]
    per_session = pd.DataFrame(
        {"session_id": sessions["session_id"], "user_id": sessions["user_id"]}
    )
    per_session[SHOWN] = (
        impressions.groupby("session_id").size().reindex(per_session["session_id"]).fillna(0)
    ).to_numpy(dtype="int64")
    per_session[CLICKS] = (
        clicks.groupby("session_id").size().reindex(per_session["session_id"]).fillna(0)
    ).to_numpy(dtype="int64")
    return per_session[per_session[SHOWN] > 0]


@dataclass(frozen=True)
class SampleSize:
    baseline: Baseline
    mde: float  # absolute
    alpha: float
    power: float
    treatment_share: float
    sessions_control: int
    sessions_treatment: int

    @property
    def sessions(self) -> int:
        return self.sessions_control + self.sessions_treatment

    def describe(self) -> str:
        b = self.baseline
        return (
            f"{b.metric}: baseline {b.mean:.4f} (effective sd per session {b.sd:.3f}, "
            f"{b.sessions_per_user:.2f} sessions per user, measured on {b.sessions} sessions). "
            f"To detect {self.mde:+.4f} ({self.mde / b.mean:+.1%}) with alpha {self.alpha} "
            f"(two-sided) and power {self.power:.0%} at a {1 - self.treatment_share:.0%}/"
            f"{self.treatment_share:.0%} split: {self.sessions:,} sessions "
            f"({self.sessions_control:,} control + {self.sessions_treatment:,} treatment), "
            f"if users search as often per experiment as in the baseline"
        )


def sample_size(
    baseline: Baseline,
    mde: float,
    relative: bool = True,
    alpha: float = 0.05,
    power: float = 0.8,
    treatment_share: float = 0.5,
) -> SampleSize:
    """Sessions needed to detect ``mde`` (relative to the baseline mean, or absolute)."""
    if mde == 0:
        raise ValueError("sample_size: the minimum detectable effect must not be 0")
    if not 0 < treatment_share < 1:
        raise ValueError(f"sample_size: treatment_share must lie in (0, 1), got {treatment_share}")
    if baseline.sd <= 0:
        raise ValueError("sample_size: the baseline has no variance; it cannot size a test")
    absolute = mde * baseline.mean if relative else mde
    ratio = treatment_share / (1 - treatment_share)  # statsmodels: nobs2 = ratio * nobs1
    n_control = NormalIndPower().solve_power(
        effect_size=abs(absolute) / baseline.sd,
        alpha=alpha,
        power=power,
        ratio=ratio,
        alternative="two-sided",
    )
    n_control = int(np.ceil(n_control))
    return SampleSize(
        baseline, absolute, alpha, power, treatment_share, n_control,
        int(np.ceil(n_control * ratio)),
    )  # fmt: skip
