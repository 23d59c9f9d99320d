"""tune/plans.py: ASHA rebuilt from recorded epochs, concurrency that survives a restore, TPE's start-up."""

import math
from types import SimpleNamespace

from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from tune.plans import _Grid, _Limiter, asha, tpe_startup_trials
from tune.results import epoch_row


def rows(trial_id, values):
    """Epoch rows of a trial evaluated every epoch with these metric values."""
    return [epoch_row(trial_id, "", {"epoch": epoch, "evaluated": True, "acc_max": value}, 1.0)
            for epoch, value in enumerate(values, start=1)]


def live(scheduler, trial_id, values):
    """Feed a trial's results to ``scheduler`` as Tune does; return its decisions."""
    trial = SimpleNamespace(trial_id=trial_id)
    scheduler.on_trial_add(None, trial)
    return [scheduler.on_trial_result(None, trial, {"epoch": epoch, "acc_max": value})
            for epoch, value in enumerate(values, start=1)]


def fresh():
    scheduler = asha("acc_max", max_epochs=8, grace_epochs=2, reduction_factor=2, recorded=[])
    scheduler.set_search_properties("acc_max", "max")
    return scheduler


def test_rebuilt_asha_decides_as_the_live_one_would_have():
    history = {"a": [0.5, 0.8, 0.8, 0.85], "b": [0.5, 0.6, 0.6, 0.7]}
    uninterrupted = fresh()
    for trial_id, values in history.items():
        live(uninterrupted, trial_id, values)
    rebuilt = asha("acc_max", max_epochs=8, grace_epochs=2, reduction_factor=2,
                   recorded=[row for trial_id, values in history.items() for row in rows(trial_id, values)])
    rebuilt.set_search_properties("acc_max", "max")
    assert [dict(recorded) for _, recorded in rebuilt._brackets[0]._rungs] == \
           [dict(recorded) for _, recorded in uninterrupted._brackets[0]._rungs]
    # Right after a resume, a weak newcomer is stopped at the first rung, as without the interruption.
    assert live(rebuilt, "c", [0.1, 0.2])[-1] == TrialScheduler.STOP
    assert live(fresh(), "c", [0.1, 0.2])[-1] == TrialScheduler.CONTINUE  # an empty ASHA lets it through


def test_rebuilt_asha_carries_the_metric_between_evaluations_and_ranks_losses_lower_first():
    # Evaluated at epochs 2 and 4 only: the rung at 2 records the epoch-2 value.
    recorded = [epoch_row("a", "", {"epoch": e, "evaluated": e % 2 == 0, "val_loss": 1.0 / e}, 1.0)
                for e in (1, 2, 3, 4)]
    scheduler = asha("val_loss", max_epochs=8, grace_epochs=2, reduction_factor=2, recorded=recorded)
    rungs = {milestone: dict(values) for milestone, values in scheduler._brackets[0]._rungs}
    assert rungs[2] == {"a": -0.5} and rungs[4] == {"a": -0.25}  # minimised: recorded negated, as ASHA does
    assert math.isnan(rows("x", [math.nan])[0]["acc_max"])


def test_a_restored_state_keeps_this_runs_concurrency():
    grid = _Grid(max_concurrent=3)
    grid.set_state({**_Grid(max_concurrent=1).get_state(), "max_concurrent": 1})
    assert grid.max_concurrent == 3
    limiter = _Limiter(Searcher(metric="acc_max", mode="max"), max_concurrent=4)
    limiter.set_state({"max_concurrent": 1, "live_trials": {"t1"}})
    assert limiter.max_concurrent == 4 and limiter.live_trials == {"t1"}


def test_tpe_starts_with_a_quarter_of_the_budget_at_random():
    assert [tpe_startup_trials(n) for n in (4, 6, 16, 24, 100)] == [2, 2, 4, 6, 10]
