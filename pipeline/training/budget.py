"""What a run's budget buys: generator updates, critic/discriminator updates and images seen
for a number of steps, and the epochs that match a target in generator updates.

Every step takes one real batch and runs one kind from the algorithm's schedule (kind i is
``schedule[i % len(schedule)]``, across epochs), so the counts follow from the step count:
a *critic update* is a step whose kind steps one of the algorithm's ``critics`` optimisers
(the discriminator/critic), a *generator update* one whose kind steps any other optimiser
(the generator; DDPM's and the VAE's only optimiser). VAE and DDPM have no critic: their
critic updates are None, not 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.core.algorithms import Algorithm
from pipeline.core.hyper import Hyper


@dataclass(frozen=True)
class Updates:
    steps: int
    g_updates: int
    d_updates: int | None  # None: no optimiser besides the sampler's


def kinds(algorithm: Algorithm) -> tuple[set[str], set[str]]:
    """(kinds that step a generator optimiser, kinds that step a critic optimiser)."""
    critics = set(algorithm.critics)
    g = {k for k, opts in algorithm.kinds.items() if set(opts) - critics}
    d = {k for k, opts in algorithm.kinds.items() if set(opts) & critics}
    return g, d


def updates(algorithm: Algorithm, hyper: Hyper, steps: int) -> Updates:
    """The updates ``steps`` steps make (from step 0)."""
    schedule = algorithm.schedule(hyper)
    full, rest = divmod(steps, len(schedule))
    g_kinds, d_kinds = kinds(algorithm)

    def count(which: set[str]) -> int:
        return full * sum(k in which for k in schedule) + sum(k in which for k in schedule[:rest])

    return Updates(steps, count(g_kinds), count(d_kinds) if d_kinds else None)


def epochs_for_g_updates(
    algorithm: Algorithm, hyper: Hyper, target: int, steps_per_epoch: int
) -> int:
    """The fewest whole epochs whose generator updates reach ``target`` (runs end at an
    epoch boundary: checkpoints, curves and grids are per epoch), so a run overshoots by
    less than one epoch's generator updates; the report shows the actual counts."""
    per_cycle = updates(algorithm, hyper, len(algorithm.schedule(hyper))).g_updates
    if per_cycle == 0 or steps_per_epoch < 1:
        raise ValueError(f"{algorithm!r} makes no generator updates to match a budget in")
    # A first guess from the average rate, then exact: the schedule runs across epochs.
    rate = per_cycle / len(algorithm.schedule(hyper))
    epochs = max(1, math.ceil(target / (rate * steps_per_epoch)) - 1)
    while updates(algorithm, hyper, epochs * steps_per_epoch).g_updates < target:
        epochs += 1
    return epochs
