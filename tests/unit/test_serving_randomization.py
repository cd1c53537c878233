"""The randomisation intervention: which requests, what it shuffles, what it leaves alone."""

from __future__ import annotations

import numpy as np
import pytest

from serving.randomization import Randomization

ORDER = np.arange(100, 130)  # a 30-item answer, best first


def test_off_by_default_it_changes_nothing():
    shown, k = Randomization(share=0.0, top_k=10).apply("any", ORDER)
    assert k == 0 and np.array_equal(shown, ORDER)


def test_a_randomised_request_shuffles_exactly_its_top_k():
    shown, k = Randomization(share=1.0, top_k=10).apply("r1", ORDER)
    assert k == 10
    assert sorted(shown[:10]) == sorted(ORDER[:10]) and not np.array_equal(shown[:10], ORDER[:10])
    assert np.array_equal(shown[10:], ORDER[10:])


def test_the_decision_and_the_shuffle_follow_the_request_id():
    intervention = Randomization(share=0.2, top_k=10)
    ids = [f"request-{i}" for i in range(5_000)]
    chosen = [intervention.apply(r, ORDER)[1] > 0 for r in ids]
    assert 0.18 < np.mean(chosen) < 0.22  # the share, within sampling error
    again = [intervention.apply(r, ORDER) for r in ids[:50]]
    first = [intervention.apply(r, ORDER) for r in ids[:50]]
    assert all(
        np.array_equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(again, first, strict=True)
    )


def test_every_item_of_the_top_k_is_equally_likely_at_every_position():
    intervention = Randomization(share=1.0, top_k=5)
    counts = np.zeros((5, 5))
    for i in range(5_000):
        shown, _ = intervention.apply(f"u{i}", ORDER)
        for position, item in enumerate(shown[:5]):
            counts[item - ORDER[0], position] += 1
    np.testing.assert_allclose(counts / 5_000, 0.2, atol=0.03)


def test_short_answers_shuffle_what_there_is_and_bad_settings_are_refused():
    shown, k = Randomization(share=1.0, top_k=10).apply("r", ORDER[:3])
    assert k == 3 and sorted(shown) == sorted(ORDER[:3])
    with pytest.raises(ValueError, match="randomized_share must lie in"):
        Randomization(share=1.5, top_k=10)
    with pytest.raises(ValueError, match="randomized_top_k must be at least 2"):
        Randomization(share=0.1, top_k=1)
