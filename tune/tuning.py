"""The Tuner of a sweep: a new one, or one restored from the sweep's storage with ``--resume``.

Tune's default loggers are CSV and JSON only: its TensorBoard logger imports tensorboardX, which
imports torch into the sweep's driver (about 2 s and 300 MB for a process that never touches a
tensor). Every value it would log is in epochs.parquet.
"""

from __future__ import annotations

import importlib
import os
import shlex
import sys
from pathlib import Path

import ray
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from mixem.errors import MixemError
from mixem.scores import metric_mode
from tune.ray_internals import replace_restored_plan
from tune.recording import RecordResults
from tune.results import STORAGE_FOLDER, ResultFiles
from tune.settings import Settings
from tune.trial import TrialResources, make_trainable


def join_storage(storage: str, *parts: str) -> str:
    return "/".join([storage.rstrip("/"), *parts])


def trial_name(trial) -> str:
    """Trials are named by their id, as in the Parquet files (Ray's default folder names also repeat
    every parameter, too long for some file systems)."""
    return trial.trial_id


def load_callback(spec: str) -> tune.Callback:
    """The Tune callback that ``--callback MODULE:NAME`` names: a ``tune.Callback`` subclass, or a
    function that returns one, called without arguments (e.g. ``ray.air.integrations.wandb:WandbLoggerCallback``)."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise MixemError(f"--callback {spec!r} is not MODULE:NAME; e.g. --callback "
                         "ray.air.integrations.wandb:WandbLoggerCallback.")
    try:
        factory = getattr(importlib.import_module(module_name), name)
        callback = factory()
    except Exception as error:  # a user's module: any import or construction error
        raise MixemError(f"--callback {spec} cannot be made ({type(error).__name__}: {error}); check the module "
                         "and name, and that the module is installed where the sweep runs.") from None
    if not isinstance(callback, tune.Callback):
        raise MixemError(f"--callback {spec} made a {type(callback).__name__}, not a ray.tune.Callback; name a "
                         "Callback class or a function that returns one.")
    return callback


def fit(settings: Settings, plan, resources: TrialResources, concurrent: int, *, output: Path,
        data_dir: str | None, callbacks: list, resuming: bool) -> bool:
    """Run the sweep to its end, or until Ctrl+C or SIGTERM; True when it was stopped before then.
    ``callbacks`` are the user's (--callback): on a resume, those the sweep started with are kept."""
    experiment_path = settings.experiment_path
    train_storage = join_storage(experiment_path, "train")
    placement = settings.placement
    trainable = make_trainable(resources, output=output, train_storage=train_storage, data_dir=data_dir,
                               metric=settings.metric, checkpoint_every=settings.checkpoint_every,
                               max_failures=placement.max_failures, driver_node=ray.util.get_node_ip_address(),
                               compile=placement.compile)
    callback = RecordResults(output, resources, settings.metric, train_storage=train_storage,
                             mirror=join_storage(experiment_path, STORAGE_FOLDER))
    grid = " x the grid" if settings.searches and settings.experiment.search == "grid" else ""
    elsewhere = command(settings.experiment.script, "--resume-from", experiment_path, "--output", "DIR")
    print(f"{settings.kind} {settings.name}: {plan.num_samples} trial(s){grid} on {settings.dataset}, "
          f"{settings.max_epochs} epochs, up to {concurrent} at once, each {resources.workers} worker(s) x "
          f"({resources.cpus_per_worker:g} CPU, {resources.gpus_per_worker:g} GPU); results in {output}; storage "
          f"{experiment_path} (on another machine: {elsewhere})", file=sys.stderr)
    if resuming:
        tuner = _restored_tuner(experiment_path, trainable, plan, callback)
    else:
        tuner = _new_tuner(settings, trainable, plan, [callback, CSVLoggerCallback(), JsonLoggerCallback(), *callbacks])
    # Tune adds no logger of its own (it would add the TensorBoard one); the sweep added CSV and JSON.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    tuner.fit()
    # Tune marks the trials it stops on Ctrl+C as terminated too: only the files tell which ended.
    return len(ResultFiles.open(output, settings.metric).trials) < plan.total_trials


def command(*words: str) -> str:
    """A command line to print for a user to paste: ``python`` and ``words``, each quoted for the shell."""
    return shlex.join(["python", *map(str, words)])


def _restored_tuner(experiment_path: str, trainable, plan, callback: RecordResults) -> tune.Tuner:
    if not tune.Tuner.can_restore(experiment_path):
        raise MixemError(f"Ray's experiment state in {experiment_path} is missing, so the sweep cannot be "
                         "resumed; start it again with another --output.")
    tuner = tune.Tuner.restore(experiment_path, trainable=trainable, resume_unfinished=True,
                               resume_errored=False, param_space=plan.param_space or None)
    # The new search algorithm, scheduler and results callback carry this run's --max-concurrent,
    # the rebuilt ASHA rungs and --output; the loggers and a user's callbacks are kept as restored.
    replace_restored_plan(tuner, search_alg=plan.search_alg, scheduler=plan.scheduler, callback=callback,
                          callback_type=RecordResults)
    return tuner


def _new_tuner(settings: Settings, trainable, plan, callbacks: list) -> tune.Tuner:
    return tune.Tuner(
        trainable,
        param_space=plan.param_space,
        tune_config=tune.TuneConfig(
            metric=settings.metric, mode=metric_mode(settings.metric), search_alg=plan.search_alg,
            scheduler=plan.scheduler, num_samples=plan.num_samples,
            trial_name_creator=trial_name, trial_dirname_creator=trial_name,
            # No actor reuse: a Ray Train trial's actor that ASHA stopped mid-training cannot be
            # reset (Train implements no reset_config), and the trial handed it would error.
            reuse_actors=False),
        run_config=tune.RunConfig(
            name=settings.name, storage_path=settings.storage, callbacks=callbacks,
            # Train retries the workers from their checkpoint; the trial driver lives on this
            # node, so a Tune-level retry would only repeat a trial that Train gave up on.
            failure_config=tune.FailureConfig(max_failures=0), verbose=1),
    )
