"""The summary ``ranklab run`` prints: read back from the run's own materialisation metadata
and check evaluations, so what a person reads is what Dagster recorded.

The per-asset lines above it (``pipelines/progress.py``) already name the raw row counts and
the feature views; the summary keeps what a person acts on: checks, splits, the evaluation
table as the evaluation asset wrote it (its columns are its own), and the gate's decision.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from ranklab.settings import Settings


def _metadata_by_asset(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, object]]:
    found: dict[str, dict[str, object]] = {}
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        found[mat.asset_key.to_user_string()] = {k: v.value for k, v in mat.metadata.items()}
    return found


def _checks(result: dg.ExecuteInProcessResult) -> list[tuple[str, bool, str]]:
    rows = []
    for event in result.all_events:
        if event.event_type_value != "ASSET_CHECK_EVALUATION":
            continue
        evaluation = event.event_specific_data
        rows.append((evaluation.check_name, evaluation.passed, evaluation.description or ""))
    return sorted(rows)


def format_summary(
    result: dg.ExecuteInProcessResult,
    settings: Settings,
    seconds: float,
    log_path: Path | None = None,
    evaluation_table: bool = True,
) -> str:
    """The summary; ``evaluation_table=False`` leaves the evaluation table to a caller that
    prints a fuller one (``ranklab run``'s grader puts the truth beside the same numbers)."""
    meta = _metadata_by_asset(result)
    lines = [
        f"\n== ranklab run: {'succeeded' if result.success else 'FAILED'} in {seconds:.0f} s =="
    ]

    checks = _checks(result)
    if checks:
        passed = sum(ok for _, ok, _ in checks)
        lines.append(f"data checks: {passed}/{len(checks)} passed")
        lines += [f"  FAILED {name}: {why}" for name, ok, why in checks if not ok]

    if "training_data" in meta:
        td = meta["training_data"]
        lines.append(f"training set: {td['rows']:,} rows x {td['features']} features")
        for split in ("train", "valid", "test"):
            dates = td.get(f"{split}.days", "")
            lines.append(
                f"  {split:<5} {td[f'{split}.sessions']:>6,} sessions {td[f'{split}.rows']:>8,} rows  {dates}"
            )

    evaluation = meta.get("model_evaluation", {}).get("summary")
    if evaluation and evaluation_table:
        lines.append(str(evaluation))  # the evaluation's own table, whatever its columns
    promotion = meta.get("promotion", {})
    gate = promotion.get("brief") or promotion.get("summary")  # brief: the terminal's version
    if gate:
        lines.append(str(gate))

    log = "" if log_path is None else f"; event log: {log_path} (`ranklab run -v` shows it)"
    lines.append(f"state: {settings.root}{log}")
    lines.append("next: `make ui` (Dagster, :3000), `make mlflow-ui` (MLflow, :5000)")
    return "\n".join(lines)


def print_summary(
    result: dg.ExecuteInProcessResult,
    settings: Settings,
    seconds: float,
    log_path: Path | None = None,
    evaluation_table: bool = True,
) -> None:
    print(format_summary(result, settings, seconds, log_path, evaluation_table), flush=True)
