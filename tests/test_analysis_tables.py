"""Each table of analysis.tables on hand-made trials whose right answer is worked out by hand."""

import itertools
import math

import pandas as pd
import pytest

from analysis import tables
from analysis.runs import TRIAL_COLUMNS
from mixem.config import Config
from mixem.presets import ABLATIONS, LOSS_ABLATION
from mixem.scores import METRIC_KEYS

_ids = itertools.count()


def trial(preset: str, seed: int = 0, dataset: str = "digits", status: str = "finished", stage: str = "final",
          metrics: dict | None = None, seconds: float = 3600.0, **config) -> dict:
    """One trials.parquet row (load_runs' columns): the preset's config, NaN for every metric but ``metrics``."""
    flat = {**Config.for_dataset(dataset).to_flat(), **ABLATIONS.get(preset, {}), "seed": seed, **config}
    row = {"sweep": "s", "trial_id": f"t{next(_ids)}", "preset": preset, "dataset": dataset, "status": status,
           "error": "", **{f"config/{name}": value for name, value in flat.items()}}
    row.update({f"{which}/{key}": math.nan for which in tables.STAGES for key in METRIC_KEYS})
    row.update({f"{stage}/{key}": value for key, value in (metrics or {}).items()})
    row.update(epochs=2, wall_seconds=seconds, gpu_seconds=seconds, cpu_seconds=2 * seconds)
    return row


def frame(*rows: dict) -> pd.DataFrame:
    trials = pd.DataFrame(list(rows))
    assert set(TRIAL_COLUMNS) <= set(trials.columns)
    return trials


def test_cell_is_mean_std_and_count_over_seeds():
    assert tables.cell([0.6, 0.7, 0.8]) == "0.700 ± 0.100 (n=3)"  # sample std: sqrt(0.02 / 2)
    assert tables.cell([0.5, math.nan, 0.7]) == "0.600 ± 0.141 (n=2)"  # NaN (never evaluated) is not a seed
    assert tables.cell([0.812]) == "0.812 (n=1)"
    assert tables.cell([]) == tables.cell([math.nan]) == "—"


def test_loss_table_rows_in_order_best_variant_one_seed_and_missing_preset():
    rows = [trial("simclr", seed, metrics={"kmeans_h_l2_acc": acc, "kmeans_h_l2_nmi": 0.5, "kmeans_h_l2_ari": 0.4,
                                           "kmeans_h_raw_acc": acc - 0.2})
            for seed, acc in enumerate([0.6, 0.7, 0.8])]
    rows.append(trial("mixem", 0, metrics={"compinit_z_l2_acc": 0.812, "kmeans_z_l2_acc": 0.5}))
    rows.append(trial("mixem", 1, status="errored", metrics={"compinit_z_l2_acc": 0.1}))  # not a seed of the row
    table = tables.loss_table(frame(*rows))
    assert list(table["preset"]) == LOSS_ABLATION
    simclr, mixem = table.set_index("preset").loc["simclr"], table.set_index("preset").loc["mixem"]
    assert simclr["K-means variant"] == "kmeans_h_l2"
    assert (simclr["ACC"], simclr["NMI"], simclr["ARI"]) == ("0.700 ± 0.100 (n=3)", "0.500 ± 0.000 (n=3)",
                                                           "0.400 ± 0.000 (n=3)")
    assert (mixem["K-means variant"], mixem["ACC"], mixem["NMI"]) == ("compinit_z_l2", "0.812 (n=1)", "—")
    entropy = table.set_index("preset").loc["entropy"]
    assert (entropy["K-means variant"], entropy["ACC"]) == (tables.NO_RUN, "—")
    assert set(tables.LOSS_ROWS) == set(LOSS_ABLATION)


def test_loss_table_leaves_out_datasets_without_ablation_runs():
    trials = frame(trial("mixem", dataset="digits", metrics={"kmeans_h_raw_acc": 0.5}),
                   trial("", dataset="fashion-mnist", metrics={"kmeans_h_raw_acc": 0.5}))
    assert set(tables.loss_table(trials)["dataset"]) == {"digits"}
    assert tables.loss_table(frame(trial("", metrics={"kmeans_h_raw_acc": 0.5}))).empty


def test_main_table_per_norm_with_published_numbers_where_the_dataset_matches():
    trials = frame(
        trial("mixem", 0, dataset="stl10", metrics={"compinit_z_raw_acc": 0.7, "kmeans_h_l2_acc": 0.8,
                                                     "compinit_h_l2_acc": 0.6}),
        trial("mixem", 1, dataset="stl10", metrics={"compinit_z_raw_acc": 0.9, "kmeans_h_l2_acc": 0.6,
                                                     "compinit_h_l2_acc": 0.65}),
        trial("simclr", 0, dataset="stl10", metrics={"kmeans_h_raw_acc": 0.5, "kmeans_h_l2_acc": 0.66}),
        trial("simclr", 0, dataset="digits", metrics={"kmeans_h_raw_acc": 0.5}),
    )
    table = tables.main_table(trials).set_index(["dataset", "method", "norm"])
    assert table.loc[("stl10", "MIX'EM", "raw"), "K-means variant"] == "compinit_z_raw"
    assert table.loc[("stl10", "MIX'EM", "raw"), "ACC"] == "0.800 ± 0.141 (n=2)"
    assert table.loc[("stl10", "MIX'EM", "l2"), "K-means variant"] == "kmeans_h_l2"  # 0.70 beats 0.625
    assert table.loc[("stl10", "SimCLR", "l2"), "ACC"] == "0.660 (n=1)"
    assert list(table.loc["stl10", "paper ACC"]) == ["0.78", "0.78", "", "0.70"]  # SimCLR's is for L2 only
    assert set(table.loc["digits", "paper ACC"]) == {""}
    assert table.loc[("digits", "MIX'EM", "raw"), "K-means variant"] == tables.NO_RUN


def test_kmeans_table_compares_every_clustering_and_drops_what_simclr_lacks():
    mixem = [trial("mixem", seed, metrics={"kmeans_z_l2_acc": k, "compinit_z_l2_acc": c, "argmax_pi_acc": 0.3})
             for seed, (k, c) in enumerate([(0.5, 0.8), (0.7, 0.8)])]
    simclr = trial("simclr", metrics={"kmeans_h_raw_acc": 0.4, "kmeans_h_l2_acc": 0.45})
    table = tables.kmeans_table(frame(*mixem, simclr))
    rows = table.set_index(["preset", "representation", "norm", "clustering"])
    assert rows.loc[("mixem", "z", "l2", "k-means++"), "ACC"] == "0.600 ± 0.141 (n=2)"
    assert rows.loc[("mixem", "z", "l2", "component-mean init"), "ACC"] == "0.800 ± 0.000 (n=2)"
    assert rows.loc[("mixem", "pi", "—", "argmax pi"), "ACC"] == "0.300 ± 0.000 (n=2)"
    assert list(table.loc[table["preset"] == "simclr", "norm"]) == ["raw", "l2"]
    assert set(table.loc[table["preset"] == "simclr", "clustering"]) == {"k-means++"}


def test_component_table_groups_by_k_and_marks_a_missing_preset():
    rows = [trial("k10", seed, metrics={"compinit_z_l2_acc": acc}) for seed, acc in enumerate([0.6, 0.8])]
    rows.append(trial("k20", metrics={"kmeans_h_raw_acc": 0.55}))
    table = tables.component_table(frame(*rows))
    assert list(table["K"]) == [10, 20, 40]
    assert list(table["ACC"]) == ["0.700 ± 0.141 (n=2)", "0.550 (n=1)", "—"]
    assert list(table["K-means variant"]) == ["compinit_z_l2", "kmeans_h_raw", tables.NO_RUN]


def test_sensitivity_ranks_the_weight_that_drives_acc():
    # ACC rises with w_entropy only; w_pull varies but does nothing; w_push is never searched.
    rows = [trial("", seed=0, w_entropy=w, w_pull=p, metrics={"kmeans_h_l2_acc": 0.4 + 0.05 * w})
            for w, p in [(0.5, 0.3), (1.0, 0.01), (2.0, 0.1), (4.0, 0.0), (6.0, 0.2), (8.0, 0.05)]]
    rows.append(trial("mixem", metrics={"kmeans_h_l2_acc": 0.99}))  # an ablation run is not part of a search
    table = tables.sensitivity_table(frame(*rows)).set_index("parameter")
    assert list(table.index) == ["w_entropy", "w_instance", "w_pull", "w_push"]
    assert set(table["trials"]) == {6}
    assert table.loc["w_entropy", "values"] == "0.5 to 8"
    assert table.loc["w_entropy", "Spearman rho"] == "1.000"
    assert table.loc["w_push", "values"] == "0.05 (fixed)"
    assert table.loc["w_push", "fANOVA"] == table.loc["w_push", "Spearman rho"] == "—"
    for evaluator in tables.IMPORTANCE_EVALUATORS:
        assert float(table.loc["w_entropy", evaluator]) > 0.8 > float(table.loc["w_pull", evaluator])


def test_sensitivity_lists_other_varied_fields_and_needs_two_trials():
    rows = [trial("", w_entropy=w, num_components=k, metrics={"kmeans_h_l2_acc": acc})
            for w, k, acc in [(1.0, 10, 0.5), (2.0, 20, 0.6)]]
    table = tables.sensitivity_table(frame(*rows))
    assert list(table["parameter"]) == ["w_entropy", "w_instance", "w_pull", "w_push", "num_components"]
    assert tables.sensitivity_table(frame(rows[0]))["fANOVA"].tolist() == ["—"] * 4
    same = [trial("", metrics={"kmeans_h_l2_acc": acc}) for acc in (0.5, 0.6)]  # nothing varied
    assert tables.sensitivity_table(frame(*same))["MDI"].tolist() == ["—"] * 4


def test_cost_table_counts_every_status_in_hours():
    trials = frame(trial("mixem", 0, seconds=3600), trial("mixem", 1, seconds=1800, status="errored"),
                   trial("simclr", 0, seconds=900), trial("", 0, seconds=360, status="early_stopped"))
    table = tables.cost_table(trials)
    assert list(table["run"]) == ["simclr", "mixem", "search", "total"]
    mixem = table.set_index("run").loc["mixem"]
    assert (mixem["trials"], mixem["epochs"]) == ("1 errored, 1 finished", 4)
    assert (mixem["GPU-hours"], mixem["CPU-hours"], mixem["wall-hours"]) == ("1.5", "3", "1.5")
    assert table.set_index("run").loc["total", "GPU-hours"] == "1.85"


def test_claims_table_verdicts():
    mixem = [trial("mixem", seed, metrics={"compinit_h_raw_acc": c, "kmeans_h_raw_acc": k,
                                             "compinit_z_l2_acc": c - 0.3, "kmeans_z_l2_acc": k})
             for seed, (c, k) in enumerate([(0.80, 0.5), (0.82, 0.7)])]
    simclr = [trial("simclr", seed, metrics={"kmeans_h_l2_acc": 0.7, "kmeans_h_raw_acc": 0.6}) for seed in (0, 1)]
    mixture = [trial("mixture_only", seed, metrics={"kmeans_h_l2_acc": 0.65}) for seed in (0, 1)]
    table = tables.claims_table(frame(*mixem, *simclr, *mixture)).set_index(["claim", "A"])
    assert table.loc[("1 component init", "compinit_h_raw"), "holds"] == "yes"  # higher mean, smaller std
    assert table.loc[("1 component init", "compinit_z_l2"), "holds"] == "spread only"
    assert table.loc[("1 component init", "compinit_dom_raw"), "holds"] == "—"  # never evaluated
    assert table.loc[("2 L2 SimCLR", "kmeans_h_l2"), "holds"] == "yes"
    assert table.loc[("3 loss term", "mixture_only (kmeans_h_l2)"), "holds"] == "no"  # 0.65 < 0.70
    assert list(table.xs("3 loss term")["B"]) == ["simclr (kmeans_h_l2)"]  # entropy... not run: no more steps


def test_best_stage_reads_the_best_columns():
    trials = frame(trial("mixem", stage="best", metrics={"kmeans_h_raw_acc": 0.9}))
    assert tables.loss_table(trials, "best").set_index("preset").loc["mixem", "ACC"] == "0.900 (n=1)"
    assert tables.loss_table(trials, "final").set_index("preset").loc["mixem", "ACC"] == "—"
    with pytest.raises(ValueError):
        tables.loss_table(trials, "last")
