"""The readout as people read it: markdown and HTML, with the cumulative lift over time,
logged to MLflow beside the treatment's training run.

The report is a list of blocks (a heading, a paragraph, a table) rendered twice, so the
markdown and the HTML say the same thing. The HTML embeds the plot, so it is one file.

The cumulative-lift plot shows the relative lift and its CI, recomputed at the end of
each day on all traffic so far. It is for seeing the estimate settle, not for deciding:
reading it daily and stopping at the first significant day inflates the false-positive
rate (peeking). The decision is taken once, at the planned sample size.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from models.registry import Registry
from monitoring.abtest.exposures import ARM, TS
from monitoring.abtest.readout import Readout, ReadoutConfig, lift, per_user, samples
from ranklab.io import atomic_path, write_json, write_text

Block = tuple[str, object]  # ("h2", "title") | ("p", "text") | ("table", DataFrame) | ("img", "")


def cumulative_lift(
    exposures: pd.DataFrame,
    config: ReadoutConfig,
    covariates: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per day: sessions so far and the relative lift with its CI on all traffic so far."""
    days = exposures[TS].dt.floor("D").drop_duplicates().sort_values()
    rows = []
    for day in days:
        upto = exposures[exposures[TS] < day + pd.Timedelta(days=1)]
        users = per_user(upto, config.metric)
        users = users[users.groupby("user_id")[ARM].transform("nunique") == 1]
        by_arm = samples(users, [config.control, config.treatment], covariates)
        if min(s.users for s in by_arm.values()) < 2:
            continue
        result = lift(
            by_arm[config.control], by_arm[config.treatment], config.alpha, cuped=config.cuped
        )
        rows.append(
            {
                "day": (day + pd.Timedelta(days=1)).date(),
                "sessions": len(upto),
                "relative_lift": result.relative.value,
                "lo": result.relative.lo,
                "hi": result.relative.hi,
                "p_value": result.p_value,
            }
        )
    return pd.DataFrame(rows)


def plot_cumulative_lift(
    cumulative: pd.DataFrame, path: Path, true_lift: float | None = None
) -> Path:
    fig = Figure(figsize=(8, 4))
    ax = fig.subplots()
    x = cumulative["sessions"]
    ax.fill_between(x, cumulative["lo"] * 100, cumulative["hi"] * 100, alpha=0.25, label="95% CI")
    ax.plot(x, cumulative["relative_lift"] * 100, marker="o", label="relative lift, cumulative")
    ax.axhline(0, color="black", linewidth=0.8)
    if true_lift is not None:
        ax.axhline(
            true_lift * 100, color="tab:green", linestyle="--", label="true lift (simulator)"
        )
    ax.set_xlabel("sessions so far (one point per day)")
    ax.set_ylabel("treatment vs control (%)")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(path)


def blocks(
    readout: Readout,
    cumulative: pd.DataFrame,
    notes: Mapping[str, str] | None = None,
) -> list[Block]:
    """The report's content, top to bottom: the decision first."""
    config = readout.config
    out: list[Block] = [
        ("h1", f"A/B readout: {readout.experiment}"),
        ("p", f"**Decision: {readout.decision.verdict.upper()}**. Rule: {readout.decision.rule}."),
        ("h2", "Sample ratio"),
        ("p", _srm_line(readout)),
    ]
    if readout.lift is not None:
        out += [
            ("h2", f"Primary metric: {config.metric.replace('_', ' ')}"),
            ("table", _metric_table(readout)),
            ("p", _method_line(readout)),
        ]
    out += [("h2", "Guardrails (higher is worse)"), ("table", _guardrail_table(readout))]
    out += [("h2", "Cumulative lift"), ("img", "")]
    if not cumulative.empty:
        out.append(("table", cumulative.round(4)))
    for title, text in (notes or {}).items():
        out += [("h2", title), ("p", text)]
    return out


def _srm_line(readout: Readout) -> str:
    srm = readout.srm
    state = "passed" if srm.passed else "FAILED: the readout is blocked"
    mixed = (
        f" {readout.mixed_users} users were seen in more than one arm and are left out."
        if readout.mixed_users
        else ""
    )
    return (
        f"Users per arm {srm.users} against expected shares {srm.expected_share}: chi-square "
        f"{srm.chi2:.2f}, p={srm.p_value:.3g} (blocks below {srm.alpha}): {state}.{mixed}"
    )


def _metric_table(readout: Readout) -> pd.DataFrame:
    rows = []
    for name, result in (("plain", readout.lift), ("CUPED", readout.cuped_lift)):
        if result is None:
            continue
        rows.append(
            {
                "estimate": name,
                "control": result.control.fmt(),
                "treatment": result.treatment.fmt(),
                "absolute lift": result.absolute.fmt(),
                "relative lift": result.relative.fmt(percent=True),
                "p-value": f"{result.p_value:.3g}",
            }
        )
    return pd.DataFrame(rows)


def _method_line(readout: Readout) -> str:
    text = (
        f"95% intervals; {readout.lift.method}: users are randomised, so the user is the "
        f"unit of the variance. Sessions per arm: {readout.sessions}."
    )
    if readout.cuped_lift is not None and readout.cuped_lift.cuped is not None:
        fit = readout.cuped_lift.cuped
        used = "decides" if readout.config.cuped else "shown beside the plain estimate"
        text += (
            f" CUPED on pre-experiment activity ({', '.join(fit.covariates)}) removed "
            f"{fit.variance_reduction:.1%} of the variance ({used})."
        )
    return text


def _guardrail_table(readout: Readout) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "guardrail": g.name,
            "control": f"{g.control:.4g}",
            "treatment": f"{g.treatment:.4g}",
            "difference [95% CI]": g.difference.fmt(digits=4),
            "margin": f"{g.margin:.4g}",
            "breached": "YES" if g.breached else "no",
        }
        for g in readout.guardrails
    )


def to_markdown(content: Sequence[Block], image_name: str) -> str:
    lines = []
    for kind, value in content:
        if kind == "h1":
            lines.append(f"# {value}\n")
        elif kind == "h2":
            lines.append(f"## {value}\n")
        elif kind == "p":
            lines.append(f"{value}\n")
        elif kind == "table":
            lines.append(value.to_markdown(index=False) + "\n")  # type: ignore[union-attr]
        elif kind == "img":
            lines.append(f"![cumulative lift]({image_name})\n")
    return "\n".join(lines)


def to_html(content: Sequence[Block], image: Path) -> str:
    encoded = base64.b64encode(Path(image).read_bytes()).decode("ascii")
    body = []
    for kind, value in content:
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{html.escape(str(value))}</{kind}>")
        elif kind == "p":
            text = html.escape(str(value))
            # The one piece of markdown the paragraphs use: **bold**.
            parts = text.split("**")
            text = "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))
            body.append(f"<p>{text}</p>")
        elif kind == "table":
            body.append(value.to_html(index=False, border=0))  # type: ignore[union-attr]
        elif kind == "img":
            body.append(f'<img alt="cumulative lift" src="data:image/png;base64,{encoded}">')
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{padding:.2em .6em;border-bottom:1px solid #ddd}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>A/B readout</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    plot: Path
    record: Path

    @property
    def paths(self) -> list[Path]:
        return [self.markdown, self.html, self.plot, self.record]


def write_report(
    readout: Readout,
    exposures: pd.DataFrame,
    out_dir: Path,
    covariates: pd.DataFrame | None = None,
    true_lift: float | None = None,
    notes: Mapping[str, str] | None = None,
    extra: Mapping[str, object] | None = None,
) -> ReportFiles:
    """``readout.md``, ``readout.html``, ``cumulative_lift.png`` and ``readout.json``."""
    out_dir = Path(out_dir)
    cumulative = cumulative_lift(exposures, readout.config, covariates)
    plot = plot_cumulative_lift(cumulative, out_dir / "cumulative_lift.png", true_lift)
    content = blocks(readout, cumulative, notes)
    markdown = write_text(to_markdown(content, plot.name), out_dir / "readout.md")
    page = write_text(to_html(content, plot), out_dir / "readout.html")
    record = {
        **readout.to_dict(),
        "cumulative": cumulative.astype({"day": str}).to_dict("records")
        if not cumulative.empty
        else [],
        **dict(extra or {}),
    }
    record_path = write_json(_plain(record), out_dir / "readout.json")
    return ReportFiles(markdown, page, plot, record_path)


def _plain(value: object) -> object:
    """JSON-ready: numpy scalars and arrays to Python ones."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def log_to_mlflow(registry: Registry, version: str, files: ReportFiles, experiment: str) -> str:
    """Add the report to the MLflow run that trained ``version`` (the treatment), under
    ``abtest/<experiment>/``; returns the run id."""
    run_id = registry.version(version).run_id
    registry.log_artifacts(run_id, files.paths, folder=f"abtest/{experiment}")
    return run_id
