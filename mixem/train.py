"""Train MIX'EM (or the SimCLR baseline), then cluster its representations with K-means.

    python -m mixem.train --dataset digits --out runs/digits            # ~2 min on 2 CPU cores
    python -m mixem.train --dataset digits --preset simclr --out runs/digits-simclr
    python -m mixem.train --dataset fashion-mnist --epochs 10 --out runs/fm
    python -m mixem.train --resume runs/digits --epochs 80             # continue, here to 80 epochs

A run folder holds ``config.json``, ``history.jsonl`` (one line per epoch: loss terms, lr,
times, metrics when evaluated), ``metrics.json`` (the last evaluation, every clustering variant)
and ``checkpoint/checkpoint.pt`` (written every epoch, atomically).

``train()`` is also the body of a Ray Train worker (``tune/sweep.py``): it reports each epoch
through a callback and initialises DDP from ``torch.distributed`` when a launcher set it up, so
this package never imports Ray.
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
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from mixem.augment import augment
from mixem.config import CONCERNS, FIELDS, Config
from mixem.data import DATASETS, load_dataset
from mixem.errors import MixemError
from mixem.evaluate import evaluate
from mixem.files import write_atomic
from mixem.losses import mixem_loss
from mixem.model import MixemModel
from mixem.presets import ABLATIONS

Report = Callable[[dict, "Path | None"], None]
LOSS_TERMS = ("total", "contrastive", "marginal_entropy", "instance", "pull", "push")
# Fields that may change when a run is resumed; anything else would make a different experiment.
RESUMABLE_CHANGES = {"epochs", "eval_every", "kmeans_n_init", "interim_kmeans_n_init", "eval_batch_size"}
CHECKPOINT_FILE = "checkpoint.pt"


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, else this rank's GPU when there is one, else the CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    return torch.device("cpu")


def lr_factor(step: int, steps_per_epoch: int, cfg) -> float:
    """Constant lr for ``constant_lr_epochs``, then cosine decay to 0 at the last step (the authors' schedule)."""
    constant_steps = cfg.constant_lr_epochs * steps_per_epoch
    decay_steps = max(1, cfg.epochs * steps_per_epoch - constant_steps)
    progress = min(1.0, max(0, step - constant_steps) / decay_steps)
    return 0.5 * (1 + math.cos(math.pi * progress))


def _checkpoint_path(resume_from: str | Path) -> Path:
    resume_from = Path(resume_from)
    for candidate in (resume_from / CHECKPOINT_FILE, resume_from / "checkpoint" / CHECKPOINT_FILE):
        if candidate.is_file():
            return candidate
    raise MixemError(f"No checkpoint to resume in {resume_from}; pass the run folder that `--out` wrote.")


def _load_checkpoint(resume_from: str | Path, config: Config) -> dict:
    path = _checkpoint_path(resume_from)
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # a truncated or foreign file: torch raises many kinds
        raise MixemError(f"The checkpoint {path} cannot be read ({error}); start a fresh run instead.") from None
    saved, wanted = state["config"], config.to_flat()
    changed = sorted(k for k in wanted if saved.get(k) != wanted[k] and k not in RESUMABLE_CHANGES)
    if changed:
        raise MixemError(
            f"The checkpoint in {resume_from} was trained with different {', '.join(changed)}; "
            "only epochs and evaluation settings may change on --resume."
        )
    return state


def _distributed() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


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
) -> dict:
    """Train on ``config.data.train_split``, evaluate on ``eval_split``; return the last evaluation.

    ``report(metrics, checkpoint_dir)`` is called after every epoch on every rank; ``metrics`` holds
    ``epoch``, ``loss_<term>``, ``lr``, ``epoch_seconds``, ``eval_seconds``, ``evaluated`` and, when
    evaluated, every clustering variant's metrics (``mixem.evaluate.METRIC_KEYS``). ``checkpoint_dir``
    holds ``checkpoint.pt`` on rank 0 and is None elsewhere. ``resume_from`` is a run folder or a
    folder holding ``checkpoint.pt``; training continues after its epoch.
    """
    config.validate()
    rank, world_size = _distributed()
    device = pick_device(device)
    out_dir = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="mixem-"))
    progress = sys.stderr.isatty() if progress is None else progress
    data_cfg, optim = config.data, config.optim

    # Seeds are set here, not at import: every run (and every Tune trial) chooses its own.
    torch.manual_seed(optim.seed)
    generator = torch.Generator(device=device).manual_seed(optim.seed * 1000 + rank)

    data = load_dataset(data_cfg.dataset, data_dir, download=download, include_unlabeled=data_cfg.stl10_unlabeled)
    train_images, _ = data.select(data_cfg.train_split)
    eval_images, eval_labels = data.select(data_cfg.eval_split)
    info = DATASETS[data_cfg.dataset]
    train_images = train_images.to(device)  # uint8 on the device: augmentation needs no host round trip

    model = MixemModel(config.model, info.channels, info.image_size).to(device)
    trained_model = model
    if world_size > 1:
        trained_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    optimizer = torch.optim.Adam(model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
    batch_size = min(optim.batch_size, len(train_images))
    steps_per_epoch = len(train_images) // batch_size  # drop the ragged last batch: NT-Xent wants full batches
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, steps_per_epoch, optim))

    start_epoch, history, last_eval = 0, [], {}
    if resume_from is None and (out_dir / "checkpoint" / CHECKPOINT_FILE).exists():
        raise MixemError(f"{out_dir} already holds a run; continue it with --resume {out_dir} or choose another --out.")
    if resume_from is not None:
        state = _load_checkpoint(resume_from, config)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"][rank % len(state["generator"])])
        start_epoch, history, last_eval = state["epoch"], state["history"], state["last_eval"]
    if rank == 0:
        write_atomic(out_dir / "config.json", json.dumps(config.to_flat(), indent=2) + "\n")
    if start_epoch >= optim.epochs and rank == 0:
        print(f"Nothing to do: the checkpoint already has {start_epoch} of {optim.epochs} epochs.", file=sys.stderr)

    loss_weights = dataclasses.asdict(config.loss)
    for epoch in range(start_epoch, optim.epochs):
        started = time.perf_counter()
        # The batch order depends on (seed, epoch) only, so every rank and every resume agree on it.
        order = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(optim.seed * 100_003 + epoch))
        sums = torch.zeros(len(LOSS_TERMS), device=device)
        trained_model.train()
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"epoch {epoch + 1}/{optim.epochs}",
            disable=not progress or rank > 0,
            leave=False,
            dynamic_ncols=True,
        )
        for step in bar:
            batch_index = order[step * batch_size : (step + 1) * batch_size][rank::world_size].to(device)
            images = train_images[batch_index]
            views = torch.cat([augment(images, config.augment, generator), augment(images, config.augment, generator)])
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out = trained_model(views)
            z_a, z_b = out["z"].float().chunk(2)
            pi_a, pi_b = out["pi"].chunk(2) if "pi" in out else (None, None)
            terms = mixem_loss(pi_a, z_a, pi_b, z_b, **loss_weights)
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            optimizer.step()
            scheduler.step()
            sums += torch.stack([terms[name].detach() for name in LOSS_TERMS])
            if progress and step % 10 == 0:
                bar.set_postfix(loss=f"{terms['total'].item():.3f}")  # .item() syncs with the GPU: only now and then
        epoch_seconds = time.perf_counter() - started

        record = {"epoch": epoch + 1}
        mean_terms = (sums / steps_per_epoch).tolist()  # the epoch's one GPU sync
        record.update({f"loss_{name}": value for name, value in zip(LOSS_TERMS, mean_terms, strict=True)})
        record.update(lr=scheduler.get_last_lr()[0], epoch_seconds=epoch_seconds, eval_seconds=0.0, evaluated=False)
        eval_every = config.eval.eval_every
        last_epoch = epoch + 1 == optim.epochs
        if last_epoch or (eval_every and (epoch + 1) % eval_every == 0):
            started = time.perf_counter()
            if rank == 0:  # one rank clusters; the others only train
                last_eval = evaluate(
                    model,
                    eval_images,
                    eval_labels,
                    data.num_classes,
                    n_init=config.eval.kmeans_n_init if last_epoch else config.eval.interim_kmeans_n_init,
                    batch_size=config.eval.eval_batch_size,
                    seed=optim.seed,
                    device=device,
                )
                last_eval = {"epoch": epoch + 1, **last_eval}
                record.update({k: v for k, v in last_eval.items() if k != "epoch"})
            record.update(evaluated=True, eval_seconds=time.perf_counter() - started)
        history.append(record)

        checkpoint_dir = None
        if rank == 0:
            checkpoint_dir = out_dir / "checkpoint"
            generator_states = [generator.get_state()]
            state = {
                "config": config.to_flat(),
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "generator": generator_states,
                "history": history,
                "last_eval": last_eval,
            }
            write_atomic(checkpoint_dir / CHECKPOINT_FILE, partial(torch.save, state))
            write_atomic(out_dir / "history.jsonl", "".join(json.dumps(row) + "\n" for row in history))
            if record["evaluated"]:
                write_atomic(out_dir / "metrics.json", json.dumps(last_eval, indent=2) + "\n")
            print(_summary(record), file=sys.stderr, flush=True)
        if report is not None:
            report(record, checkpoint_dir)
    return last_eval


def _summary(record: dict) -> str:
    line = (
        f"epoch {record['epoch']}: loss {record['loss_total']:.4f} "
        f"(contrastive {record['loss_contrastive']:.4f}) {record['epoch_seconds']:.1f}s"
    )
    if "acc_max" in record:
        line += (
            f", eval {record['eval_seconds']:.1f}s: best ACC {record['acc_max']:.4f} ({record['acc_max_variant']}), "
            f"k-means++ on h ACC {record['kmeans_h_raw_acc']:.4f}"
        )
    return line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
        "--data-dir", type=Path, help="dataset root in torchvision's layout (default: $MIXEM_DATA_DIR or ./data)"
    )
    run.add_argument("--download", action="store_true", help="download the dataset into --data-dir when missing")
    run.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
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
        return Config.from_flat({**saved, **explicit})
    dataset = explicit.get("dataset", FIELDS["dataset"].default)
    preset = ABLATIONS[args.preset] if args.preset else {}
    return Config.for_dataset(dataset, {**preset, **explicit})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args).validate()
        out = (
            args.resume
            or args.out
            or Path("runs") / (f"{config.data.dataset}-{args.preset or config.model.head}-seed{config.optim.seed}")
        )
        print(f"Run folder: {out}", file=sys.stderr)
        metrics = train(
            config,
            out,
            data_dir=args.data_dir,
            download=args.download,
            resume_from=args.resume,
            device=args.device,
            progress=args.progress,
        )
    except MixemError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if metrics:
        print(json.dumps({k: v for k, v in metrics.items() if k == "epoch" or k.startswith("acc_max")}, indent=2))
        _print_table(metrics)
    print(f"Results in {out}", file=sys.stderr)
    return 0


def _print_table(metrics: dict) -> None:
    variants = sorted({k.rsplit("_", 1)[0] for k in metrics if k.endswith("_acc") and k != "acc_max"})
    print(f"{'variant':<18}{'ACC':>8}{'NMI':>8}{'ARI':>8}")
    for variant in variants:
        print(f"{variant:<18}" + "".join(f"{metrics[f'{variant}_{m}']:>8.4f}" for m in ("acc", "nmi", "ari")))


if __name__ == "__main__":
    sys.exit(main())
