"""tune/backend.py: neither a trial's driver nor its Ray Train controller imports torch to set up the
trial's process group."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_train_controller_unpickles_its_callbacks_without_torch(tmp_path):
    """What a trial's controller process receives (the trainer's callbacks, the backend among them)
    unpickles without importing torch; with Ray's TorchConfig it would import it."""
    from ray.train import RunConfig, ScalingConfig

    from tune.backend import TorchProcessGroup
    from tune.trial import trainer_class

    trainer = trainer_class()(lambda config: None, backend_config=TorchProcessGroup(backend="gloo"),
                              scaling_config=ScalingConfig(num_workers=1),
                              run_config=RunConfig(name="x", storage_path=str(tmp_path)))
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
              "from tune.backend import TorchProcessGroup; from tune.trial import trainer_class; "
              "trainer = trainer_class()(lambda config: None, backend_config=TorchProcessGroup(backend='gloo'), "
              "scaling_config=ScalingConfig(num_workers=1), run_config=RunConfig(name='x', storage_path='/tmp')); "
              "print(type(trainer.backend_config).__name__, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["TorchProcessGroup", "False"]
