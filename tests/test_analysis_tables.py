"""Each table of analysis.tables on hand-made trials whose right answer is worked out by hand."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from analysis import ablation_tables, plots, rungs, search_tables, tables
from analysis import baselines as baselines_module
from analysis.runs import EPOCH_COLUMNS, TRIAL_COLUMNS
from mixem.config import Config
from mixem.presets import ABLATIONS, LOSS_ABLATION
from mixem.scores import SCORE_KEYS

_ids = itertools.count()


def trial(preset: str, seed: int = 0, dataset: str = "digits", status: str = "finished", stage: str = "final",
          metrics: dict | None = None, seconds: float = 3600.0, epochs: int = 2, **config) -> dict:
    """One trials.parquet row (load_runs' columns): the preset's config, NaN for every score but ``metrics``."""
    flat = {**Config.for_dataset(dataset).to_flat(), **ABLATIONS.get(preset, {}), "seed": seed, **config}
    row = {"sweep": "s", "trial_id": f"t{next(_ids)}", "preset": preset, "dataset": dataset, "status": status,
           "error": "", **{f"config/{name}": value for name, value in flat.items()}}
    row.update({f"{which}/{key}": math.nan for which in tables.STAGES for key in SCORE_KEYS})
    row.update({f"{stage}/{key}": value for key, value in (metrics or {}).items()})
    row.update(epochs=epochs, wall_seconds=seconds, gpu_seconds=seconds, cpu_seconds=2 * seconds)
    return row


def baselines_frame(dataset: str = "digits", **accuracies: list[float]) -> pd.DataFrame:
    """baselines.parquet rows: ``accuracies`` maps a baseline's name to its ACC for seeds 0, 1, ..."""
    return pd.DataFrame([{"dataset": dataset, "eval_split": "test", "baseline": name, "seed": seed, "n_init": 50,
                          "max_iter": 10, "acc": acc, "nmi": acc - 0.1, "ari": acc - 0.2}
                         for name, values in accuracies.items() for seed, acc in enumerate(values)],
                        columns=baselines_module.COLUMNS)


NO_BASELINES = baselines_frame()


def frame(*rows: dict) -> pd.DataFrame:
    trials = pd.DataFrame(list(rows))
    assert set(TRIAL_COLUMNS) <= set(trials.columns)
    return trials


def epoch_rows(row: dict, scores: dict[int, dict]) -> list[dict]:
    """The epochs.parquet rows of trial ``row``: ``scores`` maps each evaluated epoch to its scores."""
    rows = []
    for epoch in range(1, max(scores) + 1):
        values = {key: math.nan for key in SCORE_KEYS} | scores.get(epoch, {})
        rows.append({"sweep": row["sweep"], "trial_id": row["trial_id"], "preset": row["preset"], "epoch": epoch,
                     "loss_total": 1.0, "loss_contrastive": 2.0, "epoch_seconds": 10.0, "eval_seconds": 1.0,
                     **values})
    return rows


def epochs_frame(*rows: list[dict]) -> pd.DataFrame:
    epochs = pd.DataFrame([row for trial_rows in rows for row in trial_rows])
    assert set(EPOCH_COLUMNS) <= set(epochs.columns)
    return epochs


def test_cell_is_mean_std_and_count_over_seeds():
    assert tables.cell([0.6, 0.7, 0.8]) == "0.700 ± 0.100 (n=3)"  # sample std: sqrt(0.02 / 2)
    assert tables.cell([0.5, math.nan, 0.7]) == "0.600 ± 0.141 (n=2)"  # NaN (never evaluated) is not a seed
    assert tables.cell([0.812]) == "0.812 (n=1)"
    assert tables.cell([]) == tables.cell([math.nan]) == "—"


def test_loss_table_reports_the_fixed_variant_never_the_best_by_acc():
    # SimCLR's k-means on h is better than its z, MIX'EM's k-means++ better than its component init:
    # neither is reported, the fixed clustering is.
    rows = [trial("simclr", seed, metrics={"kmeans_z_l2_acc": acc, "kmeans_z_l2_nmi": 0.5, "kmeans_z_l2_ari": 0.4,
                                           "kmeans_h_l2_acc": acc + 0.2})
            for seed, acc in enumerate([0.6, 0.7, 0.8])]
    rows.append(trial("mixem", 0, metrics={"compinit_z_l2_acc": 0.512, "kmeans_z_l2_acc": 0.9, "acc_max": 0.95}))
    rows.append(trial("mixem", 1, status="errored", metrics={"compinit_z_l2_acc": 0.1}))  # not a seed of the row
    table = ablation_tables.loss_table(frame(*rows), "final")
    assert list(table["preset"]) == LOSS_ABLATION
    simclr, mixem = table.set_index("preset").loc["simclr"], table.set_index("preset").loc["mixem"]
    assert simclr["clustering"].startswith("kmeans_z_l2")
    assert (simclr["ACC"], simclr["NMI"], simclr["ARI"]) == ("0.700 ± 0.100 (n=3)", "0.500 ± 0.000 (n=3)",
                                                           "0.400 ± 0.000 (n=3)")
    assert mixem["clustering"] == "compinit_z_l2 (fixed)"
    assert (mixem["ACC"], mixem["NMI"]) == ("0.512 (n=1)", "—")
    entropy = table.set_index("preset").loc["entropy"]
    assert (entropy["clustering"], entropy["ACC"]) == ("compinit_z_l2 (fixed)", tables.NO_RUN)
    assert set(ablation_tables.LOSS_ROWS) == set(LOSS_ABLATION)
    assert not hasattr(tables, "best_variant")


def test_loss_table_leaves_out_datasets_without_ablation_runs():
    trials = frame(trial("mixem", dataset="digits", metrics={"compinit_z_l2_acc": 0.5}),
                   trial("", dataset="fashion-mnist", metrics={"compinit_z_l2_acc": 0.5}))
    assert set(ablation_tables.loss_table(trials, "final")["dataset"]) == {"digits"}
    assert ablation_tables.loss_table(frame(trial("", metrics={"compinit_z_l2_acc": 0.5})), "final").empty


def test_main_table_fixed_clusterings_oracle_paper_and_given():
    trials = frame(
        trial("mixem", 0, dataset="stl10", metrics={"compinit_z_l2_acc": 0.7, "kmeans_z_l2_acc": 0.6,
                                                     "kmeans_h_raw_acc": 0.99, "acc_max": 0.99}),
        trial("mixem", 1, dataset="stl10", metrics={"compinit_z_l2_acc": 0.9, "kmeans_z_l2_acc": 0.6,
                                                     "acc_max": 0.95}),
        trial("simclr", 0, dataset="stl10", metrics={"kmeans_z_l2_acc": 0.5, "kmeans_h_l2_acc": 0.66}),
        trial("simclr", 0, dataset="digits", metrics={"kmeans_z_l2_acc": 0.5}),
        trial("given", 0, dataset="digits", w_entropy=3.0, metrics={"compinit_z_l2_acc": 0.8}),
        trial("given", 1, dataset="digits", w_entropy=3.0, metrics={"compinit_z_l2_acc": 0.6}),
    )
    baselines = baselines_frame("digits", pixels=[0.78, 0.80])
    table = ablation_tables.main_table(trials, "final", baselines).set_index(["dataset", "method", "clustering"])
    assert table.loc[("digits", "no learning", "K-means on raw pixels"), "ACC"] == "0.790 ± 0.014 (n=2)"
    assert "no learning" not in set(table.loc["stl10"].index.get_level_values("method"))
    assert table.loc[("stl10", "MIX'EM", "compinit_z_l2 (fixed)"), "ACC"] == "0.800 ± 0.141 (n=2)"
    assert table.loc[("stl10", "MIX'EM", "compinit_z_l2 (fixed)"), "paper ACC"] == "0.78"
    oracle = ablation_tables.ORACLE_COLUMN
    assert table.loc[("stl10", "MIX'EM", "compinit_z_l2 (fixed)"), oracle] == "0.970 ± 0.028 (n=2)"
    assert table.loc[("stl10", "MIX'EM", "kmeans_z_l2 (k-means++ init)"), "paper ACC"] == ""
    simclr = table.loc[("stl10", "SimCLR")]
    assert list(simclr.index) == ["kmeans_z_l2 (fixed, no component init)", "kmeans_h_l2 (the paper's SimCLR baseline)"]
    assert list(simclr["ACC"]) == ["0.500 (n=1)", "0.660 (n=1)"]
    assert list(simclr["paper ACC"]) == ["", "0.70"]  # the paper's SimCLR baseline: K-means on L2-normalised h
    assert table.loc[("digits", "MIX'EM", "compinit_z_l2 (fixed)"), "ACC"] == tables.NO_RUN
    assert table.loc[("digits", "best searched configuration", "compinit_z_l2 (fixed)"), "ACC"] == \
        "0.700 ± 0.141 (n=2)"
    assert "best searched configuration" not in set(table.loc["stl10"].index.get_level_values("method"))


def test_kmeans_table_compares_every_clustering_and_drops_what_simclr_lacks():
    def dom(seed):  # dom is L2-normalised already: raw and l2 give the same numbers
        return {f"{method}_dom_{norm}_{metric}": 0.6 + seed / 10 for method in ("kmeans", "compinit")
                for norm in ("raw", "l2") for metric in ("acc", "nmi", "ari")}

    mixem = [trial("mixem", seed, metrics={"kmeans_z_l2_acc": k, "compinit_z_l2_acc": c, "argmax_pi_acc": 0.3,
                                           **dom(seed)})
             for seed, (k, c) in enumerate([(0.5, 0.8), (0.7, 0.8)])]
    simclr = trial("simclr", metrics={"kmeans_h_raw_acc": 0.4, "kmeans_h_l2_acc": 0.45})
    table = ablation_tables.kmeans_table(frame(*mixem, simclr), "final")
    rows = table.set_index(["preset", "representation", "norm", "clustering"])
    assert rows.loc[("mixem", "z", "l2", "k-means++"), "ACC"] == "0.600 ± 0.141 (n=2)"
    assert rows.loc[("mixem", "z", "l2", "component-mean init"), "ACC"] == "0.800 ± 0.000 (n=2)"
    assert rows.loc[("mixem", "pi", "—", "argmax pi"), "ACC"] == "0.300 ± 0.000 (n=2)"
    # dom raw and dom l2 are the same numbers in every run: one row, said to be both.
    assert rows.loc[("mixem", "dom", "raw = l2", "k-means++"), "ACC"] == "0.650 ± 0.071 (n=2)"
    assert "l2" not in set(table.loc[table["representation"] == "dom", "norm"])
    assert list(table.loc[table["preset"] == "simclr", "norm"]) == ["raw", "l2"]
    assert set(table.loc[table["preset"] == "simclr", "clustering"]) == {"k-means++"}


def test_component_table_groups_by_k_fixed_variant_and_marks_a_missing_preset():
    rows = [trial("k10", seed, metrics={"compinit_z_l2_acc": acc}) for seed, acc in enumerate([0.6, 0.8])]
    rows.append(trial("k20", metrics={"kmeans_h_raw_acc": 0.55, "compinit_z_l2_acc": 0.5}))
    table = ablation_tables.component_table(frame(*rows), "final")
    assert list(table["K"]) == [10, 20, 40]
    assert list(table["ACC"]) == ["0.700 ± 0.141 (n=2)", "0.500 (n=1)", tables.NO_RUN]


def test_component_table_counts_mixem_only_where_no_k_preset_ran():
    """mixem at the default K is the k10 configuration: with both run, K=10 holds the k10 runs once;
    with mixem alone, its runs fill the row. The figure plots the same runs."""
    k10 = [trial("k10", seed, metrics={"compinit_z_l2_acc": acc}) for seed, acc in enumerate([0.6, 0.8])]
    mixem = [trial("mixem", seed, metrics={"compinit_z_l2_acc": 0.1}) for seed in range(3)]
    k20 = [trial("k20", metrics={"compinit_z_l2_acc": 0.5})]
    both = ablation_tables.component_table(frame(*k10, *mixem, *k20), "final")
    assert list(both["ACC"]) == ["0.700 ± 0.141 (n=2)", "0.500 (n=1)", tables.NO_RUN]
    alone = ablation_tables.component_table(frame(*mixem, *k20), "final")
    assert list(alone["ACC"]) == ["0.100 ± 0.000 (n=3)", "0.500 (n=1)", tables.NO_RUN]
    figure = plots.components_figure(frame(*k10, *mixem, *k20), "final", NO_BASELINES)
    scatters = [c for c in figure.axes[0].collections if type(c).__name__ == "PathCollection"]
    assert [len(points.get_offsets()) for points in scatters] == [2, 1]  # K=10: the two k10 seeds


def test_cost_table_counts_every_status_in_hours():
    trials = frame(trial("mixem", 0, seconds=3600), trial("mixem", 1, seconds=1800, status="errored"),
                   trial("simclr", 0, seconds=900), trial("", 0, seconds=360, status="early_stopped"))
    table = ablation_tables.cost_table(trials)
    assert list(table["run"]) == ["simclr", "mixem", "search", "total"]
    mixem = table.set_index("run").loc["mixem"]
    assert (mixem["trials"], mixem["epochs"]) == ("1 errored, 1 finished", 4)
    assert (mixem["GPU-hours"], mixem["CPU-hours"], mixem["wall-hours"]) == ("1.5", "3", "1.5")
    assert table.set_index("run").loc["total", "GPU-hours"] == "1.85"


def test_claims_are_paired_by_seed_with_an_interval_and_an_honest_verdict():
    # Component init is 0.3 above k-means++ on h raw in every seed (holds), 0.1 below or 0.1 above on z l2
    # (inconclusive); argmax pi of mixem is 0.2 above mixture_only's in every seed and below the pixels.
    mixem = [trial("mixem", seed, metrics={"compinit_h_raw_acc": k + 0.3, "kmeans_h_raw_acc": k,
                                             "compinit_z_l2_acc": 0.6 + d, "kmeans_z_l2_acc": 0.6, "argmax_pi_acc": 0.5,
                                             "compinit_z_l2_acc_seed_std": 0.01})
             for seed, (k, d) in enumerate([(0.4, 0.1), (0.5, -0.1), (0.45, 0.1)])]
    simclr = [trial("simclr", seed, metrics={"kmeans_h_l2_acc": 0.7 - seed / 100, "kmeans_h_raw_acc": 0.6,
                                             "kmeans_z_l2_acc": 0.6, "kmeans_z_l2_acc_seed_std": 0.02})
              for seed in (0, 1, 2)]
    mixture = [trial("mixture_only", seed, metrics={"argmax_pi_acc": 0.3, "compinit_z_l2_acc": 0.55})
               for seed in (0, 1, 2, 3)]  # seed 3 has no partner: left out of every pair
    baselines = baselines_frame("digits", pixels=[0.79, 0.80, 0.81])
    claims = ablation_tables.claims_table(frame(*mixem, *simclr, *mixture), baselines, "final")
    assert list(claims.columns) == [*ablation_tables.COMPARISON_COLUMNS, "diff", "low", "high", "n"]
    table = claims.set_index(["question", "A", "B"])
    zero = table.loc[("0 classes through pi", "mixem argmax pi", "mixture_only argmax pi")]
    assert (zero["verdict"], zero["n"], zero["A - B"]) == ("holds", 3, "+0.200 [+0.200, +0.200] (n=3)")
    below = table.loc[("0 classes through pi", "mixem argmax pi", "K-means on raw pixels")]
    assert below["verdict"] == "does not hold" and below["diff"] == pytest.approx(-0.3)
    h_raw = table.loc[("1 component init", "mixem: compinit h raw", "kmeans h raw")]
    assert h_raw["verdict"] == "holds" and h_raw["diff"] == pytest.approx(0.3)
    z_l2 = table.loc[("1 component init", "mixem: compinit z l2", "kmeans z l2")]
    assert z_l2["verdict"] == "inconclusive" and z_l2["low"] < 0 < z_l2["high"]
    assert table.loc[("2 L2 SimCLR", "kmeans_h_l2", "kmeans_h_raw"), "verdict"] == "holds"
    step = table.loc[("3 loss term", "mixture_only (compinit_z_l2)", "simclr (kmeans_z_l2)")]
    assert (step["n"], step["verdict"], step["K-means noise (A, B)"]) == (3, "does not hold", "— / 0.020")
    assert len(table.xs("3 loss term")) == 1  # entropy... not run: no more steps


def test_questions_ask_whether_training_helped_and_mixem_beat_simclr():
    mixem = [trial("mixem", seed, metrics={"compinit_z_l2_acc": acc}) for seed, acc in enumerate([0.85, 0.86, 0.9])]
    simclr = [trial("simclr", seed, metrics={"kmeans_z_l2_acc": acc}) for seed, acc in enumerate([0.84, 0.86, 0.8])]
    baselines = baselines_frame("digits", pixels=[0.79, 0.80, 0.81], pixels_l2=[0.70, 0.70, 0.70])
    table = ablation_tables.questions_table(frame(*mixem, *simclr), baselines, "final").set_index(["question", "A"])
    helped = table.loc[("does training help?", "MIX'EM")]
    assert helped["B"] == "K-means on raw pixels" and helped["verdict"] == "holds"  # the strongest baseline
    assert helped["diff"] == pytest.approx(np.mean([0.06, 0.06, 0.09]))
    versus = table.loc[("does MIX'EM beat SimCLR?", "MIX'EM")]
    assert versus["verdict"] == "inconclusive" and versus["n"] == 3
    assert list(table.reset_index()["question"]).count("does training help?") == 2
    assert ablation_tables.questions_table(frame(*mixem), NO_BASELINES, "final").empty  # nothing to compare with


def test_mixture_diagnostics_per_preset():
    rows = [trial("mixem", seed, metrics={"pi_max_mean": 0.2 + seed / 10, "components_used": 10,
                                          "component_purity": 0.5, "argmax_pi_acc": 0.4}) for seed in (0, 1)]
    rows.append(trial("simclr", metrics={"kmeans_z_l2_acc": 0.5}))  # no mixture: no row
    table = ablation_tables.diagnostics_table(frame(*rows), "final").set_index("run")
    assert list(table.index) == ["mixem"]
    assert table.loc["mixem", "mean max pi"] == "0.250 ± 0.071 (n=2)"
    assert table.loc["mixem", "components used"] == "10.000 ± 0.000 (n=2)"


def test_a_search_says_which_terms_it_never_tried_and_whether_its_best_beat_the_pixels():
    rows = [trial("", seed, w_pull=0.0, w_push=p, metrics={"compinit_z_l2_acc": acc})
            for seed, (p, acc) in enumerate([(0.0, 0.7), (0.1, 0.85)])]
    search = frame(*rows)
    assert search_tables.never_tried(search) == ["w_pull"]
    baselines = baselines_frame("digits", pixels=[0.79, 0.80, 0.81])
    line = search_tables.best_search_verdict(search, baselines, "digits", "compinit_z_l2_acc")
    assert "ACC 0.850, above the strongest no-learning baseline (K-means on raw pixels" in line
    worse = frame(trial("", metrics={"compinit_z_l2_acc": 0.7}))
    assert search_tables.best_search_verdict(worse, baselines, "digits", "compinit_z_l2_acc").startswith("warning: ")
    assert "no no-learning baseline recorded" in search_tables.best_search_verdict(search, NO_BASELINES, "digits",
                                                                            "compinit_z_l2_acc")


def test_best_stage_reads_the_best_columns():
    trials = frame(trial("mixem", stage="best", metrics={"compinit_z_l2_acc": 0.9}))
    assert ablation_tables.loss_table(trials, "best").set_index("preset").loc["mixem", "ACC"] == "0.900 (n=1)"
    assert ablation_tables.loss_table(trials, "final").set_index("preset").loc["mixem", "ACC"] == "—"
    with pytest.raises(ValueError):
        ablation_tables.loss_table(trials, "last")


def asha_search(accuracies_at_1: list[float], survivors: dict[int, float], errored: int | None = None):
    """A search like ASHA's: every trial evaluated at epoch 1 (its ACC there rises with w_entropy), the
    ``survivors`` (index -> ACC at epoch 3) run to epoch 3 and finish, the others stop early at epoch 1;
    ``errored``: one more trial that diverged at epoch 2 after an evaluation at 1 and 2."""
    rows, epochs = [], []
    for index, acc in enumerate(accuracies_at_1):
        finished = index in survivors
        final = survivors.get(index, acc)
        row = trial("", w_entropy=0.5 * (index + 1), w_pull=[0.3, 0.0, 0.1][index % 3], num_components=10 + index % 2,
                    status="finished" if finished else "early_stopped", epochs=3 if finished else 1,
                    metrics={"compinit_z_l2_acc": final, "compinit_z_l2_nmi": final / 2, "val_loss": -final})
        rows.append(row)
        scores = {1: {"compinit_z_l2_acc": acc, "val_loss": -acc}}
        if finished:
            scores[3] = {"compinit_z_l2_acc": final, "val_loss": -final}
        epochs.append(epoch_rows(row, scores))
    if errored is not None:
        row = trial("", w_entropy=100.0, status="errored", epochs=2, metrics={"compinit_z_l2_acc": 0.1})
        rows.append(row)
        epochs.append(epoch_rows(row, {1: {"compinit_z_l2_acc": 0.1}, 2: {"compinit_z_l2_acc": 0.1}}))
    return frame(*rows), epochs_frame(*epochs)


def test_rungs_common_point_and_compared_epochs():
    trials, epochs = asha_search([0.3, 0.4, 0.5, 0.6, 0.7], {2: 0.8, 3: 0.6, 4: 0.9}, errored=True)
    assert rungs.common_epoch(trials, epochs, "compinit_z_l2_acc") == 1  # the errored trial does not hold it back
    assert rungs.compared_epochs(trials, epochs, "compinit_z_l2_acc") == [1, 3]  # epoch 2: only where one errored
    at_1 = rungs.at_epoch(trials, epochs, "compinit_z_l2_acc", 1)
    assert len(at_1) == 6 and set(at_1["status"]) == {"finished", "early_stopped", "errored"}
    assert list(at_1["at/compinit_z_l2_acc"]) == [0.3, 0.4, 0.5, 0.6, 0.7, 0.1]


def test_sensitivity_counts_early_stopped_trials_at_each_compared_epoch():
    trials, epochs = asha_search([0.3, 0.4, 0.5, 0.6, 0.7], {2: 0.8, 3: 0.6, 4: 0.9})
    table = search_tables.sensitivity_table(trials, epochs, "compinit_z_l2_acc").set_index("parameter")
    assert list(table.index) == ["num_components", "w_entropy", "w_pull"]  # what varies, in config order
    assert list(table.columns) == ["values", "epoch 1 (n=5)", "epoch 3 (n=3)"]
    assert table.loc["w_entropy", "values"] == "0.5 to 2.5"
    assert table.loc["w_entropy", "epoch 1 (n=5)"] == "1.000"  # all five, two of them early-stopped
    assert table.loc["w_entropy", "epoch 3 (n=3)"] == "0.500"  # ranks (1, 2, 3) against (2, 1, 3)
    assert table.loc["w_pull", "epoch 3 (n=3)"] == "-1.000"  # w_pull (0.1, 0.3, 0.0) ranks (2, 3, 1)


def test_importance_needs_enough_trials_at_the_common_point():
    accuracies = [0.40, 0.42, 0.45, 0.50, 0.52, 0.58, 0.60, 0.66, 0.70, 0.75]
    trials, epochs = asha_search(accuracies, {})
    table = search_tables.importance_table(trials, epochs, "compinit_z_l2_acc").set_index("parameter")
    for evaluator in search_tables.IMPORTANCE_EVALUATORS:
        assert float(table.loc["w_entropy", evaluator]) > 0.5 > float(table.loc["w_pull", evaluator])
    few = trials.iloc[: search_tables.MIN_IMPORTANCE_TRIALS - 1]
    assert search_tables.importance_table(few, epochs, "compinit_z_l2_acc").empty


def test_top_trials_rank_by_the_metric_in_its_direction_any_status():
    trials, _ = asha_search([0.3, 0.75, 0.5, 0.6, 0.7], {2: 0.8, 3: 0.6, 4: 0.9})
    top = search_tables.top_trials(trials, "compinit_z_l2_acc", "final", 3)
    assert list(top.columns) == ["trial", "num_components", "w_entropy", "w_pull", "ACC", "NMI", "ARI", "epochs",
                                 "status"]
    assert list(top["ACC"]) == ["0.900", "0.800", "0.750"]  # the third stopped early at its rung
    assert list(top["status"]) == ["finished", "finished", "early_stopped"]
    by_loss = search_tables.top_trials(trials, "val_loss", "final", 2)  # better lower: -0.9 first
    assert list(by_loss["val_loss"]) == ["-0.900", "-0.800"] and list(by_loss["ACC"]) == ["0.900", "0.800"]
