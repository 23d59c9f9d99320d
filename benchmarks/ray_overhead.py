"""Ray's overhead per trial: a trial's wall time less the time its worker trained and evaluated.

    python benchmarks/ray_overhead.py                 # 4 digits trials of 2 epochs, one at a time
    python benchmarks/ray_overhead.py --quick         # 2 trials
    python benchmarks/ray_overhead.py --project ../old-checkout   # another checkout's sweep, for before/after

Runs a small local sweep (`tune/sweep.py`, a grid over the learning rate, every other searched
field fixed, one trial at a time so trials do not compete for the 2 cores) in a subprocess, then
reads its `trials.parquet` and `epochs.parquet`: per trial, `wall_seconds` (from the moment Tune
starts the trial to its end, as the sweep records it) minus the `epoch_seconds` and `eval_seconds`
its worker measured. What is left is Ray's: starting the trial's actor, Ray Train's controller,
its worker and their imports, placement groups, reporting, checkpoints and teardown.

Part of that the trainer pays without Ray too: importing torch and scikit-learn, loading the data,
building the model. So the same trials are also run as ``python -m mixem.train`` processes, one
after the other, and their wall time less the same epoch and evaluation seconds is printed beside
it: the start-up a trial would cost with no Ray at all.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":  # `python benchmarks/ray_overhead.py`: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd

from benchmarks.common import figure, print_table

ROOT = Path(__file__).resolve().parents[1]

FIXED = ["num_components=10", "w_entropy=2", "w_instance=0.1", "w_pull=0.1", "w_push=0.05", "temperature=0.5",
         "kmeans_n_init=2"]
LEARNING_RATES = ["1e-3", "2e-3", "3e-3", "4e-3"]


def sweep_arguments(trials: int, epochs: int, output: Path) -> list[str]:
    """``tune/sweep.py``'s arguments for the measured sweep: ``trials`` digits trials of ``epochs``
    epochs, one at a time, into ``output``."""
    return ["--dataset", "digits", "--search", "grid", "--space", *FIXED, "lr=" + ",".join(LEARNING_RATES[:trials]),
            "--max-epochs", str(epochs), "--grace-epochs", str(epochs), "--max-concurrent", "1",
            "--output", str(output)]


def working_seconds(epochs: pd.DataFrame) -> pd.Series:
    """Seconds each trial's worker spent training and evaluating, by trial id (sorted)."""
    return (epochs["epoch_seconds"] + epochs["eval_seconds"]).groupby(epochs["trial_id"]).sum()


def sweep_overheads(trials: int, epochs: int, project: Path = ROOT) -> tuple[list[float], list[float]]:
    """(overhead, wall) seconds of each trial of a fresh local sweep of the checkout ``project``."""
    with tempfile.TemporaryDirectory(prefix="mixem-ray-overhead-") as folder:
        output = Path(folder) / "sweep"
        command = [sys.executable, str(project / "tune" / "sweep.py"), *sweep_arguments(trials, epochs, output)]
        # In the checkout's own folder: Ray puts the driver's folder on its workers' path.
        done = subprocess.run(command, capture_output=True, text=True, cwd=project,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if done.returncode != 0:
            raise SystemExit(f"the sweep failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        runs, epochs_frame = pd.read_parquet(output / "trials.parquet"), pd.read_parquet(output / "epochs.parquet")
    overhead = runs.set_index("trial_id")["wall_seconds"] - working_seconds(epochs_frame)
    return overhead.tolist(), runs["wall_seconds"].tolist()


def standalone_startups(trials: int, epochs: int, project: Path = ROOT) -> list[float]:
    """Seconds of each of the sweep's trials, run alone as ``python -m mixem.train``, that are not
    its epochs and evaluations: the trainer's own start-up and end, with no Ray."""
    pairs = (field.split("=") for field in FIXED)
    flags = [token for name, value in pairs for token in ("--" + name.replace("_", "-"), value)]
    startups = []
    with tempfile.TemporaryDirectory(prefix="mixem-standalone-") as folder:
        for index, lr in enumerate(LEARNING_RATES[:trials]):
            out = Path(folder) / f"run-{index}"
            command = [sys.executable, "-m", "mixem.train", "--dataset", "digits", *flags, "--lr", lr,
                       "--epochs", str(epochs), "--eval-every", str(epochs), "--out", str(out)]
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, cwd=project)
            wall = time.perf_counter() - started
            if done.returncode != 0:
                raise SystemExit(f"python -m mixem.train failed:\n{done.stderr[-2000:]}")
            history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines() if line]
            startups.append(wall - sum(row["epoch_seconds"] + (row.get("eval_seconds") or 0.0) for row in history))
    return startups


def measure(quick: bool, device: str = "cpu", project: Path = ROOT) -> list[dict]:
    trials = 2 if quick else 4
    command = "python benchmarks/ray_overhead.py" + (" --quick" if quick else "")
    if project != ROOT:
        command += f" --project {project}"
    overhead, wall = sweep_overheads(trials, 2, project)
    startup = standalone_startups(trials, 2, project)
    return [figure(f"Ray overhead per trial (local sweep, {trials} digits trials x 2 epochs)",
                   statistics.median(overhead), "s", command),
            figure("trial wall time (same sweep)", statistics.median(wall), "s", command),
            figure("the same trials' start-up without Ray (python -m mixem.train)", statistics.median(startup), "s",
                   command),
            figure("Ray's own share (overhead less that start-up)",
                   statistics.median(overhead) - statistics.median(startup), "s", command)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 trials instead of 4")
    parser.add_argument("--project", type=Path, default=ROOT,
                        help="the checkout whose tune/sweep.py to measure (default: this one)")
    args = parser.parse_args(argv)
    if not (args.project / "tune" / "sweep.py").is_file():
        parser.error(f"--project {args.project} holds no tune/sweep.py; pass a checkout of this project.")
    print_table(measure(args.quick, project=args.project.resolve()))


if __name__ == "__main__":
    main()
