"""analysis.selection on hand-made searches whose answer is known: how well a label-free score picks trials."""

import math
from pathlib import Path

import pandas as pd
import pytest
from test_analysis_tables import asha_search, frame, trial

from analysis import selection

ACC = [0.5, 0.6, 0.7, 0.8]


def search(**scores: list[float]) -> pd.DataFrame:
    """Four finished trials with the fixed variant's ACC ``ACC`` and the given final label-free scores."""
    return frame(*(trial("", metrics={"compinit_z_l2_acc": acc, **{key: values[index] for key, values in
                                                                  scores.items()}})
                   for index, acc in enumerate(ACC)))


def test_a_criterion_is_oriented_by_its_direction():
    # val_loss falls as ACC rises: a good criterion (+1, picks the best); val_contrastive rises with ACC:
    # better lower, so it ranks the trials backwards (-1) and picks the worst.
    trials = search(val_loss=[4.0, 3.0, 2.0, 1.0], val_contrastive=[1.0, 2.0, 3.0, 4.0])
    table = selection.selection_table(trials, "final").set_index("criterion")
    good, bad = table.loc["val_loss"], table.loc["val_contrastive"]
    assert (good["better"], good["Spearman"], good["Kendall"], good["regret"]) == ("lower", 1.0, 1.0, 0.0)
    assert good["picks"] == trials["trial_id"].iloc[3] and good["its ACC"] == 0.8
    assert (bad["Spearman"], bad["Kendall"]) == (-1.0, -1.0)
    assert bad["picks"] == trials["trial_id"].iloc[0]
    assert bad["regret"] == pytest.approx(0.3)  # 0.8, the best trial's ACC, minus 0.5


def test_higher_is_better_for_silhouettes_and_the_marginal_entropy():
    trials = search(kmeans_z_l2_silhouette=[0.1, 0.2, 0.4, 0.3], val_marginal_entropy=[2.0, 2.1, 2.2, 2.3])
    table = selection.selection_table(trials, "final").set_index("criterion")
    assert table.loc["val_marginal_entropy", "Spearman"] == pytest.approx(1.0)
    silhouette = table.loc["kmeans_z_l2_silhouette"]
    assert silhouette["better"] == "higher"
    assert silhouette["Spearman"] == pytest.approx(0.8)  # ranks (1, 2, 4, 3): sum d^2 = 2, 1 - 12 / 60
    assert silhouette["Kendall"] == pytest.approx(4 / 6)  # 5 of 6 pairs agree
    assert silhouette["regret"] == pytest.approx(0.1)  # picks the 0.7 trial


def test_rows_are_label_free_scores_with_values_sorted_by_regret_then_spearman():
    trials = search(val_loss=[4.0, 3.0, 2.0, 1.0], val_pull=[1.0, 2.0, 3.0, 4.0],
                    val_push=[4.0, 3.5, 1.0, 2.0], compinit_z_l2_nmi=[0.9, 0.8, 0.7, 0.6])
    table = selection.selection_table(trials, "final")
    assert list(table["criterion"]) == ["val_loss", "val_push", "val_pull"]  # NMI uses labels; the rest never ran
    assert list(table["regret"]) == pytest.approx([0.0, 0.1, 0.3])
    assert selection.criteria(trials, "final") == ["val_loss", "val_pull", "val_push"]


def test_a_criterion_missing_for_some_trials_picks_among_the_others():
    trials = search(val_loss=[4.0, 3.0, 2.0, math.nan])  # the best trial has no validation loss
    row = selection.selection_table(trials, "final").set_index("criterion").loc["val_loss"]
    assert row["trials"] == 3 and row["Spearman"] == pytest.approx(1.0)
    assert row["regret"] == pytest.approx(0.1)  # it picks the 0.7 trial; the best, 0.8, still counts


def test_a_criterion_the_same_for_every_trial_is_left_out():
    # A SimCLR head records its mixture terms as 0 in every trial: such a score ranks nothing, and its "pick"
    # (the first trial) would show a regret that no criterion earned.
    trials = search(val_loss=[4.0, 3.0, 2.0, 1.0], val_pull=[0.0, 0.0, 0.0, 0.0], val_push=[0.3, 0.3, 0.3, math.nan])
    assert list(selection.selection_table(trials, "final")["criterion"]) == ["val_loss"]


def test_simclr_trials_are_judged_by_kmeans_z_l2():
    trials = frame(*(trial("", head="simclr", metrics={"kmeans_z_l2_acc": acc, "compinit_z_l2_acc": 1 - acc,
                                                      "val_loss": -acc}) for acc in ACC))
    assert selection.selection_table(trials, "final").set_index("criterion").loc["val_loss", "Spearman"] == 1.0
    assert selection.best_by_acc(trials, "final") == (trials["trial_id"].iloc[3], 0.8)


def test_label_free_selection_reads_finished_trials_and_every_trial_at_the_common_point():
    trials, epochs = asha_search([0.3, 0.4, 0.5, 0.6, 0.7], {2: 0.8, 3: 0.6, 4: 0.9})
    table = selection.label_free_selection(trials, epochs, "compinit_z_l2_acc")
    assert list(table.columns[:3]) == ["sweep", "dataset", "point"]
    rows = table.set_index(["point", "criterion"])
    final, common = rows.loc[("final", "val_loss")], rows.loc[("epoch 1 (common point)", "val_loss")]
    assert final["trials"] == 3 and common["trials"] == 5  # the two early-stopped trials count at epoch 1
    assert final["picks"] == trials["trial_id"].iloc[4] and final["regret"] == 0.0
    assert common["Spearman"] == pytest.approx(1.0) and common["regret"] == 0.0


def test_the_command_summarises_every_criterion_over_the_searches_given(tmp_path, capsys):
    import shutil
    from pathlib import Path

    fixtures = Path(__file__).parent / "fixtures"
    for name in ("first", "second"):
        shutil.copytree(fixtures / "search", tmp_path / name)
    assert selection.main([str(tmp_path / "first"), str(tmp_path / "second")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Over 2 searches")
    single = selection.label_free_selection(*_runs(fixtures / "search"), "compinit_z_l2_acc")
    summary = selection.across_searches(pd.concat([single.assign(sweep="a"), single.assign(sweep="b")]))
    final = summary[summary["kind"] == "final"].set_index("criterion")
    expected = single[single["point"] == "final"].set_index("criterion")
    assert (final["searches"] == 2).all()
    pd.testing.assert_series_equal(final["median regret"], expected.loc[final.index, "regret"], check_names=False)
    assert list(final["median regret"]) == sorted(final["median regret"])
    # An ablation has no search, and a folder without a sweep is refused, each in one sentence.
    assert selection.main([str(fixtures / "ablation")]) == 2
    assert "holds a search with a label-free score" in capsys.readouterr().err
    assert selection.main([str(tmp_path)]) == 2
    assert "holds no trials.parquet" in capsys.readouterr().err


def _runs(folder):
    from analysis.runs import load_epochs, load_runs
    return load_runs(folder), load_epochs(folder)


def test_an_abbreviated_flag_is_refused(capsys):
    with pytest.raises(SystemExit) as exited:
        selection.main([str(Path(__file__).parent / "fixtures" / "search"), "--he"])  # not taken for --help
    assert exited.value.code == 2 and "unrecognized arguments: --he" in capsys.readouterr().err
