"""tune/ray_internals.py, Ray's private names in one home: one test per workaround, each of which fails
when a Ray upgrade moves the name it relies on (the module itself refuses any Ray but the pinned one)."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import ray

from tests.environment import kept_environ
from tune import ray_internals

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    with kept_environ("HOME", "RAY_AUTH_MODE"):
        # Without a token: Ray caches a token in this process, and the next module's Ray, under another HOME,
        # would start its GCS expecting one there.
        os.environ["RAY_AUTH_MODE"] = "disabled"
        os.environ["HOME"] = str(tmp_path_factory.mktemp("home"))
        temp_dir = tempfile.mkdtemp(dir="/tmp", prefix="mxi-")
        from tune.cluster import free_port

        ray.init(address="local", num_cpus=1, include_dashboard=True, dashboard_port=free_port(),
                 _temp_dir=temp_dir, log_to_driver=False, logging_level="ERROR")
        yield ray.get_runtime_context().gcs_address
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_the_module_refuses_another_ray_version():
    script = ("import ray; ray.__version__ = '2.99.0'\n"
              "try:\n    import tune.ray_internals\nexcept ImportError as error:\n    print(error)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Ray 2.60.0" in done.stdout and "this is Ray 2.99.0" in done.stdout and "pip install" in done.stdout


def test_node_groups_are_read_from_the_gcs(local_ray):
    assert ray_internals.autoscaler_node_groups() is None  # a plain local Ray has no autoscaler config
    ray_internals.publish_node_groups(local_ray, [{"name": "gpu", "resources": {"CPU": 4, "GPU": 1}, "max_count": 3}])
    assert ray_internals.autoscaler_node_groups() == [{"name": "gpu", "resources": {"CPU": 4, "GPU": 1},
                                                       "max_count": 3}]


def test_dashboard_address_is_this_rays(local_ray):
    from ray.util.state import list_nodes

    address = ray_internals.dashboard_address()
    assert [node["node_id"] for node in list_nodes(address=address)] == [ray.get_runtime_context().get_node_id()]


def test_an_orphaned_placement_group_is_removed(local_ray, monkeypatch):
    """A non-detached placement group whose job has ended (here: this job, said to have ended) is removed,
    through a handle made from its id; a detached one is left alone."""
    import ray.util.state

    from tune.cluster import remove_orphaned_placement_groups

    orphan = ray.util.placement_group([{"CPU": 0.01}])
    detached = ray.util.placement_group([{"CPU": 0.01}], lifetime="detached")
    ray.get([orphan.ready(), detached.ready()])
    this_job = ray.get_runtime_context().get_job_id()
    monkeypatch.setattr(ray.util.state, "list_jobs",
                        lambda **kwargs: [SimpleNamespace(job_id=this_job, status="SUCCEEDED")])
    try:
        assert remove_orphaned_placement_groups() == 1
        table = ray.util.placement_group_table()
        assert table[orphan.id.hex()]["state"] == "REMOVED" and table[detached.id.hex()]["state"] == "CREATED"
    finally:  # else the module's one CPU stays reserved and its next test waits for it forever
        for group in (orphan, detached):
            if ray.util.placement_group_table()[group.id.hex()]["state"] != "REMOVED":
                ray.util.remove_placement_group(group)


def test_asha_bracket_takes_results():
    from ray.tune.schedulers import ASHAScheduler

    scheduler = ASHAScheduler(time_attr="epoch", max_t=4, grace_period=1, reduction_factor=2, metric="m", mode="max")
    bracket = ray_internals.asha_bracket(scheduler)
    for trial_id, value in (("a", 0.9), ("b", 0.1)):
        bracket.on_result(SimpleNamespace(trial_id=trial_id), 1, value)
    # Rows refilled this way (a resumed sweep's recorded epochs) set the bar: a weak newcomer is stopped.
    assert bracket.on_result(SimpleNamespace(trial_id="c"), 1, 0.05) == "STOP"


def _user_callback_class():
    from ray import tune

    class UserLogger(tune.Callback):
        def __init__(self, path):
            self.path = path

        def on_trial_result(self, iteration, trials, trial, result, **info):
            with open(self.path, "a") as out:
                out.write(f"{trial.trial_id} {result['step']}\n")

    return UserLogger


def _trainable(config):
    from ray import tune

    for step in range(config["steps"]):
        tune.report({"step": step + 1, "m": float(step)})


def test_a_restored_tuner_gets_the_new_plan_and_keeps_user_callbacks(local_ray, tmp_path):
    from ray import tune

    UserLogger = _user_callback_class()
    log = tmp_path / "user.log"

    class Mark(tune.Callback):  # the sweep's own results callback, replaced on restore
        def __init__(self, name):
            self.name = name

        def on_trial_result(self, iteration, trials, trial, result, **info):
            with open(tmp_path / "mark.log", "a") as out:
                out.write(self.name + "\n")

    tuner = tune.Tuner(_trainable, param_space={"steps": 2},
                       run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path / "storage"),
                                                 callbacks=[Mark("first"), UserLogger(str(log))], verbose=0))
    tuner.fit()
    restored = tune.Tuner.restore(str(tmp_path / "storage" / "exp"), trainable=_trainable, restart_errored=True,
                                  resume_unfinished=True)
    scheduler = tune.schedulers.FIFOScheduler()
    ray_internals.replace_restored_plan(restored, search_alg=None, scheduler=scheduler, callback=Mark("second"),
                                        callback_type=Mark)
    plan = restored._local_tuner  # what the workaround wrote, read back
    assert plan._tune_config.scheduler is scheduler
    kinds = [type(c).__name__ for c in plan._run_config.callbacks]
    assert kinds == ["Mark", "UserLogger"] and plan._run_config.callbacks[0].name == "second"


def test_progress_metrics_reach_tune():
    def trainable(config):
        pass

    ray_internals.set_progress_metrics(trainable, ["epoch", "loss_total"])
    assert ray_internals.progress_metrics_of(trainable) == ["epoch", "loss_total"]


def test_trainer_has_no_datasets_callback(tmp_path):
    from ray.train import RunConfig, ScalingConfig

    trainer = ray_internals.trainer_without_datasets_callback()(
        lambda config: None, backend_config=ray_internals.TorchProcessGroup(backend="gloo"),
        scaling_config=ScalingConfig(num_workers=1), run_config=RunConfig(name="x", storage_path=str(tmp_path)))
    names = [type(callback).__name__ for callback in trainer._create_default_callbacks()]
    assert "DatasetsCallback" not in names and "BackendSetupCallback" in names


def test_the_train_controller_unpickles_its_callbacks_without_torch(tmp_path):
    """What a trial's controller process receives (the trainer's callbacks, the backend among them)
    unpickles without importing torch; with Ray's TorchConfig it would import it."""
    from ray.train import RunConfig, ScalingConfig

    trainer = ray_internals.trainer_without_datasets_callback()(
        lambda config: None, backend_config=ray_internals.TorchProcessGroup(backend="gloo"),
        scaling_config=ScalingConfig(num_workers=1), run_config=RunConfig(name="x", storage_path=str(tmp_path)))
    import cloudpickle

    (tmp_path / "callbacks.pkl").write_bytes(cloudpickle.dumps(trainer._create_default_callbacks()))
    script = ("import pickle, sys; callbacks = pickle.loads(open(sys.argv[1], 'rb').read()); "
              "print(any(type(c).__name__ == 'BackendSetupCallback' for c in callbacks), 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "callbacks.pkl")], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "False"]


def test_a_trials_driver_builds_its_trainer_without_torch():
    """``run_trial`` builds the trainer in a process that never touches a tensor: importing torch
    there (as ``ray.train.torch`` does) would cost every trial about 2 s on 2 cores."""
    script = ("import sys; from ray.train import RunConfig, ScalingConfig; "
              "from tune.ray_internals import TorchProcessGroup; from tune.trial import trainer_class; "
              "trainer = trainer_class()(lambda config: None, backend_config=TorchProcessGroup(backend='gloo'), "
              "scaling_config=ScalingConfig(num_workers=1), run_config=RunConfig(name='x', storage_path='/tmp')); "
              "print(type(trainer.backend_config).__name__, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["TorchProcessGroup", "False"]
