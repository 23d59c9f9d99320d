"""The command line of ``tune/sweep.py`` and ``tune/ablate.py``: the flags they share, and the one
``Settings`` (``tune/settings.py``) they resolve to, new or restored from ``sweep.json`` for a resume.
Nothing past this module sees the argparse namespace. Nothing here starts Ray or writes a file, except
the download of a sweep's settings from its storage for ``--resume-from``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
from dataclasses import fields, replace
from datetime import datetime
from pathlib import Path

from mixem.config import DATASET_PRESETS, missing_data_dir_message
from mixem.errors import MixemError
from mixem.files import RUN_FILES, SWEEP_RESULTS, results_in
from mixem.scores import FIXED_VARIANT
from tune import cluster
from tune.results import BASELINES_FILE, EPOCHS_FILE, SETTINGS_FILE, STORAGE_FOLDER, TRIALS_FILE, Storage
from tune.settings import (
    EXPERIMENTS,
    SMOKE,
    SMOKE_FIXED,
    WHERE,
    Placement,
    Settings,
    check,
    check_numbers,
    check_presets,
    flag,
    with_defaults,
)

# Flags that say which sweep to resume.
RESUME_FLAGS = ("resume", "resume_from", "output")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by the sweep and the ablation: what runs, where, on what."""
    _add_what(parser.add_argument_group("what to train"))
    _add_where(parser.add_argument_group("where it runs"))
    _add_results(parser.add_argument_group("results"))


def _add_what(what) -> None:
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


def _add_where(where) -> None:
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


def _add_results(out) -> None:
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


def settings_from_args(args: argparse.Namespace, given: list[str], kind: str) -> tuple[Settings, bool]:
    """The settings of the command line ``args`` of a ``kind`` ("sweep" or "ablation") whose written-out
    flags are ``given``, checked, and whether they resume a sweep. On --resume, the settings the sweep
    was started with, with the flags of ``WHERE`` taken anew. Writes no file."""
    if args.resume or args.resume_from:
        changed = [name for name in given if name not in (*WHERE, *RESUME_FLAGS)]
        if changed:
            raise MixemError(f"{', '.join(map(flag, changed))} cannot change on --resume (a sweep keeps the settings "
                             "it started with); leave them out, or start a new sweep with another --output.")
        saved = _saved_settings(args, kind)
        settings = saved.resumed({name: getattr(args, name) for name in WHERE if name in given})
        check(settings)
        check_paths(settings, resuming=True, data_dir_is_saved="data_dir" not in given)
        return settings, True
    settings = _new_settings(args, kind)
    check_paths(settings, resuming=False)
    return settings, False


def _new_settings(args: argparse.Namespace, kind: str) -> Settings:
    """The settings of a new sweep: its flags, checked, then the defaults that depend on them."""
    if args.dataset is None:
        raise MixemError("--dataset is required (unless --resume); e.g. --dataset digits.")
    experiment_type = EXPERIMENTS[kind]
    given = vars(args)
    experiment = experiment_type(**{f.name: _tupled(given[f.name]) for f in fields(experiment_type)})
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    output = args.output or Path("sweeps") / f"{args.dataset}-{stamp}"
    raw = Settings(experiment=experiment, dataset=args.dataset, max_epochs=args.max_epochs, output=output,
                   # Unique, even for two sweeps started in the same second on one --storage.
                   name=f"{kind}-{args.dataset}-{stamp}-{secrets.token_hex(3)}", storage=args.storage or "",
                   metric=args.metric, seed=args.seed, space=tuple(args.space), checkpoint_every=args.checkpoint_every,
                   smoke_test=args.smoke_test, callback=tuple(args.callback),
                   placement=Placement(**{name: given[name] for name in WHERE}))
    check_numbers(raw)  # before the defaults fill what was not given
    if not raw.searches:
        check_presets(raw.experiment.presets)
    settings = with_defaults(raw)
    _refuse_relative_in_ray_job("--storage", settings.storage)  # before it is made absolute below
    if not settings.storage:
        if settings.placement.address is not None:
            raise MixemError("A cluster needs --storage that every node reaches, e.g. --storage s3://BUCKET/mixem.")
        settings = replace(settings, storage=str((output / "ray").resolve()))
    elif "://" not in settings.storage:  # Ray wants absolute paths; trials run in other folders
        settings = replace(settings, storage=str(Path(settings.storage).resolve()))
    check(settings)
    return settings


def _tupled(value):
    return tuple(value) if isinstance(value, list) else value


def check_paths(settings: Settings, *, resuming: bool, data_dir_is_saved: bool = False) -> None:
    """The folders the settings name: the output and the storage writable and not files, a new sweep's
    output free of any other command's results, the data folder where the trials read it."""
    output, storage, placement = settings.output, settings.storage, settings.placement
    _refuse_relative_in_ray_job("--output", output)
    _refuse_relative_in_ray_job("--storage", storage)
    if not resuming:
        check_output_free(output)
    _check_writable("--output", output)
    if "://" not in storage or storage.startswith("file://"):
        _check_writable("--storage", Path(storage.removeprefix("file://")))
    if resuming and data_dir_is_saved:
        data_dir = placement.data_dir
        if data_dir is not None and "://" not in data_dir and placement.address is None and not Path(data_dir).is_dir():
            raise MixemError(f"--data-dir {data_dir}, the sweep's, is not a folder on this machine; pass --data-dir "
                             "with the folder that holds the datasets here.")
    else:
        _check_data_dir(placement.data_dir, settings.dataset, placement.address)
    if placement.address is not None:
        cluster.check_storage(storage, shared=placement.storage_shared)


def _refuse_relative_in_ray_job(option: str, value) -> None:
    if cluster.in_ray_job() and value and "://" not in str(value) and not Path(value).is_absolute():
        raise MixemError(f"{option} {value} is relative, and `ray job submit` runs this in a temporary folder that "
                         "is deleted afterwards; pass an absolute path.")


def check_output_free(output: Path) -> None:
    """A new sweep writes only into a folder that holds no results: another sweep's (sweep.json), or
    results whose sweep.json is gone, or a training run's, are never adopted or overwritten."""
    if output.exists() and not output.is_dir():
        raise MixemError(f"--output {output} is a file; pass a folder.")
    if (output / SETTINGS_FILE).exists():
        raise MixemError(f"{output} already holds a sweep; pass --resume to continue it, or another --output.")
    found = results_in(output, (*SWEEP_RESULTS, *RUN_FILES))
    if found:
        raise MixemError(f"{output} holds results ({', '.join(found)}) but no {SETTINGS_FILE}, so no sweep can "
                         "continue them or write there; pass another --output.")


def _check_writable(option: str, path: Path) -> None:
    """``path`` is a folder this process can create or write: no file in its place or above it."""
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                raise MixemError(f"{option} {path}: {folder} is a file, not a folder; pass a folder path.")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise MixemError(f"{option} {path}: {folder} is not writable by this user; pass a folder you can "
                                 "write to.")
            return


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


def _saved_settings(args: argparse.Namespace, kind: str) -> Settings:
    """The settings a sweep was started with (its sweep.json, downloaded from storage for --resume-from),
    checked as they were saved."""
    if args.output is None:
        raise MixemError("--resume and --resume-from need --output, the sweep's local folder.")
    settings_file = args.output / SETTINGS_FILE
    # Where the storage is now, which may not be where the sweep wrote it; checked before any download.
    moved = _split_experiment(args.resume_from) if args.resume_from else None
    if args.resume_from:
        if settings_file.exists():
            raise MixemError(f"{args.output} already holds a sweep; resume it with --resume, or pass another --output.")
        check_output_free(args.output)
        source = Storage(args.resume_from).child(STORAGE_FOLDER)
        if not source.download(SETTINGS_FILE, args.output):
            raise MixemError(f"{args.resume_from} holds no sweep ({STORAGE_FOLDER}/{SETTINGS_FILE} is missing); pass "
                             "the folder the sweep printed at its start.")
        for name in (TRIALS_FILE, EPOCHS_FILE, BASELINES_FILE):
            source.download(name, args.output)
    elif args.output.exists() and not args.output.is_dir():
        raise MixemError(f"--output {args.output} is a file; pass the sweep's folder.")
    elif not settings_file.is_file():
        raise MixemError(f"There is no sweep to resume in {args.output} ({SETTINGS_FILE} is missing); pass the "
                         "--output of an earlier run, or --resume-from its storage folder.")
    saved = read_settings(args.output, kind)
    if moved is not None:
        saved = replace(saved, storage=moved[0], name=moved[1])
    return saved


def read_settings(output: Path, kind: str) -> Settings:
    """The checked settings of the ``kind`` of sweep in ``output``; a corrupt sweep.json is named, never used."""
    settings_file = output / SETTINGS_FILE
    try:
        text = json.loads(settings_file.read_bytes().decode("utf-8"))
        if isinstance(text, dict) and text.get("kind") in EXPERIMENTS and text["kind"] != kind:
            raise MixemError(f"{output} holds a {text['kind']}, not a {kind}; resume it with the script that started "
                             "it.")
        saved = Settings.from_json(text, output)
    except (ValueError, KeyError, TypeError, AttributeError) as error:  # UnicodeDecodeError is a ValueError
        raise MixemError(f"{settings_file} is corrupt ({type(error).__name__}: {error}); the sweep cannot be "
                         "resumed.") from None
    except OSError as error:
        raise MixemError(f"Cannot read {settings_file} ({error.strerror or error}); check its permissions.") from None
    try:
        check(saved)
    except MixemError as error:
        raise MixemError(f"{settings_file} is corrupt: {error}") from None
    return saved


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


def given_flags(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """The destinations of the options written out in ``argv`` (the parsers allow no abbreviations)."""
    tokens = {token.split("=", 1)[0] for token in argv if token.startswith("--")}
    return [action.dest for action in parser._actions if tokens & set(action.option_strings)]

