"""Timing: the implementations take turns in blocks of runs (warm-up, pauses, budgets)."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxconvt.bench.settings import Settings


@dataclasses.dataclass
class Runner:
    """One implementation's call for one stage, and how to wait for its result."""

    call: Callable[[], Any]
    sync: Callable[[Any], Any]
    convert: Callable[[Any], np.ndarray] | None = None  # output -> float32 numpy in JAX layout
    times: list[float] = dataclasses.field(default_factory=list)
    spent: float = 0.0
    warm_s: float = 0.0  # the last warm-up call
    out: Any = None
    error: str | None = None
    too_slow: bool = False


def time_in_turns(runners: dict[str, Runner], settings: Settings) -> None:
    """Warm-up, then timed runs of every runner, the runners taking turns in blocks.

    Each runner runs ``ceil(repeats / rounds)`` timed calls per turn, for ``rounds`` turns,
    so the implementations share slow drifts of the machine's load. They do not alternate
    call by call: on a 2-core machine one library's worker threads stay busy for a moment
    after its call returns and slow the next library's call down (measured: jaxconvt's
    grouped2d forward 1.6 ms timed alone, 4.7 ms when alternating call by call with torch).
    So before each turn a runner waits ``settle_s`` and makes one untimed call (when its
    calls are fast). A runner stops after ``repeats`` runs, or after ``min_repeats`` runs
    once it spent ``budget_s``. A warm-up call slower than ``max_call_s`` is kept as the
    only (``too_slow``) time.
    """
    active = []
    for runner in runners.values():
        try:
            for _ in range(max(settings.warmup, 1)):
                t0 = time.perf_counter()
                runner.out = runner.sync(runner.call())
                runner.warm_s = time.perf_counter() - t0
                if runner.warm_s > settings.max_call_s:
                    runner.times, runner.too_slow = [runner.warm_s], True
                    break
        except Exception as err:  # noqa: BLE001 - e.g. a dtype torch lacks on CPU; recorded
            runner.error = f"{type(err).__name__}: {err}"[:500]
        else:
            if not runner.too_slow:
                active.append(runner)
    per_turn = max(1, math.ceil(max(settings.repeats, 1) / max(settings.rounds, 1)))
    while active:
        for runner in list(active):
            if len(runners) > 1:
                time.sleep(settings.settle_s)
                if runner.warm_s < settings.single_call_s / 10:
                    runner.sync(runner.call())
            for _ in range(per_turn):
                t0 = time.perf_counter()
                runner.sync(runner.call())
                elapsed = time.perf_counter() - t0
                runner.times.append(elapsed)
                runner.spent += elapsed
                done = (
                    len(runner.times) >= max(settings.repeats, 1)
                    or (len(runner.times) >= settings.min_repeats and runner.spent > settings.budget_s)
                    or elapsed > settings.single_call_s
                )
                if done:
                    active.remove(runner)
                    break
