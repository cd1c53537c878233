"""Quality benchmark: every model against the LightGBM peer, on generated and on real data.

    python -m benchmarks.quality [--scale 1.0] [--seeds 3] [--skip-generated] [--letor-dir DIR]

Two data sets, one protocol:
- the generated marketplace (clicks under position bias, ground truth known), built through
  the real feature path (generator -> feature tables -> Feast -> training set) under
  ``<state>/benchmarks/scale_<scale>/`` and reused on later runs (``--rebuild`` redoes it);
- the LETOR sample (real graded judgements), ``train.txt`` and ``test.txt``.

Each model fits on the train split with each seed (the rankers stop early on valid);
LightGBM LambdaMART (300 trees, learning rate 0.05, 31 leaves), which has no use for a
validation split, fits on train + valid. Beside it, where positions were logged (generated
data), LightGBM's position-debiased LambdaMART (``lightgbm_lambdamart_debiased``: the same
settings plus each row's logged position, from which LightGBM >= 4.1 learns one bias factor
per position, "unbiased LambdaMART", Hu et al., WWW 2019); on LETOR, which has no positions,
it is skipped and the report says so. Per-session metrics on the test split are averaged
over seeds, so the intervals (95% bootstrap over sessions) describe the training recipe, not
one lucky seed. On generated data the benchmark is a grader: it joins the world's ground
truth to the test rows (the models never see it) and adds the honest oracle (ranking by the
noise-free expected utility: what a model knowing every latent could do), the noisy oracle
beside it (ranking by the realised utility, which knows the dice), and a diagnostic ceiling,
``ceiling_features`` (LambdaMART fitted to the true grades), that says how much of the
oracle these features can reach at all. "Of oracle" is against the noise-free one.
The markdown table is printed and written to
``<reports>/benchmarks/quality.md``. LightGBM is a benchmark-only dependency.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.evaluation import bootstrap_ci, evaluate, paired_bootstrap_diff
from models.metrics import PRIMARY_METRIC
from models.train import RANKER_IPW, RANKER_NAIVE, train_models
from ranklab.io import write_text
from ranklab.schema import (
    ITEM_ID,
    LABEL,
    POSITION,
    SESSION_ID,
    TrainingSet,
)
from ranklab.settings import DataSettings, Settings, get_settings
from simulation.truth import EXPECTED_UTILITY, TRUE_RELEVANCE, TRUE_UTILITY

DEFAULT_LETOR_DIR = get_settings().letor_dir  # ../shared beside the checkout, as in CI
PEER = "lightgbm_lambdamart"
PEER_DEBIASED = "lightgbm_lambdamart_debiased"
ORACLE = "oracle (noise-free)"
NOISY_ORACLE = "oracle (knows the noise)"
NOT_TRAINED = (ORACLE, NOISY_ORACLE, "ceiling_features")
TRUTH = {TRUE_RELEVANCE: "skip"}  # the grader's gain beside the system's own


def has_truth(frame: pd.DataFrame) -> bool:
    """Whether the grader joined the world's truth to these rows (never for real data)."""
    return TRUE_RELEVANCE in frame.columns


# ---- the peer --------------------------------------------------------------------------------


class LambdaMart:
    """LightGBM's LGBMRanker with the reference settings, behind the same fit/predict contract.

    ``debias_position=True`` passes each row's logged position to ``lgb.Dataset(position=...)``:
    LightGBM's lambdarank then learns a bias factor per position jointly with the trees and
    discounts clicks that the position explains. ``LGBMRanker.fit`` takes no ``position``, so
    that variant trains through ``lgb.train`` with the same parameters.
    """

    def __init__(
        self,
        feature_columns: list[str],
        seed: int,
        label: str = LABEL,
        debias_position: bool = False,
        position_bias_regularization: float = 0.0,  # LightGBM's default
    ):
        self.feature_columns = feature_columns
        self.seed = seed
        self.label = label
        self.debias_position = debias_position
        self.position_bias_regularization = position_bias_regularization
        self.name = PEER_DEBIASED if debias_position else PEER

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None = None) -> LambdaMart:
        rows = pd.concat([train, valid]) if valid is not None else train
        # LightGBM reads a query as a run of consecutive rows: give it the run lengths.
        group_sizes = rows.groupby(SESSION_ID, sort=False).size().to_numpy()
        if self.debias_position:
            return self._fit_debiased(rows, group_sizes)
        self.model_ = lgb.LGBMRanker(
            objective="lambdarank",
            n_estimators=300,
            learning_rate=0.05,
            num_leaves=31,
            random_state=self.seed,
            n_jobs=1,
            verbose=-1,
        ).fit(rows[self.feature_columns], rows[self.label].astype(int), group=group_sizes)
        return self

    def _fit_debiased(self, rows: pd.DataFrame, group_sizes: np.ndarray) -> LambdaMart:
        if not has_positions(rows):
            raise KeyError(f"{self.name}: needs a logged {POSITION!r} on every row")
        params = {
            "objective": "lambdarank",
            "learning_rate": 0.05,
            "num_leaves": 31,
            "seed": self.seed,
            "num_threads": 1,
            "verbose": -1,
            "lambdarank_position_bias_regularization": self.position_bias_regularization,
        }
        dataset = lgb.Dataset(
            rows[self.feature_columns],
            label=rows[self.label].astype(int),
            group=group_sizes,
            position=rows[POSITION].to_numpy(dtype=int),
        )
        self.model_ = lgb.train(params, dataset, num_boost_round=300)
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.model_.predict(frame[self.feature_columns])


def has_positions(frame: pd.DataFrame) -> bool:
    """Whether every row has a logged position (generated clicks do; LETOR judgements do not)."""
    return POSITION in frame.columns and bool(frame[POSITION].notna().all())


def debiased_peer_note(ts: TrainingSet) -> str | None:
    """Why the position-debiased peer is missing from a table, or None when it is there."""
    if has_positions(ts.frame):
        return None
    return (
        f"{PEER_DEBIASED}: skipped, this data set has no logged positions (graded judgements, "
        "not clicks): there is no position bias to learn."
    )


# ---- one data set ----------------------------------------------------------------------------


@dataclass
class ModelResult:
    """Per-session metrics averaged over seeds (gain -> frame), and each seed's fit time."""

    per_session: dict[str, pd.DataFrame] = field(default_factory=dict)
    fit_seconds: list[float] = field(default_factory=list)


def benchmark(
    ts: TrainingSet, seeds: list[int], n_boot: int, progress: bool
) -> dict[str, ModelResult]:
    """Fit every model with every seed and evaluate it on the test split."""
    test = ts.part("test")
    runs: dict[str, list[dict[str, pd.DataFrame]]] = {}
    results: dict[str, ModelResult] = {}
    for seed in seeds:
        trained = {n: (t.model, t.fit_seconds) for n, t in train_models(ts, seed, progress).items()}
        started = time.perf_counter()
        peer = LambdaMart(ts.feature_columns, seed).fit(ts.part("train"), ts.part("valid"))
        trained[PEER] = (peer, time.perf_counter() - started)
        if has_positions(ts.frame):
            started = time.perf_counter()
            debiased = LambdaMart(ts.feature_columns, seed, debias_position=True)
            debiased.fit(ts.part("train"), ts.part("valid"))
            trained[PEER_DEBIASED] = (debiased, time.perf_counter() - started)
        extra = TRUTH if has_truth(test) else None
        for name, (model, seconds) in trained.items():
            scores = model.predict(test)
            evaluation = evaluate(
                test, scores, name, [], seed=seed, n_boot=n_boot, extra_gains=extra
            )
            runs.setdefault(name, []).append(evaluation.per_session)
            results.setdefault(name, ModelResult()).fit_seconds.append(seconds)
    for name, per_seed in runs.items():
        results[name].per_session = {
            gain: sum(run[gain] for run in per_seed) / len(per_seed) for gain in per_seed[0]
        }
    if has_truth(test):
        for name, column in ((ORACLE, EXPECTED_UTILITY), (NOISY_ORACLE, TRUE_UTILITY)):
            scores = test[column].to_numpy(dtype=float)
            oracle = evaluate(test, scores, name, [], seed=0, n_boot=n_boot, extra_gains=TRUTH)
            results[name] = ModelResult(oracle.per_session, [0.0])
    return results


def truth_ceilings(ts: TrainingSet, n_boot: int) -> dict[str, ModelResult]:
    """``ceiling_features``: LambdaMART fitted to the true grades, a diagnostic that cheats on
    purpose: what these features can explain when the label is the truth itself, free of
    clicks and position bias."""
    test = ts.part("test")
    fitted_to_truth = LambdaMart(ts.feature_columns, seed=0, label=TRUE_RELEVANCE)
    scores = fitted_to_truth.fit(ts.part("train")).predict(test)
    evaluation = evaluate(
        test, scores, "ceiling_features", [], seed=0, n_boot=n_boot, extra_gains=TRUTH
    )
    return {"ceiling_features": ModelResult(evaluation.per_session, [0.0])}


def markdown_table(results: dict[str, ModelResult], n_boot: int) -> str:
    """Model | NDCG@5 and NDCG@10 on the label | NDCG@10 on the truth, share of oracle | fit s."""
    with_truth = ORACLE in results
    oracle_truth = results[ORACLE].per_session[TRUE_RELEVANCE] if with_truth else None
    header = ["model", "NDCG@5 (label)", "NDCG@10 (label)"]
    if with_truth:
        header += ["NDCG@10 (truth)", "of oracle (truth)"]
    header.append("fit seconds")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, result in results.items():
        cells = [
            name,
            _cell(result, LABEL, "ndcg@5", n_boot),
            _cell(result, LABEL, "ndcg@10", n_boot),
        ]
        if with_truth:
            truth = result.per_session[TRUE_RELEVANCE][PRIMARY_METRIC].mean()
            share = truth / oracle_truth[PRIMARY_METRIC].mean()
            cells += [_cell(result, TRUE_RELEVANCE, PRIMARY_METRIC, n_boot), f"{share:.1%}"]
        cells.append("-" if name in NOT_TRAINED else f"{np.mean(result.fit_seconds):.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparisons(results: dict[str, ModelResult], n_boot: int) -> list[str]:
    """Paired NDCG@10 differences (same test sessions) that the targets are judged on."""
    pairs = [(RANKER_NAIVE, PEER, LABEL), (RANKER_IPW, PEER, LABEL)]
    if ORACLE in results:
        pairs += [(RANKER_NAIVE, PEER, TRUE_RELEVANCE), (RANKER_IPW, PEER, TRUE_RELEVANCE)]
        pairs += [(RANKER_IPW, RANKER_NAIVE, TRUE_RELEVANCE)]
        pairs += [(PEER_DEBIASED, PEER, LABEL), (PEER_DEBIASED, PEER, TRUE_RELEVANCE)]
    lines = []
    for a, b, gain in pairs:
        if a in results and b in results:
            diff = paired_bootstrap_diff(
                results[a].per_session[gain][PRIMARY_METRIC].to_numpy(),
                results[b].per_session[gain][PRIMARY_METRIC].to_numpy(),
                n_boot=n_boot,
            )
            lines.append(
                f"- {a} - {b}, {PRIMARY_METRIC} on {gain}: {diff.mean:+.4f} "
                f"[{diff.lo:+.4f}, {diff.hi:+.4f}] (n={diff.n})"
            )
    return lines


def _cell(result: ModelResult, gain: str, metric: str, n_boot: int) -> str:
    estimate = bootstrap_ci(result.per_session[gain][metric].to_numpy(), n_boot=n_boot)
    return f"{estimate.mean:.3f} [{estimate.lo:.3f}, {estimate.hi:.3f}]"


# ---- the data sets ---------------------------------------------------------------------------


def generated_training_set(settings: Settings, data: DataSettings, rebuild: bool) -> TrainingSet:
    """The marketplace of ``data``, through the real Feast path (cached on disk), debiased as
    the pipeline does it, with the world's truth joined for grading."""
    # Imported here: Feast and the generator are only needed for this half of the benchmark.
    from features import aggregates
    from features.store import apply_definitions
    from features.training_set import build_training_set, load_training_set, save_training_set
    from models.debiasing import debiased
    from simulation.generator import generate_marketplace

    own = settings.model_copy(
        update={"state_dir": settings.root / "benchmarks" / f"scale_{data.scale:g}", "data": data}
    )
    tables = generate_marketplace(own.data)
    cached = own.training_dir.is_dir() and not rebuild
    ts = load_training_set(own) if cached else None
    if ts is None:
        aggregates.write_feature_tables(aggregates.compute_feature_tables(tables), own)
        ts = build_training_set(own, tables, apply_definitions(own))
        save_training_set(ts, own)
    ts = debiased(ts, own)
    truth = tables["impressions"][
        [SESSION_ID, ITEM_ID, TRUE_RELEVANCE, TRUE_UTILITY, EXPECTED_UTILITY]
    ]
    ts.frame = ts.frame.merge(truth, on=[SESSION_ID, ITEM_ID], how="left", validate="one_to_one")
    return ts


def letor_training_set_from(folder: Path) -> TrainingSet:
    from features.letor import letor_training_set

    return letor_training_set(folder / "train.txt", folder / "test.txt")


# ---- the report ------------------------------------------------------------------------------


def section(
    title: str,
    ts: TrainingSet,
    seeds: list[int],
    n_boot: int,
    progress: bool,
    data: DataSettings | None = None,
) -> str:
    """One data set's table and paired differences; with ``data``, the truth ceilings too."""
    sizes = {s: int(ts.part(s)[SESSION_ID].nunique()) for s in ("train", "valid", "test")}
    results = benchmark(ts, seeds, n_boot, progress)
    if data is not None:
        results |= truth_ceilings(ts, n_boot)
    note = debiased_peer_note(ts)
    return "\n".join(
        [
            f"## {title}",
            "",
            f"Sessions (queries): {sizes}; features: {len(ts.feature_columns)}; "
            f"seeds: {seeds}; 95% bootstrap intervals over test sessions ({n_boot} resamples).",
            "",
            markdown_table(results, n_boot),
            *([] if note is None else ["", note]),
            "",
            "Paired differences, mean [95% interval]:",
            *comparisons(results, n_boot),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> str:
    args = _parse_args(argv)
    settings = get_settings()
    seeds = list(range(args.seeds))
    sections = []
    if not args.skip_generated:
        scale = args.scale if args.scale is not None else settings.data.scale
        data = settings.data.model_copy(update={"scale": scale})
        ts = generated_training_set(settings, data, args.rebuild)
        title = f"Generated marketplace (scale {scale:g})"
        sections.append(section(title, ts, seeds, args.n_boot, args.progress, data))
    letor = letor_training_set_from(args.letor_dir)
    title = f"LETOR sample ({args.letor_dir.name})"
    sections.append(section(title, letor, seeds, args.n_boot, args.progress))
    report = "# Quality benchmark\n\n" + "\n".join(sections)
    path = write_text(report, settings.reports_dir / "benchmarks" / "quality.md")
    print(report)
    print(f"written to {path}")
    return report


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=None, help="generated data size knob")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per model")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--skip-generated", action="store_true", help="LETOR only")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the generated data")
    parser.add_argument("--letor-dir", type=Path, default=DEFAULT_LETOR_DIR)
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()
