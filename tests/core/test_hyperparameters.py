"""tnode.hyperparameters: the typed subnet rules, their defaults and their wire form."""

from __future__ import annotations

import dataclasses

import pytest
from tnode.errors import ConfigError, ConfigErrors, UnknownKeyError, WrongTypeError
from tnode.hyperparameters import Hyperparameters


def test_defaults_follow_subtensor() -> None:
    hp = Hyperparameters()
    assert (hp.tempo, hp.kappa, hp.bonds_moving_average, hp.max_allowed_uids) == (360, 0.5, 0.9, 4096)
    assert not hp.commit_reveal_weights_enabled and hp.min_allowed_weights == 1 and hp.max_weight_limit == 1.0


def test_every_field_is_documented_with_a_default() -> None:
    for f in dataclasses.fields(Hyperparameters):
        assert f.metadata.get("doc"), f"{f.name} has no description"
        assert f.default is not dataclasses.MISSING, f"{f.name} has no default"


def test_wire_form_round_trips() -> None:
    hp = Hyperparameters(tempo=7, commit_reveal_weights_enabled=True, burn=0.25, max_weight_limit=0.4)
    wire = hp.to_dict()
    assert wire["tempo"] == 7 and set(wire) == {f.name for f in dataclasses.fields(Hyperparameters)}
    assert Hyperparameters.from_mapping(wire) == hp


def test_missing_keys_take_defaults() -> None:
    assert Hyperparameters.from_mapping({"tempo": 12}) == Hyperparameters(tempo=12)


def test_unknown_key_is_refused_with_its_path_and_a_suggestion() -> None:
    with pytest.raises(ConfigErrors) as err:
        Hyperparameters.from_mapping({"tempo": 12, "weights_rate_limt": 3}, source="chain.hyperparameters")
    (problem,) = err.value.errors
    assert isinstance(problem, UnknownKeyError)
    assert problem.key_path == "chain.hyperparameters.weights_rate_limt"
    assert "weights_rate_limit" in problem.hint


@pytest.mark.parametrize(("doc", "path"), [
    ({"tempo": "ten"}, "hyperparameters.tempo"),
    ({"tempo": 0}, "hyperparameters.tempo"),
    ({"kappa": 1.5}, "hyperparameters.kappa"),
    ({"commit_reveal_weights_enabled": 1}, "hyperparameters.commit_reveal_weights_enabled"),
])
def test_wrong_values_are_refused_naming_the_key(doc: dict, path: str) -> None:
    with pytest.raises(ConfigErrors) as err:
        Hyperparameters.from_mapping(doc)
    assert [e.key_path for e in err.value.errors] == [path]


def test_a_non_mapping_is_refused() -> None:
    with pytest.raises(WrongTypeError) as err:
        Hyperparameters.from_mapping(None)  # type: ignore[arg-type]
    assert err.value.key_path == "hyperparameters"
    assert isinstance(err.value, ConfigError)


def test_is_frozen_and_replace_makes_copies() -> None:
    hp = Hyperparameters()
    with pytest.raises(dataclasses.FrozenInstanceError):
        hp.tempo = 1  # type: ignore[misc]
    assert hp.replace(tempo=5).tempo == 5 and hp.tempo == 360
