"""Search efficiency (analysis/efficiency.py) on the real search fixture, re-labelled as other methods."""

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from refusals import refusal

from analysis import efficiency
from analysis.runs import load_epochs, load_runs

FIXTURE = Path(__file__).parent / "fixtures" / "search"
METRIC = "compinit_z_l2_acc"


def as_search(tmp_path: Path, name: str, search: str, keep=None) -> Path:
    """A copy of the fixture search (6 trials, TPE + ASHA, 2 epochs) as another method's folder,
    keeping only the trials ``keep`` selects."""
    folder = tmp_path / name
    shutil.copytree(FIXTURE, folder)
    settings = json.loads((folder / "sweep.json").read_text())
    settings["args"]["search"] = search
    if search == "grid":
        settings["args"]["grace_epochs"] = settings["args"]["max_epochs"]
    (folder / "sweep.json").write_text(json.dumps(settings))
    if keep is not None:
        trials = pd.read_parquet(folder / "trials.parquet")
        kept = trials[keep(trials)]
        kept.to_parquet(folder / "trials.parquet")
        epochs = pd.read_parquet(folder / "epochs.parquet")
        epochs[epochs["trial_id"].isin(kept["trial_id"])].to_parquet(folder / "epochs.parquet")
    return folder


def test_compute_to_target_counts_trials_in_the_order_they_ended_up_to_the_first_good_one(tmp_path):
    trials = pd.read_parquet(FIXTURE / "trials.parquet")
    best_id = trials.loc[trials[f"final/{METRIC}"].idxmax(), "trial_id"]
    tpe = as_search(tmp_path, "tpe", "optuna")
    grid = as_search(tmp_path, "grid", "grid", keep=lambda t: t["status"] == "finished")
    short = as_search(tmp_path, "short", "random", keep=lambda t: t["trial_id"] != best_id)
    target = trials[f"final/{METRIC}"].max() - 0.01  # fixed before: here, just below the fixture's best
    table = efficiency.efficiency_table(efficiency.load_searches([tpe, grid, short]), METRIC, target)
    rows = table.set_index("search")
    assert list(rows["method"]) == ["tpe+asha", "grid", "random+asha"]
    until_best = trials["wall_seconds"].iloc[:trials.index[trials["trial_id"] == best_id][0] + 1].sum()
    assert rows.loc["tpe", "trial-seconds"] == pytest.approx(until_best) and rows.loc["tpe", "reached"]
    # The random folder lacks the only trial at the target: all its compute, marked as not reaching it.
    assert not rows.loc["short", "reached"]
    assert rows.loc["short", "trial-seconds"] == pytest.approx(trials.loc[trials["trial_id"] != best_id,
                                                                          "wall_seconds"].sum())
    ratios = efficiency.summary(table)
    assert ratios.loc["grid", "trial-seconds / grid's"] == 1.0
    # One search per method here: a success rate of 1 or 0 with the exact interval of one draw.
    assert ratios.loc["tpe+asha", "success rate [95% interval]"] == "1.00 [0.03, 1.00]"
    assert ratios.loc["random+asha", "success rate [95% interval]"] == "0.00 [0.00, 0.97]"
    assert ratios.loc["tpe+asha", "trial-seconds / grid's"] == pytest.approx(
        until_best / rows.loc["grid", "trial-seconds"])


def test_asha_replay_prunes_at_the_rung_and_may_cut_the_eventual_winner(tmp_path):
    grid = as_search(tmp_path, "grid", "grid", keep=lambda t: t["status"] == "finished")
    trials, epochs = load_runs(grid), load_epochs(grid)
    final = trials.set_index("trial_id")[f"final/{METRIC}"]
    at_first = epochs[epochs["epoch"] == 1].set_index("trial_id")[METRIC]
    n = len(final)  # trials of 2 epochs, all finished
    assert n >= 3
    # Halving keeps the ceil(n / 2) best at epoch 1: n epochs, then that many more, of the full 2n.
    halving = efficiency.replay_asha(trials, epochs, METRIC, grace=1, reduction_factor=2)
    assert halving["epochs / full run"] == pytest.approx((n + math.ceil(n / 2)) / (2 * n))
    assert halving["best kept"] == final[at_first.nlargest(math.ceil(n / 2)).index].max()
    # Keeping 1 of 4 keeps the leader at epoch 1, whatever it does at the end; the regret says what that cost.
    quarter = efficiency.replay_asha(trials, epochs, METRIC, grace=1, reduction_factor=4)
    assert quarter["epochs / full run"] == pytest.approx((n + 1) / (2 * n))
    assert quarter["best kept"] == final[at_first.idxmax()]
    assert quarter["regret"] == pytest.approx(final.max() - final[at_first.idxmax()]) and quarter["regret"] >= 0
    assert len(efficiency.replay_table(trials, epochs, METRIC)) == 3  # grace 1, factors 2, 3 and 4


def test_a_minimised_metric_counts_down_and_a_trial_without_values_ranks_last(tmp_path, capsys):
    grid = as_search(tmp_path, "grid", "grid", keep=lambda t: t["status"] == "finished")
    trials, epochs = load_runs(grid), load_epochs(grid)
    target = trials["final/val_loss"].min() + 0.01
    table = efficiency.efficiency_table(efficiency.load_searches([grid]), "val_loss", target)
    assert table.loc[0, "best found"] == trials["final/val_loss"].min() and table.loc[0, "reached"]
    assert efficiency.main([str(grid), "--metric", "val_loss", "--target", str(target)]) == 0
    assert "target: val_loss <= " in capsys.readouterr().out
    # One trial never measured the metric (a SimCLR-head trial and a compinit score): it is not kept.
    blank = trials["trial_id"].iloc[0]
    epochs.loc[epochs["trial_id"] == blank, METRIC] = float("nan")
    replay = efficiency.replay_asha(trials, epochs, METRIC, grace=1, reduction_factor=4)
    at_first = epochs[epochs["epoch"] == 1].set_index("trial_id")[METRIC].dropna()
    assert blank not in at_first.index
    assert replay["best kept"] == trials.set_index("trial_id").loc[at_first.idxmax(), f"final/{METRIC}"]


def test_the_command_prints_the_table_and_refuses_bad_input(tmp_path, capsys):
    grid = as_search(tmp_path, "grid", "grid", keep=lambda t: t["status"] == "finished")
    assert efficiency.main([str(as_search(tmp_path, "tpe", "optuna")), str(grid), "--target", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "target: compinit_z_l2_acc >= 0.5000 (fixed before the searches ran)" in out
    finished = (pd.read_parquet(grid / "trials.parquet")["status"] == "finished").sum()
    assert f"ASHA replayed on grid ({finished} trials" in out and "success rate" in out
    for target in ("inf", "nan"):
        assert efficiency.main([str(grid), "--target", target]) == 2
        assert f"--target must be a finite number, not {float(target)}" in capsys.readouterr().err
    for target in ("1.5", "-0.1"):  # no ACC reaches these: every search would "fail" for nothing
        assert efficiency.main([str(grid), "--target", target]) == 2
        assert (f"--target {float(target):g} is outside what compinit_z_l2_acc can take (0 to 1), so no search could "
                "reach it") in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a target taken from the results would be circular: there is no default
        efficiency.main([str(grid)])
    assert "--target" in capsys.readouterr().err
    assert efficiency.main([str(tmp_path), "--target", "0.5"]) == 2
    assert "holds no trials.parquet" in capsys.readouterr().err


def error(capsys, root: Path, *args) -> str:
    """``analysis.efficiency`` refusing ``args`` with a valid --target (``refusals.refusal``)."""
    return refusal(efficiency.main, capsys, root, *args, "--target", "0.5")


def test_a_metric_that_is_not_a_score_is_refused(tmp_path, capsys):
    tpe = as_search(tmp_path, "tpe", "optuna")
    assert "--metric bogus is not a score of an evaluation" in error(capsys, tmp_path, tpe, "--metric", "bogus")
    settings = json.loads((tpe / "sweep.json").read_text())
    settings["args"]["metric"] = "bogus"
    (tpe / "sweep.json").write_text(json.dumps(settings))
    assert "sweep.json is corrupt: its --metric 'bogus' is not a score" in error(capsys, tmp_path, tpe)


def test_a_missing_folder_is_named(tmp_path, capsys):
    tpe = as_search(tmp_path, "tpe", "optuna")
    missing = tmp_path / "nope"
    assert error(capsys, tmp_path, tpe, missing) == (f"error: {missing} does not exist; pass the --output folder of "
                                                     "a tune/sweep.py or tune/ablate.py run.")


@pytest.mark.parametrize("column", ["epoch_seconds", "eval_seconds"])
def test_epochs_without_the_training_times_are_refused(tmp_path, capsys, column):
    tpe = as_search(tmp_path, "tpe", "optuna")
    epochs = pd.read_parquet(tpe / "epochs.parquet")
    epochs.drop(columns=column).to_parquet(tpe / "epochs.parquet")
    assert f"epochs.parquet lacks the columns {column}, so" in error(capsys, tmp_path, tpe)
    epochs.assign(**{column: "1s"}).to_parquet(tpe / "epochs.parquet")
    assert f"is corrupt: column {column} holds text where numbers belong" in error(capsys, tmp_path, tpe)


def test_a_trials_column_of_the_wrong_type_is_refused(tmp_path, capsys):
    tpe = as_search(tmp_path, "tpe", "optuna")
    trials = pd.read_parquet(tpe / "trials.parquet")
    trials.assign(status=0).to_parquet(tpe / "trials.parquet")
    assert "is corrupt: column status holds numbers where text belongs" in error(capsys, tmp_path, tpe)


def test_a_folder_given_twice_is_refused(tmp_path, capsys):
    tpe = as_search(tmp_path, "tpe", "optuna")
    grid = as_search(tmp_path, "grid", "grid", keep=lambda t: t["status"] == "finished")
    assert error(capsys, tmp_path, tpe, grid, tpe) == (f"error: {tpe} and {tpe} are the same sweep folder; pass "
                                                       "each sweep folder once.")


def test_an_ablation_folder_is_not_a_search(tmp_path, capsys):
    ablation = tmp_path / "ablation"
    shutil.copytree(FIXTURE.parent / "ablation", ablation)
    tpe = as_search(tmp_path, "tpe", "optuna")
    assert error(capsys, tmp_path, tpe, ablation) == (f"error: {ablation} holds an ablation (tune/ablate.py), not a "
                                                      "search; pass --output folders of tune/sweep.py.")


@pytest.mark.parametrize(("name", "value", "shown"), [("search", None, "null"), ("max_epochs", "two", '"two"'),
                                                      ("grace_epochs", 1.5, "1.5"), ("max_epochs", True, "true")])
def test_a_corrupt_sweep_json_is_named(tmp_path, capsys, name, value, shown):
    tpe = as_search(tmp_path, "tpe", "optuna")
    settings = json.loads((tpe / "sweep.json").read_text())
    settings["args"][name] = value
    (tpe / "sweep.json").write_text(json.dumps(settings))
    assert error(capsys, tmp_path, tpe).startswith(f"error: {tpe / 'sweep.json'} is corrupt: args.{name} is {shown}, "
                                                   "not ")
    del settings["args"][name]
    (tpe / "sweep.json").write_text(json.dumps(settings))
    assert f"is corrupt: args.{name} is null, not " in error(capsys, tmp_path, tpe)


def test_an_abbreviated_flag_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        efficiency.main([str(as_search(tmp_path, "tpe", "optuna")), "--tar", "0.1"])  # not taken for --target
    assert exited.value.code == 2 and "--target" in capsys.readouterr().err
