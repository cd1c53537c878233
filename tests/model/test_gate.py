"""The promotion gate's decisions on synthetic per-session metric vectors, and the model card.

Fast and pure: no registry. Each candidate is built to pass or fail one check for a known
reason, so a wrong threshold or a swapped sign fails a test. The registry path (loading
artifacts, moving aliases, audit tags) is tested in tests/integration/test_registry.py.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from mlflow.types import ColSpec, Schema
from pydantic import ValidationError

from models.evaluation import evaluate
from models.gate import (
    Check,
    GateConfig,
    GateDecision,
    GateError,
    _latency_check,
    decide,
    judge,
)
from models.model_card import TrainingSummary, render_model_card
from ranklab.schema import DEBIASED_LABEL, DEVICE, LABEL, REGION, SESSION_ID, SPLIT, TrainingSet

N_SESSIONS = 600
CONFIG = GateConfig(n_boot=500)


@pytest.fixture
def sessions() -> pd.DataFrame:
    """Slice attributes of 600 sessions: tablet is rare (about 30 sessions, under 50)."""
    rng = np.random.default_rng(0)
    index = pd.Index(np.arange(N_SESSIONS), name=SESSION_ID)
    return pd.DataFrame(
        {
            DEVICE: rng.choice(["desktop", "mobile", "tablet"], N_SESSIONS, p=[0.5, 0.45, 0.05]),
            REGION: rng.choice(["north", "south"], N_SESSIONS),
        },
        index=index,
    )


@pytest.fixture
def champion(sessions) -> pd.Series:
    rng = np.random.default_rng(1)
    return pd.Series(rng.uniform(0.3, 0.7, N_SESSIONS), index=sessions.index)


def noisy(values: pd.Series, shift: float | pd.Series, scale: float = 0.02, seed: int = 2):
    rng = np.random.default_rng(seed)
    return values + shift + rng.normal(0, scale, len(values))


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def shift_per_device(sessions: pd.DataFrame, **shifts: float) -> pd.Series:
    return sessions[DEVICE].map(shifts).astype(float)


# ---- the checks --------------------------------------------------------------------------------


def test_a_better_candidate_passes_every_check_and_becomes_champion(sessions, champion):
    baseline = noisy(champion, -0.10, seed=3)
    candidate = noisy(champion, +0.03)

    checks = judge(candidate, baseline, champion, sessions, CONFIG)

    assert [c.name for c in checks] == [
        "beats_baseline",
        "no_loss_vs_champion",
        "min_gain_vs_champion",
        "no_slice_regression",
    ]
    assert all(c.passed for c in checks), [c.detail for c in checks]
    assert decide(checks) == "champion"
    gain = (candidate - champion).mean()
    assert f"mean gain {gain:+.4f}" in by_name(checks)["min_gain_vs_champion"].detail


def test_a_degraded_candidate_is_rejected_with_every_reason(sessions, champion):
    baseline = noisy(champion, -0.10, seed=3)
    degraded = noisy(champion, -0.15)  # worse than the baseline itself

    checks = by_name(judge(degraded, baseline, champion, sessions, CONFIG))

    failed = {name for name, check in checks.items() if not check.passed}
    assert failed == {
        "beats_baseline",
        "no_loss_vs_champion",
        "min_gain_vs_champion",
        "no_slice_regression",
    }
    assert decide(list(checks.values())) == "rejected"
    assert "candidate - baseline ndcg@10: -0.05" in checks["beats_baseline"].detail


def test_a_candidate_indistinguishable_from_the_baseline_does_not_beat_it(sessions, champion):
    baseline = champion
    noise = noisy(baseline, 0.0, scale=0.1) - baseline
    candidate = baseline + (noise - noise.mean()) + 0.002  # ahead on average, within noise

    check = judge(candidate, baseline, None, sessions, CONFIG)[0]

    assert check.name == "beats_baseline"
    assert not check.passed, check.detail
    assert "candidate - baseline ndcg@10: 0.002 [-0.00" in check.detail


def test_a_candidate_that_hurts_one_slice_is_blocked_and_the_slice_is_named(sessions, champion):
    # Better on desktop, clearly worse on mobile; the overall mean still improves.
    shifts = shift_per_device(sessions, desktop=0.10, mobile=-0.06, tablet=0.0)
    candidate = noisy(champion, shifts)

    checks = by_name(judge(candidate, noisy(champion, -0.1), champion, sessions, CONFIG))

    assert checks["min_gain_vs_champion"].passed
    slice_check = checks["no_slice_regression"]
    assert not slice_check.passed
    assert "device=mobile" in slice_check.detail
    assert "device=desktop" not in slice_check.detail.split("losses:")[1].split("too small")[0]
    assert decide(list(checks.values())) == "challenger"


def test_a_slice_loss_within_the_margin_passes(sessions, champion):
    shifts = shift_per_device(sessions, desktop=0.05, mobile=-0.01, tablet=0.0)
    candidate = noisy(champion, shifts, scale=0.005)

    check = by_name(judge(candidate, champion - 0.1, champion, sessions, CONFIG))[
        "no_slice_regression"
    ]

    assert check.passed, check.detail  # mobile loses for real, but by less than 0.02


def test_a_slice_too_small_to_judge_is_listed_not_judged(sessions, champion):
    shifts = shift_per_device(sessions, desktop=0.02, mobile=0.02, tablet=-0.30)
    candidate = noisy(champion, shifts)

    check = by_name(judge(candidate, champion - 0.1, champion, sessions, CONFIG))[
        "no_slice_regression"
    ]

    n_tablet = int((sessions[DEVICE] == "tablet").sum())
    assert n_tablet < CONFIG.min_slice_sessions
    assert check.passed
    assert f"too small to judge: device=tablet (n={n_tablet})" in check.detail


def test_the_first_run_is_judged_against_the_baseline_only(sessions, champion):
    baseline = champion  # no champion yet: the baseline is what users get
    shifts = shift_per_device(sessions, desktop=0.10, mobile=-0.06, tablet=0.0)
    candidate = noisy(baseline, shifts)

    checks = judge(candidate, baseline, None, sessions, CONFIG)

    assert [c.name for c in checks] == ["beats_baseline", "no_slice_regression"]
    assert checks[0].passed
    assert not checks[1].passed
    assert checks[1].detail.startswith("vs baseline")
    assert "device=mobile" in checks[1].detail


def test_no_significant_loss_is_not_enough_without_the_minimum_gain(sessions, champion):
    # Worse by exactly 0.002 on average, too noisy to call: the CI of the difference covers 0.
    noise = noisy(champion, 0.0, scale=0.1) - champion
    candidate = champion + (noise - noise.mean()) - 0.002

    strict = by_name(judge(candidate, champion - 0.2, champion, sessions, CONFIG))
    lenient_config = GateConfig(n_boot=500, min_gain_vs_champion=-0.01)
    lenient = by_name(judge(candidate, champion - 0.2, champion, sessions, lenient_config))

    assert strict["no_loss_vs_champion"].passed
    assert not strict["min_gain_vs_champion"].passed
    assert lenient["min_gain_vs_champion"].passed


@pytest.mark.parametrize(
    ("failed", "force", "expected"),
    [
        (set(), False, "champion"),
        ({"no_slice_regression"}, False, "challenger"),
        ({"min_gain_vs_champion", "champion_comparable"}, False, "challenger"),
        ({"latency_budget"}, False, "rejected"),
        ({"beats_baseline", "no_slice_regression"}, False, "rejected"),
        ({"beats_baseline"}, True, "champion"),
    ],
)
def test_decide_collects_every_failure_then_decides(failed, force, expected):
    names = ["beats_baseline", "artifact_scores", "latency_budget", "champion_comparable"]
    names += ["no_loss_vs_champion", "min_gain_vs_champion", "no_slice_regression"]
    checks = [Check(name, name not in failed, "numbers") for name in names]
    assert decide(checks, force=force) == expected


def test_models_judged_on_different_sessions_are_refused(sessions, champion):
    baseline = champion.iloc[:-5]

    with pytest.raises(GateError, match="different sessions: 5 only in the candidate"):
        judge(champion + 0.1, baseline, None, sessions, CONFIG)


# ---- configuration and the decision record ------------------------------------------------------


def test_gate_config_rejects_unknown_fields_and_bad_values():
    with pytest.raises(ValidationError, match="min_gain"):
        GateConfig(min_gain=0.01)  # a typo must not silently fall back to the default
    with pytest.raises(ValidationError, match="latency_budget_ms"):
        GateConfig(latency_budget_ms=0)


def make_decision(forced: bool = False) -> GateDecision:
    checks = (
        Check("beats_baseline", True, "candidate - baseline ndcg@10: 0.041 [0.030, 0.052]"),
        Check("no_slice_regression", False, "losses: device=mobile: -0.060 [-0.08, -0.04]"),
    )
    return GateDecision(
        model_name="ranker",
        version="3",
        decision="champion" if forced else "challenger",
        checks=checks,
        reference="champion v2 and the baseline",
        n_sessions=600,
        config=CONFIG,
        forced=forced,
        reason="hotfix for a broken feature" if forced else None,
    )


def test_the_decision_report_says_what_failed_and_why():
    decision = make_decision()

    markdown = decision.to_markdown()

    assert markdown.startswith("# Promotion gate: ranker v3 -> CHALLENGER")
    assert "| no_slice_regression | **FAIL** | losses: device=mobile" in markdown
    assert "0.041 [0.030, 0.052]" in markdown
    assert decision.summary() == "ranker v3 -> challenger; failed: no_slice_regression"
    tags = decision.tags()
    assert tags["gate.failed_checks"] == "no_slice_regression"
    assert tags["gate.check.beats_baseline"].startswith("pass: candidate - baseline")
    assert "gate.forced" not in tags


def test_a_forced_decision_carries_its_reason_and_author():
    decision = make_decision(forced=True)

    tags = decision.tags()

    assert tags["gate.forced"] == "true"
    assert tags["gate.force_reason"] == "hotfix for a broken feature"
    assert tags["gate.decided_by"] == decision.decided_by != ""
    assert "**Forced promotion**" in decision.to_markdown()
    assert decision.to_dict()["config"]["n_boot"] == 500


# ---- the model card -----------------------------------------------------------------------------


def small_training_set() -> TrainingSet:
    """40 sessions x 5 items; graded labels; test sessions split 30 desktop / 10 mobile."""
    rng = np.random.default_rng(0)
    n_sessions, per_session = 40, 5
    session = np.repeat(np.arange(n_sessions), per_session)
    frame = pd.DataFrame(
        {
            SESSION_ID: session,
            "f0": rng.normal(size=len(session)),
            LABEL: rng.integers(0, 3, len(session)),
            SPLIT: np.where(session < 20, "train", np.where(session < 25, "valid", "test")),
            DEVICE: np.where(session < 35, "desktop", "mobile"),
            "event_timestamp": pd.Timestamp("2026-08-01", tz="UTC")
            + pd.to_timedelta(session, unit="D"),
        }
    )
    return TrainingSet(frame=frame, feature_columns=["f0"], source="letor")


def test_the_model_card_shows_the_numbers_it_was_given():
    training_set = small_training_set()
    test = training_set.part("test")
    evaluation = evaluate(test, test["f0"].to_numpy(), "ranker", [DEVICE], seed=0, n_boot=200)

    card = render_model_card(
        model_name="ranker",
        version="3",
        evaluation=evaluation,
        training=TrainingSummary.of(training_set),
        decision=make_decision(),
    )

    ndcg = evaluation.primary()
    assert card.startswith("# Model card: ranker v3")
    assert f"{ndcg.mean:.3f} [{ndcg.lo:.3f}, {ndcg.hi:.3f}]" in card
    assert "| test | 75 | 15 | 2026-08-26 | 2026-09-09 |" in card
    assert "| device | mobile | 5 |" in card  # the slice count
    assert "too small: not judged" in card  # 10 and 5 sessions, both under 50
    assert "Too few test sessions to judge: device=desktop (n=10), device=mobile (n=5)" in card
    assert "## Gate decision: **challenger**" in card
    assert "`f0`" in card
    risks = card.split("## Risks and what watches for them", 1)[1]
    assert "docs/runbooks/drift-alert.md" in risks and "ranklab_rank_fallbacks" in risks
    assert "No slice large enough to judge" in risks  # both device slices are too small


class _CostlyModel:
    """A stand-in for a loaded pyfunc: ``cpu_ms`` of busy work and ``sleep_ms`` of waiting."""

    def __init__(self, cpu_ms: float, sleep_ms: float) -> None:
        self.cpu_s, self.sleep_s = cpu_ms / 1e3, sleep_ms / 1e3
        schema = Schema([ColSpec("double", "x")])
        self.metadata = type("Meta", (), {"get_input_schema": lambda _self: schema})()

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        started = time.process_time()
        while time.process_time() - started < self.cpu_s:
            pass
        time.sleep(self.sleep_s)
        return np.zeros(len(frame))


@pytest.mark.parametrize(
    ("cpu_ms", "sleep_ms", "passes"),
    [(0, 0, True), (0, 80, True), (80, 0, False)],
    ids=["cheap", "waits-but-cheap", "costly"],
)
def test_latency_budget_judges_the_models_cpu_cost_not_the_machines_load(
    cpu_ms, sleep_ms, passes
) -> None:
    batch = pd.DataFrame({"x": np.arange(10, dtype=float)})
    config = GateConfig(latency_budget_ms=50, smoke_calls=3)
    check = _latency_check(_CostlyModel(cpu_ms, sleep_ms), batch, config)
    assert check.passed is passes, check.detail
    assert "ms CPU" in check.detail and "ms wall" in check.detail


# ---- confounded logs: the debiased metric decides, not the raw clicks ---------------------------


def _judged_on(frame: pd.DataFrame, candidate, champion, baseline, gain: str) -> dict[str, bool]:
    """The gate's statistical checks of ``candidate`` vs ``champion``, on ``gain``."""
    from models.evaluation import session_metrics

    def per_session(scores) -> pd.Series:
        return session_metrics(frame, scores, gain, "skip")["ndcg@10"]

    attributes = frame.groupby(SESSION_ID)[[DEVICE]].first()
    checks = judge(
        per_session(candidate),
        per_session(baseline),
        per_session(champion),
        attributes,
        GateConfig(n_boot=500, gain=gain),
    )
    return {c.name: c.passed for c in checks}


def test_on_confounded_logs_the_gate_refuses_the_model_that_copies_the_old_ranker(
    click_training_set,
):
    """The old ranker ordered slates by ``logged_score``, mostly noise; a model that learned
    "what was on top gets clicked" wins on raw clicks, loses on the truth. Judged on the
    debiased label (SNIPS DCG@10 on label_ipw) the gate sees it."""
    from models.evaluation import session_metrics
    from simulation.truth import TRUE_RELEVANCE

    frame = click_training_set(n_sessions=4000, seed=11).frame
    copies_old_ranker = frame["logged_score"].to_numpy()
    ranks_by_quality = frame["quality_signal"].to_numpy()
    baseline = np.zeros(len(frame))

    def truth(scores) -> float:
        return session_metrics(frame, scores, TRUE_RELEVANCE, "skip")["ndcg@10"].mean()

    assert truth(ranks_by_quality) > truth(copies_old_ranker) + 0.05  # the world's verdict

    debiased = _judged_on(frame, copies_old_ranker, ranks_by_quality, baseline, DEBIASED_LABEL)
    assert not debiased["no_loss_vs_champion"] and not debiased["min_gain_vs_champion"]
    promoted = _judged_on(frame, ranks_by_quality, copies_old_ranker, baseline, DEBIASED_LABEL)
    assert promoted["min_gain_vs_champion"] and promoted["beats_baseline"]
    # The trap the debiasing avoids: on the raw clicks the copier is not refused.
    raw = _judged_on(frame, copies_old_ranker, ranks_by_quality, baseline, LABEL)
    assert raw["no_loss_vs_champion"]
