"""Drift scenarios: named, documented changes to the simulated world after the training window.

Each scenario is a change a real marketplace goes through, expressed as a change to one of
the generator's inputs, and names the monitoring report that should catch it:

| name                 | what changes                                        | caught by        |
|----------------------|-----------------------------------------------------|------------------|
| `none`               | nothing (the control: measures false alarms)        | nothing          |
| `seasonal_shift`     | holiday season: toy and sports searches surge, and  | feature drift    |
|                      | users like those categories more                    |                  |
| `price_inflation`    | every list price rises by half                      | feature drift    |
| `traffic_mix`        | a tablet campaign in the central region             | feature drift    |
| `broken_feature`     | the catalogue feed breaks: every item_price arrives | data quality     |
|                      | as 0 ("unknown"), the model sees free items         |                  |
| `silent_degradation` | tastes turn: items users liked they now avoid.      | ranking quality  |
|                      | Nothing a feature sees changes on the first day     |                  |

A scenario is a set of pure transformations, one per input of the simulation; the base
class leaves every input alone, which is the control. The traffic simulator applies a
scenario to the days from its change on, so the days before are the control's exact draws.
Build one by name with ``get_scenario("price_inflation")`` or directly
(``PriceInflation(factor=1.5)``) to try another strength.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
import pandas as pd

from features import aggregates
from ranklab.schema import DEVICE, QUERY_CATEGORY, REGION, USER_ID
from simulation.click_model import DEVICES, QUALITY, ClickModel

Detector = Literal["none", "feature_drift", "data_quality", "ranking_quality"]


@dataclass(frozen=True)
class Scenario:
    """The control: the world after the training window is the world before it.

    Subclasses override the hooks their change touches. Every hook returns a new object and
    leaves its input unchanged (the simulator reuses the inputs for the control's days).
    """

    name: ClassVar[str] = "none"
    caught_by: ClassVar[Detector] = "none"

    def click_model(self, base: ClickModel) -> ClickModel:
        """How users judge items and look at lists."""
        return base

    def items(self, items: pd.DataFrame) -> pd.DataFrame:
        """The catalogue: prices and the ground-truth appeal of items."""
        return items

    def sessions(
        self, sessions: pd.DataFrame, users: pd.DataFrame, rng: np.random.Generator
    ) -> pd.DataFrame:
        """Who searches, from which device and region, for what."""
        return sessions

    def feature_tables(self, tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
        """The feature pipeline's output for the day, before serving reads it."""
        return dict(tables)

    @property
    def summary(self) -> str:
        """The first line of the scenario's docstring."""
        return (type(self).__doc__ or "").strip().splitlines()[0]

    def describe(self) -> dict[str, object]:
        """Name, summary, detector and parameters: what an alert or a report says about it."""
        return {
            "name": self.name,
            "summary": self.summary,
            "caught_by": self.caught_by,
            "parameters": dataclasses.asdict(self),
        }


@dataclass(frozen=True)
class SeasonalShift(Scenario):
    """Holiday season: searches for toys and sports surge, and users like those items more.

    ``share`` of the sessions search one of ``categories`` instead of what they would have,
    and on every device those categories gain ``preference`` utility. The query mix and the
    features that follow it (item and affinity statistics of the candidates) drift at once.
    """

    name: ClassVar[str] = "seasonal_shift"
    caught_by: ClassVar[Detector] = "feature_drift"
    categories: tuple[str, ...] = ("toys", "sports")
    share: float = 0.6
    preference: float = 0.5

    def sessions(
        self, sessions: pd.DataFrame, users: pd.DataFrame, rng: np.random.Generator
    ) -> pd.DataFrame:
        seasonal = rng.random(len(sessions)) < self.share
        changed = sessions.copy()
        changed.loc[seasonal, QUERY_CATEGORY] = rng.choice(self.categories, int(seasonal.sum()))
        return changed

    def click_model(self, base: ClickModel) -> ClickModel:
        affinity = {
            device: {
                **base.device_affinity.get(device, {}),
                **{
                    c: base.device_affinity.get(device, {}).get(c, 0.0) + self.preference
                    for c in self.categories
                },
            }
            for device in DEVICES
        }
        return dataclasses.replace(base, device_affinity=affinity)


@dataclass(frozen=True)
class PriceInflation(Scenario):
    """Prices rise: every list price is multiplied by ``factor``.

    Users judge a price against what they know an item should cost (the click model's fixed
    category medians), so dearer items also lose utility: fewer clicks, not only new numbers.
    """

    name: ClassVar[str] = "price_inflation"
    caught_by: ClassVar[Detector] = "feature_drift"
    factor: float = 1.5

    def items(self, items: pd.DataFrame) -> pd.DataFrame:
        inflated = items.copy()
        inflated["price"] = (inflated["price"] * self.factor).round(2)
        return inflated


@dataclass(frozen=True)
class TrafficMixShift(Scenario):
    """A tablet campaign in one region: the device mix and the region mix of sessions change.

    Each session's device is redrawn from ``device_share``; ``region_share`` of the sessions
    come from users of ``region`` (drawn by activity, as the generator draws users).
    """

    name: ClassVar[str] = "traffic_mix"
    caught_by: ClassVar[Detector] = "feature_drift"
    device_share: Mapping[str, float] = field(
        default_factory=lambda: {"mobile": 0.3, "desktop": 0.2, "tablet": 0.5}
    )
    region: str = "central"
    region_share: float = 0.5

    def sessions(
        self, sessions: pd.DataFrame, users: pd.DataFrame, rng: np.random.Generator
    ) -> pd.DataFrame:
        devices = list(self.device_share)
        p = np.array([self.device_share[d] for d in devices], dtype=float)
        changed = sessions.copy()
        changed[DEVICE] = rng.choice(devices, size=len(sessions), p=p / p.sum())

        locals_ = users[users[REGION] == self.region]
        if locals_.empty:
            raise ValueError(f"traffic_mix: no user lives in region {self.region!r}")
        moved = rng.random(len(sessions)) < self.region_share
        activity = locals_["latent_activity"].to_numpy()
        drawn = rng.choice(len(locals_), size=int(moved.sum()), p=activity / activity.sum())
        changed.loc[moved, USER_ID] = locals_[USER_ID].to_numpy()[drawn]
        changed.loc[moved, REGION] = self.region
        return changed


@dataclass(frozen=True)
class BrokenFeature(Scenario):
    """An upstream feed breaks: one stored feature turns constant from the day of the change.

    The feature pipeline writes ``value`` for ``column`` of ``table``, as a parser that
    fails to read a field and writes its default would: for ``item_price`` that is 0, the
    documented "unknown", and the model sees every item as free. (A null instead of a value
    reaches the same checks by another road: the service refuses a row with a feature
    missing and answers from its fallback, which the fallback-share check counts.)
    """

    name: ClassVar[str] = "broken_feature"
    caught_by: ClassVar[Detector] = "data_quality"
    table: str = aggregates.ITEM_ATTRIBUTES
    column: str = "item_price"
    value: float = 0.0

    def feature_tables(self, tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
        if self.table not in tables or self.column not in tables[self.table].columns:
            raise ValueError(
                f"broken_feature: no column {self.column!r} in feature table {self.table!r}"
            )
        broken = dict(tables)
        broken[self.table] = tables[self.table].assign(**{self.column: self.value})
        return broken


@dataclass(frozen=True)
class SilentDegradation(Scenario):
    """Tastes turn: the items users liked they now avoid, and the reverse.

    Each item's ground-truth appeal (``latent_quality``) becomes ``-strength`` times itself.
    Prices, categories, traffic: nothing a feature reads changes on the day of the change;
    the click-through features only catch up as new clicks fill their trailing windows. The
    model keeps putting yesterday's favourites first, and only the labels show it.
    """

    name: ClassVar[str] = "silent_degradation"
    caught_by: ClassVar[Detector] = "ranking_quality"
    strength: float = 1.0

    def items(self, items: pd.DataFrame) -> pd.DataFrame:
        return items.assign(**{QUALITY: -self.strength * items[QUALITY]})


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    Scenario.name: Scenario,
    SeasonalShift.name: SeasonalShift,
    PriceInflation.name: PriceInflation,
    TrafficMixShift.name: TrafficMixShift,
    BrokenFeature.name: BrokenFeature,
    SilentDegradation.name: SilentDegradation,
}
CONTROL = Scenario()


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``, with its documented default strength."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; expected one of {sorted(SCENARIOS)}")
    return SCENARIOS[name]()
