"""The search space of ``tune/sweep.py``, in one place.

Ranges sit around the authors' defaults (MIXEM.md): the loss weights span about a decade on
either side, K spans 1x to 4x the class count, as the paper's K ablation (10, 20, 40 for 10
classes). ``or_zero`` marks a weight whose term may also be switched off: the searcher first
draws "off or on" (an even choice) and, when on, a log-uniform value. A log scale cannot reach 0,
and a single range from 0 would spend most draws on values too small to matter; the two-step
draw searches both "is this term worth having" and "how strong" (the loss ablation, searched).
The marginal entropy (i) never gets ``or_zero``: without it the mixture collapses to one
component (the paper's ablation), so a trial without it is wasted.

``grid`` lists the values ``--search grid`` tries; ``--space`` narrows or fixes any of this.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LogUniform:
    """A positive value drawn log-uniformly from [low, high], or 0 when ``or_zero`` draws "off"."""

    low: float
    high: float
    grid: tuple[float, ...]
    or_zero: bool = False


@dataclass(frozen=True)
class Choice:
    """One of ``values``, each equally likely."""

    values: tuple


def search_space(num_classes: int, default_lr: float) -> dict[str, LogUniform | Choice]:
    """The searched config fields. ``default_lr`` is the dataset preset's (mixem.config.DATASET_PRESETS)."""
    return {
        "w_entropy": LogUniform(0.5, 8.0, grid=(1.0, 2.0, 4.0)),
        "w_instance": LogUniform(0.01, 1.0, grid=(0.0, 0.1, 0.5), or_zero=True),
        "w_pull": LogUniform(0.01, 1.0, grid=(0.0, 0.1, 0.5), or_zero=True),
        "w_push": LogUniform(0.005, 0.5, grid=(0.0, 0.05, 0.2), or_zero=True),
        "num_components": Choice((num_classes, 2 * num_classes, 3 * num_classes, 4 * num_classes)),
        "lr": LogUniform(default_lr / 10, default_lr * 10, grid=(default_lr / 3, default_lr, default_lr * 3)),
        "temperature": LogUniform(0.1, 1.0, grid=(0.2, 0.5)),
    }
