"""The summary ``ranklab run`` prints: read back from the run's own materialisation metadata
and check evaluations, so what a person reads is what Dagster recorded."""

from __future__ import annotations

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


def format_summary(result: dg.ExecuteInProcessResult, settings: Settings, seconds: float) -> str:
    meta = _metadata_by_asset(result)
    lines = [
        f"\n== ranklab run: {'succeeded' if result.success else 'FAILED'} in {seconds:.0f} s =="
    ]

    raw = meta.get("raw_events", {})
    if raw:
        rows = ", ".join(
            f"{k.removeprefix('rows.')} {v:,}" for k, v in raw.items() if k.startswith("rows.")
        )
        lines.append(f"raw events ({raw.get('source')}, as of {raw.get('as_of')}): {rows}")

    checks = _checks(result)
    if checks:
        passed = sum(ok for _, ok, _ in checks)
        lines.append(f"data checks: {passed}/{len(checks)} passed")
        lines += [f"  FAILED {name}: {why}" for name, ok, why in checks if not ok]

    if "feature_registry" in meta:
        reg = meta["feature_registry"]
        lines.append(f"feature views: {', '.join(reg['feature_views'])}")
        lines.append(f"feature services: {', '.join(reg['feature_services'])}")

    if "training_data" in meta:
        td = meta["training_data"]
        lines.append(f"training set: {td['rows']:,} rows x {td['features']} features")
        for split in ("train", "valid", "test"):
            dates = td.get(f"{split}.days", "")
            lines.append(
                f"  {split:<5} {td[f'{split}.sessions']:>6,} sessions {td[f'{split}.rows']:>8,} rows  {dates}"
            )

    for asset in ("model_evaluation", "promotion"):
        summary = meta.get(asset, {}).get("summary")
        if summary:
            lines.append(str(summary))

    lines.append(f"state: {settings.root}")
    lines.append("next: `make ui` (Dagster, :3000), `make mlflow-ui` (MLflow, :5000)")
    return "\n".join(lines)


def print_summary(result: dg.ExecuteInProcessResult, settings: Settings, seconds: float) -> None:
    print(format_summary(result, settings, seconds))
