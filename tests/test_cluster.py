"""tune/cluster.py: sizing trials for what a cluster can grow to, and its storage, without Ray running."""

import pytest

from mixem.errors import MixemError
from tune import cluster
from tune.cluster import Capacity, NodeType, check_storage, max_concurrent_trials, trial_resources

# cluster.yaml: a CPU head, 0-4 g5.xlarge
COLD_GPU_CLUSTER = Capacity(cpus=8 + 4 * 4, gpus=4, known=True,
                            types=(NodeType("head", 8, 0, 1, True), NodeType("gpu", 4, 1, 4, True)))
UNKNOWN_EMPTY = Capacity(cpus=8, gpus=0, known=False)


def test_gpus_per_worker_come_from_the_node_types_not_the_nodes_up():
    resources = trial_resources(1, 3, None, "auto", COLD_GPU_CLUSTER, local=False)
    assert resources.gpus_per_worker == 1 and resources.backend == "gloo"
    assert trial_resources(2, 3, None, "auto", COLD_GPU_CLUSTER, local=False).backend == "nccl"
    with pytest.raises(MixemError, match="pass --gpus-per-worker"):
        trial_resources(1, 1, None, "auto", UNKNOWN_EMPTY, local=False)
    assert trial_resources(1, 1, 0, "auto", UNKNOWN_EMPTY, local=False).gpus_per_worker == 0
    assert trial_resources(1, 1, None, "auto", Capacity(2, 0, False), local=True).gpus_per_worker == 0
    with pytest.raises(MixemError, match="this machine has none"):
        trial_resources(1, 1, 1, "auto", Capacity(2, 0, False), local=True)
    with pytest.raises(MixemError, match="can have at most 4"):
        trial_resources(8, 1, 1, "auto", COLD_GPU_CLUSTER, local=False)


def test_concurrency_is_bounded_by_what_the_cluster_can_grow_to(capsys):
    resources = trial_resources(1, 3, None, "auto", COLD_GPU_CLUSTER, local=False)
    assert max_concurrent_trials(resources, None, COLD_GPU_CLUSTER) == 4  # not 0 or 1 on a cold cluster
    assert max_concurrent_trials(resources, 2, COLD_GPU_CLUSTER) == 2
    cpu_only = trial_resources(1, 1, 0, "auto", UNKNOWN_EMPTY, local=False)
    assert max_concurrent_trials(cpu_only, None, UNKNOWN_EMPTY) == 8
    assert "--max-concurrent" in capsys.readouterr().err  # the guess from the nodes up is said to be one
    assert max_concurrent_trials(cpu_only, None, UNKNOWN_EMPTY, local=True) == 8
    assert capsys.readouterr().err == ""  # this machine's Ray cannot grow: nothing to warn of


def test_node_types_from_ray_ups_bootstrap_config(tmp_path, monkeypatch):
    (tmp_path / "ray_bootstrap_config.yaml").write_text(
        "head_node_type: head\navailable_node_types:\n"
        "  head: {resources: {CPU: 8, GPU: 0}, node_config: {}}\n"
        "  gpu: {min_workers: 0, max_workers: 4, resources: {CPU: 4, GPU: 1}, node_config: {},\n"
        "        labels: {mixem.io/node-type: gpu}}\n")
    monkeypatch.setattr(cluster, "BOOTSTRAP_CONFIG", tmp_path / "ray_bootstrap_config.yaml")
    monkeypatch.setattr(cluster, "autoscaler_node_groups", lambda: None)
    types = (NodeType("head", 8, 0, 1, False), NodeType("gpu", 4, 1, 4, True))
    assert cluster.cluster_capacity() == Capacity(cpus=24, gpus=4, known=True, types=types)
    monkeypatch.setattr(cluster, "autoscaler_node_groups",
                        lambda: [{"name": "g", "resources": {"CPU": 3, "GPU": 1}, "max_count": 2}])
    assert cluster.cluster_capacity() == Capacity(cpus=6, gpus=2, known=True,  # the autoscaler's own, first
                                                  types=(NodeType("g", 3, 1, 2, False),))
    monkeypatch.setattr(cluster, "autoscaler_node_groups", lambda: None)
    monkeypatch.setattr(cluster, "BOOTSTRAP_CONFIG", tmp_path / "missing.yaml")
    monkeypatch.setattr(cluster.ray, "cluster_resources", lambda: {"CPU": 2.0})
    assert cluster.cluster_capacity() == Capacity(cpus=2, gpus=0, known=False)


def test_a_cluster_needs_storage_every_node_reaches(tmp_path, monkeypatch):
    check_storage("s3://bucket/mixem", shared=False)
    check_storage(str(tmp_path), shared=True)  # vouched for with --storage-shared
    with pytest.raises(MixemError, match="pass --storage s3://BUCKET/PREFIX"):
        check_storage(str(tmp_path), shared=False)
    with pytest.raises(MixemError, match="every node of the cluster"):
        check_storage(f"file://{tmp_path}", shared=False)
    monkeypatch.setattr(cluster, "_mount_type", lambda path: "nfs4")
    check_storage(str(tmp_path), shared=False)  # on an NFS mount: visibly shared


def test_mount_type_reads_proc_mounts():
    assert cluster._mount_type(cluster.PROJECT_ROOT) != ""


def test_a_trial_no_node_can_ever_hold_is_refused_instead_of_waiting_forever():
    with pytest.raises(MixemError, match="No node type can hold one Train worker of 5 CPUs"):
        trial_resources(1, 5, 1, "auto", COLD_GPU_CLUSTER, local=False)  # g5.xlarge has 4 CPUs
    with pytest.raises(MixemError, match="needs 3 CPUs .* this machine can have at most 2"):
        trial_resources(1, 3, 0, "auto", Capacity(2, 0, False), local=True)
    with pytest.raises(MixemError, match=r"needs 4 CPUs \(2 worker\(s\) x 2\)"):
        trial_resources(2, 2, 0, "auto", Capacity(2, 0, False), local=True)
    assert trial_resources(1, 2, 0, "auto", Capacity(2, 0, False), local=True).cpus == 2


def test_the_preflight_checks_each_labelled_node_type_that_holds_a_worker(capsys):
    gpu = trial_resources(1, 3, 1, "auto", COLD_GPU_CLUSTER, local=False)
    assert cluster._preflight_checks(gpu, COLD_GPU_CLUSTER) == [
        ("node type gpu", {"label_selector": {cluster.NODE_TYPE_LABEL: "gpu"}})]  # the head holds no GPU worker
    cpu = trial_resources(1, 2, 0, "auto", COLD_GPU_CLUSTER, local=False)
    assert [name for name, _ in cluster._preflight_checks(cpu, COLD_GPU_CLUSTER)] == ["node type head",
                                                                                      "node type gpu"]
    unlabelled = Capacity(16, 2, True, (NodeType("a", 8, 1, 1), NodeType("b", 8, 1, 1)))
    assert cluster._preflight_checks(gpu, unlabelled) == [("node type a or b", {})]
    assert "carry no mixem.io/node-type label" in capsys.readouterr().err
    assert cluster._preflight_checks(gpu, Capacity(2, 1, False)) == [("a worker node", {})]  # no node types known
