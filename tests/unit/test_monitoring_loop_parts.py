"""The plain parts of the monitoring loop: the sensor's cursor rule, served-day windows,
and a simulation continued after a swap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.events import LEDGER_META, ledger_span
from models.popularity import PopularityRanker
from monitoring.alerts import Alert
from monitoring.monitor import day_window, days_between
from pipelines.defs.sensors import new_alerts, retrain_request
from ranklab.settings import DataSettings, Settings
from simulation.clients import InProcessRanking
from simulation.generator import generate_marketplace
from simulation.scenarios import SilentDegradation
from simulation.traffic import TrafficPlan, simulate_traffic


def _alert(alert_id: str, retrain: bool = True) -> Alert:
    return Alert(
        alert_id=alert_id,
        report="feature_drift",
        model_version="3",
        window_start="2026-10-01T00:00:00+00:00",
        window_end="2026-10-02T00:00:00+00:00",
        raised_at="2026-10-02T00:00:00+00:00",
        requests_retraining=retrain,
    )


def test_new_alerts_are_those_after_the_cursor():
    alerts = [_alert("a"), _alert("b"), _alert("c")]
    assert [a.alert_id for a in new_alerts(alerts, None)] == ["a", "b", "c"]
    assert [a.alert_id for a in new_alerts(alerts, "b")] == ["c"]
    assert new_alerts(alerts, "c") == []


def test_a_cursor_missing_from_the_log_starts_over():
    # The log was reset: run keys (the alert ids) still stop a second run per alert.
    alerts = [_alert("x"), _alert("y")]
    assert [a.alert_id for a in new_alerts(alerts, "gone")] == ["x", "y"]


def test_a_retrain_request_is_keyed_and_tagged_by_its_newest_alert():
    alerts = [
        _alert("feature_drift-2026-10-01T0000-v3"),
        _alert("ranking_quality-2026-10-02T0000-v3"),
    ]
    request = retrain_request(alerts, "/state/served")
    assert request.run_key == "ranking_quality-2026-10-02T0000-v3"
    assert request.tags["ranklab/first_alert"] == "feature_drift-2026-10-01T0000-v3"
    assert request.tags["ranklab/alerts"] == "2"
    assert request.tags["ranklab/retrains_version"] == "3"
    assert request.run_config == {
        "ops": {"raw_events": {"config": {"served_traffic_dir": "/state/served"}}}
    }


def test_a_served_day_is_one_utc_day():
    window = day_window("2026-10-01")
    assert window.start == pd.Timestamp("2026-10-01", tz="UTC")
    assert window.end - window.start == pd.Timedelta(days=1)


@pytest.mark.parametrize("key", ["yesterday", "2026-10-01T06:00"])
def test_a_partition_key_that_is_not_a_date_is_refused(key):
    with pytest.raises(ValueError, match="monitoring day must be"):
        day_window(key)


# ---- a simulation continued after a swap ----
DATA = DataSettings(scale=0.2, n_days=28)


def _client(tmp_path, run: str) -> InProcessRanking:
    settings = Settings(state_dir=tmp_path / run, data=DATA)
    popularity = PopularityRanker(["item_ctr_28d"]).fit(pd.DataFrame({"item_ctr_28d": [0.05]}))
    return InProcessRanking(popularity, "7", tmp_path / run / "predictions", settings)


def test_a_continued_simulation_follows_on_with_new_days_and_one_ledger(tmp_path):
    tables = generate_marketplace(DATA)
    plan = TrafficPlan(days=2, scenario=SilentDegradation(), seed=3)
    first = simulate_traffic(tables, DATA, plan, _client(tmp_path, "a"))
    later = simulate_traffic(tables, DATA, plan, _client(tmp_path, "b"), after=first)

    assert later.start == first.end and later.end == first.end + pd.Timedelta(days=2)
    assert later.requests["session_id"].min() > first.requests["session_id"].max()
    # Its own draws: the continued days are not a replay of the first ones.
    assert len(later.requests) != len(first.requests) or not np.array_equal(
        later.requests["user_id"], first.requests["user_id"]
    )
    # The scenario changes the training window's catalogue once, not its own output again.
    pd.testing.assert_frame_equal(later.items, first.items)

    both = first.followed_by(later)
    assert (both.start, both.end, both.meta["days"]) == (first.start, later.end, 4)
    assert len(both.requests) == len(first.requests) + len(later.requests)
    extended = both.extend(tables)
    assert len(extended["sessions"]) == len(tables["sessions"]) + len(both.requests)


def test_traffic_that_does_not_continue_is_refused(tmp_path):
    tables = generate_marketplace(DATA)
    plan = TrafficPlan(days=1, seed=3)
    first = simulate_traffic(tables, DATA, plan, _client(tmp_path, "a"))
    with pytest.raises(ValueError, match="does not continue"):
        first.followed_by(first)


def test_days_between_counts_whole_days_only():
    start = pd.Timestamp("2026-10-01", tz="UTC")
    # A ledger that ends mid-day: that day is not a monitoring partition until it is whole.
    assert days_between(start, start + pd.Timedelta(days=2, hours=5)) == [
        "2026-10-01",
        "2026-10-02",
    ]
    assert days_between(start, start + pd.Timedelta(hours=23)) == []


def test_ledger_span_reads_the_meta_file_alone(tmp_path):
    assert ledger_span(tmp_path) is None  # nothing saved yet
    (tmp_path / LEDGER_META).write_text(
        '{"start": "2026-10-01T00:00:00+00:00", "end": "2026-10-03T00:00:00+00:00"}'
    )
    start, end = ledger_span(tmp_path)
    assert (end - start) == pd.Timedelta(days=2) and str(start.tz) == "UTC"
