"""The no-learning baselines a sweep recorded (``OUTPUT/baselines.parquet``, ``mixem.baselines``), and whether
a result beats them: the one place that decides it, for the sweep's summary and for the report.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis import stats
from mixem.baselines import BASELINES
from tune.results import BASELINES_FILE

COLUMNS = ["dataset", "eval_split", "baseline", "seed", "n_init", "max_iter", "acc", "nmi", "ari"]


def load_baselines(*paths: str | Path) -> pd.DataFrame:
    """Every baseline row of the sweep folders ``paths`` (folders without the file add none), one row per
    (dataset, baseline, seed): the same seed recorded by two sweeps is kept once."""
    frames = []
    for path in paths:
        folder = Path(path) if Path(path).is_dir() else Path(path).parent
        if (folder / BASELINES_FILE).is_file():
            frames.append(pd.read_parquet(folder / BASELINES_FILE)[COLUMNS])
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    rows = pd.concat(frames, ignore_index=True)
    return rows.drop_duplicates(subset=["dataset", "baseline", "seed", "n_init", "max_iter"]).reset_index(drop=True)


def baseline_table(baselines: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and baseline: ACC, NMI and ARI as mean [95% interval] (n seeds)."""
    rows = []
    for (dataset, name), runs in baselines.groupby(["dataset", "baseline"], sort=True):
        rows.append({"dataset": dataset, "baseline": BASELINES.get(name, name),
                     **{metric.upper(): stats.interval_text(runs[metric]) for metric in ("acc", "nmi", "ari")}})
    return pd.DataFrame(rows, columns=["dataset", "baseline", "ACC", "NMI", "ARI"])


def strongest(baselines: pd.DataFrame, dataset: str) -> tuple[str, pd.Series] | None:
    """(name, ACC by seed) of ``dataset``'s baseline with the highest mean ACC, or None without baselines."""
    runs = baselines[baselines["dataset"] == dataset]
    if runs.empty:
        return None
    name = runs.groupby("baseline")["acc"].mean().idxmax()
    return name, runs[runs["baseline"] == name].set_index("seed")["acc"]


def beats(value: float, baseline_acc: pd.Series) -> bool:
    """Whether one ACC is above the whole 95% interval of a baseline's mean ACC."""
    mean, _, high = stats.mean_interval(baseline_acc)
    return value > (mean if pd.isna(high) else high)


def verdict_line(value: float, what: str, baselines: pd.DataFrame, dataset: str) -> str:
    """One line: does ``what`` (one ACC, ``value``) beat ``dataset``'s strongest no-learning baseline? It
    starts with "warning:" when it does not, and names the command that records baselines when there are none."""
    found = strongest(baselines, dataset)
    if found is None:
        return (f"warning: no no-learning baseline recorded for {dataset}, so nothing says whether training helped "
                f"(python -m mixem.baselines {dataset})")
    name, acc = found
    shown = f"{BASELINES[name] if name in BASELINES else name}, ACC {stats.interval_text(acc)}"
    if beats(value, acc):
        return f"{what}: ACC {value:.3f}, above the strongest no-learning baseline ({shown})"
    return f"warning: {what}: ACC {value:.3f} is not above {shown}: no better than clustering the pixels"
