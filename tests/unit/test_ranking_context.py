"""The request-time features: the numpy function serving calls equals the Feast on-demand
view's pandas function (as the registry stores it), value for value, whatever is missing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from feast import OnDemandFeatureView

from features import feature_repo
from features.feature_repo.on_demand import ARRAY_TRANSFORMS, RANKING_CONTEXT
from features.feature_repo.ranking_context import compute_ranking_context

CATEGORIES = ["books", "home", "toys", None]


@pytest.fixture
def view(settings) -> OnDemandFeatureView:
    (odfv,) = [
        d
        for d in feature_repo.definitions(settings)
        if isinstance(d, OnDemandFeatureView) and d.name == RANKING_CONTEXT
    ]
    # Through the registry's serialised form: what training and Feast's online path run.
    return OnDemandFeatureView.from_proto(odfv.to_proto())


def random_inputs(n: int, seed: int) -> pd.DataFrame:
    """Prices known, zero or missing (NaN offline, None online); categories or None."""
    rng = np.random.default_rng(seed)
    prices = rng.lognormal(3, 1, n)
    prices[rng.random(n) < 0.2] = 0.0
    usual = rng.lognormal(3, 1, n)
    usual[rng.random(n) < 0.2] = np.nan
    item_price = pd.Series(prices, dtype=object)
    item_price[rng.random(n) < 0.2] = None  # an unknown item, as Feast's online path sends it
    return pd.DataFrame(
        {
            "category": rng.choice(np.array(CATEGORIES, dtype=object), n),
            "item_price": item_price,
            "user_mean_clicked_price_28d": usual,
            "query_category": rng.choice(np.array(CATEGORIES[:3], dtype=object), n),
        }
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_numpy_function_equals_the_views_pandas_function_exactly(view, seed):
    inputs = random_inputs(500, seed)
    expected = view.feature_transformation.transform(inputs)
    arrays = {
        "category": inputs["category"].to_numpy(dtype=object),
        "item_price": inputs["item_price"].to_numpy(dtype=np.float64, na_value=np.nan),
        "user_mean_clicked_price_28d": inputs["user_mean_clicked_price_28d"].to_numpy(),
        "query_category": inputs["query_category"].to_numpy(dtype=object),
    }
    got = ARRAY_TRANSFORMS[view.name](arrays)
    assert sorted(got) == sorted(expected.columns)
    for name in expected.columns:
        assert got[name].dtype == expected[name].dtype, name
        np.testing.assert_array_equal(got[name], expected[name].to_numpy(), err_msg=name)
    assert 0 < got["query_matches_category"].sum() < len(inputs)  # both outcomes exercised


def test_hand_computed_rows():
    values = compute_ranking_context(
        {
            "category": np.array(["books", "home", None, "books"], dtype=object),
            "item_price": np.array([10.0, 10.0, 10.0, 0.0]),
            "user_mean_clicked_price_28d": np.array([4.0, np.nan, 5.0, 4.0]),
            "query_category": np.full(4, "books", dtype=object),
        }
    )
    np.testing.assert_array_equal(values["query_matches_category"], [1, 0, 0, 1])
    np.testing.assert_array_equal(values["price_vs_user_usual"], [2.5, 1.0, 2.0, 1.0])
