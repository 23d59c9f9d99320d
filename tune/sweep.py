"""Hyperparameter sweep of MIX'EM on Ray: Tune searches, Train trains, Parquet collects.

    python tune/sweep.py --dataset digits --smoke-test                 # CI-sized: 4 trials x 2 epochs
    python tune/sweep.py --dataset digits --num-samples 16 --max-epochs 30 --output sweeps/digits
    python tune/sweep.py --dataset digits --space num_components=10 w_push=0 lr=1e-3:1e-2
    python tune/sweep.py --output sweeps/digits --resume               # continue a stopped sweep
    python tune/sweep.py --dataset cifar100-20 --address auto --storage s3://BUCKET/mixem --output sweeps/c100

How the pieces fit (Ray 2.60, where Train V2 is the default):
- Each Tune trial runs ``run_trial``, a function trainable that holds no CPU and fits a
  ``TorchTrainer``. Its workers run ``mixem.train.train`` (DDP across the workers of a trial) and
  call ``ray.train.report`` each epoch with a checkpoint; ``TuneReportCallback`` hands rank 0's
  metrics on to Tune. (``Tuner(TorchTrainer(...))`` fails under Train V2, and ``ray.tune.report``
  inside a Train worker drops the metrics silently.)
- A trial's Train run is named after the trial id under the sweep's storage: Train's retries
  (``--max-failures``) and a resumed sweep continue from the trial's last epoch.
- ASHA stops weak trials on the reported ``epoch`` (``training_iteration`` restarts with a retry);
  ``ResultsCallback`` writes the Parquet files (``tune/results.py``) as trials end.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

if __name__ == "__main__":  # `python tune/sweep.py`: make the project importable without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ray
from ray import tune

from mixem.config import DATASET_PRESETS, DATASETS, FIELDS, Config
from mixem.errors import MixemError
from mixem.presets import ABLATIONS
from mixem.scores import FIXED_VARIANT, METRIC_KEYS, VALIDATION_KEYS, metric_mode
from tune.results import EPOCHS_FILE, TRIALS_FILE, ResultStore
from tune.space import Choice, LogUniform, search_space

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SETTINGS_FILE = "sweep.json"
NAN = float("nan")
# The trial driver only waits on its TorchTrainer. It must hold no CPU, or with as many trials as
# CPUs the drivers take every CPU and the Train workers never start; Tune rejects a bundle of
# nothing but zeros, so it asks for a little memory instead.
TRIAL_DRIVER_MEMORY = 256 * 2**20
# What --smoke-test sets unless given explicitly: tiny, for CI and a first try.
SMOKE = {"num_samples": 4, "max_epochs": 2, "grace_epochs": 1, "seeds": 1}
SMOKE_FIXED = {"kmeans_n_init": 2, "interim_kmeans_n_init": 2, "eval_every": 1}


# ---------------------------------------------------------------------------------------------
# The Ray Train worker and the Tune trial


def train_worker(loop_config: dict) -> None:
    """Body of every Ray Train worker of a trial: train its config, report each epoch to Ray."""
    from mixem.train import train  # torch is imported in the workers, not in the sweep's driver

    # Ray Train logs every report with its whole metrics dict at INFO on the root logger.
    logging.getLogger().setLevel(logging.WARNING)
    config = Config.from_flat(loop_config["config"])
    metric = loop_config["metric"]
    last_value = NAN  # the searched metric at the latest evaluation (NaN before the first)

    def report(metrics: dict, checkpoint_dir: Path | None) -> None:
        nonlocal last_value
        if metrics["evaluated"]:
            last_value = float(metrics.get(metric, NAN))
        # Tune (ASHA, Optuna) needs the metric in every result: between evaluations it sees the
        # last measured value; tune/results.py keeps only measured values in the Parquet files.
        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report({**metrics, metric: last_value}, checkpoint=checkpoint)  # uploads before returning

    checkpoint = ray.train.get_checkpoint()
    with tempfile.TemporaryDirectory(prefix="mixem-trial-") as out_dir:
        if checkpoint is None:
            train(config, out_dir, data_dir=loop_config["data_dir"], report=report, progress=False)
        else:
            with checkpoint.as_directory() as resume_from:
                train(config, out_dir, data_dir=loop_config["data_dir"], report=report, resume_from=resume_from,
                      progress=False)


@dataclass(frozen=True)
class TrialResources:
    """What each trial's TorchTrainer asks for, and how its workers talk."""

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


def make_trainable(resources: TrialResources, *, train_storage: str, data_dir: str | None, metric: str,
                   max_failures: int, driver_node: str):
    """The function trainable of the sweep, with its resources. ``driver_node`` pins every trial's
    driver to the node of the sweep's driver, so trial drivers only die with the sweep (which
    ``--resume`` covers); the Train workers go wherever there are CPUs and GPUs."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    def run_trial(trial_config: dict) -> None:
        config = trial_config_to_config(trial_config).validate()
        trainer = TorchTrainer(
            train_worker,
            train_loop_config={"config": config.to_flat(), "data_dir": data_dir, "metric": metric},
            torch_config=TorchConfig(backend=resources.backend),
            scaling_config=ScalingConfig(
                num_workers=resources.workers,
                use_gpu=resources.gpus_per_worker > 0,
                resources_per_worker={"CPU": resources.cpus_per_worker, "GPU": resources.gpus_per_worker},
            ),
            run_config=RunConfig(
                name=tune.get_context().get_trial_id(),  # the same on a retry: Train resumes from its checkpoint
                storage_path=train_storage,
                callbacks=[TuneReportCallback()],
                failure_config=FailureConfig(max_failures=max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=2),
                logging_config=LoggingConfig(log_level="WARNING"),  # not every report's whole metrics dict
            ),
        )
        trainer.fit()

    # What Tune's progress output shows of each result (all ~60 metrics otherwise).
    run_trial._progress_metrics = ["epoch", "loss_total", metric, "acc_max_variant"]
    return tune.with_resources(run_trial, {"cpu": 0, "memory": TRIAL_DRIVER_MEMORY, f"node:{driver_node}": 0.001})


def trial_name(trial) -> str:
    """Trials are named by their id, as in the Parquet files (Ray's default folder names also repeat
    every parameter, too long for some file systems)."""
    return trial.trial_id


class OptunaSpace:
    """Optuna define-by-run space: draws each searched field of ``space`` and returns the fixed ones.

    A weight with ``or_zero`` is drawn in two steps, ``<name>_on`` (True/False), then the value only
    when on; the draw is conditional, so TPE learns the value only from trials that used it.
    """

    def __init__(self, space: dict, fixed: dict):
        self.space, self.fixed = space, fixed

    def __call__(self, trial) -> dict:
        zeroed = {}
        for name, param in self.space.items():
            if isinstance(param, Choice):
                trial.suggest_categorical(name, list(param.values))
            elif param.or_zero and not trial.suggest_categorical(f"{name}_on", [True, False]):
                zeroed[name] = 0.0
            else:
                trial.suggest_float(name, param.low, param.high, log=True)
        return {**self.fixed, **zeroed}


# ---------------------------------------------------------------------------------------------
# Writing results as trials end


class ResultsCallback(tune.Callback):
    """Runs in the sweep's driver: each epoch into ``.running.json``, each ended trial into Parquet."""

    clock = staticmethod(time.time)  # tests replace it

    def __init__(self, output: Path, resources: TrialResources, metric: str):
        self.output, self.resources, self.metric = output, resources, metric
        self.store: ResultStore | None = None
        self.started: dict[str, float] = {}
        self.stopped_by_scheduler: set[str] = set()

    def setup(self, **info):
        self.store = ResultStore.open(self.output, self.metric)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started[trial.trial_id] = self.clock()

    def _wall_seconds(self, trial) -> float:
        now = self.clock()
        return self.store.wall_seconds_before(trial.trial_id) + now - self.started.get(trial.trial_id, now)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "epoch" not in result:
            return
        if result.get("done"):  # Tune marks the result a scheduler (ASHA) stopped the trial on
            self.stopped_by_scheduler.add(trial.trial_id)
        self.store.add_epoch(trial.trial_id, trial.config.get("preset", ""), result, self._wall_seconds(trial))

    def on_trial_complete(self, iteration, trials, trial, **info):
        config = trial_config_to_config(trial.config).to_flat()
        epochs = trial.last_result.get("epoch", 0)
        early = trial.trial_id in self.stopped_by_scheduler and epochs < config["epochs"]
        self._finish(trial, config, "early_stopped" if early else "finished")

    def on_trial_error(self, iteration, trials, trial, **info):
        config = trial_config_to_config(trial.config).to_flat()
        self._finish(trial, config, "errored", error=error_summary(trial.get_error() or "unknown error"))

    def _finish(self, trial, config: dict, status: str, error: str = "") -> None:
        self.store.finish(trial.trial_id, trial.config.get("preset", ""), config, status=status, error=error,
                          wall_seconds=self._wall_seconds(trial), cpus=self.resources.cpus, gpus=self.resources.gpus)


def error_summary(traceback_text: str) -> str:
    """The line of a (possibly nested) traceback that says what went wrong: the last MixemError's
    message when there is one (a user error), else the last exception line."""
    lines = [line.strip() for line in str(traceback_text).splitlines() if line.strip()]
    mixem = [line for line in lines if "mixem.errors." in line and "Error:" in line]
    if mixem:
        return mixem[-1].split("Error:", 1)[1].strip()
    exceptions = [line for line in lines if not line.startswith(("File ", "^", "~")) and ": " in line
                  and line.split(":", 1)[0].replace(".", "").replace("_", "").isalnum()]
    return (exceptions or lines or ["unknown error"])[-1]


# ---------------------------------------------------------------------------------------------
# The command line


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by the sweep and the ablation (tune/ablate.py): what runs, where, on what."""
    what = parser.add_argument_group("what to train")
    what.add_argument("--dataset", help=f"dataset to train on, one of {', '.join(DATASET_PRESETS)} (required unless "
                      "--resume); its preset is mixem.config.DATASET_PRESETS")
    what.add_argument("--max-epochs", type=int,
                      help="epochs of a trial that is not stopped early (default: the dataset preset's epochs)")
    what.add_argument("--space", nargs="+", default=[], metavar="NAME=VALUE|FILE.json",
                      help="narrow or fix the search space, or fix any other config field: NAME=V fixes it, "
                      "NAME=LO:HI searches log-uniformly in [LO, HI], NAME=A,B,C chooses among values, "
                      "NAME=0,LO:HI is 0 or log-uniform in [LO, HI]; or a JSON file of {NAME: value} with the "
                      "same strings, numbers, or lists of values (e.g. --space num_components=10 w_push=0)")
    what.add_argument("--metric", default=f"{FIXED_VARIANT}_acc",
                      help="score to optimise (maximised, or minimised for a validation loss): a key of "
                      "mixem.scores.METRIC_KEYS or VALIDATION_KEYS. The default, %(default)s, is one clustering "
                      "fixed before any sweep: the paper's K-means initialised with the mixture components' means, "
                      "on the L2-normalised mixed embedding z. acc_max is the best ACC of all variants picked with "
                      "the test labels, an oracle; label-free choices: val_loss, val_contrastive, "
                      "<variant>_silhouette")
    what.add_argument("--seed", type=int, default=0,
                      help="training seed of every trial, and the searcher's seed (default: %(default)s)")
    what.add_argument("--data-dir", type=Path,
                      help="dataset root, the same path on every node (default: $MIXEM_DATA_DIR, else ./data)")
    where = parser.add_argument_group("where it runs")
    where.add_argument("--address",
                       help="Ray cluster to join: 'auto' for the cluster this machine belongs to (started by "
                       "`ray up` or `ray start`), or HOST:PORT (default: start a local Ray on this machine)")
    where.add_argument("--workers-per-trial", type=int, default=1,
                       help="Ray Train workers per trial; more than 1 trains with DDP, each worker taking a "
                       "share of every batch (default: %(default)s)")
    where.add_argument("--gpus-per-worker", type=float,
                       help="GPUs per Train worker (default: 1 when the cluster has GPUs, else 0)")
    where.add_argument("--cpus-per-worker", type=float, default=1, help="CPUs per Train worker (default: %(default)s)")
    where.add_argument("--max-concurrent", type=int,
                       help="trials running at once (default: as many as the cluster's CPUs and GPUs hold)")
    where.add_argument("--backend", choices=["auto", "gloo", "nccl"], default="auto",
                       help="torch.distributed backend; auto (default): nccl for several GPU workers per trial, "
                       "else gloo")
    where.add_argument("--max-failures", type=int, default=2,
                       help="times Ray Train restarts a trial's workers after a failure, from its last epoch "
                       "(default: %(default)s)")
    out = parser.add_argument_group("results")
    out.add_argument("--output", type=Path,
                     help="folder for trials.parquet, epochs.parquet and sweep.json (default: "
                     "sweeps/DATASET-DATE-TIME); a local path")
    out.add_argument("--storage",
                     help="Ray's persistent storage for checkpoints and experiment state: a local path, or "
                     "s3://BUCKET/PREFIX, which every node of a multi-node cluster must reach (default: "
                     "OUTPUT/ray)")
    out.add_argument("--resume", action="store_true",
                     help="continue the sweep in --output with the settings it was started with: finished "
                     "trials are kept, trials that were running continue from their last epoch")
    out.add_argument("--smoke-test", action="store_true",
                     help="tiny run for CI and a first try: " + ", ".join(f"{k}={v}" for k, v in SMOKE.items())
                     + ", " + ", ".join(f"{k}={v}" for k, v in SMOKE_FIXED.items()) + " (unless given)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python tune/sweep.py",
        description="Search MIX'EM's loss weights and K (tune/space.py) with Ray Tune: each trial trains with "
        "Ray Train, ASHA stops weak trials early, and every trial and epoch lands in Parquet files "
        "(the README lists their columns).",
        epilog="examples:\n"
        "  python tune/sweep.py --dataset digits --smoke-test\n"
        "  python tune/sweep.py --dataset digits --num-samples 16 --output sweeps/digits\n"
        "  python tune/sweep.py --dataset digits --space num_components=10 w_push=0 lr=1e-3:1e-2\n"
        "  python tune/sweep.py --output sweeps/digits --resume\n"
        "  python tune/sweep.py --dataset cifar100-20 --address auto --gpus-per-worker 1 --storage s3://BUCKET/sweeps",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(parser)
    search = parser.add_argument_group("search")
    search.add_argument("--search", choices=["optuna", "random", "grid"], default="optuna",
                        help="optuna: Optuna's TPE; random: random draws from the same space; grid: every "
                        "combination of each parameter's grid values (tune/space.py); default: %(default)s")
    search.add_argument("--num-samples", type=int,
                        help="trials to run (default: 16; with --search grid, repeats of the whole grid, default 1)")
    search.add_argument("--grace-epochs", type=int,
                        help="epochs every trial gets before ASHA may stop it; the sweep also evaluates every "
                        "that many epochs (default: max(1, max-epochs // 10))")
    search.add_argument("--reduction-factor", type=float, default=3,
                        help="ASHA keeps the best 1/reduction-factor of trials at each rung (default: %(default)s)")
    return parser


@dataclass
class Plan:
    """What Tune runs: built from the command line by the sweep or by the ablation."""

    param_space: dict
    search_alg: object | None
    scheduler: object | None
    num_samples: int
    varied: list[str]  # the config fields (or "preset") that differ between trials, for the summary


def parse_space_value(text: str):
    """``"0.1"`` -> 0.1, ``"10"`` -> 10, ``"true"`` -> True, anything else stays a string."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_space_spec(value):
    """One --space value, as text or JSON, into ("fixed", v), ("range", lo, hi, or_zero) or ("choice", values)."""
    if isinstance(value, list):
        return ("choice", tuple(value))
    if not isinstance(value, str):
        return ("fixed", value)
    items = [item.strip() for item in value.split(",")]
    ranges = [item for item in items if ":" in item]
    if ranges:
        others = [parse_space_value(item) for item in items if ":" not in item]
        if len(ranges) > 1 or any(other != 0 for other in others):
            raise ValueError("a range takes the form LO:HI, or 0,LO:HI to allow 0")
        low, high = (float(part) for part in ranges[0].split(":"))
        return ("range", low, high, bool(others))
    if len(items) > 1:
        return ("choice", tuple(parse_space_value(item) for item in items))
    return ("fixed", parse_space_value(items[0]))


def read_space_args(tokens: list[str]) -> dict:
    """``--space`` tokens (NAME=VALUE, or JSON files) into ``{name: value}``, in order."""
    specs = {}
    for token in tokens:
        if "=" in token:
            name, value = token.split("=", 1)
            specs[name.strip()] = value
            continue
        path = Path(token)
        if not path.is_file():
            raise MixemError(f"--space {token!r} is neither NAME=VALUE nor a JSON file; see --help.")
        try:
            loaded = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise MixemError(f"--space file {path} is not valid JSON ({error}); fix it or pass NAME=VALUE.") from None
        if not isinstance(loaded, dict):
            raise MixemError(f"--space file {path} must hold a JSON object of {{NAME: value}}.")
        specs.update(loaded)
    return specs


def resolve_space(dataset: str, specs: dict, base: dict, *, search: bool = True) -> tuple[dict, dict]:
    """Apply ``--space`` to the default search space: returns (fixed overrides, searched space), both
    checked, so that a bad name or value fails here with one sentence rather than in every trial.
    With ``search=False`` (the ablation) nothing is searched and --space may only fix values."""
    defaults = Config.for_dataset(dataset)
    space = search_space(DATASETS[dataset].num_classes, defaults.optim.lr) if search else {}
    fixed = dict(base)
    for name, value in specs.items():
        if name in ("dataset", "epochs"):
            raise MixemError(f"--space cannot set {name}; use --{'dataset' if name == 'dataset' else 'max-epochs'}.")
        if name not in FIELDS:
            raise MixemError(f"--space names unknown field {name!r}; use a config field (python -m mixem.train "
                             f"--help), e.g. one of the searched {', '.join(space)}.")
        try:
            spec = parse_space_spec(value)
        except ValueError as error:
            raise MixemError(f"--space {name}={value!r} cannot be read: {error}.") from None
        space.pop(name, None)
        fixed.pop(name, None)
        if spec[0] != "fixed" and not search:
            raise MixemError(f"--space {name}={value} searches, but this run searches nothing; give one value.")
        if spec[0] == "fixed":
            fixed[name] = spec[1]
        elif spec[0] == "choice":
            space[name] = Choice(spec[1])
        else:
            _, low, high, or_zero = spec
            if not isinstance(FIELDS[name].default, float):
                raise MixemError(f"--space {name} is not a real number, so it takes values A,B,C, not a range.")
            if not 0 < low < high:
                raise MixemError(f"--space {name}={value} needs 0 < LO < HI for a log-uniform range.")
            grid = ((0.0,) if or_zero else ()) + (low, math.sqrt(low * high), high)
            space[name] = LogUniform(low, high, grid=grid, or_zero=or_zero)
    for name in space:
        fixed.pop(name, None)
    # Check each value a trial may see once, on top of the fixed fields.
    check_config(dataset, fixed)
    for name, param in space.items():
        if isinstance(param, Choice):
            values = param.values
        else:
            values = (param.low, param.high) + ((0.0,) if param.or_zero else ())
        for value in values:
            check_config(dataset, {**fixed, name: value})
    return fixed, space


def check_config(dataset: str, overrides: dict) -> Config:
    return Config.for_dataset(dataset, overrides).validate()


def grid_space(space: dict) -> dict:
    return {name: tune.grid_search(list(param.values if isinstance(param, Choice) else param.grid))
            for name, param in space.items()}


def plan_sweep(args: argparse.Namespace, fixed: dict, space: dict) -> Plan:
    """The searcher and ASHA for ``tune/sweep.py``."""
    import optuna
    from optuna.samplers import RandomSampler, TPESampler
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    scheduler = ASHAScheduler(time_attr="epoch", max_t=args.max_epochs, grace_period=args.grace_epochs,
                              reduction_factor=args.reduction_factor)
    if args.search == "grid":
        return Plan({**fixed, **grid_space(space)}, None, scheduler, args.num_samples or 1, list(space))
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per study and trial
    sampler = TPESampler(seed=args.seed) if args.search == "optuna" else RandomSampler(seed=args.seed)
    searcher = OptunaSearch(space=OptunaSpace(space, fixed), metric=args.metric, mode=metric_mode(args.metric),
                             sampler=sampler)
    return Plan({}, searcher, scheduler, args.num_samples or 16, list(space))


# ---------------------------------------------------------------------------------------------
# Running an experiment (the sweep, or the ablation of tune/ablate.py)


def start_ray(address: str | None, **init_kwargs) -> None:
    """Join ``address``, or start a local Ray whose workers can import this project.

    Every worker of the job gets RAY_API_SERVER_ADDRESS, the dashboard's URL: Train frees the
    placement group of a trial that ASHA stopped from a detached actor that asks the dashboard's
    state API whether the trial's controller is gone, and without that variable the API looks for
    "the" Ray on the machine; with two (two users, or tests beside a sweep) it fails, the stopped
    trials' CPUs are never freed and the sweep waits forever.
    """
    if address is None:
        # Workers started by a local Ray inherit this environment; a cluster installs the project.
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
        port = free_port()
        init_kwargs.update(include_dashboard=True, dashboard_port=port)
        api_server = f"http://127.0.0.1:{port}"
    else:
        api_server = dashboard_url(address)
    # "local": a new Ray of our own. (None would join any cluster `ray start` left on this machine.)
    ray.init(address=address or "local", runtime_env={"env_vars": {"RAY_API_SERVER_ADDRESS": api_server}}
             if api_server else None, log_to_driver=True, logging_level="WARNING", **init_kwargs)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def dashboard_url(address: str) -> str | None:
    """The dashboard URL of the cluster at ``address``, or None (with a warning) if it has none."""
    from ray.dashboard.utils import get_address_for_submission_client

    host, _, port = address.rpartition(":")
    if host and port.isdigit() and "://" not in address:
        try:  # Ray would retry an unreachable HOST:PORT forever
            socket.create_connection((host, int(port)), timeout=10).close()
        except OSError as error:
            raise MixemError(f"No Ray cluster answers at --address {address} ({error}); check the address, or "
                             "leave --address out to run locally.") from None
    try:
        return get_address_for_submission_client(address)
    except ConnectionError as error:
        raise MixemError(f"No Ray cluster to join at --address {address} ({error}); start one (`ray up "
                         "cluster.yaml`, `ray start --head`) or leave --address out to run locally.") from None
    except Exception as error:  # e.g. a cluster without the dashboard: only the cleanup of stopped trials suffers
        print(f"warning: no dashboard found for the Ray cluster at {address} ({error}); placement groups of "
              "trials that ASHA stops may not be freed (install ray[default] on the cluster).", file=sys.stderr)
        return None


def trial_resources(args: argparse.Namespace) -> TrialResources:
    gpus = args.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    backend = args.backend
    if backend == "auto":
        # One worker needs no collective at all; gloo also runs logical GPUs of a CPU-only test cluster.
        backend = "nccl" if gpus > 0 and args.workers_per_trial > 1 else "gloo"
    return TrialResources(args.workers_per_trial, args.cpus_per_worker, gpus, backend)


def max_concurrent_trials(resources: TrialResources, requested: int | None, local: bool) -> int:
    """--max-concurrent, else as many trials as the cluster's CPUs (and GPUs) hold at once."""
    available = ray.cluster_resources()
    if resources.gpus and not available.get("GPU", 0):
        if local:
            raise MixemError("--gpus-per-worker asks for GPUs but this machine has none; pass --gpus-per-worker 0.")
        print("warning: the cluster has no GPU yet; trials wait for the autoscaler to add GPU nodes (pass "
              "--max-concurrent to run more than one trial at a time then).", file=sys.stderr)
    if requested is not None:
        return requested
    fits = [available.get("CPU", 0) / resources.cpus] if resources.cpus else []
    if resources.gpus:
        fits.append(available.get("GPU", 0) / resources.gpus)
    # An autoscaling cluster may start with fewer nodes than it will have: run at least one trial.
    return max(1, int(min(fits))) if fits else 1


def resolve_args(args: argparse.Namespace, kind: str) -> argparse.Namespace:
    """Fill defaults that depend on other flags; on --resume, the settings the run was started with."""
    if args.resume:
        if args.output is None:
            raise MixemError("--resume needs --output, the folder of the sweep to continue.")
        settings_file = args.output / SETTINGS_FILE
        if not settings_file.is_file():
            raise MixemError(f"There is no sweep to resume in {args.output} ({SETTINGS_FILE} is missing); "
                             "pass the --output of an earlier run.")
        try:
            saved = json.loads(settings_file.read_text())
            if saved.get("kind") != kind:
                raise MixemError(f"{args.output} holds a {saved.get('kind')}, not a {kind}; resume it with "
                                 f"tune/{'sweep' if saved.get('kind') == 'sweep' else 'ablate'}.py.")
            restored = argparse.Namespace(**{**vars(args), **saved["args"]})
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise MixemError(f"{settings_file} is corrupt ({error}); it cannot be resumed.") from None
        # Where it runs may change between the first run and the resumed one; what it runs may not.
        for name in ("address", "max_concurrent"):
            if getattr(args, name) is not None:
                setattr(restored, name, getattr(args, name))
        restored.output, restored.resume = args.output, True
        restored.name, restored.storage = saved["name"], saved["storage"]
        return restored
    if args.dataset is None:
        raise MixemError("--dataset is required (unless --resume); e.g. --dataset digits.")
    Config.for_dataset(args.dataset)  # an unknown name fails here, with the list of datasets
    if args.smoke_test:
        for name, value in SMOKE.items():
            if getattr(args, name, None) is None and hasattr(args, name):
                setattr(args, name, value)
    if args.max_epochs is None:
        args.max_epochs = Config.for_dataset(args.dataset).optim.epochs
    if hasattr(args, "grace_epochs") and args.grace_epochs is None:
        args.grace_epochs = max(1, args.max_epochs // 10)
    for name in ("max_epochs", "workers_per_trial", "max_failures") + (("grace_epochs",) if kind == "sweep" else ()):
        if getattr(args, name) < (0 if name == "max_failures" else 1):
            raise MixemError(f"--{name.replace('_', '-')} must be at least {0 if name == 'max_failures' else 1}.")
    if args.metric not in METRIC_KEYS + VALIDATION_KEYS:
        raise MixemError(f"--metric {args.metric!r} is not a score; use a key of mixem.scores.METRIC_KEYS or "
                         f"VALIDATION_KEYS such as {FIXED_VARIANT}_acc or val_loss.")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    args.output = args.output or Path("sweeps") / f"{args.dataset}-{stamp}"
    args.name = f"{kind}-{args.dataset}-{stamp}"
    if args.storage is None:
        args.storage = str((args.output / "ray").resolve())
    elif "://" not in args.storage:
        args.storage = str(Path(args.storage).resolve())  # Ray wants absolute paths; trials run in other folders
    return args


def base_overrides(args: argparse.Namespace) -> dict:
    """Config fields every trial shares before --space: dataset, epochs, seed, and evaluation on
    every ASHA rung (rungs fall on multiples of --grace-epochs)."""
    base = {"dataset": args.dataset, "epochs": args.max_epochs, "seed": args.seed}
    base["eval_every"] = getattr(args, "grace_epochs", None) or Config.for_dataset(args.dataset).eval.eval_every
    if args.smoke_test:
        base.update(SMOKE_FIXED)
    return base


def run(args: argparse.Namespace, kind: str, make_plan) -> int:
    """Resolve the command line, start Ray, run the Tuner (new or restored), print a summary.
    ``make_plan(args, fixed, space) -> Plan`` is the sweep's or the ablation's."""
    args = resolve_args(args, kind)
    output = args.output.resolve()
    if not args.resume and (output / SETTINGS_FILE).exists():
        raise MixemError(f"{output} already holds a sweep; pass --resume to continue it, or another --output.")
    fixed, space = resolve_space(args.dataset, read_space_args(args.space), base_overrides(args),
                                 search=kind == "sweep")
    plan = make_plan(args, fixed, space)
    store = ResultStore.open(output, args.metric)  # a corrupt results file stops us here, before anything is written
    data_dir = str(Path(args.data_dir).resolve()) if args.data_dir else os.environ.get("MIXEM_DATA_DIR")
    if data_dir and "://" not in data_dir:
        data_dir = str(Path(data_dir).resolve())
    if args.address is None:
        check_data(args.dataset, data_dir)

    owns_ray = not ray.is_initialized()  # tests (and notebooks) may have started Ray already
    if owns_ray:
        start_ray(args.address)
    try:
        resources = trial_resources(args)
        concurrent = max_concurrent_trials(resources, args.max_concurrent, local=args.address is None)
        if not args.resume:
            output.mkdir(parents=True, exist_ok=True)
            saved = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                     if k not in ("output", "resume", "name", "storage")}
            (output / SETTINGS_FILE).write_text(json.dumps(
                {"kind": kind, "name": args.name, "storage": args.storage, "args": saved}, indent=2) + "\n")
            store.write_empty()
        trainable = make_trainable(resources, train_storage=join_storage(args.storage, args.name, "train"),
                                   data_dir=data_dir, metric=args.metric, max_failures=args.max_failures,
                                   driver_node=ray.util.get_node_ip_address())
        experiment = join_storage(args.storage, args.name)
        grid = " x the grid" if getattr(args, "search", "") == "grid" else ""
        print(f"{kind} {args.name}: {plan.num_samples} trial(s){grid} on {args.dataset}, {args.max_epochs} epochs, "
              f"up to {concurrent} at once, each {resources.workers} worker(s) x ({resources.cpus_per_worker:g} CPU, "
              f"{resources.gpus_per_worker:g} GPU); results in {output}", file=sys.stderr)
        if args.resume:
            if not tune.Tuner.can_restore(experiment):
                raise MixemError(f"Ray's experiment state in {experiment} is missing, so the sweep cannot be "
                                 "resumed; start it again with another --output.")
            tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_unfinished=True,
                                       resume_errored=False, param_space=plan.param_space or None)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=plan.param_space,
                tune_config=tune.TuneConfig(
                    metric=args.metric, mode=metric_mode(args.metric), search_alg=plan.search_alg,
                    scheduler=plan.scheduler,
                    num_samples=plan.num_samples, max_concurrent_trials=concurrent,
                    trial_name_creator=trial_name, trial_dirname_creator=trial_name),
                run_config=tune.RunConfig(
                    name=args.name, storage_path=args.storage,
                    callbacks=[ResultsCallback(output, resources, args.metric)],
                    # Train retries the workers from their checkpoint; the trial driver lives on this
                    # node, so a Tune-level retry would only repeat a trial that Train gave up on.
                    failure_config=tune.FailureConfig(max_failures=0), verbose=1),
            )
        started = time.time()
        results = tuner.fit()
        print_summary(output, args.metric, plan.varied, time.time() - started)
        if results.num_terminated + results.num_errors < len(results):  # interrupted (Ctrl+C)
            print(f"Some trials did not finish; continue with: python tune/{'sweep' if kind == 'sweep' else 'ablate'}"
                  f".py --output {args.output} --resume")
    finally:
        if owns_ray:
            ray.shutdown()
    return 0


def join_storage(storage: str, *parts: str) -> str:
    return "/".join([storage.rstrip("/"), *parts])


def check_data(dataset: str, data_dir: str | None) -> None:
    """Fail before any trial starts when the dataset is missing on this machine (local runs only)."""
    from mixem.data import load_dataset

    load_dataset(dataset, data_dir)


def print_summary(output: Path, metric: str, varied: list[str], wall_seconds: float) -> None:
    """Best trial (or, for an ablation, each preset over seeds), where the files are, and where the
    time went: training and evaluation as the workers measured them, the rest is Ray's overhead."""
    import pandas as pd

    trials, epochs = pd.read_parquet(output / TRIALS_FILE), pd.read_parquet(output / EPOCHS_FILE)
    counts = ", ".join(f"{n} {status}" for status, n in trials["status"].value_counts().items()) or "none ended"
    print(f"\n{len(trials)} trials ({counts}) in {wall_seconds / 60:.1f} min")
    if len(trials):
        working = (epochs["epoch_seconds"] + epochs["eval_seconds"]).sum() / len(trials)
        per_trial = trials["wall_seconds"].mean()
        print(f"per trial: {per_trial:.0f} s wall, of which {working:.0f} s training and evaluation, "
              f"{per_trial - working:.0f} s Ray overhead (starting the trial and its workers, checkpoints)")
    scored = trials[trials["status"] != "errored"].dropna(subset=[f"final/{metric}"])
    if len(scored) and "preset" in varied:
        print(f"{'preset':<18}{'runs':>5}  final {metric}, mean ± std over seeds")
        for preset, group in scored.groupby("preset", sort=False):
            values = group[f"final/{metric}"]
            print(f"{preset:<18}{len(values):>5}  {values.mean():.4f} ± {values.std(ddof=0):.4f}")
    elif len(scored):
        values = scored[f"final/{metric}"]
        best = scored.loc[values.idxmax() if metric_mode(metric) == "max" else values.idxmin()]
        config = ", ".join(f"{name}={best[f'config/{name}']:.4g}" if isinstance(best[f"config/{name}"], float)
                           else f"{name}={best[f'config/{name}']}" for name in varied)
        print(f"best trial {best['trial_id']} ({best['status']}, {best['epochs']} epochs): {config}")
        print(f"  final {metric} {best[f'final/{metric}']:.4f} (at its best evaluation {best[f'best/{metric}']:.4f}); "
              f"k-means++ on h, L2: ACC {best['final/kmeans_h_l2_acc']:.4f} NMI {best['final/kmeans_h_l2_nmi']:.4f} "
              f"ARI {best['final/kmeans_h_l2_ari']:.4f}")
    for _, row in trials[trials["status"] == "errored"].head(3).iterrows():
        print(f"errored trial {row['trial_id']}: {row['error']}")
    print(f"results: {output / TRIALS_FILE}\n         {output / EPOCHS_FILE}")


def main(argv: list[str] | None = None, *, parser=None, kind="sweep", make_plan=plan_sweep) -> int:
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args, kind, make_plan)
    except MixemError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # Run through the package module, so that Ray pickles `tune.sweep.*` by reference, not `__main__.*`.
    from tune.sweep import main as package_main

    sys.exit(package_main())
