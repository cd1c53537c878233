"""The three Evidently reports on a small synthetic marketplace with a known change.

The reference is built by ``build_reference`` from a training set and the popularity model;
windows are drawn from the same distribution, then changed the way a scenario would.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from models.debiasing import CURVE_METADATA
from models.popularity import PopularityRanker
from models.propensity import PropensityCurve
from monitoring.reference import MonitoringReference, build_reference
from monitoring.reports import (
    ReportStore,
    data_quality_report,
    feature_drift_report,
    ranking_quality_report,
)
from monitoring.windows import Window
from ranklab.schema import TrainingSet
from ranklab.settings import Settings
from simulation.click_model import DEVICES, REGIONS, ClickModel

FEATURES = ["item_ctr_28d", "item_price", "query_matches_category"]
START = pd.Timestamp("2026-09-01", tz="UTC")
SLATE = 10


def _searches(n: int, day: pd.Timestamp, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` searches of ``SLATE`` items: context, features and a true utility that rises
    with the item's CTR (so ranking by CTR is good)."""
    rows = n * SLATE
    session = np.repeat(np.arange(n), SLATE)
    ctr = rng.beta(2, 30, rows)
    return pd.DataFrame(
        {
            "session_id": session,
            "item_id": rng.integers(0, 300, rows),
            "event_timestamp": day
            + pd.to_timedelta(np.repeat(rng.integers(0, 86_400, n), SLATE), "s"),
            "device": np.repeat(rng.choice(DEVICES, n, p=[0.55, 0.35, 0.10]), SLATE),
            "region": np.repeat(rng.choice(REGIONS, n), SLATE),
            "query_category": np.repeat(rng.choice(["books", "toys", "home"], n), SLATE),
            "item_ctr_28d": ctr,
            "item_price": np.round(rng.lognormal(3.5, 0.8, rows), 2),
            "query_matches_category": (rng.random(rows) < 0.75).astype(float),
            "true_utility": 3.0 + 40 * (ctr - 0.06) + rng.normal(0, 0.5, rows),
        }
    )


@pytest.fixture(scope="module")
def model() -> PopularityRanker:
    return PopularityRanker(FEATURES).fit(pd.DataFrame({"item_ctr_28d": [0.05]}))


@pytest.fixture(scope="module")
def reference(model) -> MonitoringReference:
    rng = np.random.default_rng(0)
    days = [_searches(80, START + pd.Timedelta(days=d), rng) for d in range(6)]
    frame = pd.concat(days, ignore_index=True)
    frame["session_id"] = frame.groupby(["event_timestamp", "session_id"], sort=False).ngroup()
    frame["split"] = np.where(
        frame["event_timestamp"] >= START + pd.Timedelta(days=4), "test", "train"
    )
    # Logged by an old ranker that ordered at random, clicked under the true click model.
    frame["position"] = frame.groupby("session_id").cumcount() + 1
    clicks = _clicks(frame, frame["true_utility"].to_numpy(), rng)
    frame = frame.assign(**clicks).drop(columns=["true_utility"])
    # The examination curve the system would have estimated: here, the true one.
    curve = PropensityCurve.from_power_law(dict(ClickModel().examination_eta), SLATE)
    ts = TrainingSet(
        frame=frame,
        feature_columns=FEATURES,
        source="generated",
        metadata={CURVE_METADATA: curve.to_dict()},
    )
    return build_reference(ts, model, model_version="1", days=6)


def _clicks(rows: pd.DataFrame, utility: np.ndarray, rng: np.random.Generator) -> dict:
    """The simulated users' clicks and purchases on rows at their ``position``."""
    click_model = ClickModel()
    p_click = click_model.click_probability(utility, rows["position"].to_numpy(), rows["device"])
    clicked = rng.random(len(rows)) < p_click
    purchased = clicked & (rng.random(len(rows)) < click_model.purchase_probability(utility))
    return {
        "clicked": clicked.astype("int64"),
        "purchased": purchased.astype("int64"),
        "label": clicked.astype("int64") + purchased.astype("int64"),
    }


def _window_rows(model, seed: int, **changes) -> pd.DataFrame:
    """Served candidate rows of one day after the reference, as ``candidate_rows`` gives them."""
    rng = np.random.default_rng(seed)
    frame = _searches(80, START + pd.Timedelta(days=7), rng)
    frame["item_price"] *= changes.get("price_factor", 1.0)
    rows = frame.rename(columns={"session_id": "request_id", "event_timestamp": "ts"})
    rows["request_id"] = "w" + rows["request_id"].astype(str)
    rows["score"] = model.predict(frame)
    rows["position"] = (
        rows.groupby("request_id")["score"].rank(ascending=False, method="first").astype(int)
    )
    rows["served_by"] = "model"
    rows["model_version"] = "1"
    return rows


WINDOW = Window(START + pd.Timedelta(days=7), START + pd.Timedelta(days=8))


def _failed(report) -> set[tuple[str, str]]:
    return {(c.check, c.column) for c in report.failures}


def test_reference_holds_the_days_their_variation_and_the_replayed_quality(reference):
    assert reference.meta["days"] == 6 and reference.meta["replayed_searches"] == 160
    assert set(reference.meta["day_to_day_drift"]) == {
        *FEATURES,
        "score",
        "device",
        "region",
        "query_category",
    }
    assert reference.meta["log_scaled"] == [*FEATURES, "score"]  # all non-negative here
    sessions = reference.sessions
    assert len(sessions) == 160 and 0.3 < sessions["hit_rate@10"].mean() < 1.0


def test_a_window_like_the_reference_passes_every_critical_check(reference, model):
    rows = _window_rows(model, seed=11)
    drift = feature_drift_report(rows, reference, WINDOW)
    quality = data_quality_report(rows, reference, WINDOW)
    assert drift.failures == [] and quality.failures == []
    assert len(drift.checks) == len(FEATURES) + 4  # features, score, three context columns
    assert {c.check for c in quality.checks} >= {
        "missing",
        "out_of_range",
        "spread",
        "new_category",
        "fallback_share",
    }


def test_a_price_rise_is_feature_drift_on_the_price_and_nothing_else(reference, model):
    drift = feature_drift_report(_window_rows(model, seed=11, price_factor=1.6), reference, WINDOW)
    assert _failed(drift) == {("drift", "item_price")}
    price = next(c for c in drift.checks if c.column == "item_price")
    assert price.value > price.threshold > 0


def test_broken_inputs_fail_data_quality_each_with_its_own_check(reference, model):
    rows = _window_rows(model, seed=11)
    rows["item_price"] = 0.0  # the feed sends nothing: served as the default
    rows.loc[rows.index[:200], "query_matches_category"] = np.nan
    rows.loc[rows.index[:50], "device"] = "smart-tv"
    fallback = rows["request_id"].isin(rows["request_id"].unique()[:10])
    rows.loc[fallback, "served_by"] = "fallback:feature_missing"
    quality = data_quality_report(rows, reference, WINDOW)
    assert _failed(quality) == {
        ("out_of_range", "item_price"),
        ("spread", "item_price"),
        ("missing", "query_matches_category"),
        ("new_category", "device"),
        ("fallback_share", "requests"),
    }
    missing = next(c for c in quality.failures if c.check == "missing")
    assert missing.value == pytest.approx(200 / len(rows))


def _labelled(rows: pd.DataFrame, utility: np.ndarray, seed: int) -> pd.DataFrame:
    """The window's rows with the clicks the simulated users make on the served order."""
    clicks = _clicks(rows, np.asarray(utility), np.random.default_rng(seed))
    return rows.drop(columns=["true_utility"]).assign(**clicks)


def test_ranking_quality_fails_when_users_stop_liking_what_ranks_first(reference, model):
    rows = _window_rows(model, seed=12)
    as_before = ranking_quality_report(_labelled(rows, rows["true_utility"], 1), reference, WINDOW)
    assert as_before.failures == []
    turned = 6.0 - rows["true_utility"]  # the best items are now the worst
    degraded = ranking_quality_report(_labelled(rows, turned, 1), reference, WINDOW)
    # The counterfactual replay is a cautious reference (monitoring/reference.py): here the
    # hit rate's threshold sits low enough that only MRR and NDCG catch the change.
    assert {"mrr", "ndcg@10"} <= {c.column for c in degraded.failures}
    assert all(c.slice is None for c in degraded.failures)  # slices only warn
    ndcg = next(c for c in degraded.failures if c.column == "ndcg@10")
    assert ndcg.value < ndcg.threshold < reference.sessions["ndcg@10"].mean()


def test_a_window_nobody_was_served_in_fails_without_running_evidently(reference, model):
    rows = _window_rows(model, seed=11).assign(served_by="fallback:no_model")
    drift = feature_drift_report(rows, reference, WINDOW)
    assert _failed(drift) == {("traffic", "requests")}


def test_reports_are_saved_as_html_and_json_and_added_to_the_workspace(tmp_path, reference, model):
    settings = Settings(state_dir=tmp_path / "state")
    store = ReportStore(settings)
    report = feature_drift_report(_window_rows(model, seed=11), reference, WINDOW, store=store)

    html = settings.root / "monitoring" / "reports" / WINDOW.name / "feature_drift.html"
    assert report.paths["html"] == str(html) and "<html" in html.read_text()[:2000].lower()
    saved = json.loads((html.parent / "feature_drift.json").read_text())
    assert saved["checks"] == len(report.checks) and saved["evidently"]["tests"]

    from evidently.ui.workspace import Workspace

    workspace = Workspace(str(settings.root / "evidently"))
    (project,) = workspace.search_project(ReportStore.PROJECT)
    assert len(workspace.list_runs(project.id)) == 1
