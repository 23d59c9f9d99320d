"""A stand-in for a user's Tune callback (a W&B or MLflow logger), for ``--callback tests.callbacks:EpochLog``."""

import os
import sys

from ray import tune

LOG_ENV = "MIXEM_TEST_CALLBACK_LOG"


class EpochLog(tune.Callback):
    """Appends "result TRIAL EPOCH" for every result and, at the end of a run, "torch BOOL": whether the
    sweep's driver imported torch. The file is named when the sweep starts: a resumed sweep's copy,
    unpickled from Tune's state, writes to the same one."""

    def __init__(self):
        self.path = os.environ[LOG_ENV]

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "epoch" in result:
            self._write(f"result {trial.trial_id} {result['epoch']}")

    def on_experiment_end(self, trials, **info):
        self._write(f"torch {'torch' in sys.modules}")

    def _write(self, line: str) -> None:
        with open(self.path, "a") as out:
            out.write(line + "\n")
