"""The promotion gate: the only path to the ``champion`` alias.

A candidate is a registered version of ``ranker``. The gate scores it, the popularity
baseline and the current champion (``models:/ranker@champion``) on the SAME test sessions
and compares them session by session (paired bootstrap, ``models/evaluation.py``). Every
check runs before anything is decided, so a report lists every reason, not the first one.

| check                | passes when                                                 | else       |
|----------------------|-------------------------------------------------------------|------------|
| beats_baseline       | the 95% CI of mean(candidate - baseline) lies above 0       | rejected   |
| artifact_scores      | ``models:/ranker/<v>`` loads, reproduces the evaluation     | rejected   |
| latency_budget       | median CPU time of a smoke batch is within the budget       | rejected   |
| champion_comparable  | the champion scores the test sessions (or there is none)    | challenger |
| no_loss_vs_champion  | the CI upper bound of mean(candidate - champion) is >= 0    | challenger |
| min_gain_vs_champion | mean(candidate - champion) >= ``min_gain_vs_champion``      | challenger |
| no_slice_regression  | no judged slice loses significantly AND beyond the margin   | challenger |

- "No significant loss" means the data cannot show, at 95%, that the candidate is worse
  than the champion. It is a weak requirement on its own (a small test set passes almost
  anything), which is why ``min_gain_vs_champion`` also asks for the average gain; with
  its default 0 the candidate must be at least as good on average.
- A slice (say ``device=mobile``) fails when its paired difference against the reference
  has a CI entirely below 0 and a mean loss larger than ``slice_margin``: a loss that is
  both real and large enough to matter. Slices under ``min_slice_sessions`` are listed
  but not judged. The reference is the champion; on the first run (no champion) it is the
  popularity baseline, the ranking users get from the serving fallback without a model.
- The first run, with no champion, is judged against the baseline only.

Decision: every check passes -> ``champion``. A failed hard check (the first three: the
model is not fit to serve) -> ``rejected``. Otherwise -> ``challenger``, a working model
that did not prove itself better than the champion: a candidate for an A/B test.

A forced promotion (``force=True, reason=...``) makes the candidate champion whatever the
checks say, except an artifact that does not load (serving could not use it). It still runs
and records every check, and stamps who forced it, when and why on the version.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from pydantic import BaseModel, ConfigDict, Field

from models.evaluation import (
    ModelEvaluation,
    decision_gain,
    paired_bootstrap_diff,
    session_attributes,
    session_metrics,
)
from models.metrics import PRIMARY_METRIC
from models.pyfunc import score
from models.registry import (
    ARTIFACT_DIGEST_TAG,
    CHALLENGER,
    CHAMPION,
    Registry,
    artifact_digest,
    current_user,
    utc_now,
)
from ranklab.io import write_json, write_text
from ranklab.schema import LABEL, SLICE_COLUMNS

logger = logging.getLogger(__name__)

Decision = Literal["champion", "challenger", "rejected"]
# Checks that say the model is unfit to serve at all, whatever the champion does.
HARD_CHECKS = ("beats_baseline", "artifact_scores", "latency_budget")
# The report's folder in the version's MLflow run (the model card has its own:
# models.model_card.MODEL_CARD_ARTIFACTS; both files are named ranker-v<N>.md).
GATE_ARTIFACTS = "gate"


class GateError(RuntimeError):
    """The gate cannot judge this candidate (bad inputs, or a forced promotion it refuses)."""


class GateConfig(BaseModel):
    """Thresholds of the promotion gate; each one is a decision, documented where it is set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(PRIMARY_METRIC, description="Per-session metric the gate compares.")
    gain: str = Field(
        LABEL,
        description="Gain the metric is computed on. ``promote`` defaults it to the "
        "position-debiased label where the test frame has one (label_ipw: the logs' own "
        "estimate of relevance), else the observed label. Raw clicks would reward a model "
        "that copies the old ranker's order.",
    )
    alpha: float = Field(0.05, gt=0, lt=0.5, description="1 - confidence of the overall CIs.")
    n_boot: int = Field(1000, ge=100, description="Bootstrap resamples per interval.")
    seed: int = Field(0, description="Seed of the bootstrap resampling.")
    min_gain_vs_champion: float = Field(
        0.0,
        description="Least mean gain over the champion. Negative accepts a refresh that is "
        "statistically indistinguishable; positive demands a real improvement.",
    )
    slice_margin: float = Field(
        0.02, ge=0, description="Largest mean loss a slice may show (absolute metric units)."
    )
    slice_alpha: float = Field(
        0.05,
        gt=0,
        lt=0.5,
        description="1 - confidence of the per-slice CIs. With many slices some look worse by "
        "chance; lower it (e.g. 0.05 / number of slices) for fewer false alarms.",
    )
    min_slice_sessions: int = Field(
        50, ge=1, description="Slices with fewer sessions are reported but not judged."
    )
    latency_budget_ms: float = Field(
        50.0,
        gt=0,
        description="Budget for the median CPU time of one smoke batch (wall time is "
        "reported beside it: on a shared machine it measures the neighbours too).",
    )
    smoke_rows: int = Field(100, ge=1, description="Rows in the smoke batch (test-set rows).")
    smoke_calls: int = Field(5, ge=1, description="Timed calls; the median is compared.")
    parity_tolerance: float = Field(
        1e-6,
        ge=0,
        description="Largest per-session metric difference between the logged artifact and "
        "the in-memory model that was evaluated.",
    )


@dataclass(frozen=True)
class Check:
    """One criterion of the gate: its verdict and the numbers behind it."""

    name: str
    passed: bool
    detail: str  # the numbers behind the verdict

    def as_tag(self) -> str:
        return f"{'pass' if self.passed else 'FAIL'}: {self.detail}"


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided about one version, and why."""

    model_name: str
    version: str
    decision: Decision
    checks: tuple[Check, ...]
    reference: str  # what the candidate was compared with
    n_sessions: int
    config: GateConfig
    forced: bool = False
    reason: str | None = None
    decided_at: str = field(default_factory=utc_now)
    decided_by: str = field(default_factory=current_user)

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]

    @property
    def promoted(self) -> bool:
        return self.decision == CHAMPION

    def summary(self) -> str:
        failed = ", ".join(check.name for check in self.failures) or "none"
        forced = f" (FORCED: {self.reason})" if self.forced else ""
        return f"{self.model_name} v{self.version} -> {self.decision}{forced}; failed: {failed}"

    def tags(self) -> dict[str, str]:
        """The decision as registry tags on the version (values carry the numbers)."""
        tags = {
            "gate.decision": self.decision,
            "gate.decided_at": self.decided_at,
            "gate.decided_by": self.decided_by,
            "gate.reference": self.reference,
            "gate.failed_checks": ",".join(c.name for c in self.failures) or "none",
            **{f"gate.check.{check.name}": check.as_tag() for check in self.checks},
        }
        if self.forced:
            tags |= {"gate.forced": "true", "gate.force_reason": str(self.reason)}
        return tags

    def to_dict(self) -> dict[str, object]:
        record = asdict(self)
        record["config"] = self.config.model_dump()
        return record

    def to_markdown(self) -> str:
        lines = [
            f"# Promotion gate: {self.model_name} v{self.version} -> {self.decision.upper()}",
            "",
            f"Decided {self.decided_at} by {self.decided_by}. Compared with {self.reference} "
            f"on {self.n_sessions} test sessions ({self.config.metric} on "
            f"`{self.config.gain}`, paired bootstrap, {self.config.n_boot} resamples).",
            "",
        ]
        if self.forced:
            lines += [f"**Forced promotion** by {self.decided_by}: {self.reason}", ""]
        lines += ["| check | result | detail |", "|---|---|---|"]
        lines += [
            f"| {c.name} | {'pass' if c.passed else '**FAIL**'} | {c.detail} |" for c in self.checks
        ]
        if self.failures:
            lines += ["", "Failed: " + ", ".join(c.name for c in self.failures)]
        return "\n".join(lines) + "\n"


# ---- pure decisions on per-session metric vectors (index: session_id) -------------------------


def judge(
    candidate: pd.Series,
    baseline: pd.Series,
    champion: pd.Series | None,
    attributes: pd.DataFrame,
    config: GateConfig,
    champion_name: str = "champion",
) -> list[Check]:
    """The statistical checks. ``champion`` is None on the first run: the baseline is then
    the reference for slices, and the champion checks are not made."""
    baseline = _aligned(candidate, baseline, "baseline")
    checks = [beats_baseline(candidate, baseline, config)]
    if champion is None:
        return [*checks, no_slice_regression(candidate, baseline, attributes, config, "baseline")]
    champion = _aligned(candidate, champion, champion_name)
    return [
        *checks,
        *versus_champion(candidate, champion, config),
        no_slice_regression(candidate, champion, attributes, config, champion_name),
    ]


def beats_baseline(candidate: pd.Series, baseline: pd.Series, config: GateConfig) -> Check:
    diff = _paired(candidate, baseline, config, config.alpha)
    return Check(
        "beats_baseline",
        passed=diff.lo > 0,
        detail=f"candidate - baseline {config.metric}: {diff}; "
        f"candidate {candidate.mean():.4f}, baseline {baseline.mean():.4f}",
    )


def versus_champion(candidate: pd.Series, champion: pd.Series, config: GateConfig) -> list[Check]:
    diff = _paired(candidate, champion, config, config.alpha)
    numbers = f"candidate - champion {config.metric}: {diff}"
    return [
        Check(
            "no_loss_vs_champion",
            passed=diff.hi >= 0,
            detail=f"{numbers}; required: upper bound >= 0",
        ),
        Check(
            "min_gain_vs_champion",
            passed=diff.mean >= config.min_gain_vs_champion,
            detail=f"mean gain {diff.mean:+.4f}, required >= {config.min_gain_vs_champion:+.4f}",
        ),
    ]


def no_slice_regression(
    candidate: pd.Series,
    reference: pd.Series,
    attributes: pd.DataFrame,
    config: GateConfig,
    reference_name: str,
) -> Check:
    """Fails naming every slice whose loss against the reference is real and above margin."""
    losses, too_small, judged = [], [], 0
    attributes = attributes.loc[candidate.index]
    for column in attributes.columns:
        for value, sessions in attributes.groupby(column, sort=True).groups.items():
            if len(sessions) < config.min_slice_sessions:
                too_small.append(f"{column}={value} (n={len(sessions)})")
                continue
            judged += 1
            diff = _paired(candidate[sessions], reference[sessions], config, config.slice_alpha)
            if diff.hi < 0 and diff.mean < -config.slice_margin:
                losses.append(f"{column}={value}: {diff}")
    detail = (
        f"vs {reference_name}, margin {config.slice_margin}: {judged} slices judged; "
        + (f"losses: {'; '.join(losses)}" if losses else "no slice loses")
        + (f"; too small to judge: {', '.join(too_small)}" if too_small else "")
    )
    return Check("no_slice_regression", passed=not losses, detail=detail)


def decide(checks: list[Check], force: bool = False) -> Decision:
    failed = {check.name for check in checks if not check.passed}
    if force or not failed:
        return "champion"
    return "rejected" if failed & set(HARD_CHECKS) else "challenger"


# ---- the gate against the real registry ---------------------------------------------------------


def promote(
    registry: Registry,
    version: str | int,
    test_frame: pd.DataFrame,
    candidate: ModelEvaluation,
    baseline: ModelEvaluation,
    config: GateConfig | None = None,
    force: bool = False,
    reason: str | None = None,
) -> GateDecision:
    """Judge registered ``version`` and move the aliases; returns the recorded decision.

    ``candidate`` and ``baseline`` are evaluations on ``test_frame`` (the candidate's from
    the in-memory model that was logged as ``version``).
    """
    config = config or GateConfig(gain=decision_gain(test_frame))
    version = str(version)
    _check_request(registry, version, candidate, baseline, config, force, reason)
    candidate_scores = _per_session(candidate, config)
    checks, loaded, digest = _artifact_checks(registry, version, test_frame, candidate, config)
    if force and not loaded:
        raise GateError(f"refusing to force v{version}: its artifact does not load or score")
    champion_name, champion_scores, comparable = _champion_scores(
        registry, test_frame, candidate, config
    )
    attributes = session_attributes(test_frame, [c for c in SLICE_COLUMNS if c in test_frame])
    baseline_scores = _per_session(baseline, config)
    judged = judge(
        candidate_scores,
        baseline_scores,
        champion_scores,
        attributes,
        config,
        champion_name or "champion",
    )
    checks += [comparable, *judged]
    compared_with = (
        "the baseline only" if champion_scores is None else f"{champion_name} and the baseline"
    )
    decision = GateDecision(
        model_name=registry.model_name,
        version=version,
        decision=decide(checks, force),
        checks=tuple(checks),
        reference=compared_with,
        n_sessions=len(candidate_scores),
        config=config,
        forced=force,
        reason=reason,
    )
    _record(registry, decision, digest)
    return decision


def write_report(decision: GateDecision, reports_dir: Path) -> tuple[Path, Path]:
    """The decision as markdown and JSON under ``reports_dir/gate`` (atomic writes)."""
    stem = reports_dir / "gate" / f"{decision.model_name}-v{decision.version}"
    markdown = write_text(decision.to_markdown(), stem.with_suffix(".md"))
    return markdown, write_json(decision.to_dict(), stem.with_suffix(".json"))


def _check_request(
    registry: Registry,
    version: str,
    candidate: ModelEvaluation,
    baseline: ModelEvaluation,
    config: GateConfig,
    force: bool,
    reason: str | None,
) -> None:
    """Every input problem, before anything is loaded or written."""
    if force and not (reason and reason.strip()):
        raise ValueError("promote: a forced promotion needs a reason; it is recorded")
    for evaluation in (candidate, baseline):
        if config.gain not in evaluation.per_session:
            raise KeyError(
                f"promote: {evaluation.model} has no per-session metrics on {config.gain!r}"
            )
        if config.metric not in evaluation.per_session[config.gain]:
            raise KeyError(f"promote: {evaluation.model} has no per-session {config.metric!r}")
    registry.version(version)  # raises if the version does not exist
    if registry.aliases().get(CHAMPION) == version:
        raise GateError(f"promote: v{version} is already the champion")


def _per_session(evaluation: ModelEvaluation, config: GateConfig) -> pd.Series:
    return evaluation.per_session[config.gain][config.metric]


def _artifact_checks(
    registry: Registry,
    version: str,
    test_frame: pd.DataFrame,
    candidate: ModelEvaluation,
    config: GateConfig,
) -> tuple[list[Check], bool, str | None]:
    """Download the artifact by version, digest it, check that those bytes reproduce the
    evaluation, and time them. The digest (None when the download failed) is recorded on
    the version: serving loads only bytes with this digest."""
    uri = registry.model_uri(version)
    with tempfile.TemporaryDirectory(prefix="ranklab-gate-") as tmp:
        digest = None
        try:
            folder = registry.download_version(version, Path(tmp))
            digest = artifact_digest(folder)
            model = mlflow.pyfunc.load_model(str(folder))
            scores = score(model, test_frame, who=uri)
        except Exception as error:  # whatever breaks loading or scoring is this check's verdict
            logger.exception("gate: %s does not load or score", uri)
            failure = f"{uri} failed: {type(error).__name__}: {error}"
            return (
                [
                    Check("artifact_scores", False, failure),
                    Check("latency_budget", False, failure),
                ],
                False,
                digest,
            )
        evaluated = _per_session(candidate, config)
        reproduced = _aligned(evaluated, _resolved(test_frame, scores, candidate, config), uri)
        gap = float(np.max(np.abs(reproduced.to_numpy() - evaluated.to_numpy())))
        parity = Check(
            "artifact_scores",
            passed=gap <= config.parity_tolerance,
            detail=f"{uri} loads (sha256 {digest[:12]}...); largest per-session "
            f"{config.metric} gap to the evaluated model {gap:.1e} "
            f"(tolerance {config.parity_tolerance:.0e})",
        )
        latency = _latency_check(model, test_frame.head(config.smoke_rows), config)
        return [parity, latency], True, digest


def _latency_check(model, batch: pd.DataFrame, config: GateConfig) -> Check:
    """The model's own cost per smoke batch, judged on CPU time, with wall time reported.

    On a shared machine wall time measures the neighbours as much as the model (the same
    batch measured 8 ms quiet and 63 ms under a load of 8 on 2 cores), and a gate that
    refuses a good model because CI was busy teaches people to ignore it. The process's CPU
    time per call is what the model costs wherever it runs; the serving benchmark measures
    the latency users see.
    """
    score(model, batch)  # warm-up: first calls pay for lazy initialisation, not steady state
    cpu_ms, wall_ms = [], []
    for _ in range(config.smoke_calls):
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        score(model, batch)
        cpu_ms.append((time.process_time() - cpu_start) * 1000)
        wall_ms.append((time.perf_counter() - wall_start) * 1000)
    cpu_p50, wall_p50 = statistics.median(cpu_ms), statistics.median(wall_ms)
    return Check(
        "latency_budget",
        passed=cpu_p50 <= config.latency_budget_ms,
        detail=f"p50 {cpu_p50:.1f} ms CPU ({wall_p50:.1f} ms wall) over {config.smoke_calls} "
        f"calls of {len(batch)} rows (budget {config.latency_budget_ms:.0f} ms CPU)",
    )


def _champion_scores(
    registry: Registry, test_frame: pd.DataFrame, candidate: ModelEvaluation, config: GateConfig
) -> tuple[str | None, pd.Series | None, Check]:
    """The champion's name and per-session metric on the test sessions, or why there is none."""
    champion = registry.champion_version()
    if champion is None:
        return None, None, Check("champion_comparable", True, "no champion yet: first run")
    name = f"champion v{champion.version}"
    try:
        scores = score(registry.load(CHAMPION), test_frame, who=registry.model_uri(CHAMPION))
    except (KeyError, MlflowException) as error:  # e.g. the feature set changed since
        detail = f"{name} cannot score the test sessions ({error}); promote by A/B test or force"
        return name, None, Check("champion_comparable", False, detail)
    per_session = _resolved(test_frame, scores, candidate, config)
    return name, per_session, Check("champion_comparable", True, f"{name} scored the same sessions")


def _resolved(
    test_frame: pd.DataFrame, scores: np.ndarray, candidate: ModelEvaluation, config: GateConfig
) -> pd.Series:
    """Per-session metric of ``scores`` with the candidate evaluation's no-relevant policy."""
    policy = candidate.no_relevant[config.gain]
    return session_metrics(test_frame, scores, config.gain, policy)[config.metric]


def _record(registry: Registry, decision: GateDecision, digest: str | None) -> None:
    """Report files first, then tags and aliases: no alias moves without its audit trail."""
    report, record = write_report(decision, registry.settings.reports_dir)
    tags = {**decision.tags(), "gate.report": str(report)}
    if digest is not None:  # the bytes judged; serving refuses any other
        tags[ARTIFACT_DIGEST_TAG] = digest
    if decision.decision == CHAMPION:
        if registry.aliases().get(CHALLENGER) == decision.version:
            registry.delete_alias(CHALLENGER)
        registry.promote_champion(decision.version, tags)
    else:
        registry.tag_version(decision.version, tags)
    if decision.decision == CHALLENGER:
        registry.set_alias(CHALLENGER, decision.version)
    run_id = registry.version(decision.version).run_id
    registry.log_artifacts(run_id, [report, record], GATE_ARTIFACTS)
    log = logger.info if decision.promoted and not decision.forced else logger.warning
    log("gate: %s", decision.summary())
    for check in decision.failures:
        logger.warning("gate: %s failed: %s", check.name, check.detail)


def _aligned(candidate: pd.Series, other: pd.Series, name: str) -> pd.Series:
    """``other`` in the candidate's session order; an error if they cover different sessions."""
    only_candidate = candidate.index.difference(other.index)
    only_other = other.index.difference(candidate.index)
    if len(only_candidate) or len(only_other):
        raise GateError(
            f"candidate and {name} were judged on different sessions: {len(only_candidate)} "
            f"only in the candidate, {len(only_other)} only in the {name}"
        )
    return other.reindex(candidate.index)


def _paired(a: pd.Series, b: pd.Series, config: GateConfig, alpha: float):
    return paired_bootstrap_diff(
        a.to_numpy(), b.to_numpy(), n_boot=config.n_boot, seed=config.seed, alpha=alpha
    )
