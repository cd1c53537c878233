"""The item feature cache: what it returns, for how long, and how much it holds."""

from __future__ import annotations

import numpy as np
import pytest

from serving.online_features import ItemFeatureCache, ItemRow


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def row(value: float) -> ItemRow:
    return ItemRow(values=np.array([value]), category="books")


def test_entries_are_served_for_ttl_seconds_then_read_again():
    clock = Clock()
    cache = ItemFeatureCache(ttl_seconds=60, max_items=10, clock=clock)
    cache.put_many({1: row(1.0), 2: None})  # 2: an item the store does not know

    found, to_read = cache.get_many([1, 2, 3])
    assert (list(found), to_read) == ([1, 2], [3])
    assert found[2] is None

    clock.now = 59.9
    assert cache.get_many([1])[1] == []
    clock.now = 60.0
    assert cache.get_many([1, 2])[1] == [1, 2]  # the staleness bound: at most ttl seconds


def test_the_least_recently_written_items_are_dropped_beyond_max_items():
    cache = ItemFeatureCache(ttl_seconds=60, max_items=2, clock=Clock())
    cache.put_many({1: row(1), 2: row(2)})
    cache.put_many({3: row(3)})

    assert len(cache) == 2
    assert cache.get_many([1, 2, 3])[1] == [1]


def test_ttl_zero_turns_the_cache_off():
    cache = ItemFeatureCache(ttl_seconds=0, max_items=10, clock=Clock())
    cache.put_many({1: row(1)})
    assert cache.get_many([1]) == ({}, [1])


@pytest.mark.parametrize(("ttl", "size"), [(-1, 10), (10, 0)])
def test_bad_settings_are_refused(ttl, size):
    with pytest.raises(ValueError, match="ttl_seconds must be >= 0 and max_items > 0"):
        ItemFeatureCache(ttl_seconds=ttl, max_items=size)


def test_stale_ids_are_the_entries_older_than_asked():
    clock = Clock()
    cache = ItemFeatureCache(ttl_seconds=60, max_items=10, clock=clock)
    cache.put_many({1: row(1)})
    clock.now = 20
    cache.put_many({2: row(2)})
    clock.now = 40

    assert cache.stale_ids(older_than_seconds=30) == [1]
    assert cache.stale_ids(older_than_seconds=10) == [1, 2]
