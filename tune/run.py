"""The one ``run`` that ``tune/sweep.py`` and ``tune/ablate.py`` call.

``main_of`` turns a command line into ``Settings`` (``tune/arguments.py``), checked before any work
starts; ``run`` checks what the settings will train, takes the output folder's lock, starts or joins
Ray, sizes the trials for the cluster, then runs the Tuner (new, or restored with ``--resume``) and
prints where the results are. What differs between a sweep and an ablation is the settings'
experiment (``tune/settings.py``) and its plan (``tune/plans.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from mixem.config import Config
from mixem.errors import MixemError
from mixem.files import FolderLock, remove_dead_scratch_folders, write_atomic
from mixem.memory import memory_problem
from mixem.scores import metric_mode, reported_variant
from tune import cluster
from tune.arguments import check_output_free, given_flags, settings_from_args
from tune.plans import check_ablation, make_plan
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
from tune.settings import Settings
from tune.space import check_measurable, read_space_args, resolve_space
from tune.trial import TRIAL_FOLDER_PREFIX
from tune.tuning import command, fit, load_callback

# Seconds `ray job stop` should wait between SIGTERM and SIGKILL: Tune saves its state (to S3, with
# the searcher's) and the trials stop; below the minimum the sweep warns at its start.
RECOMMENDED_JOB_STOP_WAIT_S = 120
MIN_JOB_STOP_WAIT_S = 30
# Seeds of the no-learning baselines: enough for an interval.
MIN_BASELINE_SEEDS = 5
DRIVER_LOCK_FIX = "wait for it to end or stop it (Ctrl+C, `ray job stop`) before resuming."


def baselines(settings: Settings, fixed: dict, data_dir: str | None, resources) -> list[dict]:
    """The dataset's no-learning baselines with the trials' K-means settings, for at least 5 seeds from
    --seed (the ablation's seeds among them), so that every report can say whether training helped."""
    config = Config.for_dataset(settings.dataset, fixed)
    seeds_run = 1 if settings.searches else settings.experiment.seeds
    seeds = list(range(settings.seed, settings.seed + max(MIN_BASELINE_SEEDS, seeds_run)))
    print(f"computing the no-learning baselines (K-means on {settings.dataset}'s pixels, {len(seeds)} seeds; cached "
          "after the first time)...", file=sys.stderr)
    return cluster.pixel_baselines(settings.dataset, data_dir, resources, eval_split=config.data.eval_split,
                                   seeds=seeds, n_init=config.eval.kmeans_n_init, max_iter=config.eval.kmeans_max_iter)


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


def check_trials(settings: Settings, fixed: dict, space: dict) -> None:
    """What the trials will train, before Ray starts: an ablation's presets, a search's metric, and on this
    machine (a local Ray) the CPUs a trial asks for and a mixture head that fits its memory."""
    if settings.searches:
        check_measurable(settings.metric, settings.dataset, fixed, space)
    else:
        check_ablation(settings, fixed)
    if settings.placement.address is None:
        placement = settings.placement  # the local Ray gets this machine's CPUs: no need to start it to know
        cluster.check_trial_cpus(placement.workers_per_trial, placement.cpus_per_worker, os.cpu_count() or 1,
                                 "this machine")
        param = space.get("num_components")
        largest = max(param.values if hasattr(param, "values") else (param.high,)) if param else None
        config = Config.for_dataset(settings.dataset, {**fixed, **({"num_components": largest} if largest else {})})
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        local_batch = max(1, config.optim.batch_size // settings.placement.workers_per_trial)
        problem = memory_problem(config.model, local_batch, memory, "this machine")
        if problem:
            raise MixemError(problem)


def run(settings: Settings, *, resuming: bool) -> int:
    """Everything a sweep or an ablation does; see the module docstring."""
    signal.signal(signal.SIGTERM, _sigterm_as_sigint)
    fixed, space = resolve_space(settings.dataset, read_space_args(list(settings.space)), settings.base_overrides(),
                                 search=settings.searches)
    check_trials(settings, fixed, space)
    data_dir = settings.placement.data_dir or os.environ.get("MIXEM_DATA_DIR")
    if data_dir and "://" not in data_dir:  # a URI (s3://, gs://) is staged on each node (mixem.staging)
        data_dir = str(Path(data_dir).resolve())
    callbacks = [] if resuming else [load_callback(spec) for spec in settings.callback]
    warn_if_ray_job_stop_kills()
    output = settings.output.resolve()
    mirror = Storage(settings.storage).child(settings.name, STORAGE_FOLDER)
    lock = FolderLock(output, "sweep driver", DRIVER_LOCK_FIX) if resuming else None
    # A corrupt file stops a resume here, before any write.
    files = ResultFiles.open(output, settings.metric, mirror) if resuming else None
    owns_ray = not cluster.ray.is_initialized()  # tests (and notebooks) may have started Ray already
    if owns_ray:
        cluster.start_ray(settings.placement.address, verbose=settings.placement.verbose)
    signal.signal(signal.SIGTERM, _sigterm_as_sigint)  # again: ray.init installs a handler that exits at once
    try:
        resources, concurrent, resolved = size_trials(settings, data_dir)
        if lock is None:
            lock = FolderLock(output, "sweep driver", DRIVER_LOCK_FIX)
            check_output_free(output)  # again, under the lock: another sweep may have started there meanwhile
            mirror.check_writable()
            files = ResultFiles.open(output, settings.metric, mirror)
        record_start(settings, output, mirror, resuming=resuming, resolved=resolved)
        files.write_empty()
        if not (output / BASELINES_FILE).exists():
            write_baselines(output, baselines(settings, fixed, data_dir, resources), mirror)
        plan = make_plan(settings, fixed, space, concurrent, list(files.epochs.values()))
        started = time.time()
        interrupted = fit(settings, plan, resources, concurrent, output=output, data_dir=data_dir,
                          callbacks=callbacks, resuming=resuming)
        summarize(output, settings.metric, plan.varied, time.time() - started)
        if interrupted:
            print("The sweep was stopped; continue it with: "
                  + command(settings.experiment.script, "--output", settings.output, "--resume"), file=sys.stderr)
            return 130
        return 0
    finally:
        if owns_ray:
            cluster.ray.shutdown()
        # The run folders of trials Ray killed on this node (ASHA's stops), which no later trial cleaned up.
        remove_dead_scratch_folders(Path(tempfile.gettempdir()), TRIAL_FOLDER_PREFIX)
        if lock is not None:
            lock.release()


def size_trials(settings: Settings, data_dir: str | None):
    """(each trial's resources, trials at once, what was resolved for sweep.json), once the data loads where
    the trials will run."""
    placement = settings.placement
    cluster.remove_orphaned_placement_groups()  # else their CPUs and GPUs would never be free for our trials
    capacity = cluster.cluster_capacity()
    resources = cluster.trial_resources(placement.workers_per_trial, placement.cpus_per_worker,
                                        placement.gpus_per_worker, placement.backend, capacity,
                                        local=placement.address is None)
    concurrent = cluster.max_concurrent_trials(resources, placement.max_concurrent, capacity,
                                               local=placement.address is None)
    print(f"checking that {settings.dataset} loads where the trials will run...", file=sys.stderr)
    cluster.preflight(settings.dataset, data_dir, resources, capacity)
    resolved = {**asdict(resources), "max_concurrent": concurrent, "capacity": asdict(capacity)}
    return resources, concurrent, resolved


def record_start(settings: Settings, output: Path, mirror: Storage, *, resuming: bool, resolved: dict) -> None:
    """sweep.json: the settings, and for each start and resume what it resolved, on which code and packages."""
    runs = json.loads((output / SETTINGS_FILE).read_text()).get("runs", []) if resuming else []
    runs.append({"started": datetime.now(UTC).isoformat(timespec="seconds"), "resumed": resuming,
                 "resolved": resolved, **provenance()})
    write_atomic(output / SETTINGS_FILE, settings.to_json(runs))
    mirror.upload(output / SETTINGS_FILE)


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
        best = _best(scored, metric)
        shown = ", ".join(f"{name}={best[f'config/{name}']:.4g}" if isinstance(best.get(f"config/{name}"), float)
                          else f"{name}={best.get(f'config/{name}', best.get(name))}" for name in varied)
        print(f"best trial {best['trial_id']} ({best['status']}, {best['epochs']} epochs): {metric} "
              f"{best[f'final/{metric}']:.4f}; {shown}")
    finished = trials[(trials["status"] == "finished") & trials[f"final/{metric}"].notna()]
    if len(finished):
        from analysis.baselines import load_baselines, verdict_line

        best = _best(finished, metric)
        variant = reported_variant(best["config/head"])
        print(verdict_line(best[f"final/{variant}_acc"], f"the best finished trial ({best['trial_id']}, {variant})",
                           load_baselines(output), best["dataset"]))
    for _, row in trials[trials["status"] == "errored"].head(3).iterrows():
        print(f"errored trial {row['trial_id']}: {row['error']}")
    print(f"results: {output / TRIALS_FILE}\n         {output / EPOCHS_FILE}\n"
          f"report:  {command('-m', 'analysis.report', output)}")


def _best(trials, metric: str):
    values = trials[f"final/{metric}"]
    return trials.loc[values.idxmax() if metric_mode(metric) == "max" else values.idxmin()]


def main_of(parser: argparse.ArgumentParser, kind: str, argv: list[str] | None) -> int:
    """The entry point of a script: parse, run, and turn a user's error into one sentence and exit 2."""
    args = parser.parse_args(argv)
    given = given_flags(parser, sys.argv[1:] if argv is None else argv)
    try:
        settings, resuming = settings_from_args(args, given, kind)
        return run(settings, resuming=resuming)
    except MixemError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Stopped before any trial started.", file=sys.stderr)
        return 130
