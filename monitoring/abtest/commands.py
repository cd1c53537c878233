"""What ``ranklab abtest ...`` runs, over the state ``make run`` left.

- ``power``: the sample size for a minimum detectable effect, at the baseline rate and
  variance of the logged sessions (the raw tables), or of a simulated run's control arm;
- ``register_baseline``: the popularity (or scikit-learn) baseline fitted on the stored
  training set and registered as a version without alias: a known-weaker model for a
  control arm (``--control version:N``), logged like any training run;
- ``simulate``: an A/B test of two registry models on simulated users, in process, then
  its readout;
- ``readout``: the readout of a simulated run, or of the running service's prediction log
  joined to a traffic ledger's clicks, written as markdown and HTML and logged to MLflow
  beside the treatment's training run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import typer
from pydantic import ValidationError

from features.events import ServedTraffic, read_raw, traffic_dir
from features.training_set import load_training_set
from models import experiment as model_experiment
from models import train
from models.registry import Lineage, Registry
from monitoring.abtest.exposures import (
    ARM,
    MODEL_VERSION,
    ExposureError,
    exposures_from_log,
    pre_period_activity,
)
from monitoring.abtest.power import SampleSize, baseline_of, baseline_sessions, sample_size
from monitoring.abtest.readout import Metric, Readout, ReadoutConfig, read_out
from monitoring.abtest.report import ReportFiles, log_to_mlflow, write_report
from ranklab.privacy import pseudonymiser_for
from ranklab.settings import Settings
from serving.experiment import (
    ExperimentConfig,
    ExperimentConfigError,
    load_experiment,
)
from serving.prediction_log import read_predictions

CONFIG_FILE = "experiment.json"
BASELINES = (train.BASELINE, train.POINTWISE)


def run_dir(settings: Settings, name: str) -> Path:
    """Where a simulated experiment keeps its ledger, prediction log and report."""
    return traffic_dir(settings, f"abtest-{name}")


# ---- power ----
def power(
    settings: Settings,
    mde: float,
    relative: bool = True,
    alpha: float = 0.05,
    target_power: float = 0.8,
    treatment_share: float = 0.5,
    metric: Metric = "clicks_per_session",
    from_run: str | None = None,
) -> SampleSize:
    if from_run is None:
        sessions = baseline_sessions(read_raw(settings.raw_dir))
    else:
        run = run_dir(settings, from_run)
        exposures = _exposures_of_run(run)
        sessions = exposures[exposures[ARM] == _config_of_run(run).arms[0].name]
    return sample_size(
        baseline_of(sessions, metric), mde, relative, alpha, target_power, treatment_share
    )


# ---- a known-weaker model in the registry ----
def register_baseline(settings: Settings, model: str = train.BASELINE) -> str:
    """Fit ``model`` (popularity or pointwise) on the stored training set, register it as a
    new version with no alias (tagged ``abtest.baseline``); returns the version."""
    if model not in BASELINES:
        raise ValueError(f"register_baseline: model must be one of {BASELINES}, got {model!r}")
    training_set = load_training_set(settings)
    ranker = train.build_models(training_set, seed=settings.seed, progress=False)[model]
    ranker.fit(training_set.part("train"), training_set.part("valid"))
    evaluation = model_experiment.evaluate_models(training_set, {model: ranker}, settings.seed)
    meta = training_set.metadata
    registry = Registry(settings)
    logged = registry.log_training_run(
        ranker,
        training_set,
        evaluation[model],
        Lineage.of(training_set, meta["feature_views"], meta["feature_service"]),
        params=train.describe(ranker),
    )
    registry.tag_version(logged.version, {"abtest.baseline": model})
    return logged.version


# ---- readout ----
def readout(
    settings: Settings,
    name: str,
    metric: Metric = "clicks_per_session",
    cuped: bool = False,
    log_root: Path | None = None,
    traffic: Path | None = None,
    log_to_registry: bool = True,
) -> tuple[Readout, ReportFiles, str | None]:
    """The readout of experiment ``name``: a simulated run (by default), or the service's
    prediction log (``log_root``, e.g. ``<state>/predictions``) joined to the clicks of a
    traffic ledger (``traffic``), with the experiment the service read."""
    if log_root is None:
        run = run_dir(settings, name)
        config = _config_of_run(run)
        exposures = _exposures_of_run(run)
        out_dir = run / "report"
    else:
        if traffic is None:
            raise ValueError("readout from a prediction log needs the traffic ledger's clicks")
        from serving.experiment import experiment_path

        config = load_experiment(experiment_path(settings.root))
        if config is None or config.name != name:
            raise FileNotFoundError(
                f"the service's experiment file does not describe {name!r}: "
                f"{experiment_path(settings.root)}"
            )
        exposures = exposures_from_log(
            read_predictions(log_root), ServedTraffic.load(traffic).clicks, name
        )
        out_dir = settings.reports_dir / "abtest" / name
    tables = read_raw(settings.raw_dir)
    covariates = pre_period_activity(
        tables, before=exposures["ts"].min(), pseudonymiser=pseudonymiser_for(settings)
    )
    readout_config = readout_config_of(config, metric, cuped)
    result, files, run_id = read_and_report(
        settings, config, exposures, covariates, readout_config, out_dir, log_to_registry, None
    )
    return result, files, run_id


def read_and_report(
    settings: Settings,
    config: ExperimentConfig,
    exposures: pd.DataFrame,
    covariates: pd.DataFrame,
    readout_config: ReadoutConfig,
    out_dir: Path,
    log_to_registry: bool,
    truth: dict[str, float] | None,
) -> tuple[Readout, ReportFiles, str | None]:
    weights = {arm.name: arm.weight for arm in config.arms}
    result = read_out(config.name, exposures, weights, readout_config, covariates)
    notes, true_lift = {}, None
    if truth is not None:
        true_lift = truth[readout_config.treatment] / truth[readout_config.control] - 1
        notes["Ground truth (the simulator's)"] = (
            "Expected clicks per session if every search had been served by each arm: "
            + ", ".join(f"{arm} {value:.4f}" for arm, value in truth.items())
            + f"; true relative lift {true_lift:+.2%}."
        )
    arms = {a.name: a.model for a in config.arms}
    notes["Experiment"] = f"{config.name}: arms {arms}, weights {weights}."
    files = write_report(
        result, exposures, out_dir, covariates, true_lift, notes,
        extra={"truth": truth, "arms": arms},
    )  # fmt: skip
    run_id = None
    if log_to_registry:
        # The version that actually served the treatment: its training run gets the report.
        served = exposures.loc[exposures[ARM] == readout_config.treatment, MODEL_VERSION]
        if served.nunique() == 1:
            run_id = log_to_mlflow(Registry(settings), str(served.iloc[0]), files, config.name)
    return result, files, run_id


def readout_config_of(config: ExperimentConfig, metric: Metric, cuped: bool) -> ReadoutConfig:
    """Control is the first arm, treatment the second (as ``experiment start`` lists them)."""
    return ReadoutConfig(
        control=config.arms[0].name, treatment=config.arms[1].name, metric=metric, cuped=cuped
    )


def _config_of_run(run: Path) -> ExperimentConfig:
    config = load_experiment(run / CONFIG_FILE)
    if config is None:
        raise FileNotFoundError(f"no simulated experiment at {run}: run `ranklab abtest simulate`")
    return config


def _exposures_of_run(run: Path) -> pd.DataFrame:
    config = _config_of_run(run)
    return exposures_from_log(
        read_predictions(run / "predictions"), ServedTraffic.load(run).clicks, config.name
    )


@contextmanager
def cli_errors() -> Iterator[None]:
    """The errors a person can fix (a name, a path, an alias) as one line and exit code 2."""
    fixable = (ExperimentConfigError, ExposureError, ValidationError, FileExistsError,
               FileNotFoundError)  # fmt: skip
    try:
        yield
    except fixable as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
