"""The model card: what a model is for, what it was trained on, how good it is, for whom.

Generated from the run's own records, never typed by hand, so it cannot drift from the
numbers: the evaluation (estimates with intervals, slice table), the training-set summary
that is also logged to MLflow as ``training_set.json``, the lineage tags, and the gate
decision. Every estimate is shown with its 95% interval and its session count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from models.metrics import METRICS, PRIMARY_METRIC
from models.slices import worst_slice
from ranklab.io import write_text
from ranklab.schema import (
    CLICKED,
    DEBIASED_LABEL,
    EVENT_TIMESTAMP,
    LABEL,
    SESSION_ID,
    SPLITS,
    TrainingSet,
)

if TYPE_CHECKING:  # types only: the gate and the registry import this module
    from models.evaluation import Estimate, ModelEvaluation
    from models.gate import GateDecision
    from models.registry import Lineage, Registry

GAIN_NAMES = {LABEL: "logged clicks", DEBIASED_LABEL: "position-debiased clicks"}
# The card's folder in the MLflow run. The gate report has its own (``models.gate.
# GATE_ARTIFACTS``): both are ``ranker-v<N>.md``, and logged into one folder the card
# replaced the report, so the run held no gate report in markdown.
MODEL_CARD_ARTIFACTS = "model_card"


@dataclass(frozen=True)
class SplitSummary:
    rows: int
    sessions: int
    start: str | None  # first and last day (UTC) where the frame has event timestamps
    end: str | None


@dataclass(frozen=True)
class TrainingSummary:
    """What a model was trained and tested on; logged as ``training_set.json`` with the run."""

    source: str
    feature_columns: list[str]
    slice_columns: list[str]
    labels_are_clicks: bool
    splits: dict[str, SplitSummary]
    metadata: dict[str, str]

    @classmethod
    def of(cls, training_set: TrainingSet) -> TrainingSummary:
        return cls(
            source=training_set.source,
            feature_columns=list(training_set.feature_columns),
            slice_columns=training_set.slice_columns,
            labels_are_clicks=CLICKED in training_set.frame.columns,
            splits={split: _split_summary(training_set.part(split)) for split in SPLITS},
            metadata={key: str(value) for key, value in training_set.metadata.items()},
        )

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def render_model_card(
    model_name: str,
    version: str | None,
    evaluation: ModelEvaluation,
    training: TrainingSummary,
    decision: GateDecision | None = None,
    lineage: Lineage | None = None,
    references: Sequence[ModelEvaluation] = (),
) -> str:
    """Markdown for one model version.

    ``training`` is ``TrainingSummary.of(training_set)``; ``references`` are other models
    evaluated on the same test split (baselines, the oracle ceiling), shown beside it.
    """
    title = f"{model_name} v{version}" if version else model_name
    sections = [
        f"# Model card: {title}\n\n_Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from the "
        f"run's evaluation, training-set summary and gate decision._",
        _intended_use(),
        _data_section(training, lineage),
        _features_section(training),
        _metrics_section(evaluation, references),
        _slices_section(evaluation),
        _gate_section(decision),
        _limitations_section(evaluation, training),
        _risks_section(evaluation, training),
    ]
    return "\n\n".join(sections) + "\n"


def write_model_card(path: Path, **card: object) -> Path:
    """Render (same arguments as ``render_model_card``) and write atomically to ``path``."""
    return write_text(render_model_card(**card), Path(path))


def log_model_card(registry: Registry, run_id: str, card: Path) -> str:
    """Add the card to its training run under ``model_card/``; returns its artifact path."""
    registry.log_artifacts(run_id, [card], folder=MODEL_CARD_ARTIFACTS)
    return f"{MODEL_CARD_ARTIFACTS}/{Path(card).name}"


# ---- sections ------------------------------------------------------------------------------


def _intended_use() -> str:
    return (
        "## Intended use\n\n"
        "Orders the candidate items of one marketplace search session (a query with a "
        "category intent, on a device, from a region) so that the items the user is likely "
        "to click or buy come first. Input: one row per candidate item with `session_id` and "
        "the features below; output: one score per row, higher first. Only the order within "
        "a session means anything: scores are not probabilities and are not comparable "
        "across sessions. Not for other marketplaces, other feature definitions, or "
        "decisions about individual users."
    )


def _data_section(training: TrainingSummary, lineage: Lineage | None) -> str:
    rows = [
        f"| {name} | {split.rows:,} | {split.sessions:,} | {split.start or '-'} "
        f"| {split.end or '-'} |"
        for name, split in training.splits.items()
    ]
    lines = [
        "## Data",
        "",
        f"Source: **{training.source}**. Splits are by time: the model never sees the "
        "future of the sessions it is tested on.",
        "",
        "| split | rows | sessions | from | to |",
        "|---|---:|---:|---|---|",
        *rows,
    ]
    if lineage is not None:
        lines += ["", *[f"- {key}: `{value}`" for key, value in lineage.as_tags().items()]]
    return "\n".join(lines)


def _features_section(training: TrainingSummary) -> str:
    listed = ", ".join(f"`{name}`" for name in training.feature_columns)
    return f"## Features\n\n{len(training.feature_columns)} features: {listed}."


def _metrics_section(evaluation: ModelEvaluation, references: Sequence[ModelEvaluation]) -> str:
    header = "| model | gain | " + " | ".join(METRICS) + " | sessions |"
    lines = [
        "## Metrics (test split)",
        "",
        "Mean over sessions with a 95% bootstrap interval. The observed label is clicks "
        "and purchases (or the given grade); the debiased label weighs each by the inverse "
        "of its position's estimated examination propensity (models/propensity.py).",
        "",
        header,
        "|---|---|" + "---|" * (len(METRICS) + 1),
    ]
    for model in (evaluation, *references):
        for gain, estimates in model.overall.items():
            cells = " | ".join(_estimate(estimates[metric]) for metric in METRICS)
            n = estimates[PRIMARY_METRIC].n
            name = f"**{model.model}**" if model is evaluation else model.model
            lines.append(f"| {name} | {GAIN_NAMES.get(gain, gain)} | {cells} | {n:,} |")
    return "\n".join(lines)


def _slices_section(evaluation: ModelEvaluation) -> str:
    table = evaluation.slices
    lines = [
        f"## Slices ({PRIMARY_METRIC}, observed label)",
        "",
        "| slice | value | sessions | mean [95% CI] | gap to overall | note |",
        "|---|---|---:|---|---:|---|",
    ]
    for row in table.itertuples(index=False):
        note = "too small: not judged" if row.too_small else ""
        lines.append(
            f"| {row.slice} | {row.value} | {row.n_sessions:,} | "
            f"{row.mean:.3f} [{row.lo:.3f}, {row.hi:.3f}] | {row.gap_to_overall:+.3f} | {note} |"
        )
    if table.empty:
        lines.append("| - | - | - | no slice columns in this data | - | |")
    return "\n".join(lines)


def _gate_section(decision: GateDecision | None) -> str:
    if decision is None:
        return "## Gate decision\n\nNot gated yet."
    # The report's own title becomes a sentence; its body (the check table) is kept as is.
    body = decision.to_markdown().split("\n", 1)[1].strip()
    return f"## Gate decision: **{decision.decision}**\n\n{body}"


def _limitations_section(evaluation: ModelEvaluation, training: TrainingSummary) -> str:
    items = []
    if training.labels_are_clicks:
        items.append(
            "Labels are clicks and purchases logged under position bias: users look at the "
            "top, so the observed label under-rates items that were shown low."
        )
    if training.source == "generated":
        items.append(
            "The data come from a simulator with a known utility model; real users differ."
        )
    test = training.splits["test"]
    items.append(
        f"Measured on the test days ({test.start or '?'} to {test.end or '?'}); quality after "
        "a shift in users, items or traffic is unknown until monitoring measures it."
    )
    items += _slice_limitations(evaluation.slices)
    return "## Known limitations\n\n" + "\n".join(f"- {item}" for item in items)


# Failure mode -> who it hits first -> what in ranklab watches for it -> the runbook. The
# watchers are the monitoring checks, serving metrics and gate checks that exist in this
# codebase; the affected slices are filled in from this model's own slice table.
RISKS = (
    (
        "Feature drift: served features move away from the training days (new prices, a "
        "category's catalogue changes)",
        "every user; first the weakest slices",
        "`monitoring_window` (Evidently feature drift per served day against this version's "
        "reference) raises an alert; the retraining sensor reads it",
        "docs/runbooks/drift-alert.md",
    ),
    (
        "Silent quality loss: features look normal, users stop liking what ranks first",
        "every user",
        "ranking quality on served traffic (`ranking_quality.hit_rate@10` against the "
        "reference) in `monitoring_window`",
        "docs/runbooks/retraining.md",
    ),
    (
        "The online store or the model fails or is slow: popularity answers",
        "every request while it lasts",
        "`served_by` in every response, `ranklab_rank_fallbacks` and `/readyz`; the A/B "
        "readout's fallback-rate guardrail",
        "docs/runbooks/serving-fallback-rate.md",
    ),
    (
        "Cold start: a new user or item is scored with default features",
        "new users (`user_segment=new`) and new items",
        "`cold_start` in every response and `ranklab_cold_start`",
        "models/README.md",
    ),
    (
        "A bad version promoted, or a slice that regresses",
        "the slices below",
        "the gate's `no_slice_regression` and `no_loss_vs_champion` at every promotion; "
        "`make rollback`",
        "docs/runbooks/model-rollback.md",
    ),
)


def _risks_section(evaluation: ModelEvaluation, training: TrainingSummary) -> str:
    """Known failure modes, the slices they hit first, and what monitoring watches."""
    rows = [
        "| failure mode | affected | what watches for it | runbook |",
        "|---|---|---|---|",
        *(f"| {mode} | {who} | {watch} | `{book}` |" for mode, who, watch, book in RISKS),
    ]
    slices = _weakest_slices(evaluation.slices)
    weakest = (
        f"Weakest judged slices of this version ({PRIMARY_METRIC}, observed label, gap to "
        f"overall): {slices}."
        if slices
        else "No slice large enough to judge: quality per group is unknown."
    )
    return "## Risks and what watches for them\n\n" + "\n".join(rows) + f"\n\n{weakest}"


def _weakest_slices(table: pd.DataFrame, n: int = 3) -> str:
    if table.empty:
        return ""
    judged = table[~table["too_small"]].sort_values("gap_to_overall")
    return ", ".join(
        f"{r.slice}={r.value} {r.mean:.3f} ({r.gap_to_overall:+.3f}, n={r.n_sessions})"
        for r in judged.head(n).itertuples()
    )


def _slice_limitations(table: pd.DataFrame) -> list[str]:
    if table.empty:
        return ["No slice columns: quality per user group is unknown."]
    items = []
    small = table[table["too_small"]]
    if not small.empty:
        names = ", ".join(f"{r.slice}={r.value} (n={r.n_sessions})" for r in small.itertuples())
        items.append(f"Too few test sessions to judge: {names}.")
    if not small.index.equals(table.index):  # at least one slice is large enough to judge
        worst = worst_slice(table)
        items.append(
            f"Weakest slice: {worst['slice']}={worst['value']} at {worst['mean']:.3f} "
            f"[{worst['lo']:.3f}, {worst['hi']:.3f}] ({worst['gap_to_overall']:+.3f} vs overall)."
        )
    return items


def _estimate(estimate: Estimate) -> str:
    return f"{estimate.mean:.3f} [{estimate.lo:.3f}, {estimate.hi:.3f}]"


def _split_summary(part: pd.DataFrame) -> SplitSummary:
    start = end = None
    if EVENT_TIMESTAMP in part.columns and not part.empty:
        times = pd.to_datetime(part[EVENT_TIMESTAMP])
        start, end = f"{times.min():%Y-%m-%d}", f"{times.max():%Y-%m-%d}"
    return SplitSummary(len(part), int(part[SESSION_ID].nunique()), start, end)
