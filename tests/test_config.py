import re

import numpy as np
import pytest

from mixem.cli import build_parser, config_from_args
from mixem.config import DATASET_PRESETS, Config
from mixem.errors import MixemError
from mixem.presets import ABLATIONS


def test_defaults_are_the_authors():
    flat = Config().to_flat()
    expected = dict(
        lr=1e-4,
        weight_decay=1e-5,
        batch_size=512,
        epochs=200,
        constant_lr_epochs=10,
        temperature=0.5,
        embed_dim=32,
        num_components=10,
        w_entropy=2.0,
        w_instance=0.1,
        w_pull=0.1,
        w_push=0.05,
        kmeans_n_init=50,
        kmeans_max_iter=10,
        backbone="resnet18",
        head="mixture",
        instance_form="max_prob",  # the code's 1 - max pi, which produced the published numbers
    )
    assert {k: flat[k] for k in expected} == expected


def test_the_mixem_preset_is_the_authors_and_the_papers_form_has_its_own():
    defaults = Config().to_flat()
    assert all(defaults[name] == value for name, value in ABLATIONS["mixem"].items())
    assert ABLATIONS["mixem_entropy"] == {**ABLATIONS["mixem"], "instance_form": "entropy"}


def test_flat_round_trip_and_type_coercion():
    config = Config.from_flat({"num_components": np.int64(20), "lr": 1, "stl10_unlabeled": "true"})
    assert config.model.num_components == 20 and isinstance(config.model.num_components, int)
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)
    assert config.data.stl10_unlabeled is True
    assert Config.from_flat(config.to_flat()) == config


@pytest.mark.parametrize("name, value, message", [
    ("num_components", 10.7, "--num-components must be a whole number, not 10.7"),  # would train K = 10
    ("num_components", 20.0, "--num-components must be a whole number, not 20.0"),
    ("num_components", True, "--num-components must be a whole number, not True"),
    ("w_push", True, "--w-push must be a number, not True"),  # would train 1.0
    ("w_push", "0.1", "--w-push must be a number, not '0.1'"),
    ("stl10_unlabeled", 1, "--stl10-unlabeled must be true or false, not 1"),
    ("head", 3, "--head must be text, not 3"),
])
def test_no_value_is_silently_coerced_into_another(name, value, message):
    with pytest.raises(MixemError, match=re.escape(message)):
        Config.from_flat({name: value})


def test_unknown_field_and_dataset_are_errors():
    with pytest.raises(MixemError, match="Unknown config field 'w_entropi'"):
        Config.from_flat({"w_entropi": 1.0})
    with pytest.raises(MixemError, match="Unknown dataset 'mnist'"):
        Config.for_dataset("mnist")


@pytest.mark.parametrize("name", sorted(DATASET_PRESETS))
def test_every_dataset_preset_is_valid(name):
    assert Config.for_dataset(name).validate().data.dataset == name


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_every_ablation_preset_is_valid(name):
    Config.for_dataset("digits", ABLATIONS[name]).validate()


def test_ablation_presets_add_one_term_at_a_time():
    weights = ("w_entropy", "w_instance", "w_pull", "w_push")
    active = [
        tuple(ABLATIONS[p][w] > 0 for w in weights) for p in ("mixture_only", "entropy", "entropy_instance", "mixem")
    ]
    assert active == [(False,) * 4, (True, False, False, False), (True, True, False, False), (True,) * 4]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"w_pull": -0.1}, "w-pull must be >= 0"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"flip_p": 1.5}, "probability"),
        ({"instance_form": "max"}, "instance-form must be one of"),
        ({"w_push": float("nan")}, "finite"),
    ],
)
def test_invalid_values_name_the_flag(overrides, message):
    with pytest.raises(MixemError, match=message):
        Config.for_dataset("digits", overrides).validate()


def test_cli_layers_dataset_preset_ablation_preset_and_flags():
    args = build_parser().parse_args(["--dataset", "fashion-mnist", "--preset", "simclr", "--epochs", "3"])
    config = config_from_args(args)
    assert config.model.backbone == "small_cnn"  # dataset preset
    assert config.model.head == "simclr" and config.loss.w_entropy == 0  # ablation preset
    assert config.optim.epochs == 3  # explicit flag wins


def test_help_lists_every_field_with_its_default(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    for flag in ("--w-entropy", "--num-components", "--instance-form", "--kmeans-n-init", "--resume", "--data-dir"):
        assert flag in text
    assert "(default: 2.0)" in text
