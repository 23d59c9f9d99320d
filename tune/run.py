"""The one ``run`` that ``tune/sweep.py`` and ``tune/ablate.py`` call.

``run`` checks every flag before any work starts, takes the output folder's lock, starts or joins
Ray, sizes the trials for the cluster, then runs the Tuner (new, or restored with ``--resume``)
and prints where the results are. What differs between a sweep and an ablation is an
``Experiment``: its name, its own checks and its plan (``tune/plans.py``).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from mixem.config import Config
from mixem.errors import MixemError
from mixem.files import write_atomic
from mixem.scores import metric_mode, reported_variant
from tune import cluster
from tune.arguments import base_overrides, resolve_args
from tune.provenance import provenance
from tune.results import (
    BASELINES_FILE,
    EPOCHS_FILE,
    SETTINGS_FILE,
    STORAGE_FOLDER,
    TRIALS_FILE,
    ResultFiles,
    Storage,
    write_baselines,
)
from tune.space import read_space_args, resolve_space
from tune.tuning import fit, load_callback

LOCK_FILE = ".lock"
# Seconds `ray job stop` should wait between SIGTERM and SIGKILL: Tune saves its state (to S3, with
# the searcher's) and the trials stop; below the minimum the sweep warns at its start.
RECOMMENDED_JOB_STOP_WAIT_S = 120
MIN_JOB_STOP_WAIT_S = 30
# Seeds of the no-learning baselines: enough for an interval.
MIN_BASELINE_SEEDS = 5


@dataclass(frozen=True)
class Experiment:
    """A kind of run: ``check(args, fixed)`` before any work, ``plan(args, fixed, space, concurrent,
    recorded)`` once Ray is up; ``search`` says whether --space may search."""

    kind: str
    script: str
    search: bool
    check: Callable
    plan: Callable


class OutputLock:
    """An exclusive lock on the output folder for the driver's lifetime: a second driver (say a
    --resume while the first still runs) is refused rather than allowed to overwrite rows. The
    operating system drops the lock when the process dies, however it dies."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.file = open(folder / LOCK_FILE, "a+")  # noqa: SIM115 (held open until release)
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            owner = self.file.read().strip() or "another process"
            self.file.close()
            raise MixemError(f"Another sweep driver ({owner}) is writing to {folder}; wait for it to end or stop it "
                             "(Ctrl+C, `ray job stop`) before resuming.") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()} on {os.uname().nodename}")
        self.file.flush()

    def release(self) -> None:
        self.file.close()


def baselines(args: argparse.Namespace, fixed: dict, data_dir: str | None, resources) -> list[dict]:
    """The dataset's no-learning baselines with the trials' K-means settings, for at least 5 seeds from
    --seed (the ablation's seeds among them), so that every report can say whether training helped."""
    config = Config.for_dataset(args.dataset, fixed)
    seeds = list(range(args.seed, args.seed + max(MIN_BASELINE_SEEDS, getattr(args, "seeds", None) or 1)))
    print(f"computing the no-learning baselines (K-means on {args.dataset}'s pixels, {len(seeds)} seeds; cached "
          "after the first time)...", file=sys.stderr)
    return cluster.pixel_baselines(args.dataset, data_dir, resources, eval_split=config.data.eval_split, seeds=seeds,
                                   n_init=config.eval.kmeans_n_init, max_iter=config.eval.kmeans_max_iter)


def warn_if_ray_job_stop_kills() -> None:
    """Under `ray job submit`, `ray job stop` sends SIGTERM and then SIGKILL after
    RAY_JOB_STOP_WAIT_TIME_S seconds (3 by default): too soon for Tune to save its state. Nothing
    finished is lost either way, but the trials that were running restart from their last checkpoint."""
    wait = os.environ.get("RAY_JOB_STOP_WAIT_TIME_S", "3")
    if cluster.in_ray_job() and (not wait.isdigit() or int(wait) < MIN_JOB_STOP_WAIT_S):
        print(f"warning: `ray job stop` will kill this sweep {wait} s after asking it to stop "
              f"(RAY_JOB_STOP_WAIT_TIME_S), too soon for Tune to save its state; start the head with "
              f"RAY_JOB_STOP_WAIT_TIME_S={RECOMMENDED_JOB_STOP_WAIT_S} (cluster.yaml does) or submit with "
              "--runtime-env-json '{\"env_vars\": {\"RAY_JOB_STOP_WAIT_TIME_S\": \""
              f"{RECOMMENDED_JOB_STOP_WAIT_S}\"}}}}'.", file=sys.stderr)


def _sigterm_as_sigint(signum, frame) -> None:
    """SIGTERM (what `ray job stop` sends) stops the sweep the way Ctrl+C does: Tune saves its state."""
    os.kill(os.getpid(), signal.SIGINT)


def run(args: argparse.Namespace, experiment: Experiment) -> int:
    """Everything a sweep or an ablation does; see the module docstring."""
    signal.signal(signal.SIGTERM, _sigterm_as_sigint)
    args = resolve_args(args, experiment.kind)
    fixed, space = resolve_space(args.dataset, read_space_args(args.space), base_overrides(args),
                                 search=experiment.search)
    experiment.check(args, fixed)
    data_dir = args.data_dir or os.environ.get("MIXEM_DATA_DIR")
    if data_dir and "://" not in data_dir:  # a URI (s3://, gs://) is staged on each node (mixem.staging)
        data_dir = str(Path(data_dir).resolve())
    callbacks = [] if args.resume else [load_callback(spec) for spec in args.callback]
    warn_if_ray_job_stop_kills()
    output = args.output.resolve()
    mirror = Storage(args.storage).child(args.name, STORAGE_FOLDER)
    if args.resume:
        lock = OutputLock(output)
        files = ResultFiles.open(output, args.metric, mirror)  # a corrupt file stops us here, before any write
    else:
        files, lock = None, None
    owns_ray = not cluster.ray.is_initialized()  # tests (and notebooks) may have started Ray already
    if owns_ray:
        cluster.start_ray(args.address, verbose=args.verbose)
    signal.signal(signal.SIGTERM, _sigterm_as_sigint)  # again: ray.init installs a handler that exits at once
    try:
        cluster.remove_orphaned_placement_groups()  # else their CPUs and GPUs would never be free for our trials
        capacity = cluster.cluster_capacity()
        resources = cluster.trial_resources(args.workers_per_trial, args.cpus_per_worker, args.gpus_per_worker,
                                            args.backend, capacity, local=args.address is None)
        concurrent = cluster.max_concurrent_trials(resources, args.max_concurrent, capacity)
        print(f"checking that {args.dataset} loads where the trials will run...", file=sys.stderr)
        cluster.preflight(args.dataset, data_dir, resources, capacity)
        if lock is None:
            lock = OutputLock(output)
            files = ResultFiles.open(output, args.metric, mirror)
            saved = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                     if k not in ("output", "resume", "resume_from", "name", "storage", "given")}
            settings = {"kind": experiment.kind, "name": args.name, "storage": args.storage, "args": saved, "runs": []}
        else:
            settings = json.loads((output / SETTINGS_FILE).read_text())
        # Each start and resume: what it resolved, on which code and packages.
        settings.setdefault("runs", []).append(
            {"started": datetime.now(UTC).isoformat(timespec="seconds"), "resumed": bool(args.resume),
             "resolved": {**asdict(resources), "max_concurrent": concurrent, "capacity": asdict(capacity)},
             **provenance()})
        write_atomic(output / SETTINGS_FILE, json.dumps(settings, indent=2) + "\n")
        mirror.upload(output / SETTINGS_FILE)
        files.write_empty()
        if not (output / BASELINES_FILE).exists():
            write_baselines(output, baselines(args, fixed, data_dir, resources), mirror)
        plan = experiment.plan(args, fixed, space, concurrent, list(files.epochs.values()))
        started = time.time()
        interrupted = fit(args, experiment, plan, resources, concurrent, output=output, data_dir=data_dir,
                          callbacks=callbacks)
        summarize(output, args.metric, plan.varied, time.time() - started)
        if interrupted:
            print(f"The sweep was stopped; continue it with: python {experiment.script} --output {args.output} "
                  "--resume", file=sys.stderr)
            return 130
        return 0
    finally:
        if owns_ray:
            cluster.ray.shutdown()
        if lock is not None:
            lock.release()


def summarize(output: Path, metric: str, varied: list[str], wall_seconds: float) -> None:
    """Counts, where the time went, the best trial, and the command that writes the report."""
    import pandas as pd

    trials, epochs = pd.read_parquet(output / TRIALS_FILE), pd.read_parquet(output / EPOCHS_FILE)
    counts = ", ".join(f"{n} {status}" for status, n in trials["status"].value_counts().items()) or "none ended"
    print(f"\n{len(trials)} trials ({counts}) in {wall_seconds / 60:.1f} min")
    if len(trials):
        ended = epochs[epochs["trial_id"].isin(trials["trial_id"])]
        working = (ended["epoch_seconds"] + ended["eval_seconds"]).sum() / len(trials)
        per_trial = trials["wall_seconds"].mean()
        print(f"per trial: {per_trial:.0f} s wall, of which {working:.0f} s training and evaluation, "
              f"{per_trial - working:.0f} s Ray overhead (starting the trial and its workers, checkpoints)")
    scored = trials.dropna(subset=[f"final/{metric}"])
    if len(scored):
        values = scored[f"final/{metric}"]
        best = scored.loc[values.idxmax() if metric_mode(metric) == "max" else values.idxmin()]
        shown = ", ".join(f"{name}={best[f'config/{name}']:.4g}" if isinstance(best.get(f"config/{name}"), float)
                          else f"{name}={best.get(f'config/{name}', best.get(name))}" for name in varied)
        print(f"best trial {best['trial_id']} ({best['status']}, {best['epochs']} epochs): {metric} "
              f"{best[f'final/{metric}']:.4f}; {shown}")
    finished = trials[(trials["status"] == "finished") & trials[f"final/{metric}"].notna()]
    if len(finished):
        from analysis.baselines import load_baselines, verdict_line

        values = finished[f"final/{metric}"]
        best = finished.loc[values.idxmax() if metric_mode(metric) == "max" else values.idxmin()]
        variant = reported_variant(best["config/head"])
        print(verdict_line(best[f"final/{variant}_acc"], f"the best finished trial ({best['trial_id']}, {variant})",
                           load_baselines(output), best["dataset"]))
    for _, row in trials[trials["status"] == "errored"].head(3).iterrows():
        print(f"errored trial {row['trial_id']}: {row['error']}")
    print(f"results: {output / TRIALS_FILE}\n         {output / EPOCHS_FILE}\n"
          f"report:  python -m analysis.report {output}")


def given_flags(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """The destinations of the options written out in ``argv`` (the parsers allow no abbreviations)."""
    tokens = {token.split("=", 1)[0] for token in argv if token.startswith("--")}
    return [action.dest for action in parser._actions if tokens & set(action.option_strings)]


def main_of(parser: argparse.ArgumentParser, experiment: Experiment, argv: list[str] | None) -> int:
    """The entry point of a script: parse, run, and turn a user's error into one sentence and exit 2."""
    args = parser.parse_args(argv)
    args.given = given_flags(parser, sys.argv[1:] if argv is None else argv)
    try:
        return run(args, experiment)
    except MixemError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Stopped before any trial started.", file=sys.stderr)
        return 130
