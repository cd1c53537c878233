"""The popularity fallback over a real item_stats table written to a temporary state."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from features.aggregates import CTR_PRIOR_MEAN
from ranklab.io import write_parquet
from serving.fallback import PopularityFallback, newest_snapshot


def item_stats(ctr_by_day: dict[str, dict[int, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"item_id": item, "event_timestamp": pd.Timestamp(day, tz="UTC"), "item_ctr_28d": ctr}
            for day, ctrs in ctr_by_day.items()
            for item, ctr in ctrs.items()
        ]
    )


@pytest.fixture
def table(tmp_path):
    frame = item_stats({"2026-08-01": {1: 0.9, 2: 0.1}, "2026-08-02": {1: 0.2, 2: 0.3, 3: 0.25}})
    return write_parquet(frame, tmp_path / "item_stats.parquet")


def test_scores_each_item_by_its_newest_snapshot_and_unknown_items_by_the_prior(table):
    fallback = PopularityFallback(table).load()

    np.testing.assert_allclose(fallback.score([1, 2, 3, 99]), [0.2, 0.3, 0.25, CTR_PRIOR_MEAN])
    assert fallback.version == "item_stats@2026-08-02"
    assert fallback.known_items == 3


def test_refresh_reloads_only_when_the_table_changed(table):
    fallback = PopularityFallback(table).load()
    assert fallback.refresh() is False

    write_parquet(item_stats({"2026-08-03": {1: 0.5}}), table)
    os.utime(table, (1, 1))  # a different modification time, whatever the clock resolution
    assert fallback.refresh() is True
    assert fallback.score([1, 2]).tolist() == [0.5, CTR_PRIOR_MEAN]


def test_a_missing_table_fails_at_load(tmp_path):
    with pytest.raises(FileNotFoundError):
        PopularityFallback(tmp_path / "absent.parquet").load()


def test_newest_snapshot_keeps_one_row_per_item():
    snapshot = newest_snapshot(item_stats({"2026-08-02": {1: 0.2}, "2026-08-01": {1: 0.9, 2: 0.1}}))
    assert snapshot.set_index("item_id")["item_ctr_28d"].to_dict() == {1: 0.2, 2: 0.1}
