"""python -m analysis.best on the real search fixture, and on bad input: one sentence, exit 2."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from refusals import refusal

from analysis import best

FIXTURES = Path(__file__).parent / "fixtures"


def copy(tmp_path: Path, name: str) -> Path:
    """A copy of a fixture folder, to corrupt."""
    folder = tmp_path / name
    shutil.copytree(FIXTURES / name, folder)
    return folder


def error(capsys, root: Path, *args) -> str:
    """``analysis.best`` refusing ``args`` (``refusals.refusal``)."""
    return refusal(best.main, capsys, root, *args)


def test_prints_the_commands_of_the_best_finished_trial(capsys):
    assert best.main([str(FIXTURES / "search")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("best trial ") and "confirm: python tune/ablate.py --dataset digits --presets given" in out


def test_a_trial_of_the_presets_own_config_is_confirmed_without_an_empty_space():
    trial = pd.read_parquet(FIXTURES / "search" / "trials.parquet").iloc[0].copy()
    preset = best.Config.for_dataset("digits").to_flat()
    for name in best.changed_fields(trial):  # every searched field back to the digits preset's value
        if name not in best.NOT_IN_SPACE:
            trial[f"config/{name}"] = preset[name]
    assert best.space_tokens(trial) == []
    confirm = best.commands(trial)["confirm"]
    assert "--space" not in confirm and confirm.endswith(f"--max-epochs {int(trial['config/epochs'])}")


def test_a_metric_that_is_not_a_score_is_refused(tmp_path, capsys):
    search = copy(tmp_path, "search")
    assert "--metric bogus is not a score of an evaluation" in error(capsys, tmp_path, search, "--metric", "bogus")
    settings = json.loads((search / "sweep.json").read_text())
    settings["args"]["metric"] = "bogus"
    (search / "sweep.json").write_text(json.dumps(settings))
    message = error(capsys, tmp_path, search)
    assert f"{search / 'sweep.json'} is corrupt: its --metric 'bogus' is not a score" in message
    assert "pass --metric" in message


@pytest.mark.parametrize("text", ["{", "[]", '{"args": null}'])
def test_an_unreadable_sweep_json_is_refused(tmp_path, capsys, text):
    search = copy(tmp_path, "search")
    (search / "sweep.json").write_text(text)
    assert str(search / "sweep.json") in error(capsys, tmp_path, search)


def test_a_missing_folder_is_named(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert error(capsys, tmp_path, missing) == (f"error: {missing} does not exist; pass the --output folder of a "
                                                "tune/sweep.py or tune/ablate.py run.")


def test_a_column_of_the_wrong_type_is_refused(tmp_path, capsys):
    search = copy(tmp_path, "search")
    trials = pd.read_parquet(search / "trials.parquet")
    trials.assign(**{"final/compinit_z_l2_acc": "0.9"}).to_parquet(search / "trials.parquet")
    assert "column final/compinit_z_l2_acc holds text where numbers belong" in error(capsys, tmp_path, search)


def test_a_trial_twice_in_its_file_is_a_corrupt_file(tmp_path, capsys):
    search = copy(tmp_path, "search")
    trials = pd.read_parquet(search / "trials.parquet")
    pd.concat([trials, trials.iloc[[0]]]).to_parquet(search / "trials.parquet")
    message = error(capsys, tmp_path, search)
    assert f"{search / 'trials.parquet'} is corrupt: trial {trials['trial_id'][0]!r} appears twice in it" in message
    assert "pass each sweep folder once" not in message


def test_an_ablation_folder_is_not_a_search(tmp_path, capsys):
    ablation = copy(tmp_path, "ablation")
    assert error(capsys, tmp_path, ablation) == (f"error: {ablation} holds an ablation (tune/ablate.py), not a search; "
                                                 "pass the --output folder of a tune/sweep.py run.")


def test_an_abbreviated_flag_is_refused(capsys):
    with pytest.raises(SystemExit) as exited:
        best.main([str(FIXTURES / "search"), "--spa"])  # not taken for --space
    assert exited.value.code == 2 and "unrecognized arguments: --spa" in capsys.readouterr().err
