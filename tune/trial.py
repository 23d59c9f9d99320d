"""One trial of a sweep: a Tune function trainable that fits a Ray Train ``DataParallelTrainer`` with
a torch process group (``tune.ray_internals``), whose workers run ``mixem.train.train`` (DDP across the
workers of a trial).

How the pieces fit (Ray 2.60, where Train V2 is the default):

- ``run_trial`` holds no CPU and is pinned to the sweep driver's node; it only waits on its
  trainer. The workers call ``ray.train.report`` every epoch, with a checkpoint on evaluated
  epochs, every ``--checkpoint-every`` epochs and the last; ``TuneReportCallback`` hands rank 0's
  metrics on to Tune. (``Tuner(trainer)`` fails under Train V2, and ``ray.tune.report``
  inside a Train worker drops the metrics silently.)
- The Train run is named after the trial id under the sweep's storage: Train's retries (real
  faults: a lost node, a killed worker) and a resumed sweep continue from the trial's last checkpoint.
- A trial that already has a row in ``trials.parquet`` is never trained again: on a resumed sweep,
  Tune may still think it unfinished (the driver died before Tune recorded its end).
- A ``MixemError`` in a worker (missing data, a diverged loss) is reported, not raised, so Train
  does not retry it: a diverged trial ends with the worst value of the metric, which tells the
  searcher to avoid its region; any other ``MixemError`` fails the trial at once.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mixem.config import FIELDS, Config
from mixem.errors import MixemError
from mixem.files import scratch_folder
from mixem.presets import ABLATIONS
from mixem.scores import metric_mode
from tune.ray_internals import TorchProcessGroup, set_progress_metrics, trainer_without_datasets_callback
from tune.results import TRIALS_FILE, read_parquet, trials_schema

# The key of a worker's report that says the trial failed with a MixemError, and why.
TRIAL_ERROR = "trial_error"
# The key of a worker's report that repeats the final value of a Train run whose last checkpoint
# already held every epoch (its driver died between that checkpoint and the trial's end): Tune and
# the searcher get the trial's value; the epochs are recorded from the checkpoint, not from it.
FROM_CHECKPOINT = "from_checkpoint"
NAN = float("nan")
# A trial's run folder lives in the worker's temporary folder, under this prefix, for the trial's lifetime only;
# the folders of trials that were killed (ASHA's stop) are removed by the next trial on the node, and by the
# sweep's driver at its end (mixem.files.scratch_folder).
TRIAL_FOLDER_PREFIX = "mixem-trial-"
# The trial driver only waits on its trainer. It must hold no CPU, or with as many trials as
# CPUs the drivers take every CPU and the Train workers never start; Tune rejects a bundle of
# nothing but zeros, so it asks for a little memory instead.
TRIAL_DRIVER_MEMORY = 256 * 2**20


# Tests of the sweep on fake clusters, whose GPUs are Ray's bookkeeping only, set this to "1" in the
# cluster's environment: a worker that reserved GPUs then trains on the CPU (and records device "cpu").
# Nowhere else does a worker that reserved a GPU train without one.
LOGICAL_GPUS_ENV = "MIXEM_LOGICAL_GPUS"


def trains_on_gpu(gpus_per_worker: float) -> bool:
    """Whether a worker that reserved ``gpus_per_worker`` GPUs must train on a usable GPU."""
    return gpus_per_worker > 0 and os.environ.get(LOGICAL_GPUS_ENV) != "1"


class TrialFailed(Exception):
    """A trial's worker reported a MixemError: the sentence a user can act on."""


def worst_value(metric: str) -> float:
    """A value of ``metric`` no real evaluation reaches: every clustering score is >= -1, and no
    validation loss comes near 1e9 (finite, so that ASHA's percentiles stay finite)."""
    return -1.0 if metric_mode(metric) == "max" else 1e9


@dataclass(frozen=True)
class TrialResources:
    """What each trial's trainer asks for, and how its workers talk."""

    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    backend: str  # torch.distributed backend: gloo, or nccl for multi-GPU trials on real GPUs

    @property
    def cpus(self) -> float:
        return self.workers * self.cpus_per_worker

    @property
    def gpus(self) -> float:
        return self.workers * self.gpus_per_worker


def trial_config_to_config(trial_config: dict) -> Config:
    """The full config of a trial: the dataset's preset, then the trial's fields, then its ablation
    preset (if any). Keys that are not config fields (Optuna's on/off draws, ``preset``) are skipped."""
    fields = {name: value for name, value in trial_config.items() if name in FIELDS}
    preset = ABLATIONS.get(trial_config.get("preset", ""), {})
    return Config.for_dataset(fields["dataset"], {**fields, **preset})


def leave_working_dir() -> None:
    """Move this Ray worker out of the job's unpacked working dir (`ray job submit --working-dir`), where Ray
    starts it: a node may unpack that folder again under it (on Ray's fake cluster every node unpacks into one
    folder of one disk), and the next call that asks for the current folder fails (torch's imports do). Our
    tasks need none of it: the code is on sys.path and every path they get is absolute. Called first by every
    function of ours that Ray runs on a node."""
    os.chdir(tempfile.gettempdir())


def train_worker(loop_config: dict) -> str | None:
    """Body of every Ray Train worker of a trial: train its config, report each epoch to Ray. Returns
    the message of a MixemError that is not a divergence (Train hands rank 0's to ``run_trial``)."""
    leave_working_dir()  # before torch's imports ask for the current folder
    import ray.train

    from mixem.device import cuda_problem, set_cpu_threads
    from mixem.errors import NonFiniteLossError
    from mixem.train import train  # torch is imported in the workers, not in the sweep's driver

    # Ray Train logs every report with its whole metrics dict at INFO on the root logger.
    logging.getLogger().setLevel(logging.WARNING)
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU") if ray.is_initialized() else None
    if cpus:  # the CPUs Ray gave this worker, whatever OMP_NUM_THREADS the node exported
        set_cpu_threads(max(1, round(cpus)))
    config: Config = loop_config["config"]  # the validated Config itself: a dataclass pickles as it is
    metric, every = loop_config["metric"], loop_config["checkpoint_every"]
    # The searched metric at the latest evaluation (NaN before the first), and whether train reported.
    last = {"value": NAN, "epoch": 0, "reported": False}

    def report(metrics: dict, checkpoint_dir: Path | None) -> None:
        last["reported"] = True
        if metrics["evaluated"]:
            last["value"] = float(metrics.get(metric, NAN))
        last["epoch"] = metrics["epoch"]
        epoch = metrics["epoch"]
        keep = metrics["evaluated"] or epoch == config.optim.epochs or (every and epoch % every == 0)
        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir and keep else None
        # Tune (ASHA, Optuna) needs the metric in every result: between evaluations it sees the
        # last measured value; tune/results.py keeps only measured values in the Parquet files.
        ray.train.report({**metrics, metric: last["value"]}, checkpoint=checkpoint)  # uploads before returning

    checkpoint = ray.train.get_checkpoint()
    try:
        on_gpu = trains_on_gpu(loop_config["gpus"])
        problem = cuda_problem() if on_gpu else None
        if problem:
            raise MixemError(f"This trial's workers each reserve {loop_config['gpus']:g} GPU, but on node "
                             f"{ray.util.get_node_ip_address()} {problem}; fix the node's NVIDIA driver or image, or "
                             "pass --gpus-per-worker 0 to train on CPUs.")
        with scratch_folder(TRIAL_FOLDER_PREFIX) as scratch:
            out_dir = scratch / "run"
            # A worker that reserved GPUs trains on one or fails (mixem.device): never on the CPU.
            options = dict(data_dir=loop_config["data_dir"], report=report, progress=False,
                           compile=loop_config["compile"], device="cuda" if on_gpu else "cpu")
            if checkpoint is None:
                final = train(config, out_dir, **options)
            else:
                with checkpoint.as_directory() as resume_from:
                    final = train(config, out_dir, resume_from=resume_from, **options)
        if not last["reported"]:  # the checkpoint held every epoch: Tune needs the metric in a result
            ray.train.report({"epoch": final.get("epoch", config.optim.epochs), metric: float(final.get(metric, NAN)),
                              FROM_CHECKPOINT: True})
    except NonFiniteLossError as error:  # every rank diverges together: they see the same loss
        ray.train.report({TRIAL_ERROR: str(error), "epoch": last["epoch"], metric: worst_value(metric)})
    except MixemError as error:  # Tune wants its metric in every result: NaN, and run_trial fails the trial
        ray.train.report({TRIAL_ERROR: str(error), metric: NAN})
        return str(error)
    return None


def ended_trials(output: Path) -> dict[str, dict]:
    """The rows of ``output``'s trials.parquet by trial id."""
    path = output / TRIALS_FILE
    return {row["trial_id"]: row for row in read_parquet(path, trials_schema())} if path.exists() else {}


@functools.cache
def trainer_class():
    """Ray Train's ``DataParallelTrainer`` with ``TorchProcessGroup`` as its backend: what
    ``TorchTrainer`` is, less two costs per trial (``tune/ray_internals.py``). Made on first use, so
    that the sweep's driver, which never fits a trainer, does not import Ray Train either."""
    return trainer_without_datasets_callback()


def make_trainable(resources: TrialResources, *, output: Path, train_storage: str, data_dir: str | None,
                   metric: str, checkpoint_every: int, max_failures: int, driver_node: str, compile: bool):
    """The function trainable of the sweep, with its resources. ``driver_node`` pins every trial's
    driver to the node of the sweep's driver, where ``output`` is; the Train workers go wherever
    there are CPUs and GPUs."""
    from ray import tune
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.tune.integration.ray_train import TuneReportCallback

    def run_trial(trial_config: dict) -> None:
        trial_id = tune.get_context().get_trial_id()
        ended = ended_trials(output).get(trial_id)
        if ended is not None:
            # It ended before the last driver died: its row stands and it is not trained again. The
            # searcher learns its final value, as it would have then.
            tune.report({"epoch": ended["epochs"], metric: ended[f"final/{metric}"]})
            return
        config = trial_config_to_config(trial_config).validate()
        trainer = trainer_class()(
            train_worker,
            train_loop_config={"config": config, "data_dir": data_dir, "metric": metric,
                               "checkpoint_every": checkpoint_every, "compile": compile,
                               "gpus": resources.gpus_per_worker},
            backend_config=TorchProcessGroup(backend=resources.backend),
            scaling_config=ScalingConfig(
                num_workers=resources.workers,
                use_gpu=resources.gpus_per_worker > 0,
                resources_per_worker={"CPU": resources.cpus_per_worker, "GPU": resources.gpus_per_worker},
            ),
            run_config=RunConfig(
                name=trial_id,  # the same on a retry and a resume: Train continues from its checkpoint
                storage_path=train_storage,
                callbacks=[TuneReportCallback()],
                failure_config=FailureConfig(max_failures=max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=2),
                logging_config=LoggingConfig(log_level="WARNING"),  # not every report's whole metrics dict
            ),
        )
        error = trainer.fit().return_value
        if error:  # bad input, not a divergence: the trial cannot run at all
            raise TrialFailed(error)

    trainable = tune.with_resources(run_trial, {"cpu": 0, "memory": TRIAL_DRIVER_MEMORY,
                                                f"node:{driver_node}": 0.001})
    set_progress_metrics(trainable, ["epoch", "loss_total", metric])
    return trainable
