"""The sweep on fake multi-node Ray clusters (``ray.cluster_utils.Cluster``: several raylets on one
machine) whose nodes have logical GPUs: trials spread over the GPU nodes, a sweep started before
any GPU node is up sizes itself from the autoscaler's node types, and a trial whose node is
removed continues from its last checkpoint on another node.

Logical GPUs are bookkeeping only; the trainer sees no CUDA device and trains on the CPU (the
sweep picks the gloo backend for one-worker trials), so this runs on any machine.

Each test runs this file as a script (``python tests/test_sweep_cluster.py SCENARIO OUTPUT``):
that process owns the cluster, runs the sweep's command line against it with ``--address`` in a
process of its own, as on a real cluster, changes the cluster under it where the scenario says,
and writes what it saw to ``OUTPUT/cluster.json``; the test asserts on that and on the sweep's
Parquet files. The cluster's processes and its address file (under RAY_TMPDIR) thus stay apart
from the pytest process, where other modules start their own Ray.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from tune.results import EPOCHS_FILE, TRIALS_FILE, epochs_schema, trials_schema
from tune.trial import LOGICAL_GPUS_ENV

ROOT = Path(__file__).resolve().parents[1]
FACTS_FILE = "cluster.json"
# Every searched weight fixed: the trials of a test differ only where the test says so.
FIXED = ["num_components=10", "w_entropy=2", "w_instance=0.1", "w_pull=0.1", "w_push=0.05", "temperature=0.5",
         "kmeans_n_init=2"]
GPU_NODE = {"num_cpus": 1, "num_gpus": 1}
# All nodes of a one-machine cluster share one IP, so the sweep's pinning of trial drivers to the
# driver's node (a `node:IP` resource) holds on every node. Nodes with less memory than a trial
# driver asks for (tune.trial.TRIAL_DRIVER_MEMORY) keep the drivers on the head, as on a real
# cluster: removing a GPU node then removes a Train worker, not the trial itself.
NO_TRIAL_DRIVER_MEMORY = 64 * 2**20
# What the sweep prints once it has sized its trials, before its pre-flight task (tune/run.py).
SIZED_LINE = "checking that digits loads"
SWEEP_TIMEOUT_S = 300
SWEEPS: list[subprocess.Popen] = []  # the sweeps this process started, stopped with the cluster


# ---------------------------------------------------------------------------------------------
# In the cluster's process (this file run as a script)


def start_cluster(**head):
    from ray.cluster_utils import Cluster

    from tune.cluster import free_port

    # The cluster records its address under RAY_TMPDIR: keep it out of the machine's /tmp/ray,
    # where another process's `ray.init()` would find it and join.
    temp_dir = os.environ["RAY_TMPDIR"]
    os.makedirs(os.path.join(temp_dir, "ray"), exist_ok=True)
    head.update(temp_dir=temp_dir, include_dashboard=True,
                dashboard_port=free_port())  # 8265 may belong to another Ray on this machine
    return Cluster(initialize_head=True, head_node_args=head)


def declare_node_types(address: str, resources: dict, max_count: int) -> None:
    """Write the cluster's node types where KubeRay keeps them: one worker group."""
    from tune.ray_internals import publish_node_groups

    publish_node_groups(address, [{"name": "gpu-worker", "resources": resources, "max_count": max_count}])


def start_sweep(script: str, cluster, output: Path, args: list[str]) -> subprocess.Popen:
    """The sweep's command line joining ``cluster``: results in OUTPUT/results, its console in
    OUTPUT/sweep.out and sweep.err. One machine's folder is every node's, hence --storage-shared."""
    command = [sys.executable, str(ROOT / "tune" / script), "--dataset", "digits", "--address", cluster.address,
               "--storage", str(output / "storage"), "--storage-shared", "--output", str(output / "results"), *args]
    with open(output / "sweep.out", "w") as out, open(output / "sweep.err", "w") as err:
        SWEEPS.append(subprocess.Popen(command, stdout=out, stderr=err, cwd=ROOT))
    return SWEEPS[-1]


def wait_for(condition, sweep: subprocess.Popen, what: str, timeout: float = SWEEP_TIMEOUT_S):
    """Poll ``condition`` until it returns something true, and return that; fail if the sweep ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if sweep.poll() is not None:
            raise RuntimeError(f"the sweep ended (exit {sweep.returncode}) before {what}")
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def sweep_log(output: Path) -> str:
    return (output / "sweep.err").read_text()


def recorded_epochs(output: Path) -> list[dict]:
    path = output / "results" / EPOCHS_FILE
    if not path.exists():
        return []
    rows = pd.read_parquet(path)[["trial_id", "epoch", "trial_seconds"]]
    return rows.to_dict("records")


def train_workers(cluster) -> list[dict]:
    """Every Ray Train worker the cluster has run (dead ones too): id, node, state."""
    from ray.util.state import list_actors

    actors = list_actors(address=cluster.address, filters=[("class_name", "=", "RayTrainWorker")], detail=True,
                         limit=1000, raise_on_missing_output=False)
    return [{"actor_id": a["actor_id"], "node_id": a["node_id"], "state": a["state"]} for a in actors]


def finish(sweep: subprocess.Popen) -> int:
    try:
        return sweep.wait(timeout=SWEEP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        sweep.kill()
        sweep.wait()
        return -9


def two_gpu_nodes_ablation(cluster, output: Path) -> dict:
    """Two presets with one GPU each on two nodes of one GPU each."""
    cluster.add_node(**GPU_NODE)
    sweep = start_sweep("ablate.py", cluster, output, ["--presets", "simclr,mixem", "--seeds", "1",
                                                       "--max-epochs", "1", "--gpus-per-worker", "1",
                                                       "--space", "kmeans_n_init=2"])
    return {"returncode": finish(sweep), "workers": train_workers(cluster),
            "nodes": [cluster.head_node.node_id] + [node.node_id for node in cluster.worker_nodes]}


def gpu_nodes_added_after_start(cluster, output: Path) -> dict:
    """A CPU-only head, GPU node types declared, no GPU node up: the sweep sizes itself, then an
    "autoscaler" adds two GPU nodes."""
    declare_node_types(cluster.address, {"CPU": 1, "GPU": 1}, max_count=2)
    sweep = start_sweep("sweep.py", cluster, output, ["--search", "grid", "--space", "lr=1e-3,2e-3", *FIXED,
                                                      "--max-epochs", "2", "--grace-epochs", "2"])
    wait_for(lambda: SIZED_LINE in sweep_log(output), sweep, "the sweep sized its trials")
    time.sleep(2)  # the pre-flight task is waiting for a GPU node by now
    log_before_gpus = sweep_log(output)
    gpu_nodes = [cluster.add_node(**GPU_NODE) for _ in range(2)]
    return {"returncode": finish(sweep), "workers": train_workers(cluster), "log_before_gpus": log_before_gpus,
            "head": cluster.head_node.node_id, "gpu_nodes": [node.node_id for node in gpu_nodes]}


def node_removed_mid_trial(cluster, output: Path) -> dict:
    """One trial on one of two GPU nodes; once it has reported a few epochs, its node goes away."""
    gpu_nodes = [cluster.add_node(**GPU_NODE, memory=NO_TRIAL_DRIVER_MEMORY) for _ in range(2)]
    sweep = start_sweep("sweep.py", cluster, output, ["--search", "grid", "--space", "lr=1e-3", *FIXED,
                                                      "--max-epochs", "6", "--grace-epochs", "1",
                                                      "--gpus-per-worker", "1", "--max-failures", "2"])
    wait_for(lambda: len(recorded_epochs(output)) >= 2, sweep, "two epochs were recorded")
    (running,) = [worker for worker in train_workers(cluster) if worker["state"] == "ALIVE"]
    # Every epoch recorded by now was reported with its checkpoint (evaluated every epoch).
    before_removal = recorded_epochs(output)
    (removed,) = [node for node in gpu_nodes if node.node_id == running["node_id"]]
    cluster.remove_node(removed)
    after_removal = recorded_epochs(output)
    return {"returncode": finish(sweep), "workers": train_workers(cluster), "removed_worker": running["actor_id"],
            "epochs_before_removal": before_removal, "epochs_after_removal": after_removal,
            "removed_node": removed.node_id,
            "surviving_node": next(node.node_id for node in gpu_nodes if node is not removed)}


SCENARIOS = {
    "two_gpu_nodes_ablation": (two_gpu_nodes_ablation, {"num_cpus": 1, "num_gpus": 1}),
    "gpu_nodes_added_after_start": (gpu_nodes_added_after_start, {"num_cpus": 1}),
    "node_removed_mid_trial": (node_removed_mid_trial, {"num_cpus": 1}),
}


def run_scenario(name: str, output: Path) -> int:
    """Start the cluster, play the scenario, write what it saw; the cluster goes down however this ends."""
    scenario, head = SCENARIOS[name]
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))  # a timed-out test still shuts down
    output.mkdir(parents=True, exist_ok=True)
    cluster = start_cluster(**head)
    try:
        facts = scenario(cluster, output)
        (output / FACTS_FILE).write_text(json.dumps(facts, indent=1))
        return 0
    finally:
        for sweep in SWEEPS:
            if sweep.poll() is None:
                sweep.kill()
                sweep.wait()
        cluster.shutdown()


# ---------------------------------------------------------------------------------------------
# The tests (in the pytest process)


def play(name: str, tmp_path: Path, timeout: float) -> tuple[dict, str, Path]:
    """Run a scenario in its own process: what it saw, the sweep's stderr, the sweep's results folder."""
    output = tmp_path / name
    temp_dir = tempfile.mkdtemp(dir="/tmp", prefix="mxc-")  # short: unix socket paths live under it
    # The GPUs of these clusters are logical only: their workers train on the CPU (tune.trial.LOGICAL_GPUS_ENV).
    env = {**os.environ, "HOME": str(tmp_path), "RAY_TMPDIR": temp_dir, LOGICAL_GPUS_ENV: "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for variable in ("RAY_AUTH_MODE", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):  # this cluster's, not another's
        env.pop(variable, None)
    process = subprocess.Popen([sys.executable, __file__, name, str(output)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        console, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.terminate()  # the script shuts its cluster down
        try:
            console, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()  # the cluster's reaper ends what the script started
            console, _ = process.communicate()
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    log = (output / "sweep.err").read_text() if (output / "sweep.err").exists() else ""
    assert process.returncode == 0, f"{console[-3000:]}\nsweep stderr:\n{log[-3000:]}"
    facts = json.loads((output / FACTS_FILE).read_text())
    assert facts["returncode"] == 0, f"sweep stderr:\n{log[-4000:]}"
    return facts, log, output / "results"


def read_results(results: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    trials, epochs = pd.read_parquet(results / TRIALS_FILE), pd.read_parquet(results / EPOCHS_FILE)
    assert list(trials.columns) == trials_schema().names and list(epochs.columns) == epochs_schema().names
    return trials, epochs


def test_ablation_spreads_gpu_trials_over_both_nodes_and_fills_preset(tmp_path):
    """The ablation runs through the sweep's Ray glue: one run checks both the placement of GPU
    trials and the ablation's own output (a Ray round costs tens of seconds on two cores)."""
    facts, _, results = play("two_gpu_nodes_ablation", tmp_path, timeout=540)

    trials, epochs = read_results(results)
    assert sorted(trials["preset"]) == ["mixem", "simclr"] and (trials["status"] == "finished").all()
    assert sorted(epochs["preset"]) == ["mixem", "simclr"]
    by_preset = trials.set_index("preset")
    assert by_preset.loc["simclr", "config/head"] == "simclr" and by_preset.loc["simclr", "config/w_entropy"] == 0
    assert by_preset.loc["mixem", "config/head"] == "mixture" and by_preset.loc["mixem", "config/w_push"] == 0.05
    # The SimCLR head has no mixture: its component-mean variants are NaN, its k-means ones are not.
    assert pd.isna(by_preset.loc["simclr", "final/compinit_z_l2_acc"])
    assert by_preset.loc["simclr", "final/kmeans_h_l2_acc"] > 0
    # Logical GPUs: the workers trained on the CPU, so no GPU time is counted, and each row says so.
    assert (trials["device"] == "cpu").all() and (epochs["device"] == "cpu").all()
    assert (trials["gpu_seconds"] == 0).all()
    # One GPU per node and one per trial: the two trials' Train workers ran on different nodes.
    workers = [worker["node_id"] for worker in facts["workers"]]
    assert len(workers) == 2 and len(facts["nodes"]) == 2
    assert set(workers) == set(facts["nodes"])


def test_sweep_sized_from_node_types_trains_on_gpu_nodes_added_after_it_started(tmp_path):
    """No --gpus-per-worker and no --max-concurrent, on a cluster with no GPU up: the node types in
    the GCS (2 nodes of 1 CPU, 1 GPU) give 1 GPU per worker and 2 trials at once, and the trials
    wait for the GPU nodes an autoscaler adds rather than train on the head's CPU."""
    facts, log, results = play("gpu_nodes_added_after_start", tmp_path, timeout=540)

    # Sized before any GPU node was up, and still waiting for one (the pre-flight) when they came.
    assert SIZED_LINE in facts["log_before_gpus"] and "trial(s)" not in facts["log_before_gpus"]
    assert re.search(r"up to (\d+) at once", log).group(1) == "2"
    assert re.search(r"each 1 worker\(s\) x \((\S+) CPU, (\S+) GPU\)", log).groups() == ("1", "1")
    trials, epochs = read_results(results)
    assert len(trials) == 2 and (trials["status"] == "finished").all() and (trials["epochs"] == 2).all()
    assert sorted(trials["config/lr"]) == [1e-3, 2e-3]
    assert sorted(epochs.groupby("trial_id")["epoch"].apply(list)) == [[1, 2], [1, 2]]
    assert (trials["device"] == "cpu").all() and (trials["gpu_seconds"] == 0).all()  # logical GPUs
    # Both Train workers ran on the GPU nodes, one on each: the two trials ran at once.
    workers = [worker["node_id"] for worker in facts["workers"]]
    assert len(workers) == 2 and facts["head"] not in workers
    assert sorted(workers) == sorted(facts["gpu_nodes"])


def test_trial_continues_from_its_checkpoint_on_another_node_when_its_node_is_removed(tmp_path):
    """The node of a trial's only Train worker goes away after a few epochs: Train restarts the
    worker on the other GPU node from the trial's last checkpoint, and the trial finishes with each
    epoch recorded once."""
    facts, _, results = play("node_removed_mid_trial", tmp_path, timeout=540)

    trials, epochs = read_results(results)
    assert len(trials) == 1
    trial = trials.iloc[0]
    assert trial["status"] == "finished" and trial["epochs"] == 6 and trial["error"] == ""
    assert sorted(epochs["epoch"]) == [1, 2, 3, 4, 5, 6]
    assert (epochs["trial_id"] == trial["trial_id"]).all()
    # Two Train workers: the one on the removed node, then one on the surviving node.
    nodes = {worker["actor_id"]: worker["node_id"] for worker in facts["workers"]}
    assert len(nodes) == 2 and nodes.pop(facts["removed_worker"]) == facts["removed_node"]
    assert list(nodes.values()) == [facts["surviving_node"]]
    # Resumed, not restarted: the epochs recorded before the removal (each with its checkpoint)
    # were never reported again (a retrain from epoch 1 would replace their rows, with later
    # times), and the epochs after them were trained after the removal.
    before = {row["epoch"]: row["trial_seconds"] for row in facts["epochs_before_removal"]}
    assert len(before) >= 2 and len(facts["epochs_after_removal"]) < 6  # the node went mid-training
    after = epochs.set_index("epoch")["trial_seconds"]
    assert {epoch: after[epoch] for epoch in before} == before


if __name__ == "__main__":
    sys.exit(run_scenario(sys.argv[1], Path(sys.argv[2])))
