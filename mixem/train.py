"""Train MIX'EM (or the SimCLR baseline), then cluster its representations with K-means.

    python -m mixem.train --dataset digits --out runs/digits            # ~1 min on 2 CPU cores
    python -m mixem.train --dataset digits --preset simclr --out runs/digits-simclr
    python -m mixem.train --dataset fashion-mnist --epochs 10 --out runs/fm
    python -m mixem.train --resume runs/digits --epochs 80             # continue, here to 80 epochs
    torchrun --standalone --nproc_per_node 2 -m mixem.train --dataset digits --out runs/ddp   # DDP, no Ray

A run folder holds ``config.json``, ``history.jsonl`` (one line per epoch: loss terms, lr, images
trained on, times, and at evaluated epochs every clustering score and the validation loss),
``metrics.json`` (the last evaluation) and ``checkpoint/checkpoint.pt`` (written every epoch,
atomically).

``train()`` is also the body of a Ray Train worker (``tune/``): it reports each epoch through a
callback and trains with DDP when a launcher (Ray Train, torchrun) initialised
``torch.distributed``, so this package never imports Ray. With several workers every loss term
sees the whole global batch (z and pi are gathered across workers with autograd), so N workers
optimise the objective of one worker with the same global batch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_autograd
from tqdm import tqdm

from mixem.augment import augment
from mixem.config import CONCERNS, DATASETS, FIELDS, Config, missing_data_dir_message
from mixem.data import load_dataset
from mixem.device import check_device, device_name, pick_device
from mixem.errors import MixemError, NonFiniteLossError
from mixem.evaluate import evaluate, validation_loss
from mixem.files import CHECKPOINT_FILE, HISTORY_FILE, write_atomic
from mixem.losses import mixem_loss
from mixem.model import MixemModel, TwoViews
from mixem.presets import ABLATIONS
from mixem.scores import FIXED_VARIANT, LOSS_TERMS, ORACLE_METRIC
from mixem.staging import is_uri

Report = Callable[[dict, "Path | None"], None]
# Fields that may change when a run is resumed; anything else would make a different experiment.
RESUMABLE_CHANGES = {"epochs", "eval_every", "kmeans_n_init", "interim_kmeans_n_init", "eval_batch_size",
                     "kmeans_noise_seeds"}
# The autograd all_gather is what we need (its backward sums the gradients of every rank); torch
# recommends a private module instead, so its deprecation warning is noise for our users.
warnings.filterwarnings("ignore", "torch.distributed.nn.functional.all_gather is deprecated", FutureWarning)


def lr_factor(epoch: int, constant_lr_epochs: int, epochs: int) -> float:
    """The learning rate of epoch ``epoch`` (0-based) over the initial one, as the authors' train.py:
    constant, then ``CosineAnnealingLR(T_max=epochs)`` stepped after every epoch from epoch
    ``constant_lr_epochs`` (1-based) on. The last epoch keeps a little learning rate, as theirs."""
    steps = max(0, epoch + 1 - max(constant_lr_epochs, 1))
    return 0.5 * (1 + math.cos(math.pi * steps / epochs))


@dataclasses.dataclass
class LrSchedule:
    """The authors' schedule for ``epochs`` epochs, rescaled from ``anchor_epoch`` on when a run was
    resumed with another number of epochs: from there the learning rate continues from the value it
    had (``anchor_factor``) and follows the new cosine down, so it never jumps up."""

    epochs: int
    constant_lr_epochs: int
    anchor_epoch: int = 0
    anchor_factor: float | None = None  # None: the plain schedule

    def factor(self, epoch: int) -> float:
        factor = lr_factor(epoch, self.constant_lr_epochs, self.epochs)
        if self.anchor_factor is None:
            return factor
        return self.anchor_factor * factor / lr_factor(self.anchor_epoch, self.constant_lr_epochs, self.epochs)

    def extended_to(self, epochs: int, from_epoch: int) -> LrSchedule:
        """The schedule of a run resumed at ``from_epoch`` with ``epochs`` epochs in all."""
        if epochs == self.epochs:
            return self
        return LrSchedule(epochs, self.constant_lr_epochs, from_epoch, self.factor(from_epoch))


def _checkpoint_path(resume_from: str | Path) -> Path:
    resume_from = Path(resume_from)
    for candidate in (resume_from / CHECKPOINT_FILE, resume_from / "checkpoint" / CHECKPOINT_FILE):
        if candidate.is_file():
            return candidate
    raise MixemError(f"No checkpoint to resume in {resume_from}; pass the run folder that `--out` wrote.")


def _load_checkpoint(resume_from: str | Path, config: Config) -> dict:
    path = _checkpoint_path(resume_from)
    try:
        # On the CPU whatever device wrote it: a GPU run resumes on a CPU machine.
        state = torch.load(path, map_location="cpu", weights_only=False)
        saved, schedule = state["config"], state["schedule"]
    except Exception as error:  # a truncated, foreign or older file: torch raises many kinds
        raise MixemError(f"The checkpoint {path} cannot be read ({error!r}); start a fresh run instead.") from None
    wanted = config.to_flat()
    changed = sorted(k for k in wanted if saved.get(k) != wanted[k] and k not in RESUMABLE_CHANGES)
    if changed:
        raise MixemError(
            f"The checkpoint in {resume_from} was trained with different {', '.join(changed)}; "
            "only epochs and evaluation settings may change on --resume."
        )
    state["schedule"] = LrSchedule(**schedule)
    return state


def _distributed() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def split_validation(images: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, validation)``: a ``fraction`` of ``images`` held out, chosen by ``seed`` alone (the
    same images on every rank and every resume)."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    held_out = int(fraction * len(images))
    return images[order[held_out:]], images[order[:held_out]]


def gathered_objective(out_a: dict, out_b: dict, loss_weights: dict, world_size: int) -> dict[str, torch.Tensor]:
    """``mixem_loss`` of the two views' outputs over the global batch.

    With several workers, each worker's z and pi are gathered with autograd before the loss, so
    NT-Xent takes its negatives from the whole global batch and the marginal entropy the global
    mean of pi: every rank computes the same loss as one worker with the global batch. The gather's
    backward sums the gradients of every rank's (identical) loss, world_size times the gradient of
    the rank's own rows, and DDP's average over ranks divides that back: the update equals the
    one-worker update. One gather per step: z and pi of both views travel as one tensor."""
    z_a, z_b = out_a["z"].float(), out_b["z"].float()
    pi_a, pi_b = out_a.get("pi"), out_b.get("pi")
    if world_size > 1:
        parts = [z_a, z_b] + ([pi_a, pi_b] if pi_a is not None else [])
        widths = [part.shape[1] for part in parts]
        gathered = torch.cat(dist_autograd.all_gather(torch.cat(parts, dim=1)))
        z_a, z_b, *pis = gathered.split(widths, dim=1)
        pi_a, pi_b = pis if pis else (None, None)
    return mixem_loss(pi_a, z_a, pi_b, z_b, **loss_weights)


@dataclasses.dataclass(frozen=True)
class Speed:
    """How the training step runs; the experiment (data, model, objective) is the same either way.
    On CUDA: bf16 autocast for the step, channels_last tensors, fused Adam; ``compile`` adds
    ``torch.compile``. On the CPU all are off (bf16 and channels_last are slower there)."""

    bf16: bool = False
    channels_last: bool = False
    fused_adam: bool = False
    compile: bool = False

    @classmethod
    def for_device(cls, device: torch.device, compile: bool = False) -> Speed:
        on_gpu = device.type == "cuda"
        return cls(bf16=on_gpu, channels_last=on_gpu, fused_adam=on_gpu, compile=compile)


def build_training(config: Config, device: torch.device, speed: Speed, world_size: int):
    """``(model, views_model, optimizer)``: the model on ``device``, what the step calls (both views
    through the model, DDP-wrapped with several workers, compiled if asked) and Adam."""
    info = DATASETS[config.data.dataset]
    model = MixemModel(config.model, info.channels, info.image_size).to(device)
    if speed.channels_last:
        model = model.to(memory_format=torch.channels_last)
    views_model = TwoViews(torch.compile(model) if speed.compile else model)
    if world_size > 1:
        views_model = torch.nn.parallel.DistributedDataParallel(
            views_model, device_ids=[device.index] if device.type == "cuda" else None
        )
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay, fused=speed.fused_adam or None
    )
    return model, views_model, optimizer


def train_step(
    views_model,
    optimizer,
    images: torch.Tensor,
    config: Config,
    generator: torch.Generator,
    world_size: int,
    speed: Speed,
) -> dict[str, torch.Tensor]:
    """One optimisation step on uint8 ``images`` (this worker's share of the global batch): two
    augmented views, the model once per view, the objective over the global batch, Adam. Returns
    the loss terms, still on the device: this makes no host-device synchronisation."""
    views = augment(images, config.augment, generator), augment(images, config.augment, generator)
    if speed.channels_last:
        views = tuple(view.contiguous(memory_format=torch.channels_last) for view in views)
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=speed.bf16):
        out_a, out_b = views_model(*views)
    terms = gathered_objective(out_a, out_b, dataclasses.asdict(config.loss), world_size)
    optimizer.zero_grad(set_to_none=True)
    terms["total"].backward()
    optimizer.step()
    return terms


def _augment_generator(device: torch.device, seed: int, rank: int, epoch: int) -> torch.Generator:
    """The augmentation stream of one rank in one epoch: a function of (seed, rank, epoch) alone,
    so a resumed run draws what the uninterrupted run would have, on every rank."""
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + epoch) * 1_009 + rank)


def train(
    config: Config,
    out_dir: str | Path | None = None,
    *,
    data_dir: str | Path | None = None,
    download: bool = False,
    report: Report | None = None,
    resume_from: str | Path | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    compile: bool = False,
) -> dict:
    """Train on ``config.data.train_split`` less the validation images, evaluate on ``eval_split``;
    return the last evaluation.

    ``report(metrics, checkpoint_dir)`` is called after every epoch on every rank; ``metrics`` holds
    ``epoch``, ``loss_<term>``, ``lr``, ``train_images``, ``world_size``, ``epoch_seconds``,
    ``eval_seconds``, ``evaluated`` and, when evaluated (on rank 0), every clustering metric
    (``mixem.evaluate.METRIC_KEYS``) and the validation loss (``VALIDATION_KEYS``).
    ``checkpoint_dir`` holds ``checkpoint.pt`` on rank 0 and is None elsewhere. ``resume_from`` is a
    run folder or a folder holding ``checkpoint.pt``; training continues after its epoch.
    Raises ``NonFiniteLossError`` (before checkpointing) when the loss diverges.
    """
    config.validate()
    rank, world_size = _distributed()
    device = pick_device(device)
    out_dir = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="mixem-"))
    if out_dir.exists() and not out_dir.is_dir():
        raise MixemError(f"{out_dir} is a file, not a run folder; pass --out a folder path.")
    if resume_from is None and (out_dir / "checkpoint" / CHECKPOINT_FILE).exists():
        raise MixemError(f"{out_dir} already holds a run; continue it with --resume {out_dir} or choose another --out.")
    progress = sys.stderr.isatty() if progress is None else progress
    data_cfg, optim = config.data, config.optim

    # Seeds are set here, not at import: every run (and every Tune trial) chooses its own.
    torch.manual_seed(optim.seed)
    data = load_dataset(data_cfg.dataset, data_dir, download=download, include_unlabeled=data_cfg.stl10_unlabeled)
    train_split = data_cfg.train_split + ("+unlabeled" if data_cfg.stl10_unlabeled else "")
    train_images, val_images = split_validation(data.select(train_split)[0], data_cfg.val_fraction, optim.seed)
    eval_images, eval_labels = data.select_labelled(data_cfg.eval_split)
    if len(eval_images) < data.num_classes:
        raise MixemError(
            f"The evaluation split {data_cfg.eval_split!r} holds {len(eval_images)} images, fewer than the "
            f"{data.num_classes} clusters to find; pass a larger --eval-split."
        )
    # uint8 on the device: augmentation needs no host round trip.
    train_images, val_images = train_images.to(device), val_images.to(device)

    # The global batch is split evenly over the ranks (gathering needs equal shares); the ragged
    # last batch of an epoch is dropped, as NT-Xent wants full batches.
    local_batch = min(optim.batch_size, len(train_images)) // world_size
    global_batch = local_batch * world_size
    if global_batch < 2 or local_batch < 1:
        raise MixemError(
            f"{len(train_images)} training images cannot fill a batch of at least 2 over {world_size} worker(s); "
            "lower --val-fraction, use fewer workers or a larger --train-split."
        )
    steps_per_epoch = len(train_images) // global_batch

    speed = Speed.for_device(device, compile)
    model, views_model, optimizer = build_training(config, device, speed, world_size)
    schedule = LrSchedule(optim.epochs, optim.constant_lr_epochs)

    start_epoch, history, last_eval = 0, [], {}
    if resume_from is not None:
        state = _load_checkpoint(resume_from, config)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history, last_eval = state["epoch"], state["history"], state["last_eval"]
        schedule = state["schedule"].extended_to(optim.epochs, start_epoch)
    if rank == 0:
        write_atomic(out_dir / "config.json", json.dumps(config.to_flat(), indent=2) + "\n")
    if start_epoch >= optim.epochs and rank == 0:
        print(f"Nothing to do: the checkpoint already has {start_epoch} of {optim.epochs} epochs.", file=sys.stderr)

    for epoch in range(start_epoch, optim.epochs):
        started = time.perf_counter()
        lr = optim.lr * schedule.factor(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        generator = _augment_generator(device, optim.seed, rank, epoch)
        # The batch order depends on (seed, epoch) only, so every rank and every resume agree on it;
        # it moves to the device once per epoch, not once per step.
        order = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(optim.seed * 100_003 + epoch))
        order = order[: steps_per_epoch * global_batch].view(steps_per_epoch, world_size, local_batch).to(device)
        sums = torch.zeros(len(LOSS_TERMS), device=device)
        views_model.train()
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"epoch {epoch + 1}/{optim.epochs}",
            disable=not progress or rank > 0,
            leave=False,
            dynamic_ncols=True,
        )
        for step in bar:
            terms = train_step(
                views_model, optimizer, train_images[order[step, rank]], config, generator, world_size, speed
            )
            sums += torch.stack([terms[name].detach() for name in LOSS_TERMS])
            if progress and step % 10 == 0:
                bar.set_postfix(loss=f"{terms['total'].item():.3f}")  # .item() syncs with the GPU: only now and then
        epoch_seconds = time.perf_counter() - started

        mean_terms = (sums / steps_per_epoch).tolist()  # the epoch's one GPU sync
        diverged = [value for value in mean_terms if not math.isfinite(value)]
        if diverged:
            # Every rank sees the same gathered loss, so every rank stops here, before a checkpoint.
            raise NonFiniteLossError(
                f"The loss became {diverged[0]} at epoch {epoch + 1}; lower --lr (now {optim.lr:g}) "
                "or the loss weights and start a fresh run."
            )
        record = {"epoch": epoch + 1}
        record.update({f"loss_{name}": value for name, value in zip(LOSS_TERMS, mean_terms, strict=True)})
        record.update(
            lr=lr,
            train_images=steps_per_epoch * global_batch,
            world_size=world_size,
            device=device_name(device),
            epoch_seconds=epoch_seconds,
            eval_seconds=0.0,
            evaluated=False,
        )
        eval_every = config.eval.eval_every
        last_epoch = epoch + 1 == optim.epochs
        if last_epoch or (eval_every and (epoch + 1) % eval_every == 0):
            started = time.perf_counter()
            if rank == 0:  # one rank evaluates; the others only train
                last_eval = {
                    "epoch": epoch + 1,
                    **_evaluate(model, config, data, eval_images, eval_labels, val_images, device, final=last_epoch),
                }
                record.update({k: v for k, v in last_eval.items() if k != "epoch"})
            record.update(evaluated=True, eval_seconds=time.perf_counter() - started)
        history.append(record)

        checkpoint_dir = None
        if rank == 0:
            checkpoint_dir = out_dir / "checkpoint"
            state = {
                "config": config.to_flat(),
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": dataclasses.asdict(schedule),
                "history": history,
                "last_eval": last_eval,
            }
            history_lines = "".join(json.dumps(row) + "\n" for row in history)
            # The history goes into the checkpoint too: a sweep recovers from it epochs whose report was lost.
            write_atomic(checkpoint_dir / HISTORY_FILE, history_lines)
            write_atomic(checkpoint_dir / CHECKPOINT_FILE, partial(torch.save, state))
            write_atomic(out_dir / HISTORY_FILE, history_lines)
            if record["evaluated"]:
                write_atomic(out_dir / "metrics.json", json.dumps(last_eval, indent=2) + "\n")
            print(_summary(record), file=sys.stderr, flush=True)
        if report is not None:
            report(record, checkpoint_dir)
    return last_eval


def _evaluate(model, config: Config, data, eval_images, eval_labels, val_images, device, *, final: bool) -> dict:
    """One evaluation: every clustering of ``eval_images`` and the validation loss on ``val_images``."""
    try:
        metrics = evaluate(
            model,
            eval_images,
            eval_labels,
            data.num_classes,
            n_init=config.eval.kmeans_n_init if final else config.eval.interim_kmeans_n_init,
            max_iter=config.eval.kmeans_max_iter,
            batch_size=config.eval.eval_batch_size,
            seed=config.optim.seed,
            noise_seeds=config.eval.kmeans_noise_seeds if final else 0,
            device=device,
        )
    except ValueError as error:  # scikit-learn refuses representations holding NaN or infinity
        if "NaN" not in str(error) and "infinity" not in str(error):
            raise
        raise NonFiniteLossError(
            f"The model's representations became non-finite; lower --lr (now {config.optim.lr:g}) and start "
            "a fresh run."
        ) from None
    if len(val_images) >= 2:
        metrics.update(
            validation_loss(
                model,
                val_images,
                config.augment,
                dataclasses.asdict(config.loss),
                batch_size=config.optim.batch_size,
                device=device,
            )
        )
    return metrics


def _shown_variant(metrics: dict) -> str:
    """The fixed variant, or k-means++ on z for the SimCLR head, which has no component init."""
    return FIXED_VARIANT if f"{FIXED_VARIANT}_acc" in metrics else "kmeans_z_l2"


def _summary(record: dict) -> str:
    line = (
        f"epoch {record['epoch']}: loss {record['loss_total']:.4f} "
        f"(contrastive {record['loss_contrastive']:.4f}) {record['epoch_seconds']:.1f}s"
    )
    if ORACLE_METRIC in record:
        variant = _shown_variant(record)
        line += (
            f", eval {record['eval_seconds']:.1f}s: {variant} ACC {record[f'{variant}_acc']:.4f}, "
            f"val loss {record.get('val_loss', math.nan):.4f} "
            f"(oracle acc_max {record[ORACLE_METRIC]:.4f}: {record['acc_max_variant']}, picked with the labels)"
        )
    return line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python -m mixem.train",
        description="Train MIX'EM (or the SimCLR baseline) and evaluate K-means clusterings of its representations. "
        "Defaults are the authors'; each dataset's preset (mixem.config.DATASET_PRESETS) overrides some of them, "
        "and any flag below overrides both.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    run = parser.add_argument_group("run")
    run.add_argument("--out", type=Path, help="run folder (default: runs/DATASET-PRESET-seedSEED)")
    run.add_argument("--resume", type=Path, metavar="DIR", help="continue the run in DIR from its last checkpoint")
    run.add_argument("--preset", choices=sorted(ABLATIONS), help="an ablation preset (mixem.presets.ABLATIONS)")
    run.add_argument(
        "--data-dir",
        help="dataset root in torchvision's layout, or a URI (s3://BUCKET/PREFIX, gs://...) holding the same layout, "
        "copied to this machine's disk once (default: $MIXEM_DATA_DIR or ./data)",
    )
    run.add_argument("--download", action="store_true", help="download the dataset into --data-dir when missing")
    run.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    run.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model (on CUDA the step already uses bf16 autocast, channels_last and fused Adam)",
    )
    run.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="per-epoch progress bar (default: when stderr is a terminal)",
    )
    for concern, cls in CONCERNS.items():
        group = parser.add_argument_group(concern)
        for f in dataclasses.fields(cls):
            flag, meta = "--" + f.name.replace("_", "-"), f.metadata
            kind = type(f.default)
            if kind is bool:
                group.add_argument(
                    flag,
                    action=argparse.BooleanOptionalAction,
                    default=None,
                    help=f"{meta['help']} (default: {f.default})",
                )
            else:
                group.add_argument(
                    flag,
                    type=kind,
                    choices=meta["choices"],
                    default=None,
                    metavar=None if meta["choices"] else kind.__name__.upper(),
                    help=f"{meta['help']} (default: {f.default})",
                )
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    """Dataset preset, then ablation preset, then explicit flags; on --resume the run's saved config instead."""
    explicit = {name: getattr(args, name) for name in FIELDS if getattr(args, name) is not None}
    if args.resume is not None:
        config_file = args.resume / "config.json"
        if not config_file.is_file():
            raise MixemError(
                f"No run to resume in {args.resume} (config.json is missing); pass the folder `--out` wrote."
            )
        try:
            saved = json.loads(config_file.read_text())
        except json.JSONDecodeError:
            raise MixemError(f"{config_file} is corrupt; start a fresh run instead.") from None
        if not isinstance(saved, dict):
            raise MixemError(f"{config_file} is corrupt (not a JSON object of fields); start a fresh run instead.")
        return Config.from_flat({**saved, **explicit})
    dataset = explicit.get("dataset", FIELDS["dataset"].default)
    preset = ABLATIONS[args.preset] if args.preset else {}
    return Config.for_dataset(dataset, {**preset, **explicit})


def check_run_flags(args: argparse.Namespace, dataset: str) -> None:
    """The flags that are not config fields: --device, --data-dir, --out with --resume."""
    if args.device is not None:
        check_device(args.device)
    local = args.data_dir is not None and not is_uri(args.data_dir)
    if local and not args.download and not Path(args.data_dir).is_dir():
        raise MixemError(missing_data_dir_message(dataset, args.data_dir))
    if args.resume is not None and args.out is not None and args.out.resolve() != args.resume.resolve():
        raise MixemError("--out and --resume name different folders; a resumed run continues in its own folder, "
                         "so pass --resume alone.")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # torchrun (or any launcher that sets WORLD_SIZE) starts one process per worker: join them.
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized()
    if launched:
        on_gpu = torch.cuda.is_available() and (args.device is None or args.device.startswith("cuda"))
        if on_gpu:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl" if on_gpu else "gloo")
    rank = _distributed()[0]
    try:
        config = config_from_args(args).validate()
        check_run_flags(args, config.data.dataset)
        out = (
            args.resume
            or args.out
            or Path("runs") / (f"{config.data.dataset}-{args.preset or config.model.head}-seed{config.optim.seed}")
        )
        if rank == 0:
            print(f"Run folder: {out}", file=sys.stderr)
        metrics = train(
            config,
            out,
            data_dir=args.data_dir,
            download=args.download,
            resume_from=args.resume,
            device=args.device,
            progress=args.progress,
            compile=args.compile,
        )
    except MixemError as error:
        if rank == 0:
            print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        if launched:
            dist.destroy_process_group()
    if rank > 0:
        return 0
    if metrics:
        variant = _shown_variant(metrics)
        shown = {
            "epoch": metrics["epoch"],
            **{f"{variant}_{m}": metrics[f"{variant}_{m}"] for m in ("acc", "nmi", "ari")},
            "val_loss": metrics.get("val_loss", math.nan),
            "acc_max (oracle: the best ACC of all variants, picked with the test labels)": metrics[ORACLE_METRIC],
            "acc_max_variant": metrics["acc_max_variant"],
        }
        print(json.dumps(shown, indent=2))
        _print_table(metrics)
    print(f"Results in {out}", file=sys.stderr)
    return 0


def _print_table(metrics: dict) -> None:
    """Every clustering variant; ``*`` marks the one sweeps rank by (``mixem.evaluate.FIXED_VARIANT``)."""
    variants = sorted({k.removesuffix("_acc") for k in metrics if k.endswith("_acc") and k != ORACLE_METRIC})
    print(f"{'variant':<19}{'ACC':>8}{'NMI':>8}{'ARI':>8}{'silhouette':>12}")
    for variant in variants:
        mark = "*" if variant == FIXED_VARIANT else " "
        print(
            f"{variant + mark:<19}"
            + "".join(f"{metrics[f'{variant}_{m}']:>8.4f}" for m in ("acc", "nmi", "ari"))
            + f"{metrics[f'{variant}_silhouette']:>12.4f}"
        )


if __name__ == "__main__":
    sys.exit(main())
