"""The flags shared by ``tune/sweep.py`` and ``tune/ablate.py``, their checks, and the settings a
resumed sweep restores (``sweep.json``). Nothing here starts Ray or writes a file, except the
download of a sweep's settings from its storage for ``--resume-from``.
"""

from __future__ import annotations

import argparse
import json
import math
from datetime import datetime
from pathlib import Path

from mixem.config import DATASET_PRESETS, Config, missing_data_dir_message
from mixem.errors import MixemError
from mixem.scores import FIXED_VARIANT, METRIC_KEYS, VALIDATION_KEYS
from tune import cluster
from tune.results import BASELINES_FILE, EPOCHS_FILE, SETTINGS_FILE, STORAGE_FOLDER, TRIALS_FILE, Storage

# What --smoke-test sets unless given explicitly: tiny, for CI and a first try.
SMOKE = {"num_samples": 4, "max_epochs": 2, "grace_epochs": 1, "seeds": 1}
SMOKE_FIXED = {"kmeans_n_init": 2, "interim_kmeans_n_init": 2, "eval_every": 1}
# Flags that say which sweep to resume.
RESUME_FLAGS = ("resume", "resume_from", "output")
# Flags about where and how a sweep runs, which --resume takes anew; every other one is the sweep's own.
WHERE = ("address", "max_concurrent", "workers_per_trial", "cpus_per_worker", "gpus_per_worker", "backend",
         "max_failures", "data_dir", "storage_shared", "compile", "verbose")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by the sweep and the ablation: what runs, where, on what."""
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
                      help="score to optimise, maximised (clustering scores, val_marginal_entropy) or minimised "
                      "(the other validation losses): a key of mixem.scores.METRIC_KEYS or VALIDATION_KEYS. The "
                      f"default, {FIXED_VARIANT}_acc, is one clustering fixed before any sweep: the paper's K-means "
                      "initialised with the mixture components' means, on the L2-normalised mixed embedding z. "
                      "Label-free choices for data without labels: val_loss, val_contrastive, "
                      "<variant>_silhouette. acc_max, the best ACC of all variants picked with the test labels, "
                      "is an oracle")
    what.add_argument("--seed", type=int, default=0,
                      help="training seed of every trial, and the searcher's seed (default: %(default)s)")
    what.add_argument("--data-dir",
                      help="dataset root: a folder, the same path on every node, or a URI (s3://BUCKET/PREFIX, "
                      "gs://...) that each node copies its dataset from once, to local disk (default: "
                      "$MIXEM_DATA_DIR, else ./data)")
    where = parser.add_argument_group("where it runs")
    where.add_argument("--address",
                       help="Ray cluster to join: 'auto' for the cluster this machine belongs to (started by "
                       "`ray up` or `ray start`), or HOST:PORT (default: start a local Ray on this machine)")
    where.add_argument("--workers-per-trial", type=int, default=1,
                       help="Ray Train workers per trial; more than 1 trains with DDP on one global batch "
                       "(default: %(default)s)")
    where.add_argument("--gpus-per-worker", type=float,
                       help="GPUs per Train worker (default: 1 when the cluster's node types have GPUs, else 0; "
                       "required on a cluster with no GPU up whose node types are unknown)")
    where.add_argument("--cpus-per-worker", type=float, default=1, help="CPUs per Train worker (default: %(default)s)")
    where.add_argument("--max-concurrent", type=int,
                       help="trials running at once (default: as many as the cluster can hold when grown to its "
                       "largest)")
    where.add_argument("--backend", choices=["auto", "gloo", "nccl"], default="auto",
                       help="torch.distributed backend; auto (default): nccl for several GPU workers per trial, "
                       "else gloo")
    where.add_argument("--max-failures", type=int, default=2,
                       help="times Ray Train restarts a trial's workers after a real fault (a lost node, a killed "
                       "worker), from its last checkpoint; a diverged loss or bad input is never retried "
                       "(default: %(default)s)")
    where.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                       help="torch.compile each trial's model (mixem.train --compile; on GPUs the step already "
                       "uses bf16, channels_last and fused Adam)")
    where.add_argument("--verbose", action=argparse.BooleanOptionalAction, default=False,
                       help="also show what workers print and Ray's own warnings (otherwise in Ray's logs)")
    where.add_argument("--callback", action="append", default=[], metavar="MODULE:NAME",
                       help="add a Ray Tune callback, a Callback class or a function that returns one, e.g. "
                       "ray.air.integrations.wandb:WandbLoggerCallback; repeatable; kept on --resume")
    out = parser.add_argument_group("results")
    out.add_argument("--output", type=Path,
                     help="local folder for trials.parquet, epochs.parquet and sweep.json (default: "
                     "sweeps/DATASET-DATE-TIME); absolute under `ray job submit`")
    out.add_argument("--storage",
                     help="Ray's persistent storage for checkpoints, experiment state and a copy of the results: a "
                     "local path, or s3://BUCKET/PREFIX, which every node of a multi-node cluster must reach "
                     "(default: OUTPUT/ray on a local Ray)")
    out.add_argument("--storage-shared", action=argparse.BooleanOptionalAction, default=False,
                     help="with --address: vouch that a local --storage path is mounted on every node")
    out.add_argument("--checkpoint-every", type=int, default=0,
                     help="also checkpoint every N epochs; 0 (default): only on evaluated epochs and the last")
    out.add_argument("--resume", action="store_true",
                     help="continue the sweep in --output: finished trials are kept and never re-run, trials that "
                     "were running continue from their last checkpoint; flags about where it runs ("
                     + ", ".join("--" + name.replace("_", "-") for name in WHERE) + ") may change")
    out.add_argument("--resume-from", metavar="URI",
                     help="continue a sweep on a new machine from its storage alone: the folder the sweep printed "
                     "at its start (STORAGE/NAME); its results are copied into --output")
    out.add_argument("--smoke-test", action="store_true",
                     help="tiny run for CI and a first try: " + ", ".join(f"{k}={v}" for k, v in SMOKE.items())
                     + ", " + ", ".join(f"{k}={v}" for k, v in SMOKE_FIXED.items()) + " (unless given)")


def _at_least(args: argparse.Namespace, minimum: float, *names: str) -> None:
    for name in names:
        value = getattr(args, name, None)
        if value is not None and not (math.isfinite(value) and value >= minimum):
            raise MixemError(f"--{name.replace('_', '-')} must be at least {minimum:g}, not {value}.")


def resolve_args(args: argparse.Namespace, kind: str) -> argparse.Namespace:
    """Check every flag and fill the defaults that depend on others; on --resume, the settings the
    sweep was started with, with the flags of ``WHERE`` taken anew. Touches no file."""
    _at_least(args, 1, "num_samples", "max_concurrent", "workers_per_trial", "max_epochs", "grace_epochs", "seeds")
    _at_least(args, 0, "max_failures", "gpus_per_worker", "checkpoint_every", "seed", "search_seed")
    if args.cpus_per_worker is not None and not (math.isfinite(args.cpus_per_worker) and args.cpus_per_worker > 0):
        raise MixemError(f"--cpus-per-worker must be more than 0, not {args.cpus_per_worker}.")
    factor = getattr(args, "reduction_factor", 2)
    if factor is not None and not (math.isfinite(factor) and factor > 1):
        raise MixemError(f"--reduction-factor must be a finite number more than 1, not {factor}.")
    if args.output is not None and args.output.exists() and not args.output.is_dir():
        raise MixemError(f"--output {args.output} is a file; pass a folder.")
    _check_data_dir(args.data_dir, args.dataset, args.address)
    if cluster.in_ray_job():
        for name in ("output", "storage"):
            value = getattr(args, name)
            if value is not None and "://" not in str(value) and not Path(value).is_absolute():
                raise MixemError(f"--{name} {value} is relative, and `ray job submit` runs this in a temporary "
                                 "folder that is deleted afterwards; pass an absolute path.")
    if args.resume or args.resume_from:
        changed = [name for name in getattr(args, "given", []) if name not in (*WHERE, *RESUME_FLAGS)]
        if changed:
            flags = ", ".join("--" + name.replace("_", "-") for name in changed)
            raise MixemError(f"{flags} cannot change on --resume (a sweep keeps the settings it started with); "
                             "leave them out, or start a new sweep with another --output.")
        restored = _restored_args(args, kind)
        local = restored.data_dir is not None and "://" not in restored.data_dir and restored.address is None
        if local and not Path(restored.data_dir).is_dir():
            raise MixemError(f"--data-dir {restored.data_dir}, the sweep's, is not a folder on this machine; pass "
                             "--data-dir with the folder that holds the datasets here.")
        try:  # every setting as on a command line; the data folder was checked just above
            resolve_args(argparse.Namespace(**{**vars(restored), "resume": False, "resume_from": None, "output": None,
                                               "data_dir": None, "storage": restored.storage, "given": []}), kind)
        except MixemError as error:
            raise MixemError(f"{args.output / SETTINGS_FILE} is corrupt: {error}") from None
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
    if hasattr(args, "grace_epochs"):
        args.grace_epochs = args.grace_epochs or max(1, args.max_epochs // 10)
        if args.grace_epochs > args.max_epochs:
            raise MixemError(f"--grace-epochs ({args.grace_epochs}) cannot exceed --max-epochs ({args.max_epochs}).")
    if args.metric not in METRIC_KEYS + VALIDATION_KEYS:
        raise MixemError(f"--metric {args.metric!r} is not a score; use a key of mixem.scores.METRIC_KEYS or "
                         f"VALIDATION_KEYS such as {FIXED_VARIANT}_acc or val_loss.")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    args.output = args.output or Path("sweeps") / f"{args.dataset}-{stamp}"
    if (args.output / SETTINGS_FILE).exists():
        raise MixemError(f"{args.output} already holds a sweep; pass --resume to continue it, or another --output.")
    args.name = f"{kind}-{args.dataset}-{stamp}"
    if args.storage is None:
        if args.address is not None:
            raise MixemError("A cluster needs --storage that every node reaches, e.g. --storage s3://BUCKET/mixem.")
        args.storage = str((args.output / "ray").resolve())
    elif "://" not in args.storage:
        args.storage = str(Path(args.storage).resolve())  # Ray wants absolute paths; trials run in other folders
    if args.address is not None:
        cluster.check_storage(args.storage, shared=args.storage_shared)
    return args


def _check_data_dir(data_dir: str | None, dataset: str | None, address: str | None) -> None:
    """A local --data-dir must be a folder here; on a cluster (--address) it is checked on each node type
    by the pre-flight instead, since this node may hold no data, and it must be absolute. A URI is
    checked where it is staged."""
    if data_dir is None or "://" in data_dir:
        return
    if address is not None:
        if not Path(data_dir).is_absolute():
            raise MixemError(f"--data-dir {data_dir} is relative, and on a cluster every node reads it; pass an "
                             "absolute path, or a URI such as s3://BUCKET/datasets.")
        return
    if not Path(data_dir).is_dir():
        raise MixemError(missing_data_dir_message(dataset, data_dir, download_flag=False))


def _restored_args(args: argparse.Namespace, kind: str) -> argparse.Namespace:
    """The arguments a sweep was started with (its sweep.json), with the flags of ``WHERE`` anew."""
    if args.output is None:
        raise MixemError("--resume and --resume-from need --output, the sweep's local folder.")
    settings_file = args.output / SETTINGS_FILE
    # Where the storage is now, which may not be where the sweep wrote it; checked before any download.
    moved = _split_experiment(args.resume_from) if args.resume_from else None
    if args.resume_from:
        if settings_file.exists():
            raise MixemError(f"{args.output} already holds a sweep; resume it with --resume, or pass another --output.")
        source = Storage(args.resume_from).child(STORAGE_FOLDER)
        if not source.download(SETTINGS_FILE, args.output):
            raise MixemError(f"{args.resume_from} holds no sweep ({STORAGE_FOLDER}/{SETTINGS_FILE} is missing); pass "
                             "the folder the sweep printed at its start.")
        for name in (TRIALS_FILE, EPOCHS_FILE, BASELINES_FILE):
            source.download(name, args.output)
    elif not settings_file.is_file():
        raise MixemError(f"There is no sweep to resume in {args.output} ({SETTINGS_FILE} is missing); pass the "
                         "--output of an earlier run, or --resume-from its storage folder.")
    try:
        saved = json.loads(settings_file.read_text())
        if saved["kind"] != kind:
            raise MixemError(f"{args.output} holds a {saved['kind']}, not a {kind}; resume it with the "
                             "script that started it.")
        restored = argparse.Namespace(**{**vars(args), **saved["args"]})
        restored.name, restored.storage = saved["name"], saved["storage"]
        if not (isinstance(restored.name, str) and isinstance(restored.storage, str)):
            raise TypeError("name and storage must be text")
        if moved is not None:
            restored.storage, restored.name = moved
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        raise MixemError(f"{settings_file} is corrupt ({error!r}); the sweep cannot be resumed.") from None
    # A flag of WHERE given now is taken, even at its default value (--max-failures 0, --no-compile);
    # without the list of given flags (a caller that built args itself), one that differs from its default.
    given = getattr(args, "given", None)
    for name in WHERE:
        if name in given if given is not None else getattr(args, name) != vars(build_defaults()).get(name):
            setattr(restored, name, getattr(args, name))
    restored.data_dir = str(restored.data_dir) if restored.data_dir else None
    restored.output, restored.resume = args.output, True
    if restored.address is not None:
        cluster.check_storage(restored.storage, shared=restored.storage_shared)
    return restored


def _split_experiment(path: str) -> tuple[str, str]:
    """(storage, experiment name) of the experiment folder ``path``: a URI, or a local path made
    absolute (Ray wants absolute paths; trials run in other folders)."""
    if "://" not in path:
        path = str(Path(path).resolve())
    storage, _, name = path.rstrip("/").rpartition("/")
    if not storage or not name or storage.endswith(":/"):
        raise MixemError(f"--resume-from {path} names no experiment folder; pass the storage folder the sweep "
                         "printed at its start (STORAGE/NAME).")
    return storage, name


def build_defaults() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return parser.parse_args([])


def base_overrides(args: argparse.Namespace) -> dict:
    """Config fields every trial shares before --space: dataset, epochs, seed, and evaluation on
    every ASHA rung (rungs fall on multiples of --grace-epochs)."""
    base = {"dataset": args.dataset, "epochs": args.max_epochs, "seed": args.seed}
    base["eval_every"] = getattr(args, "grace_epochs", None) or Config.for_dataset(args.dataset).eval.eval_every
    if args.smoke_test:
        base.update(SMOKE_FIXED)
    return base
