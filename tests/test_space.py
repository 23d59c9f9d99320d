"""tune/space.py: the search space and --space, without Ray."""

import json

import optuna
import pytest

from mixem.errors import MixemError
from tune.space import Choice, LogUniform, OptunaSpace, grid_size, grid_space, read_space_args, resolve_space


def test_space_arguments_fix_narrow_and_choose():
    fixed, space = resolve_space(
        "digits", read_space_args(["w_push=0", "lr=1e-3:1e-2", "num_components=10,20", "w_pull=0,0.01:0.1",
                                   "weight_decay=1e-6"]), {"dataset": "digits", "epochs": 2}, search=True)
    assert fixed["w_push"] == 0 and fixed["weight_decay"] == 1e-6 and "w_push" not in space
    assert space["lr"] == LogUniform(1e-3, 1e-2, grid=space["lr"].grid, or_zero=False)
    assert space["num_components"] == Choice((10, 20))
    assert space["w_pull"].or_zero and (space["w_pull"].low, space["w_pull"].high) == (0.01, 0.1)
    assert {"w_entropy", "w_instance", "temperature"} <= set(space)  # untouched: searched as tune/space.py says


def test_space_from_a_json_file(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"num_components": [10, 20], "w_push": 0}))
    fixed, space = resolve_space("digits", read_space_args([str(path)]), {"dataset": "digits"}, search=True)
    assert space["num_components"] == Choice((10, 20)) and fixed["w_push"] == 0


@pytest.mark.parametrize("tokens, message", [
    (["bogus=1"], "unknown field 'bogus'"),
    (["w_push=-0.1"], ">= 0"),
    (["w_pull=-1:1"], "0 < LO < HI"),
    (["w_pull=1:inf"], "0 < LO < HI"),
    (["w_pull=a:b"], "LO and HI must be numbers"),
    (["w_pull=0.1,"], "a value is empty"),
    (["num_components=5:50"], "not a real number"),
    (["num_components=0,10"], "--num-components must be > 0"),
    (["batch_size=1"], "--batch-size must be at least 2"),
    (["epochs=3"], "--max-epochs"),
    (["head=transformer"], "--head must be one of"),
    (["lr=nan"], "finite"),
    (["no_such_file.json"], "neither NAME=VALUE nor a JSON file"),
])
def test_bad_space_is_one_sentence(tokens, message):
    with pytest.raises(MixemError, match=message):
        resolve_space("digits", read_space_args(tokens), {"dataset": "digits"}, search=True)


def test_a_run_that_searches_nothing_takes_only_fixed_values():
    with pytest.raises(MixemError, match="searches, but this run searches nothing"):
        resolve_space("digits", read_space_args(["lr=1e-3,1e-2"]), {"dataset": "digits"}, search=False)


def test_bad_json_files(tmp_path):
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(MixemError, match="not valid JSON"):
        read_space_args([str(tmp_path / "broken.json")])
    with pytest.raises(MixemError, match="must hold a JSON object"):
        read_space_args([str(tmp_path / "list.json")])


def test_grid_of_every_parameter():
    space = {"lr": LogUniform(1e-3, 1e-1, grid=(1e-3, 1e-2)), "num_components": Choice((10, 20, 30))}
    assert grid_space(space) == {"lr": {"grid_search": [1e-3, 1e-2]}, "num_components": {"grid_search": [10, 20, 30]}}
    assert grid_size(space) == 6


def test_optuna_space_draws_zero_or_a_log_uniform_value():
    space = {"w_push": LogUniform(0.005, 0.5, grid=(0.0,), or_zero=True), "num_components": Choice((10, 20))}
    define = OptunaSpace(space, {"dataset": "digits", "epochs": 2})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = []
    for _ in range(30):
        trial = study.ask()
        constants = define(trial)
        values = {**trial.params, **constants}
        drawn.append(values["w_push"])
        assert constants["dataset"] == "digits" and values["num_components"] in (10, 20)
        study.tell(trial, 0.0)
    assert 0.0 in drawn and any(0.005 <= w <= 0.5 for w in drawn)
    assert all(w == 0.0 or 0.005 <= w <= 0.5 for w in drawn)


def test_every_search_starts_from_the_authors_configuration():
    """The first trial Optuna runs is the `mixem` preset on the dataset's preset: every term on, at the
    authors' weights, K = the class count; a value outside a range narrowed by --space is left to TPE."""
    from ray.tune.search.optuna import OptunaSearch

    from tune.space import authors_point

    fixed, space = resolve_space("digits", {}, {"dataset": "digits", "epochs": 2}, search=True)
    point = authors_point(space, fixed)
    assert point == {"w_entropy": 2.0, "w_instance_on": True, "w_instance": 0.1, "w_pull_on": True, "w_pull": 0.1,
                     "w_push_on": True, "w_push": 0.05, "num_components": 10, "lr": 1e-3, "temperature": 0.5}
    searcher = OptunaSearch(space=OptunaSpace(space, fixed), metric="acc_max", mode="max",
                            sampler=optuna.samplers.TPESampler(seed=0), points_to_evaluate=[point])
    first = searcher.suggest("t1")
    assert {name: first[name] for name in ("w_instance", "w_pull", "w_push", "num_components", "lr")} == {
        "w_instance": 0.1, "w_pull": 0.1, "w_push": 0.05, "num_components": 10, "lr": 1e-3}
    narrowed_fixed, narrowed = resolve_space("digits", read_space_args(["lr=1e-2:1e-1", "w_push=0"]),
                                             {"dataset": "digits", "epochs": 2}, search=True)
    point = authors_point(narrowed, narrowed_fixed)
    assert "lr" not in point and "w_push" not in point and point["w_pull"] == 0.1
