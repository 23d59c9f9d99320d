"""The flow users run on a cloud cluster, on Ray's fake autoscaler on this one machine: a head started with
an autoscaling config (`RAY_FAKE_CLUSTER=1 ray start --head --autoscaling-config=FILE`, as `ray up` starts
the head), the sweep submitted as a Ray job (`ray job submit --working-dir .`), worker nodes that the
autoscaler starts for it, Parquet written, the job stopped (`ray job stop`) and resumed, and no row lost or
repeated. A second job asks for GPUs that the GPU node type advertises without CUDA: it fails before any
trial, in one sentence.

The cluster is this module's own: its own temp dir, HOME and ports; every process it starts carries a
marker in its environment, and the teardown ends those processes and their children, never `ray stop`.
The dataset comes from a file:// URI, so each node stages it to its disk (mixem.staging) as it would
from S3. Fake nodes are processes on this machine: their GPUs are bookkeeping only.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from tests.test_data import write_fashion_mnist
from tune.cluster import NODE_TYPE_LABEL, free_port
from tune.ray_internals import FAKE_HEAD_NODE_ID, FAKE_PROVIDER_MODULE
from tune.results import EPOCHS_FILE, SETTINGS_FILE, TRIALS_FILE

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
MARKER = "MIXEM_FAKE_CLUSTER"  # in the environment of every process the cluster starts
TIMEOUT_S = 150
# Every searched weight fixed; three lrs, three epochs each, a checkpoint every epoch.
SWEEP = ["--dataset", "fashion-mnist", "--search", "grid", "--space", "lr=1e-3,2e-3,3e-3", "num_components=10",
         "w_entropy=2", "w_instance=0.1", "w_pull=0.1", "w_push=0.05", "temperature=0.5", "kmeans_n_init=1",
         "batch_size=16", "--max-epochs", "3", "--grace-epochs", "3", "--checkpoint-every", "1"]


def cluster_config(gcs_port: int) -> dict:
    """A cluster config shaped like Ray's fake_multi_node/example.yaml, every field written out: a head
    without CPUs (nothing trains there), 0-1 CPU workers, 0-1 "GPU" workers."""
    def worker(resources: dict, name: str) -> dict:
        return {"resources": resources, "labels": {NODE_TYPE_LABEL: name}, "node_config": {}, "min_workers": 0,
                "max_workers": 1}

    return {
        "cluster_name": "mixem-fake",
        "max_workers": 2,
        # "external" names the fake provider's class: provider type fake_multinode would load a defaults
        # file that Ray's wheel does not ship.
        "provider": {"type": "external", "module": FAKE_PROVIDER_MODULE, "use_node_id_as_ip": True,
                     "disable_node_updaters": True, "disable_launch_config_check": True, "launch_multiple": True,
                     "head_node_id": FAKE_HEAD_NODE_ID, "gcs_address": f"127.0.0.1:{gcs_port}"},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0, "GPU": 0}, "labels": {NODE_TYPE_LABEL: "ray.head.default"},
                                 "node_config": {}, "max_workers": 0},
            "cpu": worker({"CPU": 2}, "cpu"),
            "gpu": worker({"CPU": 1, "GPU": 1}, "gpu"),
        },
        "head_node_type": "ray.head.default",
        "auth": {},
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 5,
        "docker": {},
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
    }


def marked_processes(marker: str) -> list[psutil.Process]:
    """The processes whose environment carries ``marker``, and all their children (some Ray processes
    rename themselves over their environment)."""
    found = {}
    for process in psutil.process_iter():
        try:
            if process.environ().get(MARKER) == marker:
                found[process.pid] = process
                found.update({child.pid: child for child in process.children(recursive=True)})
        except (psutil.Error, OSError):
            continue
    return list(found.values())


class FakeCluster:
    def __init__(self, root: Path):
        self.root, self.marker = root, uuid.uuid4().hex
        self.home, self.gcs_port, self.dashboard_port = root / "home", free_port(), free_port()
        self.home.mkdir()
        # Where `ray up` leaves the config on a real head, and where the sweep looks for the node types.
        (self.home / "ray_bootstrap_config.yaml").write_text(yaml.safe_dump(cluster_config(self.gcs_port)))
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
                    "HOME": str(self.home), MARKER: self.marker, "RAY_FAKE_CLUSTER": "1",
                    "AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_enable_autoscaler_v2": "1",
                    "RAY_CLOUD_INSTANCE_ID": FAKE_HEAD_NODE_ID, "RAY_OVERRIDE_NODE_ID_FOR_TESTING": FAKE_HEAD_NODE_ID,
                    # As cluster.yaml's head: `ray job stop` waits for a clean stop.
                    "RAY_JOB_STOP_WAIT_TIME_S": "120", "MIXEM_STAGE_DIR": str(root / "stage"),
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def start(self) -> None:
        ports = {"--port": self.gcs_port, "--dashboard-port": self.dashboard_port}
        ports.update({flag: free_port() for flag in ("--ray-client-server-port", "--dashboard-agent-listen-port",
                                                     "--metrics-export-port", "--runtime-env-agent-port")})
        subprocess.run([RAY, "start", "--head", "--temp-dir", str(self.root / "ray"), "--num-cpus", "0",
                        "--num-gpus", "0", "--autoscaling-config", str(self.home / "ray_bootstrap_config.yaml"),
                        "--dashboard-host", "127.0.0.1", "--disable-usage-stats",
                        *(f"{flag}={port}" for flag, port in ports.items())],
                       env=self.env, check=True, capture_output=True, timeout=120)

    def client(self):
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(f"http://127.0.0.1:{self.dashboard_port}")

    def alive_nodes(self) -> list[dict]:
        from ray.util.state import list_nodes

        return [node for node in list_nodes(address=f"http://127.0.0.1:{self.dashboard_port}")
                if node["state"] == "ALIVE"]

    def teardown(self) -> None:
        processes = marked_processes(self.marker)
        for process in processes:
            with_ignored(process.send_signal, signal.SIGTERM)
        _, alive = psutil.wait_procs(processes, timeout=10)
        for process in alive:
            with_ignored(process.kill)


def with_ignored(call, *args) -> None:
    try:
        call(*args)
    except psutil.Error:
        pass


@pytest.fixture(scope="module")
def cluster():
    root = Path(tempfile.mkdtemp(dir="/tmp", prefix="mxa-"))  # short: unix socket paths live under it
    write_fashion_mnist(root / "bucket", n_train=60, n_test=20)
    fake = FakeCluster(root)
    try:
        fake.start()
        yield fake
    finally:
        fake.teardown()
        shutil.rmtree(root, ignore_errors=True)
    assert marked_processes(fake.marker) == []  # nothing this module started outlives it


def submit(cluster: FakeCluster, args: list[str]) -> str:
    """`ray job submit --working-dir . -- python tune/sweep.py ARGS --address auto`, as docs/cluster.md.

    One change: the driver starts from HOME, running the shipped code by its path. Every fake node
    unpacks the job's working dir into the same folder of this one machine, which replaces the folder
    the driver would run in (on a cluster each node has a disk of its own)."""
    entrypoint = " ".join(['cd "$HOME" &&', sys.executable, '"$OLDPWD/tune/sweep.py"', *args, "--address", "auto"])
    return cluster.client().submit_job(entrypoint=entrypoint, runtime_env={
        "working_dir": str(ROOT), "excludes": ["results/", "benchmarks/", "docs/", "*.ipynb", ".git/"]})


def wait(condition, what: str, timeout: float = TIMEOUT_S, logs=lambda: ""):
    """Poll ``condition`` until it returns something true; on a timeout, fail with ``logs()``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; the job's log ends:\n{logs()[-4000:]}")


def finished(cluster: FakeCluster, job: str):

    status = wait(lambda: (s := cluster.client().get_job_status(job)).is_terminal() and s, f"job {job} to end")
    return status, cluster.client().get_job_logs(job)


def epochs_recorded(results: Path) -> pd.DataFrame:
    path = results / EPOCHS_FILE
    return pd.read_parquet(path) if path.exists() else pd.DataFrame(columns=["trial_id", "epoch"])


def test_gpu_trials_on_a_node_type_without_cuda_fail_before_any_trial(cluster):
    from ray.job_submission import JobStatus

    results = cluster.root / "gpu-results"
    job = submit(cluster, [*SWEEP, "--data-dir", f"file://{cluster.root / 'bucket'}", "--gpus-per-worker", "1",
                           "--storage", str(cluster.root / "storage"), "--storage-shared", "--output", str(results)])
    status, logs = finished(cluster, job)
    assert status == JobStatus.FAILED, logs[-3000:]
    errors = [line for line in logs.splitlines() if line.startswith("error: ")]
    assert errors == [next(line for line in errors if "on node type gpu" in line)], logs[-3000:]
    assert "a worker reserves 1 GPU but" in errors[0] and "--gpus-per-worker 0" in errors[0]
    assert not (results / TRIALS_FILE).exists()  # refused before any trial, and before any result file


def test_a_submitted_sweep_scales_up_stops_and_resumes_without_losing_a_row(cluster):
    from ray.job_submission import JobStatus

    results = cluster.root / "results"
    flags = ["--storage", str(cluster.root / "storage"), "--storage-shared", "--output", str(results)]
    job = submit(cluster, [*SWEEP, "--data-dir", f"file://{cluster.root / 'bucket'}", "--gpus-per-worker", "0",
                           *flags])
    # The head has no CPU: the trials wait for the CPU node the autoscaler starts for them.
    logs = lambda: cluster.client().get_job_logs(job)  # noqa: E731
    wait(lambda: any(n["labels"].get(NODE_TYPE_LABEL) == "cpu" for n in cluster.alive_nodes()), "a CPU node",
         logs=logs)
    wait(lambda: len(epochs_recorded(results)) >= 1, "the first epoch row", logs=logs)
    before = epochs_recorded(results)
    cluster.client().stop_job(job)  # SIGTERM; SIGKILL only after RAY_JOB_STOP_WAIT_TIME_S
    status, logs = finished(cluster, job)
    assert status == JobStatus.STOPPED
    assert "The sweep was stopped; continue it with" in logs, logs[-3000:]  # it stopped cleanly, and said how on
    stopped_trials = pd.read_parquet(results / TRIALS_FILE)
    assert len(stopped_trials) < 3  # stopped mid-sweep

    job = submit(cluster, ["--output", str(results), "--resume"])
    status, logs = finished(cluster, job)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    trials, epochs = pd.read_parquet(results / TRIALS_FILE), epochs_recorded(results)
    assert len(trials) == 3 and trials["trial_id"].is_unique and (trials["status"] == "finished").all()
    assert sorted(trials["config/lr"]) == [1e-3, 2e-3, 3e-3]
    # Each trial's epochs once, 1..3; the rows written before the stop unchanged (resumed from checkpoints,
    # not retrained), and every row of a trial that ended before the stop as it was.
    assert epochs.groupby("trial_id")["epoch"].apply(sorted).to_dict() == {t: [1, 2, 3] for t in trials["trial_id"]}
    kept = before.merge(epochs, on=["trial_id", "epoch"], suffixes=("", "_after"))
    assert len(kept) == len(before) and (kept["trial_seconds"] == kept["trial_seconds_after"]).all()
    pd.testing.assert_frame_equal(trials[trials["trial_id"].isin(stopped_trials["trial_id"])]
                                  .reset_index(drop=True), stopped_trials.reset_index(drop=True))
    # A GPU-less sweep records that it trained on the CPU, and counts no GPU time.
    assert (trials["device"] == "cpu").all() and (epochs["device"] == "cpu").all()
    assert (trials["gpu_seconds"] == 0).all() and (trials["cpu_seconds"] > 0).all()
    settings = yaml.safe_load((results / SETTINGS_FILE).read_text())
    assert [run["resumed"] for run in settings["runs"]] == [False, True]
    assert settings["runs"][0]["resolved"]["gpus_per_worker"] == 0 and settings["runs"][0]["source_sha256"]
    # The dataset was staged to local disk once (the fake nodes of this one machine share its disk).
    assert len(list((cluster.root / "stage").glob("*/.staged-fashion-mnist"))) == 1
