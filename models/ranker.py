"""The PyTorch listwise ranker, read top to bottom: config, preprocessing, network, loss, training.

A session is a slate of items; the model scores each item with the same small MLP, and a
listwise loss compares the scores of one session's items with each other (a softmax over
the slate), which is what ranking needs: only the order inside a session matters.

Tensor shapes use S = sessions in a batch, L = the longest slate in it (shorter slates are
padded, and a mask says which slots are real items), F = features per item.

Position bias. Logged clicks come from a position-based click model: an item is clicked
when it is examined (likelier near the top) and attractive. Learning from raw clicks
("naive") learns partly where the old ranker put things. ``debias="ipw"`` trains on
``label_ipw`` instead: each click weighted by the inverse of its examination probability,
as the system estimated it from its own randomised sessions (``models/debiasing.py``).
Graded labels (LETOR) need no debiasing: the gain is the grade itself.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, Self

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from models.base import require_features
from models.evaluation import default_no_relevant, session_metrics
from models.metrics import PRIMARY_METRIC
from ranklab.console import console
from ranklab.schema import DEBIASED_LABEL, LABEL, SESSION_ID

# Intra-op threads while fitting and scoring. One: this MLP's matrix products are too small
# to gain from a second thread, and when the cores are busy (Dagster, MLflow, a second fit)
# OpenMP threads spin-wait on each other. Measured on the 2-core machine under load: a fit
# took 1.6-6.4 s on 1 thread and 24-59 s on 2.
TORCH_THREADS = 1


@dataclass(frozen=True)
class RankerConfig:
    hidden: tuple[int, ...] = (128, 64)  # widths of the MLP's hidden layers
    dropout: float = 0.1
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 1e-4
    epochs: int = 40  # upper bound; early stopping usually ends sooner
    patience: int = 6  # epochs without a better validation NDCG@10 before stopping
    batch_sessions: int = 32  # sessions per gradient step
    seed: int = 0
    loss: Literal["listnet", "approxndcg"] = "listnet"
    temperature: float = 0.1  # approxndcg: smaller = closer to true ranks, harsher gradients
    debias: Literal["none", "ipw"] = "none"  # "ipw": train on label_ipw (models/debiasing.py)
    # Also feed each feature relative to its session's mean: ranking is about how an item
    # compares with the other candidates, and this makes that comparison explicit.
    session_relative: bool = True


# ---- preprocessing: fitted on the training rows only, stored in the model ----------------


@dataclass
class FeatureScaler:
    """log1p for skewed non-negative columns (counts, prices), then standardisation."""

    log_columns_: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # [F]
    mean_: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [F]
    std_: np.ndarray = field(default_factory=lambda: np.ones(0))  # [F]

    def fit(self, x: np.ndarray) -> Self:  # x: [rows, F]
        x = np.asarray(x, dtype=np.float64)
        # Counts and prices have long right tails: a few huge values would squash everyone
        # else to one point after standardising. log1p spreads them out again.
        self.log_columns_ = (np.nanmin(x, axis=0) >= 0) & (_skewness(x) > 1.0)
        logged = self._log(x)
        self.mean_ = np.nanmean(logged, axis=0)
        std = np.nanstd(logged, axis=0)
        self.std_ = np.where(std > 1e-9, std, 1.0)  # a constant column stays 0, not NaN
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        z = (self._log(np.asarray(x, dtype=np.float64)) - self.mean_) / self.std_
        # A missing value becomes the training mean (0); extreme values are clipped so one
        # outlier cannot dominate a layer's activations.
        return np.clip(np.nan_to_num(z, nan=0.0), -5.0, 5.0).astype(np.float32)

    def _log(self, x: np.ndarray) -> np.ndarray:
        return np.where(self.log_columns_, np.log1p(np.where(self.log_columns_, x, 0.0)), x)


def _skewness(x: np.ndarray) -> np.ndarray:
    """Sample skewness per column (0 for a constant column)."""
    centred = x - np.nanmean(x, axis=0)
    std = np.nanstd(x, axis=0)
    return np.nanmean(centred**3, axis=0) / np.where(std > 0, std, 1.0) ** 3


# ---- data as padded slates -------------------------------------------------------------------


@dataclass
class Slates:
    """A frame's rows regrouped as one padded slate per session."""

    features: torch.Tensor  # [S, L, F] float32, zeros in padded slots
    targets: torch.Tensor  # [S, L] float32, the (weighted) gain of each item, 0 when padded
    mask: torch.Tensor  # [S, L] bool, True for real items
    rows: np.ndarray  # [S, L] the frame row of each slot, -1 when padded


def to_slates(frame: pd.DataFrame, features: np.ndarray, targets: np.ndarray) -> Slates:
    session_codes, _ = pd.factorize(frame[SESSION_ID], sort=False)
    slot = pd.Series(session_codes).groupby(session_codes).cumcount().to_numpy()
    n_sessions, longest = session_codes.max() + 1, slot.max() + 1
    rows = np.full((n_sessions, longest), -1)
    rows[session_codes, slot] = np.arange(len(frame))
    mask = rows >= 0
    padded_features = np.zeros((n_sessions, longest, features.shape[1]), dtype=np.float32)
    padded_features[mask] = features[rows[mask]]
    padded_targets = np.zeros((n_sessions, longest), dtype=np.float32)
    padded_targets[mask] = targets[rows[mask]]
    return Slates(
        torch.from_numpy(padded_features),
        torch.from_numpy(padded_targets),
        torch.from_numpy(mask),
        rows,
    )


def with_session_relative(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[S, L, F] -> [S, L, 2F]: each feature, and its difference from the session's mean."""
    m = mask.unsqueeze(-1).float()  # [S, L, 1]
    session_mean = (x * m).sum(dim=1, keepdim=True) / m.sum(dim=1, keepdim=True).clamp(min=1)
    return torch.cat([x, (x - session_mean) * m], dim=-1)


# ---- the network -----------------------------------------------------------------------------


class ItemScorer(nn.Module):
    """The same MLP applied to every item of every slate: [S, L, F] -> [S, L]."""

    def __init__(self, n_inputs: int, hidden: tuple[int, ...], dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        width = n_inputs
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x).squeeze(-1)


# ---- the listwise losses ---------------------------------------------------------------------


def listnet_loss(scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy over each slate, weighted by the items' gains.

    scores, targets: [S, L]; mask: [S, L]. Per session: -sum_i gain_i * log softmax(scores)_i,
    i.e. "put the probability mass on the items with gain". A session without gain adds 0.
    Because the loss is linear in the gains, an unbiased estimate of the gains (IPW-weighted
    clicks) gives an unbiased estimate of the loss on the true gains.
    """
    log_p = torch.log_softmax(scores.masked_fill(~mask, float("-inf")), dim=1)  # [S, L]
    per_session = -(targets * log_p.masked_fill(~mask, 0.0)).sum(dim=1)  # [S]
    return per_session.mean()


def approx_ndcg_loss(
    scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    """1 - a differentiable NDCG (Qin et al., 2010): ranks from pairwise sigmoids of scores.

    rank_i ~ 1 + sum_{j != i} sigmoid((s_j - s_i) / temperature); shapes as ``listnet_loss``.
    """
    m = mask.float()
    diff = (scores.unsqueeze(1) - scores.unsqueeze(2)) / temperature  # [S, L, L]: s_j - s_i
    beats = torch.sigmoid(diff) * m.unsqueeze(1) * m.unsqueeze(2)
    approx_rank = 1.0 + beats.sum(dim=2) - 0.5 * m  # remove the j == i term, sigmoid(0) = 0.5
    dcg = (targets * m / torch.log2(1.0 + approx_rank)).sum(dim=1)  # [S]
    ideal_sorted = targets.sort(dim=1, descending=True).values
    ideal_discount = 1.0 / torch.log2(torch.arange(2, targets.shape[1] + 2, dtype=scores.dtype))
    ideal = (ideal_sorted * ideal_discount).sum(dim=1)
    has_gain = ideal > 0  # a session without gain has nothing to order and adds 0
    return (1.0 - dcg[has_gain] / ideal[has_gain]).sum() / len(scores)


def loss_function(config: RankerConfig) -> Callable[..., torch.Tensor]:
    """(scores, targets, mask) -> scalar loss, as the config names it."""
    if config.loss == "approxndcg":
        return functools.partial(approx_ndcg_loss, temperature=config.temperature)
    return listnet_loss


# ---- training targets ------------------------------------------------------------------------


def training_targets(frame: pd.DataFrame, config: RankerConfig) -> np.ndarray:
    """The gain the loss puts probability mass on: the label, or its IPW-weighted estimate."""
    if config.debias != "ipw":
        return frame[LABEL].to_numpy(dtype=np.float32)
    if DEBIASED_LABEL not in frame.columns:
        raise KeyError(
            f"debias='ipw' trains on the {DEBIASED_LABEL!r} column, which this frame lacks: "
            "estimate the examination curve first (models.debiasing.with_debiased_label)"
        )
    return frame[DEBIASED_LABEL].to_numpy(dtype=np.float32)


# ---- training helpers -----------------------------------------------------------------------

VALID_METRIC = f"valid_{PRIMARY_METRIC}"


@dataclass
class EarlyStopping:
    """Keeps the weights of the best validation epoch; says stop after ``patience`` worse ones."""

    patience: int
    best_value: float = -np.inf
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    epochs_seen: int = 0

    def should_stop(self, value: float, network: nn.Module) -> bool:
        self.epochs_seen += 1
        if value > self.best_value:
            self.best_value, self.best_epoch = value, self.epochs_seen
            self.best_state = copy.deepcopy(network.state_dict())
        return self.epochs_seen - self.best_epoch >= self.patience


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` intra-op threads, then restore the caller's setting (it is process-wide)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ---- the estimator ---------------------------------------------------------------------------


class ListwiseRanker:
    """Ranks a session's items with an MLP trained on a listwise loss (``models/base.py``)."""

    def __init__(
        self,
        feature_columns: list[str],
        config: RankerConfig = RankerConfig(),
        name: str = "ranker",
        progress: bool = True,
    ):
        self.feature_columns = feature_columns
        self.config = config
        self.name = name
        self.progress = progress

    # -- fitting --

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None = None) -> Self:
        """Train on ``train``; stop early on ``valid``'s NDCG@10 when it is given."""
        self._check(train, needs_label=True)
        if valid is not None:
            self._check(valid, needs_label=True)
        with torch_threads(TORCH_THREADS):
            self._fit(train, valid)
        return self

    def _fit(self, train: pd.DataFrame, valid: pd.DataFrame | None) -> None:
        cfg = self.config
        torch.manual_seed(cfg.seed)  # initial weights and dropout masks
        shuffle = torch.Generator().manual_seed(cfg.seed)  # batch order

        self.scaler_ = FeatureScaler().fit(train[self.feature_columns].to_numpy())
        slates = self._slates(train, training_targets(train, cfg))
        n_inputs = len(self.feature_columns) * (2 if cfg.session_relative else 1)
        self.network_ = ItemScorer(n_inputs, cfg.hidden, cfg.dropout)
        optimizer = torch.optim.AdamW(
            self.network_.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        stopping = EarlyStopping(cfg.patience)
        self.history_: list[dict[str, float]] = []
        # On the terminal even while a run sends library output to its log (ranklab.console);
        # disable=None: no bar when the terminal is not a TTY (CI logs, pipes).
        bar = tqdm(
            range(1, cfg.epochs + 1),
            desc=self.name,
            disable=None if self.progress else True,
            leave=False,
            file=console(),
        )
        for epoch in bar:
            record = {"epoch": epoch, "train_loss": self._train_epoch(slates, optimizer, shuffle)}
            if valid is not None:
                record[VALID_METRIC] = self._validation_ndcg(valid)
            self.history_.append(record)
            bar.set_postfix({k: round(v, 4) for k, v in record.items() if k != "epoch"})
            if valid is not None and stopping.should_stop(record[VALID_METRIC], self.network_):
                break
        if stopping.best_state is not None:
            self.network_.load_state_dict(stopping.best_state)
        self.best_epoch_ = stopping.best_epoch or len(self.history_)
        self.network_.eval()

    def _train_epoch(
        self, slates: Slates, optimizer: torch.optim.Optimizer, shuffle: torch.Generator
    ) -> float:
        """One pass over the training sessions in a random order; the mean batch loss."""
        self.network_.train()
        loss_fn = loss_function(self.config)
        losses = []
        for batch in torch.randperm(len(slates.mask), generator=shuffle).split(
            self.config.batch_sessions
        ):
            scores = self.network_(self._inputs(slates.features[batch], slates.mask[batch]))
            loss = loss_fn(scores, slates.targets[batch], slates.mask[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return float(np.mean(losses))

    def _validation_ndcg(self, valid: pd.DataFrame) -> float:
        """The early-stopping metric on ``valid``, on the gain the ranker trains on: NDCG@10
        on the label, or the debiased estimate (SNIPS DCG@10 on ``label_ipw``) when IPW.

        Validating on raw clicks would reward the naive model for copying the old ranker's
        order; the weighted gains estimate the quality on relevance instead.
        """
        gain = DEBIASED_LABEL if self.config.debias == "ipw" else LABEL
        per_session = session_metrics(valid, self.predict(valid), gain, default_no_relevant(valid))
        return float(per_session[PRIMARY_METRIC].mean())

    # -- scoring --

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """One score per row of ``frame`` (higher = shown earlier), in the frame's row order."""
        if not hasattr(self, "network_"):
            raise RuntimeError(f"{self.name}: call fit before predict")
        self._check(frame, needs_label=False)
        if frame.empty:
            return np.empty(0)
        slates = self._slates(frame, np.zeros(len(frame), dtype=np.float32))
        self.network_.eval()
        with torch_threads(TORCH_THREADS), torch.no_grad():
            scores = self.network_(self._inputs(slates.features, slates.mask)).numpy()
        out = np.empty(len(frame), dtype=np.float64)
        out[slates.rows[slates.mask.numpy()]] = scores[slates.mask.numpy()]
        return out

    def predict_session(self, features: np.ndarray) -> np.ndarray:
        """Scores of ONE session's items: ``features`` is [n, F] in ``feature_columns`` order.

        The serving path (a request is one session). It runs the same scaler and network as
        ``predict`` on the same [1, n, F] slate ``to_slates`` builds for one session, so the
        scores are bit-for-bit equal; it skips what only a multi-session frame needs (column
        checks, ``factorize`` and ``groupby`` to regroup rows): ~2 ms of pandas around a
        ~0.1 ms network on a 100-item request.
        """
        if not hasattr(self, "network_"):
            raise RuntimeError(f"{self.name}: call fit before predict_session")
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.feature_columns):
            raise ValueError(
                f"{self.name}: predict_session takes an [items, {len(self.feature_columns)}] "
                f"matrix in feature_columns order, got shape {x.shape}"
            )
        if len(x) == 0:
            return np.empty(0)
        # C order, as ``to_slates`` lays the slate out: torch sums and multiplies a strided
        # (column-major) tensor in another order, which changes the last bits of the scores.
        scaled = np.ascontiguousarray(self.scaler_.transform(x))
        slate = torch.from_numpy(scaled).unsqueeze(0)  # [1, n, F]
        mask = torch.ones(slate.shape[:2], dtype=torch.bool)  # [1, n]: no padding
        if self.network_.training:  # fit leaves it in eval mode; walking the modules costs 10%
            self.network_.eval()
        with torch_threads(TORCH_THREADS), torch.no_grad():
            scores = self.network_(self._inputs(slate, mask))[0]  # [n]
        return scores.numpy().astype(np.float64)

    # -- internals --

    def _slates(self, frame: pd.DataFrame, targets: np.ndarray) -> Slates:
        features = self.scaler_.transform(frame[self.feature_columns].to_numpy())
        return to_slates(frame, features, targets)

    def _inputs(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.config.session_relative:
            return with_session_relative(features, mask)
        return features

    def _check(self, frame: pd.DataFrame, needs_label: bool) -> None:
        require_features(frame, self.feature_columns, self.name)
        needed = [SESSION_ID] + ([LABEL] if needs_label else [])
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise KeyError(f"{self.name}: input frame lacks columns {missing}")
        non_numeric = [
            c for c in self.feature_columns if not pd.api.types.is_numeric_dtype(frame[c])
        ]
        if non_numeric:
            raise TypeError(f"{self.name}: feature columns must be numeric, got {non_numeric}")
