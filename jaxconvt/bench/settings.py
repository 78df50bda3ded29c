"""What the bench runs and how long it times it: the stages, implementations and settings."""

from __future__ import annotations

import dataclasses

SCHEMA = "jaxconvt-bench/1"
"""The ``schema`` field of every results JSON."""
STAGES = ("fwd", "dx", "dk", "fwdbwd")
"""The timed stages: the op, its input and kernel vector-Jacobian products, value and both gradients."""
STAGE_LABELS = {"fwd": "fwd", "dx": "dx", "dk": "dK", "fwdbwd": "fwd+bwd"}
IMPLS = ("jaxconvt", "lax", "torch")
DTYPES = ("float32", "bfloat16", "float16")


@dataclasses.dataclass
class Settings:
    """What to run and how long to time it.

    Attributes:
      sizes: ``"cpu"`` or ``"gpu"`` workload sizes.
      dtypes: dtypes to run every workload in; None for each workload's own dtype(s).
      algorithm: forward algorithm passed to ``jaxconvt.conv_transpose``.
      lax: also time lax autodiff.
      torch: also time PyTorch (when importable).
      repeats: most timed runs per stage.
      min_repeats: fewest timed runs per stage.
      rounds: the implementations take turns in this many blocks of runs per stage.
      settle_s: pause before each block, so the previous library's threads go idle.
      budget_s: stop timing a stage after this many seconds once ``min_repeats`` ran.
      warmup: untimed runs before timing.
      single_call_s: a first timed run slower than this is the only one (``runs`` = 1).
      max_call_s: a warm-up call slower than this is kept as the only time (``runs`` = 0)
        and that implementation's remaining stages of the workload are skipped.
      seed: seed of the random operands.
      quick: the ``--quick`` preset (a subset of the workloads, fewer and shorter runs): its
        numbers are indicative only, and its chart and tables say so.
      roof: also time each stage's roof, one bare ``lax.dot_general`` with the stage's useful
        multiply-adds (``jaxconvt.bench.roof``), for the ``efficiency`` of every stage.
      layers: also run the layers section (``jaxconvt.bench.layers``): a training step of
        each framework's transposed-convolution layer against jaxconvt's drop-in.
      layers_max_call_s: ``max_call_s`` of the layers section: a framework layer's step slower
        than this is timed once (its warm-up call), so that the slow ones do not take minutes.
    """

    sizes: str = "cpu"
    dtypes: tuple[str, ...] | None = None
    algorithm: str = "auto"
    lax: bool = True
    torch: bool = True
    repeats: int = 10
    min_repeats: int = 3
    rounds: int = 4
    settle_s: float = 0.05
    budget_s: float = 2.0
    warmup: int = 1
    single_call_s: float = 20.0
    max_call_s: float = 60.0
    seed: int = 0
    quick: bool = False
    roof: bool = True
    layers: bool = True
    layers_max_call_s: float = 2.0


QUICK_SETTINGS = dict(
    quick=True,
    repeats=3,
    min_repeats=1,
    rounds=2,
    budget_s=0.3,
    warmup=1,
    single_call_s=1.0,
    max_call_s=20.0,
    layers=False,
)
