"""The Tune callback that turns what trials report into the sweep's Parquet files (``tune/results.py``).

It runs in the sweep's driver. Each reported epoch becomes a row of ``epochs.parquet`` at once;
each trial that ends gets its row in ``trials.parquet`` (once: a trial that already has a row is
never written again, and ``tune/trial.py`` never re-runs it). A trial's status is ``errored`` when
it raised or diverged, ``early_stopped`` when ASHA stopped it before its last epoch, else
``finished``.
"""

from __future__ import annotations

import time
from pathlib import Path

from ray import tune

from tune.results import ResultFiles, Storage, checkpoint_history, epoch_row, trial_row
from tune.trial import FROM_CHECKPOINT, TRIAL_ERROR, TrialResources, trial_config_to_config


class RecordResults(tune.Callback):
    """Writes ``output``'s Parquet files; ``train_storage`` holds each trial's Train run (its
    checkpoints), ``mirror`` the copy of the results in the sweep's storage. A trial is
    ``early_stopped`` when it ended without an error before its last epoch: only a scheduler stops
    a trial so (Tune's stop on Ctrl+C leaves trials unfinished, and no callback sees them end)."""

    clock = staticmethod(time.time)  # tests replace it

    def __init__(self, output: Path, resources: TrialResources, metric: str, *, train_storage: str,
                 mirror: str | None):
        self.output, self.resources, self.metric = output, resources, metric
        self.train_storage, self.mirror = train_storage, mirror
        self.files: ResultFiles | None = None
        self.started: dict[str, float] = {}
        self.before: dict[str, float] = {}  # wall time of trials resumed from an earlier driver
        self.errors: dict[str, str] = {}  # the MixemError a trial's worker reported
        self.reconciled = False

    def setup(self, **info):
        self.files = ResultFiles.open(self.output, self.metric, Storage(self.mirror) if self.mirror else None)

    def on_step_begin(self, iteration, trials, **info):
        # A driver that died right after Tune recorded a trial's end, before this callback wrote its
        # row, leaves a trial Tune will not run again: write its row from what was recorded.
        if not self.reconciled:
            self.reconciled = True
            for trial in trials:
                if trial.status in ("TERMINATED", "ERROR") and not self.files.ended(trial.trial_id):
                    self._finish(trial, "errored" if trial.status == "ERROR" else None,
                                 self._error_of(trial) if trial.status == "ERROR" else "")

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started[trial.trial_id] = self.clock()
        self.before[trial.trial_id] = self.files.seconds_before(trial.trial_id)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get(TRIAL_ERROR):
            self.errors[trial.trial_id] = result[TRIAL_ERROR]
            return
        if "epoch" not in result or result.get(FROM_CHECKPOINT) or self.files.ended(trial.trial_id):
            return  # (a result repeated from a checkpoint: _finish records the checkpoint's epochs)
        preset = trial.config.get("preset", "")
        self.files.add_epochs([epoch_row(trial.trial_id, preset, result, self._wall_seconds(trial))])

    def on_trial_complete(self, iteration, trials, trial, **info):
        if trial.trial_id in self.errors:  # diverged: Tune saw a worst-case result, the files say why
            self._finish(trial, "errored", self.errors[trial.trial_id])
        else:
            self._finish(trial, None)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, "errored", self.errors.get(trial.trial_id) or self._error_of(trial))

    def on_experiment_end(self, trials, **info):
        self.files.flush()

    def _ended_status(self, trial) -> str:
        """A trial that ended without an error before its last epoch was stopped by the scheduler
        (Tune's own stop at the end of a sweep leaves trials unfinished, to be resumed)."""
        epochs = self.files.epochs_of(trial.trial_id)
        done = epochs[-1]["epoch"] if epochs else 0
        return "early_stopped" if done < trial_config_to_config(trial.config).optim.epochs else "finished"

    def _wall_seconds(self, trial) -> float:
        if trial.trial_id not in self.started:  # ended under an earlier driver
            return self.files.seconds_before(trial.trial_id)
        return self.before[trial.trial_id] + self.clock() - self.started[trial.trial_id]

    def _finish(self, trial, status: str | None, error: str = "") -> None:
        """Write the trial's row; ``status`` None: it ended without an error, finished or stopped early
        by the epochs it has once its checkpoint's are recovered."""
        if self.files.ended(trial.trial_id):
            return
        # Epochs whose checkpoint was saved but whose report never reached a driver (it died in
        # between) are in the trial's last checkpoint: fill the gaps from there.
        preset = trial.config.get("preset", "")
        recovered = checkpoint_history(Storage(self.train_storage).child(trial.trial_id))
        self.files.add_epochs([epoch_row(trial.trial_id, preset, record, float("nan")) for record in recovered],
                              replace=False)
        status = status or self._ended_status(trial)
        config = trial_config_to_config(trial.config).to_flat()
        row = trial_row(trial.trial_id, preset, config, self.files.epochs_of(trial.trial_id), metric=self.metric,
                        status=status, error=error, wall_seconds=self._wall_seconds(trial),
                        cpus=self.resources.cpus, gpus=self.resources.gpus)
        self.files.finish(row)

    @staticmethod
    def _error_of(trial) -> str:
        """The reason a trial failed, from the error file Tune writes on the driver (``trial.get_error``
        reads the copy in storage, which may not be there yet)."""
        error_file = trial.error_file
        text = Path(error_file).read_text() if error_file and Path(error_file).is_file() else ""
        return error_summary(text.split("Failure # ")[-1]) if text else "the trial failed without an error message"


def error_summary(traceback_text: str) -> str:
    """The line of a (possibly nested) traceback that says what went wrong: the last MixemError's
    message when there is one (a user error), else the last exception line."""
    lines = [line.strip() for line in str(traceback_text).splitlines() if line.strip()]
    mixem = [line for line in lines if "mixem.errors." in line and "Error:" in line]
    if mixem:
        return mixem[-1].split("Error:", 1)[1].strip()
    exceptions = [line for line in lines if not line.startswith(("File ", "^", "~")) and ": " in line
                  and line.split(":", 1)[0].replace(".", "").replace("_", "").isalnum()]
    return (exceptions or lines or ["unknown error"])[-1]
