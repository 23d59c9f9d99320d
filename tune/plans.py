"""What Tune runs for a sweep (a searcher and ASHA) or an ablation (a grid of presets x seeds).

The search algorithms carry the sweep's concurrency limit themselves, so that a resumed sweep
honours a new ``--max-concurrent`` (Tune would restore the old one from its saved state), and
ASHA's rungs are rebuilt from the epochs already recorded, so early stopping works right after a
resume (Tune does not save its scheduler).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

from mixem.errors import MixemError
from mixem.presets import ABLATIONS
from mixem.scores import metric_mode
from tune.ray_internals import asha_bracket
from tune.settings import Settings
from tune.space import OptunaSpace, authors_point, check_config, grid_size, grid_space


@dataclass
class Plan:
    """What Tune runs: built from the command line by the sweep or by the ablation."""

    param_space: dict
    search_alg: object
    scheduler: object | None
    num_samples: int
    total_trials: int  # trials in all: num_samples, times the grid's size for a grid
    varied: list[str]  # the config fields (or "preset") that differ between trials, for the summary


class _Limiter(ConcurrencyLimiter):
    """A searcher's concurrency limit that a restored state does not overwrite."""

    def set_state(self, state: dict) -> None:
        super().set_state({**state, "max_concurrent": self.max_concurrent})


class _Grid(BasicVariantGenerator):
    """Tune's grid (and repeat) generator, whose concurrency limit a restored state does not overwrite."""

    def set_state(self, state: dict) -> None:
        super().set_state({**state, "max_concurrent": self.max_concurrent})


def tpe_startup_trials(num_samples: int) -> int:
    """Random trials before TPE models the results: a quarter of the budget, 2 to 10 (Optuna's
    default is 10 whatever the budget, all random for a 6-trial search)."""
    return min(10, max(2, round(num_samples / 4)))


def asha(metric: str, max_epochs: int, grace_epochs: int, reduction_factor: float, recorded: list[dict]):
    """ASHA on the reported ``epoch``, its rungs filled with the ``recorded`` epoch rows of an earlier
    run of the sweep (``tune/results.py``), as it saw them then: each trial's epochs in order, the
    metric carried forward between evaluations."""
    # metric and mode come from the TuneConfig (Tune refuses them twice)
    scheduler = ASHAScheduler(time_attr="epoch", max_t=max_epochs, grace_period=grace_epochs,
                              reduction_factor=reduction_factor)
    sign = 1.0 if metric_mode(metric) == "max" else -1.0
    bracket = asha_bracket(scheduler)  # one bracket: ASHA's default, and what the sweep asks for
    carried: dict[str, float] = {}
    for row in sorted(recorded, key=lambda row: (row["trial_id"], row["epoch"])):
        if not math.isnan(row[metric]):
            carried[row["trial_id"]] = row[metric]
        bracket.on_result(SimpleNamespace(trial_id=row["trial_id"]), row["epoch"],
                          sign * carried.get(row["trial_id"], math.nan))
    return scheduler


def make_plan(settings: Settings, fixed: dict, space: dict, concurrent: int, recorded: list[dict]) -> Plan:
    """What Tune runs for ``settings``: a search, or an ablation."""
    if settings.searches:
        return sweep_plan(settings, fixed, space, concurrent, recorded)
    return ablation_plan(settings, fixed, concurrent)


def sweep_plan(settings: Settings, fixed: dict, space: dict, concurrent: int, recorded: list[dict]) -> Plan:
    """The searcher (Optuna's TPE, random draws, or the grid) and ASHA for ``tune/sweep.py``."""
    search = settings.experiment
    scheduler = asha(settings.metric, settings.max_epochs, search.grace_epochs, search.reduction_factor, recorded)
    if search.search == "grid":
        repeats = search.num_samples or 1
        return Plan({**fixed, **grid_space(space)}, _Grid(max_concurrent=concurrent), scheduler, repeats,
                    repeats * grid_size(space), list(space))
    import optuna
    from optuna.samplers import RandomSampler, TPESampler
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per study and trial
    num_samples = search.num_samples or 16
    seed = settings.seed if search.search_seed is None else search.search_seed
    sampler = (TPESampler(seed=seed, n_startup_trials=tpe_startup_trials(num_samples))
               if search.search == "optuna" else RandomSampler(seed=seed))
    # The first trial is the authors' configuration, so that every search is measured against it.
    searcher = OptunaSearch(space=OptunaSpace(space, fixed), metric=settings.metric, mode=metric_mode(settings.metric),
                            sampler=sampler, points_to_evaluate=[authors_point(space, fixed)])
    return Plan({}, _Limiter(searcher, max_concurrent=concurrent), scheduler, num_samples, num_samples,
                list(space))


def check_ablation(settings: Settings, fixed: dict) -> None:
    """Every preset with the fixed fields makes a valid config, and --space fixes nothing a preset sets."""
    user_fixed = set(fixed) - {"dataset", "epochs", "seed", "eval_every", "kmeans_n_init", "interim_kmeans_n_init"}
    for name in settings.experiment.presets:
        clash = sorted(user_fixed & set(ABLATIONS[name]))
        if clash:
            raise MixemError(f"--space sets {', '.join(clash)}, which preset {name} defines; drop it from --space.")
        check_config(settings.dataset, {**fixed, **ABLATIONS[name]})


def ablation_plan(settings: Settings, fixed: dict, concurrent: int) -> Plan:
    """Every preset x seed once (a grid), no searcher, no early stopping, for ``tune/ablate.py``."""
    presets, seeds = settings.experiment.presets, settings.experiment.seeds
    param_space = {**fixed, "preset": {"grid_search": list(presets)},
                   "seed": {"grid_search": [settings.seed + i for i in range(seeds)]}}
    return Plan(param_space, _Grid(max_concurrent=concurrent), None, 1, len(presets) * seeds, ["preset", "seed"])
