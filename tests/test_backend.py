"""tune/backend.py: Ray Train's controller needs no torch to set up a trial's process group."""

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

    trainer = trainer_class()(lambda config: None, torch_config=TorchProcessGroup(backend="gloo"),
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
