"""Train MIX'EM (or the SimCLR baseline), then cluster its representations with K-means.

    python -m mixem.train --dataset digits --out runs/digits            # ~1 min on 2 CPU cores (mixem/cli.py)
    python -m mixem.train --dataset digits --preset simclr --out runs/digits-simclr
    python -m mixem.train --dataset fashion-mnist --epochs 10 --out runs/fm
    python -m mixem.train --resume runs/digits --epochs 80             # continue, here to 80 epochs
    torchrun --standalone --nproc_per_node 2 -m mixem.train --dataset digits --out runs/ddp   # DDP, no Ray

A run folder (``mixem.run_folder``) holds ``config.json``, ``history.jsonl`` (one line per epoch:
loss terms, lr, images trained on, the device, times, and at evaluated epochs every clustering score
and the validation loss), ``metrics.json`` (the last evaluation) and ``checkpoint/checkpoint.pt``
(written every epoch, atomically). ``train()`` reads top to bottom: the data, the model, the
checkpoint to continue from, then each epoch (``run_epoch``), its evaluation when one is due
(``evaluate_when_due``) and its checkpoint.

``train()`` is also the body of a Ray Train worker (``tune/``): it reports each epoch through a
callback and trains with DDP when a launcher (Ray Train, torchrun) initialised
``torch.distributed``, so this package never imports Ray. With several workers every loss term
sees the whole global batch (z and pi are gathered across workers with autograd), so N workers
optimise the objective of one worker with the same global batch.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_autograd
from tqdm import tqdm

from mixem.augment import augment
from mixem.config import DATASETS, Config
from mixem.data import load_dataset
from mixem.device import device_name, pick_device
from mixem.errors import MixemError, NonFiniteLossError
from mixem.evaluate import evaluate, validation_loss
from mixem.losses import mixem_loss
from mixem.model import MixemModel, TwoViews, check_memory
from mixem.run_folder import RunFolder, checkpoint_path
from mixem.scores import LOSS_TERMS, ORACLE_METRIC, reported_variant

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


def load_checkpoint(resume_from: str | Path, config: Config) -> dict:
    """The checkpoint a run continues from; MixemError if it cannot be read or was trained with another
    experiment than ``config`` (only ``RESUMABLE_CHANGES`` may differ)."""
    path = checkpoint_path(resume_from)
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


@dataclasses.dataclass
class TrainingData:
    """What a run trains and evaluates on: uint8 images (N, C, H, W), the training and validation ones on
    the device, and how the global batch splits over the workers."""

    train_images: torch.Tensor
    val_images: torch.Tensor
    eval_images: torch.Tensor
    eval_labels: torch.Tensor
    num_classes: int
    local_batch: int  # images per worker per step
    world_size: int

    @property
    def global_batch(self) -> int:
        return self.local_batch * self.world_size

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_images) // self.global_batch


def load_training_data(config: Config, data_dir, download: bool, device: torch.device,
                       world_size: int) -> TrainingData:
    """The dataset's training images less the validation ones (on ``device``: augmentation needs no host
    round trip) and its labelled evaluation split. The global batch is split evenly over the workers
    (gathering needs equal shares); the ragged last batch of an epoch is dropped, as NT-Xent wants full
    batches."""
    data_cfg = config.data
    data = load_dataset(data_cfg.dataset, data_dir, download=download, include_unlabeled=data_cfg.stl10_unlabeled)
    train_split = data_cfg.train_split + ("+unlabeled" if data_cfg.stl10_unlabeled else "")
    train_images, val_images = split_validation(data.select(train_split)[0], data_cfg.val_fraction,
                                                config.optim.seed)
    eval_images, eval_labels = data.select_labelled(data_cfg.eval_split)
    if len(eval_images) < data.num_classes:
        raise MixemError(
            f"The evaluation split {data_cfg.eval_split!r} holds {len(eval_images)} images, fewer than the "
            f"{data.num_classes} clusters to find; pass a larger --eval-split."
        )
    local_batch = min(config.optim.batch_size, len(train_images)) // world_size
    if local_batch * world_size < 2 or local_batch < 1:
        raise MixemError(
            f"{len(train_images)} training images cannot fill a batch of at least 2 over {world_size} worker(s); "
            "lower --val-fraction, use fewer workers or a larger --train-split."
        )
    return TrainingData(train_images.to(device), val_images.to(device), eval_images, eval_labels, data.num_classes,
                        local_batch, world_size)


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
    ``epoch``, ``loss_<term>``, ``lr``, ``train_images``, ``world_size``, ``device``, ``epoch_seconds``,
    ``eval_seconds``, ``evaluated`` and, when evaluated (on rank 0), every clustering metric
    (``mixem.evaluate.METRIC_KEYS``) and the validation loss (``VALIDATION_KEYS``).
    ``checkpoint_dir`` holds ``checkpoint.pt`` on rank 0 and is None elsewhere. ``resume_from`` is a
    run folder or a folder holding ``checkpoint.pt``; training continues after its epoch.
    Raises ``NonFiniteLossError`` (before checkpointing) when the loss diverges.
    """
    config.validate()
    rank, world_size = _distributed()
    device = pick_device(device)
    folder = RunFolder(out_dir if out_dir is not None else tempfile.mkdtemp(prefix="mixem-"))
    lock = folder.claim(resuming=resume_from is not None) if rank == 0 else None  # only rank 0 writes
    try:
        return _train(config, folder, rank, device, data_dir=data_dir, download=download, report=report,
                      resume_from=resume_from, progress=sys.stderr.isatty() if progress is None else progress,
                      speed=Speed.for_device(device, compile))
    finally:
        if lock is not None:
            lock.release()


def _train(config: Config, folder: RunFolder, rank: int, device: torch.device, *, data_dir, download: bool,
           report: Report | None, resume_from, progress: bool, speed: Speed) -> dict:
    """The run itself, top to bottom (``train`` holds the folder's lock around it)."""
    world_size = _distributed()[1]
    torch.manual_seed(config.optim.seed)  # here, not at import: every run (and every Tune trial) chooses its own
    data = load_training_data(config, data_dir, download, device, world_size)
    check_memory(config, data.local_batch, device)
    model, views_model, optimizer = build_training(config, device, speed, world_size)
    schedule = LrSchedule(config.optim.epochs, config.optim.constant_lr_epochs)
    start_epoch, history, last_eval = 0, [], {}
    if resume_from is not None:
        state = load_checkpoint(resume_from, config)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history, last_eval = state["epoch"], state["history"], state["last_eval"]
        schedule = state["schedule"].extended_to(config.optim.epochs, start_epoch)
    if rank == 0:
        folder.write_config(config)
        if start_epoch >= config.optim.epochs:
            print(f"Nothing to do: the checkpoint already has {start_epoch} of {config.optim.epochs} epochs.",
                  file=sys.stderr)
    for epoch in range(start_epoch, config.optim.epochs):
        record = run_epoch(epoch, config, data, views_model, optimizer, schedule, speed, device, rank, progress)
        evaluation = evaluate_when_due(epoch, config, model, data, device, rank, record)
        if evaluation:
            last_eval = evaluation
        history.append(record)
        checkpoint_dir = None
        if rank == 0:
            state = {"config": config.to_flat(), "epoch": epoch + 1, "model": model.state_dict(),
                     "optimizer": optimizer.state_dict(), "schedule": dataclasses.asdict(schedule),
                     "history": history, "last_eval": last_eval}
            checkpoint_dir = folder.save_epoch(state, history, evaluation)
            print(_summary(record, config.model.head), file=sys.stderr, flush=True)
        if report is not None:
            report(record, checkpoint_dir)
    return last_eval


def run_epoch(epoch: int, config: Config, data: TrainingData, views_model, optimizer, schedule: LrSchedule,
              speed: Speed, device: torch.device, rank: int, progress: bool) -> dict:
    """Train one epoch (0-based ``epoch``) and return its history record: each loss term's mean over
    the epoch's steps, the lr, the images trained on, the device and the seconds. Raises
    ``NonFiniteLossError`` when the loss is NaN or infinite."""
    started = time.perf_counter()
    lr = config.optim.lr * schedule.factor(epoch)
    for group in optimizer.param_groups:
        group["lr"] = lr
    generator = _augment_generator(device, config.optim.seed, rank, epoch)
    # The batch order depends on (seed, epoch) only, so every rank and every resume agree on it;
    # it moves to the device once per epoch, not once per step.
    steps = data.steps_per_epoch
    order = torch.randperm(len(data.train_images),
                           generator=torch.Generator().manual_seed(config.optim.seed * 100_003 + epoch))
    order = order[: steps * data.global_batch].view(steps, data.world_size, data.local_batch).to(device)
    sums = torch.zeros(len(LOSS_TERMS), device=device)
    views_model.train()
    bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{config.optim.epochs}", disable=not progress or rank > 0,
               leave=False, dynamic_ncols=True)
    for step in bar:
        terms = train_step(views_model, optimizer, data.train_images[order[step, rank]], config, generator,
                           data.world_size, speed)
        sums += torch.stack([terms[name].detach() for name in LOSS_TERMS])
        if progress and step % 10 == 0:
            bar.set_postfix(loss=f"{terms['total'].item():.3f}")  # .item() syncs with the GPU: only now and then
    mean_terms = (sums / steps).tolist()  # the epoch's one GPU sync
    diverged = [value for value in mean_terms if not math.isfinite(value)]
    if diverged:
        # Every rank sees the same gathered loss, so every rank stops here, before a checkpoint.
        raise NonFiniteLossError(f"The loss became {diverged[0]} at epoch {epoch + 1}; lower --lr (now "
                                 f"{config.optim.lr:g}) or the loss weights and start a fresh run.")
    return {"epoch": epoch + 1, **{f"loss_{name}": value for name, value in zip(LOSS_TERMS, mean_terms, strict=True)},
            "lr": lr, "train_images": steps * data.global_batch, "world_size": data.world_size,
            "device": device_name(device), "epoch_seconds": time.perf_counter() - started, "eval_seconds": 0.0,
            "evaluated": False}


def evaluate_when_due(epoch: int, config: Config, model, data: TrainingData, device: torch.device, rank: int,
                      record: dict) -> dict | None:
    """After epoch ``epoch`` (0-based): evaluate when it is the last one or one of every ``eval_every``,
    on rank 0 only (the others only train), adding the scores to ``record``. Returns the evaluation
    (``{"epoch": ..., score: value}``) on rank 0, else None."""
    last_epoch = epoch + 1 == config.optim.epochs
    every = config.eval.eval_every
    if not (last_epoch or (every and (epoch + 1) % every == 0)):
        return None
    started = time.perf_counter()
    evaluation = None
    if rank == 0:
        evaluation = {"epoch": epoch + 1, **_evaluate(model, config, data, device, final=last_epoch)}
        record.update({key: value for key, value in evaluation.items() if key != "epoch"})
    record.update(evaluated=True, eval_seconds=time.perf_counter() - started)
    return evaluation


def _evaluate(model, config: Config, data: TrainingData, device, *, final: bool) -> dict:
    """One evaluation: every clustering of the evaluation images and the validation loss."""
    try:
        metrics = evaluate(
            model,
            data.eval_images,
            data.eval_labels,
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
    if len(data.val_images) >= 2:
        metrics.update(
            validation_loss(
                model,
                data.val_images,
                config.augment,
                dataclasses.asdict(config.loss),
                batch_size=config.optim.batch_size,
                device=device,
            )
        )
    return metrics


def _summary(record: dict, head: str) -> str:
    line = (
        f"epoch {record['epoch']}: loss {record['loss_total']:.4f} "
        f"(contrastive {record['loss_contrastive']:.4f}) {record['epoch_seconds']:.1f}s"
    )
    if ORACLE_METRIC in record:
        variant = reported_variant(head)
        line += (
            f", eval {record['eval_seconds']:.1f}s: {variant} ACC {record[f'{variant}_acc']:.4f}, "
            f"val loss {record.get('val_loss', math.nan):.4f} "
            f"(oracle acc_max {record[ORACLE_METRIC]:.4f}: {record['acc_max_variant']}, picked with the labels)"
        )
    return line


if __name__ == "__main__":  # `python -m mixem.train`: the command line lives in mixem/cli.py
    from mixem.cli import main

    sys.exit(main())
