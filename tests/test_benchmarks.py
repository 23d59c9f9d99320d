"""The benchmark suite and the GPU check run from a clean checkout (timings are not asserted:
the machine is shared; benchmarks/RESULTS.md holds measured figures)."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_check_runs_on_the_cpu_path(tmp_path):
    """The script a GPU session runs, on the CPU: the CUDA tests skip, then the quick benchmark suite
    (`python -m benchmarks --quick`), a 2-trial sweep and a checkpoint resumed on the CPU."""
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--device", "cpu", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900, env={**os.environ, "OUT": str(tmp_path)})
    log = (tmp_path / "gpu_check.log").read_text()
    assert done.returncode == 0, log[-4000:]
    for expected in ("MIX'EM / SimCLR time, ResNet-18 32x32", "augment() / PIL, 32x32", "interim (3 restarts) / epoch",
                     "Ray overhead per trial", "2 trials (2 finished)", "== done"):
        assert expected in log, expected
    figures = [line for line in log.splitlines() if line.startswith(("train step:", "augmentation:", "evaluation:"))]
    assert len(figures) == 12 + 10 + 3 and all("python benchmarks/" in line for line in figures)
