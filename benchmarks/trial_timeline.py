"""Where a trial's seconds go: every process Ray starts for each trial of a small local sweep.

    python benchmarks/trial_timeline.py               # 3 digits trials of 2 epochs, one at a time
    python benchmarks/trial_timeline.py --trials 2

Runs the same sweep as benchmarks/ray_overhead.py in this process, then, before Ray stops, asks
Ray's state API for every worker process of the job: when the raylet started it, when it was ready
and when it ended, and which actor it ran (Tune's trial actor ``ImplicitFunc``, Train's
``TrainController``, its ``PlacementGroupCleaner`` and ``SynchronizationActor``, the
``RayTrainWorker``, Tune's report queue ``_QueueActor``). Each trial's processes are printed in the
order they started, in seconds from its trial actor's start, beside the seconds its worker spent
training and evaluating. The trainer's own start-up inside the worker (imports, data, model) is
what ``python -X importtime -m mixem.train ...`` shows without Ray.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

if __name__ == "__main__":  # `python benchmarks/trial_timeline.py`: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
TRIAL_ACTOR = "ImplicitFunc"


def processes(workers: list[dict], actors: dict[int, str]) -> list[dict]:
    """The job's worker processes as ``{pid, actor, launch, ready, end}`` (seconds since the epoch;
    ``end`` None while alive), from Ray's state API rows; processes that ran no actor are left out."""
    rows = []
    for worker in workers:
        actor = actors.get(worker["pid"])
        if worker.get("worker_type") != "WORKER" or actor is None:
            continue
        ms = [worker.get(key) or 0 for key in ("worker_launch_time_ms", "start_time_ms", "end_time_ms")]
        rows.append({"pid": worker["pid"], "actor": actor, "launch": ms[0] / 1e3, "ready": ms[1] / 1e3,
                     "end": ms[2] / 1e3 or None})
    return sorted(rows, key=lambda row: row["launch"])


def by_trial(rows: list[dict]) -> list[list[dict]]:
    """The processes split into trials: each trial actor's launch opens a trial; the processes that
    started until the next one belong to it (trials run one at a time). Processes before the first
    trial actor (Ray's own, the sweep's preflight) are left out."""
    trials: list[list[dict]] = []
    for row in rows:
        if row["actor"] == TRIAL_ACTOR:
            trials.append([row])
        elif trials:
            trials[-1].append(row)
    return trials


def format_trial(index: int, rows: list[dict], working: float | None) -> str:
    start = rows[0]["launch"]
    end = max((row["end"] for row in rows if row["end"]), default=start)
    lines = [f"trial {index}: {end - start:.1f} s from its trial actor's start to its last process's end"
             + (f", {working:.1f} s of it training and evaluating" if working is not None else "")]
    lines.append(f"  {'process':<28} {'launched':>9} {'ready':>7} {'ended':>7}   (s from the trial's start)")
    for row in rows:
        ended = f"{row['end'] - start:7.2f}" if row["end"] else "  alive"
        lines.append(f"  {row['actor']:<28} {row['launch'] - start:9.2f} {row['ready'] - start:7.2f} {ended}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=3, choices=range(1, 5), metavar="N",
                        help="trials of the sweep, 1 to 4 (default 3)")
    args = parser.parse_args(argv)

    import pandas as pd
    import ray
    from ray.util.state import list_actors, list_workers

    from benchmarks.ray_overhead import sweep_arguments, working_seconds
    from tune import cluster, sweep

    os.chdir(ROOT)  # Ray puts the driver's folder on its workers' path
    with tempfile.TemporaryDirectory(prefix="mixem-timeline-") as folder:
        output = Path(folder) / "sweep"
        cluster.start_ray(None, verbose=False)
        try:
            code = sweep.main(sweep_arguments(args.trials, 2, output))
            if code != 0:
                raise SystemExit(f"the sweep failed (exit {code})")
            actors = {actor.pid: actor.class_name for actor in list_actors(detail=True, limit=10_000)}
            workers = [vars(worker) for worker in list_workers(detail=True, limit=10_000)]
        finally:
            ray.shutdown()
        working = working_seconds(pd.read_parquet(output / "epochs.parquet"))
    print()
    for index, rows in enumerate(by_trial(processes(workers, actors))):
        print(format_trial(index, rows, working.iloc[index] if index < len(working) else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
