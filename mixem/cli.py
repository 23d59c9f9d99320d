"""The trainer's command line: ``python -m mixem.train`` (mixem/train.py hands its ``__main__`` here).

    python -m mixem.train --dataset digits --out runs/digits            # ~1 min on 2 CPU cores
    python -m mixem.train --dataset digits --preset simclr --out runs/digits-simclr
    python -m mixem.train --resume runs/digits --epochs 80             # continue, here to 80 epochs
    torchrun --standalone --nproc_per_node 2 -m mixem.train --dataset digits --out runs/ddp   # DDP, no Ray

Flags are the config's fields (``mixem.config``) plus where and how to run; a user's error prints one
sentence and exits 2, Ctrl+C says how to continue and exits 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from mixem.config import CONCERNS, FIELDS, Config, missing_data_dir_message
from mixem.device import check_device
from mixem.errors import MixemError
from mixem.presets import ABLATIONS
from mixem.run_folder import checkpoint_path
from mixem.scores import FIXED_VARIANT, ORACLE_METRIC, reported_variant
from mixem.staging import is_uri
from mixem.train import _distributed, train

# What torchrun sets beside WORLD_SIZE; without them the process group would wait forever.
LAUNCHER_VARIABLES = ("RANK", "MASTER_ADDR", "MASTER_PORT")


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
        except (json.JSONDecodeError, UnicodeDecodeError):
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
    try:
        launched = join_launcher(args.device)
    except MixemError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rank, out = _distributed()[0], None
    try:
        config = config_from_args(args).validate()
        check_run_flags(args, config.data.dataset)
        out = args.resume or args.out or Path("runs") / (
            f"{config.data.dataset}-{args.preset or config.model.head}-seed{config.optim.seed}")
        if rank == 0:
            print(f"Run folder: {out}", file=sys.stderr)
        metrics = train(config, out, data_dir=args.data_dir, download=args.download, resume_from=args.resume,
                        device=args.device, progress=args.progress, compile=args.compile)
    except MixemError as error:
        if rank == 0:
            print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if rank == 0:
            print(stopped_message(out), file=sys.stderr)
        return 130
    finally:
        if launched:
            dist.destroy_process_group()
    if rank == 0:
        _print_results(metrics, config.model.head, out)
    return 0


def join_launcher(device: str | None) -> bool:
    """Join the process group when a launcher (torchrun) started this process as one of several workers;
    True if it did. A WORLD_SIZE without the rest of a launcher's variables (one left in the shell) would
    wait for workers that never come: refused in one sentence."""
    world_size = os.environ.get("WORLD_SIZE", "1")
    if not world_size.isdigit():
        raise MixemError(f"WORLD_SIZE={world_size} is not a number of workers; unset it, or launch with torchrun.")
    if int(world_size) <= 1 or dist.is_initialized():
        return False
    missing = [name for name in LAUNCHER_VARIABLES if name not in os.environ]
    if missing:
        raise MixemError(f"WORLD_SIZE={world_size} is set but not {', '.join(missing)}, so no launcher started this "
                         "process; unset WORLD_SIZE (and RANK) to train alone, or start it with torchrun "
                         "--nproc_per_node N -m mixem.train.")
    on_gpu = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if on_gpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if on_gpu else "gloo")
    return True


def stopped_message(out: Path | None) -> str:
    """What Ctrl+C prints: how to continue from the last checkpoint, if an epoch was saved."""
    if out is not None and checkpoint_exists(out):
        return f"Stopped; the last finished epoch is saved. Continue with: python -m mixem.train --resume {out}"
    return "Stopped before the first epoch was saved; nothing to continue."


def checkpoint_exists(out: Path) -> bool:
    try:
        checkpoint_path(out)
    except MixemError:
        return False
    return True


def _print_results(metrics: dict, head: str, out: Path) -> None:
    if metrics:
        variant = reported_variant(head)
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
