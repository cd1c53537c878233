"""Position bias estimated by the system from its own logs: the examination curve IPW needs.

The position-based model (PBM) says a shown item is clicked when it is examined, which
depends only on its position and the device, and attractive, which depends only on the
item (and query)::

    P(click | item i at position p, device d) = theta(p, d) * alpha(i)

Inverse-propensity weighting divides each click by theta(p, d). Only ratios are identified
(theta and alpha trade a constant), and IPW needs only ratios, so the curve is reported
relative to the top: theta(1, d) = 1.

The intervention estimator ("RandTop-k", Joachims, Swaminathan & Schnabel, 2017, "Unbiased
Learning-to-Rank with Biased Feedback", WSDM). In a configured share of sessions the
logging policy shuffles its own top k uniformly at random and marks those rows
``randomized``. Inside such a session every one of the k items is equally likely at every
position, so the expected attraction at position p is the same for every p <= k and::

    CTR(p) / CTR(1) = theta(p) / theta(1)        among randomised rows

The ratio is taken over the same sessions for numerator and denominator (those whose
randomised block covers both positions), so sessions with different k can be pooled.

Two curves are estimated per device (and pooled over devices, ``POOLED``):

- ``per_position``: the ratio above for p = 1..max_position, with 95% percentile-bootstrap
  intervals. Unbiased, model-free, noisy where few clicks are logged (deep positions).
- ``power_law``: theta(p) = p ** -eta by maximum likelihood: clicks at position p are
  Binomial(shown(p), c * p ** -eta), with c the device's mean attraction of a randomised
  top-k item. Two parameters, smooth, and it extrapolates beyond the randomised range.

Which one IPW uses (``use``): ``"auto"`` (the default) takes the power law unless a Pearson
chi-square test of the power law against the per-position click counts rejects it (p below
``gof_alpha``), and then the per-position estimates. The reasoning: with little data the
power law's possible misfit costs less than the per-position noise (which IPW amplifies as
1/theta); once there is enough data to reject the power law, the per-position estimates are
precise enough to use directly. Beyond ``max_position`` every curve continues with the fitted
power-law tail (scaled to meet the last per-position value), never 0.

A device with fewer than ``min_sessions`` randomised sessions uses the pooled curve (its own
estimates are still reported). Bootstrap intervals resample randomised sessions with Poisson(1)
weights: one weight matrix [n_boot, sessions] for every statistic, so the per-position
ratios and the power-law fits of a resample come from the same resampled sessions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from ranklab.schema import CLICKED, DEVICE, ITEM_ID, POSITION, RANDOMIZED, SESSION_ID

POOLED = "all"  # the curve over every device: the fallback of a device with too few sessions
RANDOMIZED_TOP_K = "randomized_top_k"
EM = "em"
POWER_LAW_PRIOR = "power_law_prior"

Use = Literal["auto", "per_position", "power_law"]
Source = Literal["per_position", "power_law", "pooled"]

_REQUIRED = (SESSION_ID, POSITION, DEVICE, CLICKED, RANDOMIZED)
# Bootstrap weights are drawn in blocks of about this many entries, so memory stays flat.
_BLOCK = 2**22
_EPS = 1e-12


# ---- the curve -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceCurve:
    """One device's estimates. Tuples hold positions 1..max_position (NaN: not estimable)."""

    device: str
    n_sessions: int  # randomised sessions behind the estimates
    n_clicks: int  # clicks on randomised rows at positions <= max_position
    estimate: tuple[float, ...]  # per-position theta(p) / theta(1)
    lo: tuple[float, ...]  # 95% bootstrap interval of ``estimate``
    hi: tuple[float, ...]
    eta: float  # power-law exponent: theta(p) = p ** -eta
    eta_lo: float
    eta_hi: float
    scale: float  # the power law's click probability at position 1 (mean attraction)
    gof_pvalue: float  # Pearson chi-square of the power law against the click counts
    source: Source  # what ``examination`` uses for this device

    def power_law(self, positions: np.ndarray) -> np.ndarray:
        return np.asarray(positions, dtype=float) ** -self.eta


@dataclass(frozen=True)
class PropensityCurve:
    """Relative examination probability per device and position, for IPW.

    ``devices`` includes ``POOLED``. Build one with ``estimate_from_randomized`` (from logs)
    or ``PropensityCurve.from_power_law`` (a known or assumed curve).
    """

    method: str
    max_position: int
    devices: tuple[DeviceCurve, ...]
    use: Use = "auto"
    min_sessions: int = 0
    n_boot: int = 0

    # -- lookup --

    @property
    def device_names(self) -> list[str]:
        return [curve.device for curve in self.devices]

    def curve(self, device: str) -> DeviceCurve:
        for curve in self.devices:
            if curve.device == device:
                return curve
        raise ValueError(f"unknown device {device!r}; the curve knows {self.device_names}")

    def examination(self, position: Any, device: Any) -> np.ndarray:
        """theta(position, device) / theta(1, device), vectorised; always > 0.

        ``device`` is an array aligned with ``position`` or one name for all of them.
        """
        positions = np.asarray(position)
        if positions.size and not np.issubdtype(positions.dtype, np.number):
            raise ValueError(f"positions must be numbers, got dtype {positions.dtype}")
        positions = positions.astype(float)
        if not (np.isfinite(positions).all() and (positions >= 1).all()):
            raise ValueError("positions must be finite and 1-based (>= 1)")
        if (positions != np.round(positions)).any():
            raise ValueError("positions must be whole numbers")
        devices = np.broadcast_to(np.asarray(device, dtype=object), positions.shape)
        codes = pd.Index(self.device_names).get_indexer(devices.ravel()).reshape(positions.shape)
        if (codes < 0).any():
            unknown = sorted({str(d) for d in devices[codes < 0]})
            raise ValueError(f"unknown device(s) {unknown}; the curve knows {self.device_names}")
        if positions.size == 0:
            return np.empty(positions.shape)
        table = self.table(max(int(positions.max()), self.max_position))
        return table[codes, positions.astype(int) - 1]

    def table(self, n_positions: int) -> np.ndarray:
        """[devices, n_positions]: the values ``examination`` returns, in ``devices`` order."""
        own = {c.device: _used_curve(c, self.max_position, n_positions) for c in self.devices}
        pooled = own.get(POOLED)
        rows = []
        for curve in self.devices:
            if curve.source == "pooled":
                if pooled is None:
                    raise ValueError(
                        f"device {curve.device!r} falls back to a missing pooled curve"
                    )
                rows.append(pooled)
            else:
                rows.append(own[curve.device])
        return np.vstack(rows)

    # -- construction from known exponents --

    @classmethod
    def from_power_law(
        cls, etas: Mapping[str, float], max_position: int = 10, method: str = POWER_LAW_PRIOR
    ) -> PropensityCurve:
        """A curve theta(p, d) = p ** -etas[d], e.g. a prior or a curve from an earlier study.

        The pooled curve is the mean exponent (only used when a device asks for it).
        """
        if not etas:
            raise ValueError("from_power_law needs at least one device exponent")
        positions = np.arange(1, max_position + 1, dtype=float)
        named = {**etas, POOLED: float(np.mean(list(etas.values())))}
        curves = []
        for device, eta in named.items():
            values = tuple(float(v) for v in positions**-eta)
            curves.append(
                DeviceCurve(
                    device=device,
                    n_sessions=0,
                    n_clicks=0,
                    estimate=values,
                    lo=values,
                    hi=values,
                    eta=float(eta),
                    eta_lo=float(eta),
                    eta_hi=float(eta),
                    scale=float("nan"),
                    gof_pvalue=float("nan"),
                    source="power_law",
                )
            )
        return cls(method, max_position, tuple(curves), use="power_law")

    # -- storage and reports --

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; NaN becomes None (strict JSON has no NaN)."""
        return _nan_to_none(asdict(self))

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> PropensityCurve:
        def device(entry: Mapping[str, Any]) -> DeviceCurve:
            values = {k: _none_to_nan(v) for k, v in entry.items()}
            for key in ("estimate", "lo", "hi"):
                values[key] = tuple(values[key])
            return DeviceCurve(**values)

        fields = dict(record)
        fields["devices"] = tuple(device(entry) for entry in record["devices"])
        return cls(**fields)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> PropensityCurve:
        return cls.from_dict(json.loads(text))

    def to_frame(self) -> pd.DataFrame:
        """One row per (device, position): the estimate, its interval, the power law, the value used."""
        used = self.table(self.max_position)
        positions = np.arange(1, self.max_position + 1)
        parts = [
            pd.DataFrame(
                {
                    DEVICE: curve.device,
                    POSITION: positions,
                    "estimate": curve.estimate,
                    "lo": curve.lo,
                    "hi": curve.hi,
                    "power_law": curve.power_law(positions),
                    "used": used[i],
                    "source": curve.source,
                }
            )
            for i, curve in enumerate(self.devices)
        ]
        return pd.concat(parts, ignore_index=True)

    def summary_frame(self) -> pd.DataFrame:
        """One row per device: the data behind it, the power-law fit, and the source used."""
        columns = ["n_sessions", "n_clicks", "eta", "eta_lo", "eta_hi", "gof_pvalue", "source"]
        return pd.DataFrame(
            [{c: getattr(curve, c) for c in columns} for curve in self.devices],
            index=pd.Index(self.device_names, name=DEVICE),
        )

    def to_markdown(self) -> str:
        summary = self.summary_frame()
        lines = [
            f"Examination curve ({self.method}, use={self.use}, min_sessions={self.min_sessions}, "
            f"{self.n_boot} bootstrap resamples); theta(1) = 1.",
            "",
            "| device | sessions | clicks | eta [95%] | GOF p | used |",
            "|---|---|---|---|---|---|",
        ]
        for device, row in summary.iterrows():
            lines.append(
                f"| {device} | {row.n_sessions} | {row.n_clicks} | {row.eta:.3f} "
                f"[{row.eta_lo:.3f}, {row.eta_hi:.3f}] | {row.gof_pvalue:.3g} | {row.source} |"
            )
        frame = self.to_frame()
        lines += [
            "",
            "Per position: the RandTop-k estimate [95% interval] and, after the arrow, the value "
            "IPW uses.",
            "",
            "| position | " + " | ".join(self.device_names) + " |",
            "|---|" + "---|" * len(self.devices),
        ]
        for position, rows in frame.groupby(POSITION, sort=True):
            cells = [
                f"{r.estimate:.3f} [{r.lo:.3f}, {r.hi:.3f}] -> {r.used:.3f}"
                for r in rows.itertuples()
            ]
            lines.append(f"| {position} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _used_curve(curve: DeviceCurve, max_position: int, n_positions: int) -> np.ndarray:
    """The values IPW uses for positions 1..n_positions (its own source; pooled is resolved later)."""
    positions = np.arange(1, n_positions + 1, dtype=float)
    power_law = positions**-curve.eta if np.isfinite(curve.eta) else np.ones(n_positions)
    if curve.source != "per_position":
        return power_law
    estimate = np.asarray(curve.estimate, dtype=float)
    # No click observed at a position means "rarely examined", not "never": the power law
    # stands in there, and for the tail, scaled to meet the last estimated position.
    estimate = np.where(np.isfinite(estimate) & (estimate > 0), estimate, power_law[:max_position])
    tail = estimate[-1] * (positions / max_position) ** -curve.eta
    head = np.r_[estimate, np.zeros(max(0, n_positions - max_position))][:n_positions]
    return np.where(positions <= max_position, head, tail)


# ---- the intervention estimator ------------------------------------------------------------------


@dataclass(frozen=True)
class _Counts:
    """Per-device sufficient statistics, [groups, P]; with a leading resample axis when bootstrapped."""

    numerator: np.ndarray  # clicks at p, sessions that randomised both 1 and p
    denominator: np.ndarray  # clicks at 1, the same sessions
    clicks: np.ndarray  # clicks at p (all randomised rows at p)
    shown: np.ndarray  # randomised impressions at p


def estimate_from_randomized(
    frame: pd.DataFrame,
    max_position: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    min_sessions: int = 300,
    use: Use = "auto",
    gof_alpha: float = 0.01,
    devices: Sequence[str] | None = None,
) -> PropensityCurve:
    """The RandTop-k examination curve per device from the randomised rows of ``frame``.

    ``frame``: one row per impression with session_id, position (1-based, as shown), device,
    clicked and randomized. Only randomised rows at positions <= ``max_position`` (default:
    the deepest randomised position) are used. ``devices`` lists devices the curve must know
    even if they have no randomised session (they use the pooled curve).
    """
    if use not in ("auto", "per_position", "power_law"):
        raise ValueError(f"use must be 'auto', 'per_position' or 'power_law', got {use!r}")
    if n_boot < 1 or min_sessions < 0 or not 0 < gof_alpha < 1:
        raise ValueError(
            "need n_boot >= 1, min_sessions >= 0 and 0 < gof_alpha < 1; got "
            f"{n_boot}, {min_sessions}, {gof_alpha}"
        )
    rows = _randomized_rows(frame, max_position)
    max_position = int(rows[POSITION].max()) if max_position is None else max_position
    session_codes, device_of_session, names = _session_devices(rows, devices)
    per_session = _per_session_matrices(rows, session_codes, max_position)  # [S, 4, P]

    point = _group_counts(per_session, device_of_session, len(names), None)
    weights = _poisson_weights(len(device_of_session), n_boot, seed)
    boot = _group_counts(per_session, device_of_session, len(names), weights)

    log_p = np.log(np.arange(1, max_position + 1, dtype=float))
    ratio, ratio_boot = _ratio(point), _ratio(boot)  # [G, P], [B, G, P]
    u, eta = _fit_power_law(point.clicks, point.shown, log_p)
    _, eta_boot = _fit_power_law(boot.clicks, boot.shown, log_p)
    gof = _gof_pvalue(point.clicks, point.shown, u, eta, log_p)
    lo, hi = _percentiles(ratio_boot)
    eta_lo, eta_hi = _percentiles(eta_boot)

    n_sessions = np.bincount(device_of_session, minlength=len(names) - 1)
    n_sessions = np.r_[n_sessions, n_sessions.sum()]
    curves = []
    for g, name in enumerate(names):
        enough = name == POOLED or n_sessions[g] >= min_sessions
        source = _source(use, gof[g], gof_alpha) if enough else "pooled"
        curves.append(
            DeviceCurve(
                device=name,
                n_sessions=int(n_sessions[g]),
                n_clicks=int(point.clicks[g].sum()),
                estimate=_floats(ratio[g]),
                lo=_floats(lo[g]),
                hi=_floats(hi[g]),
                eta=float(eta[g]),
                eta_lo=float(eta_lo[g]),
                eta_hi=float(eta_hi[g]),
                scale=float(np.exp(u[g])),
                gof_pvalue=float(gof[g]),
                source=source,
            )
        )
    return PropensityCurve(RANDOMIZED_TOP_K, max_position, tuple(curves), use, min_sessions, n_boot)


def _source(use: Use, gof_pvalue: float, gof_alpha: float) -> Source:
    if use != "auto":
        return use
    return "per_position" if gof_pvalue < gof_alpha else "power_law"


def _randomized_rows(frame: pd.DataFrame, max_position: int | None) -> pd.DataFrame:
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise KeyError(f"estimate_from_randomized: frame lacks columns {missing}")
    if max_position is not None and max_position < 2:
        raise ValueError(
            f"max_position must be >= 2 (a ratio needs two positions), got {max_position}"
        )
    randomized = frame[RANDOMIZED].fillna(False).to_numpy(dtype=bool)
    if not randomized.any():
        raise ValueError(
            f"estimate_from_randomized: no row has {RANDOMIZED}=True. Position bias is estimated "
            "from the randomisation intervention: configure the logging policy (and the service) "
            "to shuffle its top k in a share of sessions, and log those impressions."
        )
    rows = frame.loc[randomized, [SESSION_ID, POSITION, DEVICE, CLICKED]]
    position = rows[POSITION].to_numpy(dtype=float)
    if not (np.isfinite(position).all() and (position >= 1).all()):
        raise ValueError(f"{POSITION} must be 1-based whole numbers on randomised rows")
    if (position != np.round(position)).any():
        raise ValueError(f"{POSITION} must be whole numbers on randomised rows")
    if rows[DEVICE].isna().any():
        raise ValueError(f"{DEVICE} is missing on {int(rows[DEVICE].isna().sum())} randomised rows")
    clicked = rows[CLICKED].to_numpy(dtype=float)
    if np.isnan(clicked).any() or not np.isin(clicked, (0.0, 1.0)).all():
        raise ValueError(f"{CLICKED} must be 0/1 (or bool) on randomised rows")
    if max_position is not None:
        rows = rows[position <= max_position]
    if int(rows[POSITION].max()) < 2:
        raise ValueError("randomised rows cover only position 1: nothing to compare it with")
    return rows


def _session_devices(
    rows: pd.DataFrame, devices: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Session code of each row, device code of each session, and the group names (pooled last)."""
    session_codes, _ = pd.factorize(rows[SESSION_ID], sort=False)
    first_row = np.unique(session_codes, return_index=True)[1]
    session_device = rows[DEVICE].astype(str).to_numpy()[first_row]
    names = sorted(set(session_device) | set(devices or ()))
    if POOLED in names:
        raise ValueError(f"{POOLED!r} is reserved for the pooled curve; rename that device")
    device_of_session = pd.Index(names).get_indexer(session_device)
    return session_codes, device_of_session, [*names, POOLED]


def _per_session_matrices(
    rows: pd.DataFrame, session_codes: np.ndarray, n_positions: int
) -> np.ndarray:
    """[sessions, 4, P]: numerator, denominator, clicks and impressions of each session."""
    n_sessions = session_codes.max() + 1
    flat = session_codes * n_positions + rows[POSITION].to_numpy(dtype=int) - 1
    size = n_sessions * n_positions
    clicks = np.bincount(flat, weights=rows[CLICKED].to_numpy(dtype=float), minlength=size)
    shown = np.bincount(flat, minlength=size).astype(float)
    clicks, shown = clicks.reshape(n_sessions, n_positions), shown.reshape(n_sessions, n_positions)
    # Numerator and denominator over the sessions that randomised both position 1 and p: the
    # same items compete for both, which is what makes the ratio unbiased.
    both = (shown[:, :1] > 0) & (shown > 0)
    return np.stack([clicks * both, clicks[:, :1] * both, clicks, shown], axis=1)


def _poisson_weights(n_sessions: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, sessions] Poisson(1) weights: each resample counts each session 0, 1, 2... times."""
    return np.random.default_rng(seed).poisson(1.0, size=(n_boot, n_sessions)).astype(float)


def _group_counts(
    per_session: np.ndarray, device: np.ndarray, n_groups: int, weights: np.ndarray | None
) -> _Counts:
    """Per-device sums (the pooled group last), weighted by resample when ``weights`` is given.

    The device groups partition the sessions, so the pooled sums are the devices' sums.
    """
    n_sessions, _, n_positions = per_session.shape
    flat = per_session.reshape(n_sessions, -1)  # [S, 4P]
    leading = () if weights is None else (len(weights),)
    out = np.zeros((*leading, n_groups, 4 * n_positions))
    for g in range(n_groups - 1):
        members = device == g
        if not members.any():
            continue
        if weights is None:
            out[g] = flat[members].sum(axis=0)
        else:  # blocks of sessions keep the [B, S_block] slice of weights small
            member_index = np.flatnonzero(members)
            step = max(1, _BLOCK // max(1, len(weights)))
            for start in range(0, len(member_index), step):
                block = member_index[start : start + step]
                out[:, g] += weights[:, block] @ flat[block]
    out[..., -1, :] = out[..., :-1, :].sum(axis=-2)
    parts = out.reshape(*leading, n_groups, 4, n_positions)
    return _Counts(*(parts[..., i, :] for i in range(4)))


def _ratio(counts: _Counts) -> np.ndarray:
    """theta(p) / theta(1) = clicks at p / clicks at 1 over the same sessions; NaN if no click at 1."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts.denominator > 0, counts.numerator / counts.denominator, np.nan)


def _percentiles(values: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over the first (resample) axis, ignoring undefined resamples (NaN)."""
    values = np.where(np.isfinite(values), values, np.nan)
    defined = np.isfinite(values).any(axis=0)
    filled = np.where(defined, values, 0.0)  # an all-NaN column would warn; it is NaN below
    lo, hi = np.nanquantile(filled, [alpha / 2, 1 - alpha / 2], axis=0)
    return np.where(defined, lo, np.nan), np.where(defined, hi, np.nan)


# ---- the power-law fit ---------------------------------------------------------------------------


def _log_likelihood(
    clicks: np.ndarray, shown: np.ndarray, u: np.ndarray, eta: np.ndarray, log_p: np.ndarray
) -> np.ndarray:
    """Binomial log-likelihood of clicks at each position with mu = exp(u - eta log p); -inf if mu >= 1."""
    log_mu = u[..., None] - eta[..., None] * log_p
    mu = np.exp(log_mu)
    misses = shown - clicks
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = clicks * log_mu + np.where(misses > 0, misses * np.log1p(-mu), 0.0)
    ll = terms.sum(axis=-1)
    return np.where((mu < 1).all(axis=-1) & np.isfinite(ll), ll, -np.inf)


def _fit_power_law(
    clicks: np.ndarray, shown: np.ndarray, log_p: np.ndarray, iterations: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """MLE of (u = log c, eta) for clicks ~ Binomial(shown, c * p ** -eta), over leading axes.

    Newton's method with step halving, vectorised over devices and resamples. The log-binomial
    likelihood is concave in (u, eta) where mu < 1, so this finds the maximum; halving keeps
    every step inside mu < 1 and uphill. Returns NaN where clicks cover fewer than two
    positions (eta is not identified).
    """
    rate = clicks.sum(axis=-1) / np.maximum(shown.sum(axis=-1), 1.0)
    u = np.log(np.clip(rate, 1e-6, 0.5))  # eta = 0: mu = the mean CTR < 1, a feasible start
    eta = np.zeros_like(u)
    ll = _log_likelihood(clicks, shown, u, eta, log_p)
    x_eta = -log_p  # d log(mu) / d eta
    for _ in range(iterations):
        mu = np.exp(u[..., None] - eta[..., None] * log_p)
        odds = mu / (1.0 - mu)
        score = clicks - (shown - clicks) * odds  # d ll / d log(mu), per position
        curvature = (shown - clicks) * odds / (1.0 - mu) + _EPS  # -d2 ll / d log(mu)^2
        g_u, g_eta = score.sum(-1), (score * x_eta).sum(-1)
        h_uu, h_ue = curvature.sum(-1), (curvature * x_eta).sum(-1)
        h_ee = (curvature * x_eta**2).sum(-1)
        det = h_uu * h_ee - h_ue**2
        ok = det > _EPS
        safe_det = np.where(ok, det, 1.0)
        step_u = np.where(ok, (h_ee * g_u - h_ue * g_eta) / safe_det, 0.0)
        step_eta = np.where(ok, (h_uu * g_eta - h_ue * g_u) / safe_det, 0.0)
        u, eta, ll, moved = _halving_step(clicks, shown, log_p, u, eta, ll, step_u, step_eta)
        if moved < 1e-10:
            break
    identified = (clicks > 0).sum(axis=-1) >= 2
    return np.where(identified, u, np.nan), np.where(identified, eta, np.nan)


def _halving_step(clicks, shown, log_p, u, eta, ll, step_u, step_eta):
    """Take the largest of step, step/2, step/4... that stays feasible and does not go downhill."""
    t = np.ones_like(u)
    for _ in range(40):
        new_u, new_eta = u + t * step_u, eta + t * step_eta
        new_ll = _log_likelihood(clicks, shown, new_u, new_eta, log_p)
        bad = ~(new_ll >= ll - 1e-9 * np.abs(ll))
        if not bad.any():
            break
        t = np.where(bad, t / 2, t)
    accept = new_ll >= ll - 1e-9 * np.abs(ll)
    moved = float(np.max(np.where(accept, np.abs(t * step_u) + np.abs(t * step_eta), 0.0)))
    return (
        np.where(accept, new_u, u),
        np.where(accept, new_eta, eta),
        np.where(accept, new_ll, ll),
        moved,
    )


def _gof_pvalue(
    clicks: np.ndarray, shown: np.ndarray, u: np.ndarray, eta: np.ndarray, log_p: np.ndarray
) -> np.ndarray:
    """Pearson chi-square of the fitted power law against the click counts per position.

    Degrees of freedom: positions with impressions minus the two fitted parameters; 1.0 where
    nothing is left to test. Clicks of one session are not independent (one item set), so this
    is approximate; it only chooses between two consistent curves.
    """
    mu = np.exp(u[..., None] - eta[..., None] * log_p)
    expected = shown * mu
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(shown > 0, (clicks - expected) ** 2 / (expected * (1 - mu)), 0.0)
    df = (shown > 0).sum(axis=-1) - 2
    statistic = terms.sum(axis=-1)
    pvalue = np.where(df > 0, stats.chi2.sf(statistic, np.maximum(df, 1)), 1.0)
    return np.where(np.isfinite(eta), pvalue, np.nan)


# ---- the EM estimator (no intervention) ------------------------------------------------------


def estimate_em(
    frame: pd.DataFrame,
    max_position: int = 10,
    attraction_key: Sequence[str] = (ITEM_ID,),
    iterations: int = 200,
    tol: float = 1e-6,
) -> PropensityCurve:
    """theta(p, device) by expectation-maximisation of the PBM on ordinary (biased) logs.

    Wang, Golbandi, Bendersky, Metzler & Najork (2018), "Position Bias Estimation for Unbiased
    Learning to Rank in Personal Search" (WSDM), without their regression step: one attraction
    per ``attraction_key`` value (an item) instead of a model of features. An unclicked row was
    either not examined or not attractive; the E step splits it between the two in proportion
    to their current probabilities, the M step re-estimates theta per (device, position) and
    alpha per item from those expected counts. It needs no randomisation, only that the same
    items appear at different positions (the logging policy's own variation); it is a
    comparison for the intervention estimator, with no intervals, and can find a local optimum.
    Rows at positions beyond ``max_position`` are not used. Every device uses its own curve
    (source ``per_position``, continued by a power law fitted to it by weighted least squares).
    """
    missing = [
        c for c in (SESSION_ID, POSITION, DEVICE, CLICKED, *attraction_key) if c not in frame
    ]
    if missing:
        raise KeyError(f"estimate_em: frame lacks columns {missing}")
    rows = frame[frame[POSITION] <= max_position]
    if rows.empty or not rows[CLICKED].to_numpy(dtype=float).any():
        raise ValueError(f"estimate_em: no click at positions <= {max_position}")
    device_codes, names = pd.factorize(rows[DEVICE].astype(str), sort=True)
    cell = device_codes * max_position + rows[POSITION].to_numpy(dtype=int) - 1
    item = pd.MultiIndex.from_frame(rows[list(attraction_key)]).factorize()[0]
    clicked = rows[CLICKED].to_numpy(dtype=float)
    theta, _ = _em(cell, item, clicked, len(names) * max_position, iterations, tol)
    theta = theta.reshape(len(names), max_position)
    shown = np.bincount(cell, minlength=theta.size).reshape(theta.shape).astype(float)
    pooled = (theta * shown).sum(axis=0) / np.maximum(shown.sum(axis=0), 1.0)
    theta, shown = np.vstack([theta, pooled]), np.vstack([shown, shown.sum(axis=0)])
    relative = theta / theta[:, :1]
    sessions = rows.groupby(rows[DEVICE].astype(str))[SESSION_ID].nunique()
    log_p = np.log(np.arange(1, max_position + 1, dtype=float))
    curves = []
    for g, name in enumerate([*names, POOLED]):
        n_sessions = int(sessions.sum() if name == POOLED else sessions[name])
        clicks = int(clicked.sum() if name == POOLED else clicked[device_codes == g].sum())
        eta = _least_squares_eta(relative[g], shown[g], log_p)
        nan = tuple(float("nan") for _ in range(max_position))
        curves.append(
            DeviceCurve(
                device=name,
                n_sessions=n_sessions,
                n_clicks=clicks,
                estimate=_floats(relative[g]),
                lo=nan,
                hi=nan,
                eta=eta,
                eta_lo=float("nan"),
                eta_hi=float("nan"),
                scale=float("nan"),
                gof_pvalue=float("nan"),
                source="per_position",
            )
        )
    return PropensityCurve(EM, max_position, tuple(curves), "per_position")


def _em(
    cell: np.ndarray,
    item: np.ndarray,
    clicked: np.ndarray,
    n_cells: int,
    iterations: int,
    tol: float,
) -> tuple[np.ndarray, np.ndarray]:
    """EM for P(click) = theta[cell] * alpha[item]; returns (theta, alpha)."""
    shown_cell = np.maximum(np.bincount(cell, minlength=n_cells), 1.0)
    shown_item = np.bincount(item).astype(float)
    theta = np.full(n_cells, 0.5)
    alpha = np.clip(np.bincount(item, weights=clicked) / shown_item * 2, 0.01, 0.99)
    for _ in range(iterations):
        t, a = theta[cell], alpha[item]
        not_clicked = 1.0 - t * a
        examined = np.where(clicked > 0, 1.0, t * (1 - a) / not_clicked)
        attractive = np.where(clicked > 0, 1.0, (1 - t) * a / not_clicked)
        new_theta = np.clip(
            np.bincount(cell, weights=examined, minlength=n_cells) / shown_cell, _EPS, 1
        )
        new_alpha = np.clip(np.bincount(item, weights=attractive) / shown_item, _EPS, 1 - 1e-9)
        change = max(np.abs(new_theta - theta).max(), np.abs(new_alpha - alpha).max())
        theta, alpha = new_theta, new_alpha
        if change < tol:
            break
    return theta, alpha


def _least_squares_eta(relative: np.ndarray, weight: np.ndarray, log_p: np.ndarray) -> float:
    """eta of log theta = -eta log p through theta(1) = 1, weighted by impressions."""
    usable = np.isfinite(relative) & (relative > 0) & (weight > 0)
    denominator = (weight * log_p**2)[usable].sum()
    if denominator <= 0:
        return float("nan")
    return float(
        -(weight * log_p * np.log(np.where(usable, relative, 1.0)))[usable].sum() / denominator
    )


# ---- serialisation helpers -----------------------------------------------------------------------


def _floats(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _none_to_nan(value: Any) -> Any:
    if value is None:
        return float("nan")
    if isinstance(value, list):
        return [float("nan") if v is None else v for v in value]
    return value


__all__ = [
    "POOLED",
    "DeviceCurve",
    "PropensityCurve",
    "estimate_em",
    "estimate_from_randomized",
]
