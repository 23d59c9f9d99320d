"""The sweep's Ray glue on a two-node Ray cluster (``ray.cluster_utils.Cluster``, one machine)
whose nodes have one logical GPU each: GPU trials must spread over both nodes.

Logical GPUs are bookkeeping only; the trainer sees no CUDA device and trains on the CPU (the
sweep picks the gloo backend for one-worker trials), so this runs on any machine. The cluster
runs in a subprocess (this file, run as a script): a Tune run that joins a ``Cluster`` in a
process that already had another Ray session loses its trial actors as soon as they start.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from tune.results import EPOCHS_FILE, TRIALS_FILE, epochs_schema, trials_schema

ROOT = Path(__file__).resolve().parents[1]


def run_on_two_gpu_nodes(output: Path) -> int:
    """Start the cluster, run a two-preset ablation on it with one GPU per trial, record where the
    Train workers ran."""
    import ray
    from ray.cluster_utils import Cluster
    from ray.util.state import list_actors

    from tune import ablate, sweep

    # The cluster records its address under RAY_TMPDIR: keep it out of the machine's /tmp/ray,
    # where another process's `ray.init()` would find it and join.
    temp_dir = os.environ["RAY_TMPDIR"]
    os.makedirs(os.path.join(temp_dir, "ray"), exist_ok=True)
    head = {"num_cpus": 1, "num_gpus": 1, "temp_dir": temp_dir, "include_dashboard": True,
            "dashboard_port": sweep.free_port()}  # 8265 may belong to another Ray on this machine
    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        cluster.add_node(num_cpus=1, num_gpus=1)
        sweep.start_ray(cluster.address)  # joins, as `--address` does
        code = ablate.main(["--dataset", "digits", "--presets", "simclr,mixem", "--seeds", "1", "--max-epochs", "1",
                            "--gpus-per-worker", "1", "--space", "kmeans_n_init=2", "--output", str(output)])
        workers = list_actors(filters=[("class_name", "=", "RayTrainWorker")], detail=True, limit=100)
        placement = {"worker_nodes": [worker["node_id"] for worker in workers],
                     "cluster_nodes": [node["NodeID"] for node in ray.nodes()]}
        (output / "placement.json").write_text(json.dumps(placement))
        ray.shutdown()
        return code
    finally:
        cluster.shutdown()


def test_ablation_spreads_gpu_trials_over_both_nodes_and_fills_preset(tmp_path):
    """The ablation runs through the sweep's Ray glue: one run checks both the placement of GPU
    trials and the ablation's own output (a Ray round costs tens of seconds on two cores)."""
    output = tmp_path / "gpu-ablation"
    temp_dir = tempfile.mkdtemp(dir="/tmp", prefix="mxc-")  # short: unix socket paths live under it
    env = {**os.environ, "HOME": str(tmp_path), "RAY_TMPDIR": temp_dir,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("RAY_AUTH_MODE", None)
    env.pop("RAY_ADDRESS", None)
    try:
        run = subprocess.run([sys.executable, __file__, str(output)], env=env, capture_output=True, text=True,
                             timeout=400)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]

    trials, epochs = pd.read_parquet(output / TRIALS_FILE), pd.read_parquet(output / EPOCHS_FILE)
    assert list(trials.columns) == trials_schema().names and list(epochs.columns) == epochs_schema().names
    assert sorted(trials["preset"]) == ["mixem", "simclr"] and (trials["status"] == "finished").all()
    assert sorted(epochs["preset"]) == ["mixem", "simclr"]
    by_preset = trials.set_index("preset")
    assert by_preset.loc["simclr", "config/head"] == "simclr" and by_preset.loc["simclr", "config/w_entropy"] == 0
    assert by_preset.loc["mixem", "config/head"] == "mixture" and by_preset.loc["mixem", "config/w_push"] == 0.05
    # The SimCLR head has no mixture: its component-mean variants are NaN, its k-means ones are not.
    assert pd.isna(by_preset.loc["simclr", "final/compinit_z_l2_acc"])
    assert by_preset.loc["simclr", "final/kmeans_h_l2_acc"] > 0
    assert (trials["gpu_seconds"] == trials["wall_seconds"]).all() and (trials["gpu_seconds"] > 0).all()
    # One GPU per node and one per trial: the two trials' Train workers ran on different nodes.
    placement = json.loads((output / "placement.json").read_text())
    assert len(placement["worker_nodes"]) == 2 and len(placement["cluster_nodes"]) == 2
    assert set(placement["worker_nodes"]) == set(placement["cluster_nodes"])


if __name__ == "__main__":
    sys.exit(run_on_two_gpu_nodes(Path(sys.argv[1])))
