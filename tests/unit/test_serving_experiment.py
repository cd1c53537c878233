"""The A/B experiment: its configuration, the assignment hash, and the router that serves arms.

The router's arm models are held by real ``ChampionHolder``s over a stand-in loader (the
registry's part), as in ``test_serving_champion.py``; ``tests/integration/test_serving_experiment_server.py``
does the same against a real registry and server.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from serving.arms import ExperimentRouter
from serving.champion import SOURCE_REGISTRY, ChampionHolder, LoadedModel
from serving.experiment import (
    Arm,
    ExperimentConfig,
    ExperimentConfigError,
    ModelRef,
    arms_from_specs,
    assign_arm,
    bucket,
    experiment_path,
    load_experiment,
    save_experiment,
)

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def config(*weights: float, name: str = "ranker-ab", **kwargs: object) -> ExperimentConfig:
    weights = weights or (1.0, 1.0)
    models = ["alias:champion", "alias:challenger", "version:3", "version:4"]
    arms = [Arm(name=f"arm{i}", model=models[i], weight=weight) for i, weight in enumerate(weights)]
    return ExperimentConfig(name=name, arms=arms, **kwargs)


# ---- the hash ----
def test_bucket_is_sha256_of_experiment_and_user_in_the_unit_interval():
    digest = hashlib.sha256(b"ranker-ab:42").digest()
    expected = (int.from_bytes(digest[:8], "big") >> 11) / 2**53
    assert bucket(42, "ranker-ab") == expected
    values = [bucket(user, "ranker-ab") for user in range(20_000)]
    assert min(values) >= 0.0 and max(values) < 1.0


def test_bucket_is_the_same_in_other_processes_whatever_their_hash_seed():
    users = list(range(0, 5000, 97))
    here = [bucket(user, "ranker-ab") for user in users]
    code = (
        "import json, sys; from serving.experiment import bucket; "
        f"print(json.dumps([bucket(u, 'ranker-ab') for u in {users}]))"
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert json.loads(out) == here


def test_the_experiment_name_reshuffles_users():
    first = [assign_arm(user, config(name="a")) for user in range(2000)]
    second = [assign_arm(user, config(name="b")) for user in range(2000)]
    agree = sum(x == y for x, y in zip(first, second, strict=True)) / len(first)
    assert 0.45 < agree < 0.55  # independent halves agree half the time


# ---- assignment ----
@pytest.mark.parametrize("weights", [(1, 1), (90, 10), (0.5, 0.3, 0.2), (1, 1, 1, 1)])
def test_split_proportions_are_within_sampling_error_over_100k_users(weights):
    experiment = config(*weights)
    n = 100_000
    counts = Counter(assign_arm(user, experiment) for user in range(n))
    total = sum(weights)
    for i, weight in enumerate(weights):
        p = weight / total
        tolerance = 4.5 * math.sqrt(p * (1 - p) / n)  # ~1 in 150,000 to fail by chance
        assert abs(counts[f"arm{i}"] / n - p) < tolerance, (counts, p)


def test_a_user_stays_in_one_arm_across_calls_and_equal_configs():
    users = range(0, 300_000, 1013)
    first = {user: assign_arm(user, config(90, 10)) for user in users}
    for _ in range(3):
        again = config(90, 10)  # a freshly built, equal config (a re-read file)
        assert {user: assign_arm(user, again) for user in users} == first
    assert set(first.values()) == {"arm0", "arm1"}


# ---- validation: each bad config names its field ----
@pytest.mark.parametrize(
    ("arms", "field", "message"),
    [
        ([("a", "alias:champion", 0), ("b", "alias:challenger", 1)], "arms.0.weight", "greater"),
        ([("a", "alias:champion", 1), ("b", "alias:x", -2)], "arms.1.weight", "greater"),
        ([("a", "alias:champion", 1), ("a", "alias:challenger", 1)], "arms", "repeated: ['a']"),
        ([("a", "alias:champion", 1)], "arms", "at least 2 arms, got 1"),
        ([("a", "alias:champion", 1), ("b", "latest", 1)], "arms.1.model", "'alias:<name>'"),
        ([("a", "alias:champion", 1), ("b", "version:0", 1)], "arms.1.model", "positive integer"),
        ([("a", "alias:champion", 1), ("b", "version:x", 1)], "arms.1.model", "positive integer"),
        ([("a", "alias:champion", 1), ("b", "alias:new model", 1)], "arms.1.model", "an alias is"),
        ([("a", "alias:champion", 1), ("b c", "alias:x", 1)], "arms.1.name", "pattern"),
    ],
)
def test_bad_arms_are_rejected_naming_the_field(arms, field, message):
    raw = {"name": "e", "arms": [{"name": n, "model": m, "weight": w} for n, m, w in arms]}
    with pytest.raises(ValidationError) as raised:
        ExperimentConfig.model_validate(raw)
    errors = {".".join(map(str, e["loc"])): e["msg"] for e in raised.value.errors()}
    assert field in errors, errors
    assert message in errors[field]


def test_end_not_after_start_is_rejected():
    with pytest.raises(ValidationError, match=r"end \(2026-11-28T12:00:00\+00:00\) must be after"):
        config(start=T0, end=T0)


def test_unknown_fields_and_empty_names_are_rejected():
    raw = config().model_dump(mode="json")
    with pytest.raises(ValidationError, match="traffic"):
        ExperimentConfig.model_validate({**raw, "traffic": 0.5})
    with pytest.raises(ValidationError, match="name"):
        ExperimentConfig.model_validate({**raw, "name": ""})


def test_model_refs_are_canonical_and_naive_times_are_utc():
    experiment = ExperimentConfig(
        name="e",
        arms=[
            Arm(name="control", model="alias:champion", weight=1),
            Arm(name="treatment", model="version:007", weight=1),
        ],
        start=datetime(2026, 11, 28, 12, 0),
        end=datetime(2026, 11, 28, 14, 0, tzinfo=UTC) + timedelta(hours=1) - timedelta(hours=1),
    )
    assert experiment.arms[1].model == "version:7"
    assert experiment.arms[1].model_ref == ModelRef(kind="version", value="7")
    assert experiment.arms[0].model_ref.is_champion
    assert experiment.start == T0


def test_running_only_when_enabled_and_inside_the_window():
    windowed = config(start=T0, end=T0 + timedelta(hours=1))
    assert not windowed.is_running(T0 - timedelta(seconds=1))
    assert windowed.is_running(T0)
    assert not windowed.is_running(T0 + timedelta(hours=1))  # end is exclusive
    assert not config(enabled=False).is_running(T0)


def test_arms_from_cli_specs():
    arms = arms_from_specs(["control=alias:champion", "treatment = version:2"], [9, 1])
    assert [(a.name, a.model, a.weight) for a in arms] == [
        ("control", "alias:champion", 9.0),
        ("treatment", "version:2", 1.0),
    ]
    with pytest.raises(ExperimentConfigError, match="expected NAME=MODEL"):
        arms_from_specs(["control:alias:champion"])
    with pytest.raises(ExperimentConfigError, match="2 given for 3 arms"):
        arms_from_specs(["a=alias:x", "b=alias:y", "c=alias:z"], [1, 1])
    with pytest.raises(ExperimentConfigError, match="arm 'b=alias:y': weight"):
        arms_from_specs(["a=alias:x", "b=alias:y"], [1, 0])


# ---- the file ----
def test_save_then_load_round_trips_and_a_missing_file_is_no_experiment(tmp_path):
    path = experiment_path(tmp_path)
    assert load_experiment(path) is None
    original = config(70, 30, start=T0)
    save_experiment(original, path)
    assert load_experiment(path) == original
    assert [p.name for p in path.parent.iterdir()] == ["experiment.json"]  # no temp left


def test_an_invalid_file_is_an_error_naming_the_file_and_field(tmp_path):
    path = experiment_path(tmp_path)
    raw = config().model_dump(mode="json")
    raw["arms"][1]["weight"] = 0
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(raw))
    with pytest.raises(ExperimentConfigError, match=r"experiment.json.*arms\.1\.weight"):
        load_experiment(path)
    path.write_text("{not json")
    with pytest.raises(ExperimentConfigError, match="invalid experiment file"):
        load_experiment(path)


# ---- the router ----
def model(version: str) -> LoadedModel:
    return LoadedModel("ranker", version, SOURCE_REGISTRY, pyfunc=None, feature_columns=("x",))  # type: ignore[arg-type]


@dataclass
class Registry:
    """Stands in for MLflow: where aliases point, versions that fail to load."""

    aliases: dict[str, str] = field(default_factory=lambda: {"champion": "1"})
    broken: set[str] = field(default_factory=set)
    loads: list[str] = field(default_factory=list)

    def loader(self, ref: ModelRef) -> Loader:
        return Loader(self, ref)


@dataclass
class Loader:
    registry: Registry
    ref: ModelRef

    def champion_version(self) -> str | None:
        if self.ref.kind == "version":
            return self.ref.value
        return self.registry.aliases.get(self.ref.value)

    def load_version(self, version: str) -> LoadedModel:
        self.registry.loads.append(version)
        if version in self.registry.broken:
            raise ValueError(f"v{version} needs features the service does not serve")
        return model(version)

    def load_cached(self) -> LoadedModel | None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def world(tmp_path):
    registry = Registry(aliases={"champion": "1", "challenger": "2"})
    champion = ChampionHolder(registry.loader(ModelRef.parse("alias:champion")))  # type: ignore[arg-type]
    champion.load_initial()
    clock = Clock()
    router = ExperimentRouter(
        experiment_path(tmp_path),
        champion,
        lambda ref: ChampionHolder(registry.loader(ref)),  # type: ignore[arg-type]
        clock=clock,
    )
    return registry, champion, router, clock


def ab(**kwargs: object) -> ExperimentConfig:
    return ExperimentConfig(
        name="ab",
        arms=[
            Arm(name="control", model="alias:champion", weight=1),
            Arm(name="treatment", model="alias:challenger", weight=1),
        ],
        **kwargs,
    )


def served(router: ExperimentRouter, users: range) -> dict[int, tuple]:
    routes = {user: router.route(user) for user in users}
    return {
        user: (r.experiment, r.arm, None if r.holder.current is None else r.holder.current.version)
        for user, r in routes.items()
    }


def test_without_a_file_everyone_gets_the_champion_and_no_arm(world):
    _, champion, router, _ = world
    router.refresh()
    exposure = router.route(7)
    assert (exposure.experiment, exposure.arm, exposure.holder) == (None, None, champion)
    assert router.describe()["state"] == "none"


def test_each_arm_is_served_by_its_model_and_the_champion_arm_reuses_the_holder(world):
    registry, champion, router, _ = world
    save_experiment(ab(), router.path)
    router.refresh()

    seen = served(router, range(400))
    for experiment, arm, version in seen.values():
        assert experiment == "ab"
        assert version == {"control": "1", "treatment": "2"}[arm]
    assert 150 < sum(arm == "control" for _, arm, _ in seen.values()) < 250
    assert all(router.route(u).holder is champion for u in seen if seen[u][1] == "control")
    assert registry.loads == ["1", "2"]  # the champion was not loaded a second time
    router.refresh()
    assert served(router, range(400)) == seen  # same arm, same model, on every re-read
    assert router.describe()["state"] == "running"


def test_an_alias_arm_follows_its_alias_when_it_moves(world):
    registry, _, router, _ = world
    save_experiment(ab(), router.path)
    router.refresh()
    registry.aliases["challenger"] = "5"
    router.refresh()
    treated = [u for u in range(100) if router.route(u).arm == "treatment"]
    assert {router.route(u).holder.current.version for u in treated} == {"5"}


def test_stopping_returns_everyone_to_the_champion_and_lets_the_arm_model_go(world):
    _, champion, router, _ = world
    save_experiment(ab(), router.path)
    router.refresh()
    save_experiment(ab(enabled=False), router.path)
    router.refresh()
    assert {router.route(u).holder for u in range(200)} == {champion}
    assert {router.route(u).arm for u in range(200)} == {None}
    assert router.describe()["state"] == "disabled" and router._holders == {}


def test_outside_the_window_everyone_gets_the_champion(world):
    _, champion, router, clock = world
    save_experiment(ab(start=T0 + timedelta(minutes=1), end=T0 + timedelta(minutes=2)), router.path)
    router.refresh()
    assert router.route(3).arm is None and router.describe()["state"] == "scheduled"
    clock.now = T0 + timedelta(minutes=1)  # no refresh needed: the window is checked per request
    assert router.route(3).arm in {"control", "treatment"}
    clock.now = T0 + timedelta(minutes=2)
    assert router.route(3).holder is champion and router.describe()["state"] == "ended"


def test_an_arm_whose_model_cannot_load_pauses_the_experiment_and_says_why(world):
    registry, champion, router, _ = world
    registry.broken.add("2")
    save_experiment(ab(), router.path)
    router.refresh()
    assert {router.route(u).arm for u in range(100)} == {None}
    detail = router.describe()
    assert detail["state"] == "paused"
    assert "arm 'treatment' (alias:challenger) has no model: v2: ValueError" in detail["note"]

    registry.aliases["challenger"] = "3"  # a loadable version: the experiment resumes
    router.refresh()
    assert {router.route(u).arm for u in range(100)} == {"control", "treatment"}


def test_an_unset_alias_pauses_the_experiment(world):
    registry, _, router, _ = world
    del registry.aliases["challenger"]
    save_experiment(ab(), router.path)
    router.refresh()
    assert "alias:challenger points at no version" in router.describe()["note"]


def test_an_invalid_file_stops_the_experiment_and_names_the_problem(world):
    _, champion, router, _ = world
    save_experiment(ab(), router.path)
    router.refresh()
    raw = json.loads(router.path.read_text())
    raw["arms"][0]["weight"] = -1
    router.path.write_text(json.dumps(raw))
    router.refresh()
    assert router.route(1).holder is champion
    detail = router.describe()
    assert detail["state"] == "invalid" and "arms.0.weight" in detail["note"]
