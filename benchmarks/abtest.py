"""A/B readout: the decision rule's false-positive rate, and sessions needed per method.

    python -m benchmarks.abtest [--state DIR] [--scale 1] [--pool-days 12] [--sessions-per-day 4000]

Builds its own world in ``--state`` (default: a temporary folder): the default marketplace
(``DataSettings()``), its training set through the real Feast store, and two models of the
line-up with a known order: the popularity baseline (control) and the pipeline's candidate,
the position-debiased PyTorch ranker (treatment). Then, with the in-process request path
and the simulator's users (``simulation/abtest.py``):

1. **true effect**: expected clicks per session of each model on the same searches, from
   the ground truth (each request is ranked by both models; the click model gives the
   expected clicks of each order);
2. **A/A false-positive rate**: one A/A simulation (the ranker in both arms), then
   ``--aa-runs`` experiments drawn from it by re-assigning users with other experiment
   names (salts). Honest about what that is: the runs share the same searches and clicks,
   so the rate measures the test's calibration over the randomisation (what an A/A test
   on this traffic would do under a fresh hash), not over fresh traffic. It is valid
   because in an A/A test what a user sees does not depend on the arm. The full decision
   rule runs (SRM, guardrails, lift); a false positive is any verdict but "inconclusive";
3. **sessions needed**: one large A/B pool and one interleaving pool on the same days;
   for each sample size ``n``, ``--reps`` random subsamples of ``n`` searches; the share
   whose decision is "ship" is the power at ``n``; sessions needed is the smallest ``n``
   with power >= 80% (linear interpolation between grid points), for the A/B split, the
   A/B split with CUPED, and interleaving. Each A/B subsample is a fresh experiment: its
   users are hashed with a new salt and each search takes the clicks of its new arm
   (``simulation.potential_clicks``: the observed clicks for the arm that served it, a
   click-model draw on the other arm's shadow order otherwise). Without that, every
   subsample would inherit the pool's one split and its luck (the arms' users differing
   in pre-experiment activity), which favours whichever estimate that luck flatters.
   Subsamples of a finite pool still vary a bit less than fresh traffic would (by about
   ``1 - n/N``); the report prints ``n/N``.

Results go to ``<state>/reports/abtest_benchmark.md`` (and ``.json``) and are printed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from statsmodels.stats.proportion import proportion_confint  # noqa: E402

from benchmarks.world import build_training_world  # noqa: E402
from models import train  # noqa: E402
from monitoring.abtest.interleaving import interleaving_result  # noqa: E402
from monitoring.abtest.power import baseline_of, sample_size  # noqa: E402
from monitoring.abtest.readout import (  # noqa: E402
    ReadoutConfig,
    decide,
    lift,
    per_user,
    read_out,
    sample_ratio_check,
    samples,
)
from ranklab.io import write_json, write_text  # noqa: E402
from ranklab.settings import Settings  # noqa: E402
from serving.experiment import Arm, ExperimentConfig  # noqa: E402
from simulation.abtest import (  # noqa: E402
    ArmModel,
    ExperimentRun,
    potential_clicks,
    reassigned,
    simulate_experiment,
    simulate_interleaving,
)
from simulation.click_model import ClickModel  # noqa: E402
from simulation.traffic import TrafficPlan  # noqa: E402

POWER = 0.8
GRID = (250, 500, 1_000, 2_000, 4_000, 6_000, 8_000, 10_000, 12_000, 14_000, 16_000, 20_000, 24_000)


@dataclass
class World:
    settings: Settings
    tables: dict[str, pd.DataFrame]
    control: object
    treatment: object
    names: tuple[str, str]


def build_world(state: Path, seed: int, scale: float) -> World:
    started = time.perf_counter()
    world = build_training_world(state, scale, seed)
    control, treatment = world.fit(train.BASELINE), world.fit(world.candidate)
    print(f"world: {train.BASELINE} and {world.candidate} in {time.perf_counter() - started:.0f} s")
    return World(
        world.settings, world.tables, control, treatment, (train.BASELINE, world.candidate)
    )


def config(name: str) -> ExperimentConfig:
    arms = [
        Arm(name="control", model="version:1", weight=1),
        Arm(name="treatment", model="version:2", weight=1),
    ]
    return ExperimentConfig(name=name, arms=arms)


def ab_pool(world: World, plan: TrafficPlan, name: str, same: bool = False) -> ExperimentRun:
    started = time.perf_counter()
    control = ArmModel(world.treatment if same else world.control, "1")
    arms = {"control": control, "treatment": ArmModel(world.treatment, "2")}
    log_root = world.settings.root / "abtest" / name / "predictions"
    run = simulate_experiment(world.tables, world.settings, config(name), arms, plan, log_root)
    print(f"{name}: {len(run.exposures):,} sessions in {time.perf_counter() - started:.0f} s")
    return run


# ---- A/A ----
def aa_false_positives(run: ExperimentRun, runs: int) -> dict[str, object]:
    verdicts = []
    readout_config = ReadoutConfig(bootstrap=100)
    for i in range(runs):
        salted = config(f"aa-salt-{i}")
        exposures = reassigned(run.exposures, salted)
        verdicts.append(read_out(salted.name, exposures, run.weights, readout_config).decision)
    counts = pd.Series([d.verdict for d in verdicts]).value_counts().to_dict()
    positives = runs - counts.get("inconclusive", 0) - counts.get("blocked", 0)
    lo, hi = proportion_confint(positives, runs, alpha=0.05, method="beta")
    ships = counts.get("ship", 0)
    ship_lo, ship_hi = proportion_confint(ships, runs, alpha=0.05, method="beta")
    return {
        "runs": runs,
        "sessions_per_run": len(run.exposures),
        "verdicts": counts,
        "false_positive_rate": positives / runs,
        "fpr_ci": [lo, hi],
        "ship_rate": ships / runs,
        "ship_ci": [ship_lo, ship_hi],
        "blocked_by_srm": counts.get("blocked", 0),
    }


# ---- sessions needed ----
def ab_ships(
    outcomes: pd.DataFrame, run: ExperimentRun, salt: str, cuped: bool, alpha: float
) -> bool:
    """One fresh A/B experiment on these searches: users hashed with ``salt``, each request
    taking the clicks of its arm (``potential_clicks``), then the decision rule."""
    arm_of = reassigned(outcomes[["user_id"]].assign(arm=""), config(salt))["arm"].to_numpy()
    clicks = np.where(arm_of == "control", outcomes["clicks_control"], outcomes["clicks_treatment"])
    exposures = outcomes[["user_id", "shown"]].assign(arm=arm_of, clicks=clicks)
    users = per_user(exposures, "clicks_per_session")
    srm = sample_ratio_check(users["arm"].value_counts().to_dict(), run.weights)
    if not srm.passed:
        return False
    by_arm = samples(users, ["control", "treatment"], run.pre_activity if cuped else None)
    result = lift(by_arm["control"], by_arm["treatment"], alpha, cuped=cuped)
    return decide(srm, result, [], alpha).verdict == "ship"


def power_curves(
    run: ExperimentRun, credits: pd.DataFrame, reps: int, seed: int, alpha: float = 0.05
) -> pd.DataFrame:
    """Power at each n: ``reps`` random subsamples of n searches, each with a fresh
    assignment (A/B; both variants see the same subsample and split) or its own sessions
    (interleaving: there is no split to redraw)."""
    rng = np.random.default_rng(seed)
    outcomes = potential_clicks(run, ClickModel(), seed)
    rows = []
    for n in GRID:
        if n > len(outcomes) // 2:
            break
        ships = {"A/B": 0, "A/B + CUPED": 0, "interleaving": 0}
        for rep in range(reps):
            sample = outcomes.iloc[rng.choice(len(outcomes), n, replace=False)]
            salt = f"power-{n}-{rep}"
            ships["A/B"] += ab_ships(sample, run, salt, cuped=False, alpha=alpha)
            ships["A/B + CUPED"] += ab_ships(sample, run, salt, cuped=True, alpha=alpha)
            if n <= len(credits) // 2:
                il = credits.iloc[rng.choice(len(credits), n, replace=False)]
                result = interleaving_result(il["clicks_a"], il["clicks_b"], alpha)
                ships["interleaving"] += result.verdict == "ship"
            else:
                ships["interleaving"] = np.nan
        rows.append({"sessions": n, **{k: v / reps for k, v in ships.items()}})
        print(f"  n={n}: " + ", ".join(f"{k} {v / reps:.2f}" for k, v in ships.items()))
    return pd.DataFrame(rows)


def sessions_needed(curve: pd.DataFrame, method: str) -> float | None:
    """The smallest n with power >= POWER, interpolated between the grid's points."""
    n, power = curve["sessions"].to_numpy(float), curve[method].to_numpy(float)
    above = np.flatnonzero(power >= POWER)
    if not len(above):
        return None
    i = above[0]
    if i == 0:
        return float(n[0])
    return float(np.interp(POWER, [power[i - 1], power[i]], [n[i - 1], n[i]]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--state", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="Data scale: users, items.")
    parser.add_argument("--pool-days", type=int, default=12)
    parser.add_argument("--interleaving-days", type=int, default=2)
    parser.add_argument("--aa-days", type=int, default=3)
    parser.add_argument("--sessions-per-day", type=float, default=4_000)
    parser.add_argument("--aa-runs", type=int, default=400)
    parser.add_argument("--reps", type=int, default=200)
    args = parser.parse_args()
    state = args.state or Path(tempfile.mkdtemp(prefix="ranklab-abtest-"))
    started = time.perf_counter()
    world = build_world(state, args.seed, args.scale)

    def plan(days: int) -> TrafficPlan:
        return TrafficPlan(days=days, sessions_per_day=args.sessions_per_day, seed=args.seed + 1)

    ab = ab_pool(world, plan(args.pool_days), "ab-pool")
    truth = ab.true_effect()
    true_lift = truth["treatment"] / truth["control"] - 1
    full = read_out("ab-pool", ab.exposures, ab.weights, covariates=ab.pre_activity)
    il_started = time.perf_counter()
    il = simulate_interleaving(
        world.tables, world.settings, world.control, world.treatment, plan(args.interleaving_days)
    )
    print(f"interleaving: {len(il.credits):,} sessions in {time.perf_counter() - il_started:.0f} s")
    aa = ab_pool(world, plan(args.aa_days), "aa-pool", same=True)
    aa_result = aa_false_positives(aa, args.aa_runs)
    print(f"A/A: {aa_result}")
    curve = power_curves(ab, il.credits, args.reps, args.seed)
    control_only = ab.exposures[ab.exposures["arm"] == "control"]
    predicted = sample_size(baseline_of(control_only), true_lift, relative=True)
    needed = {m: sessions_needed(curve, m) for m in ("A/B", "A/B + CUPED", "interleaving")}
    record = {
        "scale": args.scale,
        "users": int(world.tables["users"].shape[0]),
        "models": {"control": world.names[0], "treatment": world.names[1]},
        "true_clicks_per_session": truth,
        "true_relative_lift": true_lift,
        "pool_sessions": len(ab.exposures),
        "interleaving_pool_sessions": len(il.credits),
        "pool_readout": {
            "lift": full.lift.relative.fmt(percent=True),
            "cuped_lift": full.cuped_lift.relative.fmt(percent=True),
            "cuped_variance_reduction": full.cuped_lift.cuped.variance_reduction,
            "decision": full.decision.verdict,
        },
        "aa": aa_result,
        "power_analysis_sessions": predicted.sessions,
        "sessions_needed": needed,
        "power_curve": curve.to_dict("records"),
        "reps": args.reps,
        "seconds": time.perf_counter() - started,
    }
    report = markdown(record, curve)
    out = state / "reports"
    write_text(report, out / "abtest_benchmark.md")
    write_json(record, out / "abtest_benchmark.json")
    print(report)


def markdown(r: dict, curve: pd.DataFrame) -> str:
    aa, truth = r["aa"], r["true_clicks_per_session"]
    needed = r["sessions_needed"]

    def fmt(n: float | None) -> str:
        return "> " + f"{int(curve['sessions'].max()):,}" if n is None else f"{n:,.0f}"

    lines = [
        f"world: scale {r['scale']}, {r['users']:,} users. "
        f"control: {r['models']['control']}, treatment: {r['models']['treatment']}; "
        f"true clicks per session {truth['control']:.4f} vs {truth['treatment']:.4f} "
        f"(true lift {r['true_relative_lift']:+.2%}, from the simulator's ground truth).",
        "",
        f"A/A, {aa['runs']} re-salted runs of {aa['sessions_per_run']:,} sessions: false-positive "
        f"rate {aa['false_positive_rate']:.1%} (95% CI {aa['fpr_ci'][0]:.1%} to "
        f"{aa['fpr_ci'][1]:.1%}; nominal 5%), ship rate {aa['ship_rate']:.1%} "
        f"({aa['ship_ci'][0]:.1%} to {aa['ship_ci'][1]:.1%}; nominal 2.5%), "
        f"blocked by SRM {aa['blocked_by_srm']} (nominal 0.1%).",
        "",
        f"Pool: {r['pool_sessions']:,} A/B sessions, lift {r['pool_readout']['lift']} "
        f"(CUPED {r['pool_readout']['cuped_lift']}, variance -"
        f"{r['pool_readout']['cuped_variance_reduction']:.0%}); "
        f"{r['interleaving_pool_sessions']:,} interleaved sessions.",
        "",
        "| method | sessions to ship with 80% probability |",
        "|---|---|",
        f"| A/B split (power analysis at the true lift) | {r['power_analysis_sessions']:,} |",
        f"| A/B split (measured) | {fmt(needed['A/B'])} |",
        f"| A/B split + CUPED (measured) | {fmt(needed['A/B + CUPED'])} |",
        f"| team-draft interleaving (measured) | {fmt(needed['interleaving'])} |",
        "",
        f"Power by sample size ({r['reps']} subsamples each; n/N is the share of the pool):",
        "",
        curve.assign(**{"n/N": curve["sessions"] / r["pool_sessions"]})
        .round(3)
        .to_markdown(index=False),
        "",
        f"({r['seconds']:.0f} s in all)",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
