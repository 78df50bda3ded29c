"""``python -m jaxconvt bench``: jaxconvt against lax autodiff and PyTorch on real workloads.

For every workload (see ``_workloads.py``) and dtype, three implementations run side by side
in one process on the default device:

* ``jaxconvt`` — :func:`jaxconvt.conv_transpose` with its own derivative rules;
* ``lax`` — what ``keras.ops.conv_transpose`` runs: ``lax.conv_general_dilated`` with
  ``lhs_dilation`` (groups via ``feature_group_count``), differentiated by JAX's own rules;
* ``torch`` — ``torch.nn.functional.conv_transpose{1,2,3}d`` on CPU, or CUDA when the JAX
  device is a GPU (only when torch is installed).

Four stages are timed: ``fwd`` (the op), ``dx`` and ``dk`` (the vector-Jacobian product
with respect to the input or the kernel alone, with a fixed random cotangent ``ct``) and
``fwdbwd`` (the value and both gradients of ``sum(y * ct)``). Each time is the median of
several runs after a warm-up, each run ended by ``jax.block_until_ready`` (or a CUDA
synchronise). JAX stages are compiled ahead of time, which gives the compile time and XLA's
memory analysis (peak = argument + output + temporary bytes). Useful GF/s counts only
non-zero multiply-adds: ``2 * N * prod(input spatial) * C_in * C_out / groups * prod(k)``
per pass (``fwdbwd`` = 3 passes). Speedups are ``other ms / jaxconvt ms`` (> 1: jaxconvt
is faster). Outputs of the three implementations are compared, so a benchmark never times
two different computations.

This module imports neither torch nor matplotlib unless they are used.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jaxconvt
from jaxconvt import _workloads
from jaxconvt._lowering import choose_algorithm
from jaxconvt._spec import ALGORITHMS, ConvSpec, make_spec
from jaxconvt._workloads import Size, Workload

__all__ = ["Settings", "run_suite", "run_workload", "lax_conv_transpose", "markdown_report", "text_report", "main"]

SCHEMA = "jaxconvt-bench/1"
STAGES = ("fwd", "dx", "dk", "fwdbwd")
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


QUICK_SETTINGS = dict(repeats=3, min_repeats=1, rounds=2, budget_s=0.3, warmup=1, single_call_s=1.0, max_call_s=20.0)


# ----------------------------------------------------------------------------------------
# Baseline: lax autodiff (what keras.ops.conv_transpose runs)
# ----------------------------------------------------------------------------------------


def lax_conv_transpose(x, kernel, spec: ConvSpec):
    """``keras.ops.conv_transpose``'s computation, with groups, differentiated by JAX.

    ``lax.conv_general_dilated`` over the ``lhs_dilation``-zero-inserted input with the
    flipped, I/O-swapped kernel (regrouped for ``feature_group_count``). Channels-last,
    Keras kernel layout ``(*k, C_out // G, C_in)``. Written independently of jaxconvt's
    lowerings (only the crops come from its spec).
    """
    n = spec.ndim
    *ks, og, c_in = kernel.shape
    g = spec.groups
    cg = c_in // g
    # (*k, Og, G, Cg) -> (*k, Cg, G, Og) -> (*k, Cg, G * Og), then flip every spatial axis.
    rhs = jnp.transpose(kernel.reshape(*ks, og, g, cg), (*range(n), n + 2, n + 1, n)).reshape(*ks, cg, g * og)
    rhs = lax.rev(rhs, tuple(range(n)))
    pads = []
    for j in range(n):
        ke = (ks[j] - 1) * spec.dilation[j] + 1
        lo, hi = spec.crops[j]
        pads.append((ke - 1 - lo, ke - 1 - hi))
    spatial = "DHW"[-n:] if n <= 3 else "".join(chr(ord("a") + i) for i in range(n))
    numbers = lax.conv_dimension_numbers(x.shape, rhs.shape, (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"))
    return lax.conv_general_dilated(
        x,
        rhs,
        window_strides=(1,) * n,
        padding=pads,
        lhs_dilation=spec.strides,
        rhs_dilation=spec.dilation,
        dimension_numbers=numbers,
        feature_group_count=g,
    )


# ----------------------------------------------------------------------------------------
# Problem set-up
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class Problem:
    """One workload at one size and dtype, with its float32 numpy operands (JAX layout)."""

    workload: Workload
    size: Size
    dtype: str
    spec: ConvSpec
    x_shape: tuple[int, ...]
    k_shape: tuple[int, ...]
    y_shape: tuple[int, ...]
    x: np.ndarray
    k: np.ndarray
    ct: np.ndarray

    @property
    def per_example(self) -> bool:
        return self.workload.per_example


def make_problem(workload: Workload, sizes: str, dtype: str, seed: int = 0, algorithm: str = "auto") -> Problem:
    """Shapes, spec and seeded operands. Per-example workloads get a leading vmap axis."""
    size = workload.size(sizes)
    og = size.c_out // workload.groups
    x_one = (1 if workload.per_example else size.batch, *size.spatial, size.c_in)
    k_one = (*workload.kernel, og, size.c_in)
    spec, y_one = make_spec(x_one, k_one, **workload.conv_kwargs(), algorithm=algorithm)
    lead = (size.batch,) if workload.per_example else ()
    rng = np.random.default_rng(seed)
    fan_in = size.c_in // workload.groups * math.prod(workload.kernel) / math.prod(workload.strides)
    x = rng.standard_normal(lead + x_one, dtype=np.float32)
    k = rng.standard_normal(lead + k_one, dtype=np.float32) / np.float32(math.sqrt(max(fan_in, 1.0)))
    ct = rng.standard_normal(lead + tuple(y_one), dtype=np.float32)
    return Problem(workload, size, dtype, spec, lead + x_one, lead + k_one, lead + tuple(y_one), x, k, ct)


# ----------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Runner:
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


def _time_in_turns(runners: dict[str, _Runner], settings: Settings) -> None:
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


def _peak_mb(compiled) -> float | None:
    """argument + output + temporary bytes of XLA's memory analysis, in MB (None if absent)."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - some backends do not implement it
        return None
    if stats is None:
        return None
    total = 0
    for field in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes"):
        value = getattr(stats, field, None)
        if value is None:
            return None
        total += int(value)
    return total / 1e6


def _jax_stages(op: Callable) -> dict[str, Callable]:
    """The four stages of ``op(x, k)`` as functions of ``(x, k, ct)`` (``fwd``: ``(x, k)``)."""

    def fwd(x, k):
        return op(x, k)

    def dx(x, k, ct):
        return jax.vjp(lambda x_: op(x_, k), x)[1](ct)[0]

    def dk(x, k, ct):
        return jax.vjp(lambda k_: op(x, k_), k)[1](ct)[0]

    def fwdbwd(x, k, ct):
        loss = lambda x_, k_: jnp.sum((op(x_, k_) * ct).astype(jnp.float32))
        return jax.value_and_grad(loss, argnums=(0, 1))(x, k)

    return {"fwd": fwd, "dx": dx, "dk": dk, "fwdbwd": fwdbwd}


def _jax_op(problem: Problem, impl: str, algorithm: str) -> Callable:
    spec = problem.spec
    if impl == "jaxconvt":
        kwargs = problem.workload.conv_kwargs()
        op = lambda x, k: jaxconvt.conv_transpose(x, k, **kwargs, algorithm=algorithm)
    else:
        op = lambda x, k: lax_conv_transpose(x, k, spec)
    return jax.vmap(op) if problem.per_example else op


def _prepare_jax(problem: Problem, impl: str, settings: Settings, result: dict) -> dict[str, _Runner]:
    """Compiles the four stages ahead of time (recording compile time and peak memory)."""
    device = jax.devices()[0]
    dtype = jnp.dtype(problem.dtype)
    x = jax.device_put(jnp.asarray(problem.x, dtype), device)
    k = jax.device_put(jnp.asarray(problem.k, dtype), device)
    ct = jax.device_put(jnp.asarray(problem.ct, dtype), device)
    fns = _jax_stages(_jax_op(problem, impl, settings.algorithm))
    to_numpy = lambda out: np.asarray(out.astype(jnp.float32))
    runners = {}
    for stage in STAGES:
        args = (x, k) if stage == "fwd" else (x, k, ct)
        try:
            t0 = time.perf_counter()
            compiled = jax.jit(fns[stage]).lower(*args).compile()
        except Exception as err:  # noqa: BLE001 - recorded, the suite goes on
            result["errors"][stage] = f"{type(err).__name__}: {err}"[:500]
            continue
        result["compile_s"][stage] = time.perf_counter() - t0
        result["peak_mb"][stage] = _peak_mb(compiled)
        runners[stage] = _Runner(
            functools.partial(compiled, *args), jax.block_until_ready, None if stage == "fwdbwd" else to_numpy
        )
    return runners


def _empty_result() -> dict:
    return {
        "ms": {s: None for s in STAGES},
        "min_ms": {s: None for s in STAGES},
        "runs": {s: None for s in STAGES},
        "compile_s": {s: None for s in STAGES},
        "peak_mb": {s: None for s in STAGES},
        "gflops": {s: None for s in STAGES},
        "max_rel_diff": {s: None for s in STAGES if s != "fwdbwd"},
        "errors": {},
        "skipped": {},
    }


# ----------------------------------------------------------------------------------------
# PyTorch
# ----------------------------------------------------------------------------------------


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_device_name() -> str | None:
    """``"cuda"`` when JAX runs on a GPU and torch sees CUDA, ``"cpu"`` otherwise; None without torch."""
    torch = _torch()
    if torch is None:
        return None
    if jax.default_backend() == "gpu" and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def _torch_padding(spec: ConvSpec):
    """(padding, output_padding, extra crops) reproducing ``spec.crops`` in PyTorch.

    PyTorch crops ``p`` low and ``p - output_padding`` high, with ``output_padding`` smaller
    than the stride or the dilation. Crops it cannot express are applied to its output.
    """
    pads, ops, extra = [], [], []
    for (lo, hi), s, d in zip(spec.crops, spec.strides, spec.dilation):
        p, op = lo, lo - hi
        if p >= 0 and 0 <= op < max(s, d):
            pads.append(p)
            ops.append(op)
            extra.append((0, 0))
        else:
            pads.append(0)
            ops.append(0)
            extra.append((lo, hi))
    return tuple(pads), tuple(ops), tuple(extra)


def _prepare_torch(problem: Problem) -> dict[str, _Runner]:
    """The four stages in PyTorch (autograd for dx, dK and fwd+bwd; no_grad forward)."""
    torch = _torch()
    import torch.nn.functional as F

    device = torch_device_name()
    tdtype = getattr(torch, problem.dtype)
    spec = problem.spec
    n = spec.ndim
    conv = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[n]
    pads, ops, extra = _torch_padding(spec)
    per_example = problem.per_example
    batch = problem.size.batch
    groups = spec.groups * (batch if per_example else 1)

    def to_torch_x(a):  # JAX (.., N, *sp, C) -> torch (N, C, *sp); per example (1, B*C, *sp)
        if per_example:
            a = a[:, 0]
        a = np.moveaxis(a, -1, 1)
        if per_example:
            a = a.reshape(1, -1, *a.shape[2:])
        return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=tdtype)

    def to_torch_k(a):  # Keras (.., *k, Og, C_in) -> torch (C_in, Og, *k); per example (B*C_in, Og, *k)
        if per_example:
            a = np.transpose(a, (0, n + 2, n + 1, *range(1, n + 1)))  # (B, C_in, Og, *k)
            a = a.reshape(-1, *a.shape[2:])
        else:
            a = np.transpose(a, (n + 1, n, *range(n)))
        return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=tdtype)

    def from_torch_y(t):  # torch (N, C, *L) -> JAX layout
        a = t.detach().float().cpu().numpy()
        if per_example:
            a = a.reshape(batch, -1, *a.shape[2:])
        a = np.moveaxis(a, 1, -1)
        return a[:, None] if per_example else a

    def from_torch_k(t):  # torch (C_in, Og, *k) -> Keras layout
        a = t.detach().float().cpu().numpy()
        if per_example:
            a = a.reshape(batch, -1, *a.shape[1:])
            return np.transpose(a, (0, *range(3, n + 3), 2, 1))
        return np.transpose(a, (*range(2, n + 2), 1, 0))

    def op(x, w):
        y = conv(x, w, stride=spec.strides, padding=pads, output_padding=ops, groups=groups, dilation=spec.dilation)
        if any(e != (0, 0) for e in extra):
            y = F.pad(y, [-v for lo_hi in reversed(extra) for v in lo_hi])
        return y

    x = to_torch_x(problem.x)
    w = to_torch_k(problem.k)
    ct = to_torch_x(problem.ct)

    def sync(out):
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    def fwd():
        with torch.no_grad():
            return op(x, w)

    xr = x.detach().requires_grad_(True)
    wr = w.detach().requires_grad_(True)
    graphs = {}

    def dx():
        if "dx" not in graphs:
            graphs["dx"] = op(xr, w)
        return torch.autograd.grad(graphs["dx"], xr, ct, retain_graph=True)[0]

    def dk():
        if "dk" not in graphs:
            graphs["dk"] = op(x, wr)
        return torch.autograd.grad(graphs["dk"], wr, ct, retain_graph=True)[0]

    def fwdbwd():
        y = op(xr, wr)
        loss = (y * ct).float().sum()
        return loss, torch.autograd.grad(loss, (xr, wr))

    calls = {"fwd": fwd, "dx": dx, "dk": dk, "fwdbwd": fwdbwd}
    convert = {"fwd": from_torch_y, "dx": from_torch_y, "dk": from_torch_k, "fwdbwd": None}
    return {stage: _Runner(calls[stage], sync, convert[stage]) for stage in STAGES}


# ----------------------------------------------------------------------------------------
# The suite
# ----------------------------------------------------------------------------------------


class Progress:
    """A progress bar on stderr: tqdm when installed, plain text otherwise."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.done, self.enabled = total, 0, enabled
        self.start = time.perf_counter()
        self._bar = None
        self._tty = sys.stderr.isatty()
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self._bar = tqdm(total=total, file=sys.stderr, unit="step", leave=False)

    def step(self, what: str) -> None:
        if not self.enabled:
            return
        if self.done:
            if self._bar is not None:
                self._bar.update(1)
        self.done += 1
        if self._bar is not None:
            self._bar.set_description(what)
            return
        width = 24
        filled = int(width * (self.done - 1) / max(self.total, 1))
        elapsed = time.perf_counter() - self.start
        line = f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {elapsed:5.0f}s {what}"
        if self._tty:
            sys.stderr.write("\r" + line[:110].ljust(110))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        elif self._tty:
            sys.stderr.write("\r" + " " * 110 + "\r")
        elapsed = time.perf_counter() - self.start
        sys.stderr.write(f"bench: {self.total} steps in {elapsed:.0f} s\n")
        sys.stderr.flush()


def _rel_diff(got: np.ndarray, ref: np.ndarray) -> float | None:
    """max |got - ref| / max |ref|; None when the shapes differ."""
    if got.shape != ref.shape:
        return None
    scale = max(float(np.abs(ref).max(initial=0.0)), 1e-30)
    return float(np.abs(got.astype(np.float64) - ref.astype(np.float64)).max(initial=0.0)) / scale


def _impls(settings: Settings) -> list[str]:
    impls = ["jaxconvt"]
    if settings.lax:
        impls.append("lax")
    if settings.torch and _torch() is not None:
        impls.append("torch")
    return impls


def _dtypes_for(workload: Workload, settings: Settings) -> tuple[str, ...]:
    if settings.dtypes is not None:
        return settings.dtypes
    return workload.gpu_dtypes if settings.sizes == "gpu" else (workload.dtype,)


def run_workload(workload: Workload, dtype: str, settings: Settings, progress=None) -> dict:
    """Times one workload in one dtype; returns its JSON record."""
    progress = progress or Progress(0, enabled=False)
    problem = make_problem(workload, settings.sizes, dtype, settings.seed, settings.algorithm)
    platform_name = jax.default_backend()
    size = problem.size
    flops = workload.useful_flops(size)
    record = {
        "workload": workload.name,
        "note": workload.note,
        "dtype": dtype,
        "sizes": settings.sizes,
        "ndim": workload.ndim,
        "batch": size.batch,
        "input_spatial": list(size.spatial),
        "c_in": size.c_in,
        "c_out": size.c_out,
        "kernel": list(workload.kernel),
        "strides": list(workload.strides),
        "padding": workload.padding if isinstance(workload.padding, (str, int)) else list(workload.padding),
        "output_padding": workload.output_padding,
        "groups": workload.groups,
        "dilation": list(problem.spec.dilation),
        "per_example": workload.per_example,
        "input_shape": list(problem.x_shape),
        "kernel_shape": list(problem.k_shape),
        "output_shape": list(problem.y_shape),
        "algorithm_requested": settings.algorithm,
        "algorithm": choose_algorithm(
            problem.spec,
            jnp.dtype(dtype),
            jax.default_backend(),
            problem.x_shape[1:] if workload.per_example else problem.x_shape,
        ),
        "useful_flops": flops,
        "impls": {},
        "speedup": {},
    }
    impls = _impls(settings)
    results = {impl: _empty_result() for impl in impls}
    prepared = {}
    for impl in impls:
        progress.step(f"{workload.name} {dtype}: {'set up' if impl == 'torch' else 'compile'} {impl}")
        if impl == "lax" and workload.lax_cpu_skip and platform_name == "cpu":
            results[impl]["skipped"] = {stage: f"skipped on CPU: {workload.lax_cpu_skip}" for stage in STAGES}
            prepared[impl] = {}
        elif impl == "torch":
            prepared[impl] = _prepare_torch(problem)
        else:
            prepared[impl] = _prepare_jax(problem, impl, settings, results[impl])
    outputs = {impl: {} for impl in impls}
    for stage in STAGES:
        progress.step(f"{workload.name} {dtype}: time {STAGE_LABELS[stage]}")
        runners = {
            impl: prepared[impl][stage]
            for impl in impls
            if stage in prepared[impl] and stage not in results[impl]["skipped"]
        }
        _time_in_turns(runners, settings)
        for impl, runner in runners.items():
            result = results[impl]
            if runner.error is not None:
                result["errors"][stage] = runner.error
                continue
            result["ms"][stage] = statistics.median(runner.times) * 1e3
            result["min_ms"][stage] = min(runner.times) * 1e3
            result["runs"][stage] = 0 if runner.too_slow else len(runner.times)
            if runner.too_slow:
                reason = (
                    f"skipped: its {STAGE_LABELS[stage]} call took {runner.times[0]:.0f} s "
                    f"(more than max_call_s = {settings.max_call_s:g} s)"
                )
                for later in STAGES[STAGES.index(stage) + 1 :]:
                    result["skipped"].setdefault(later, reason)
            result["gflops"][stage] = (3 if stage == "fwdbwd" else 1) * flops / statistics.median(runner.times) / 1e9
            if runner.convert is not None:
                outputs[impl][stage] = runner.convert(runner.out)
            runner.out = None
    del prepared
    record["impls"] = results
    mine = record["impls"]["jaxconvt"]
    for impl, result in record["impls"].items():
        for stage, out in outputs[impl].items():
            ref = outputs["jaxconvt"].get(stage)
            if ref is not None:
                result["max_rel_diff"][stage] = _rel_diff(out, ref)
                if result["max_rel_diff"][stage] is None:
                    result["errors"][stage] = f"output shape {out.shape} differs from jaxconvt's {ref.shape}"
        if impl != "jaxconvt":
            record["speedup"][impl] = {
                stage: (result["ms"][stage] / mine["ms"][stage]) if result["ms"][stage] and mine["ms"][stage] else None
                for stage in STAGES
            }
    return record


def _git_revision() -> str | None:
    """The jaxconvt checkout's commit (with "+dirty" for uncommitted changes), if it is one."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "jaxconvt"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _load_average() -> float | None:
    """The 1-minute load average (other processes competing for the cores), if known."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def machine_info() -> dict:
    """Device, CPU and library versions, for the record."""
    device = jax.devices()[0]
    cpu_model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import jaxlib

    info = {
        "platform": jax.default_backend(),
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": np.__version__,
        "jaxconvt": jaxconvt.__version__,
        "torch": None,
        "torch_device": None,
        "torch_threads": None,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git": _git_revision(),
        "load_avg_start": _load_average(),
        "load_avg_end": None,
    }
    torch = _torch()
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_device"] = torch_device_name()
        info["torch_threads"] = torch.get_num_threads()
        if info["torch_device"] == "cuda":
            info["torch_device"] = f"cuda ({torch.cuda.get_device_name(0)})"
    return info


def run_suite(workloads: Sequence[Workload], settings: Settings, progress: bool = True, command: str = "") -> dict:
    """Runs every workload in every dtype; returns the whole JSON report."""
    impls = _impls(settings)
    jobs = [(w, d) for w in workloads for d in _dtypes_for(w, settings)]
    bar = Progress(len(jobs) * (len(impls) + len(STAGES)), enabled=progress)
    machine = machine_info()
    t0 = time.perf_counter()
    results = [run_workload(w, d, settings, bar) for w, d in jobs]
    bar.close()
    machine["load_avg_end"] = _load_average()
    return {
        "schema": SCHEMA,
        "command": command,
        "machine": machine,
        "settings": dataclasses.asdict(settings) | {"impls": impls},
        "wall_s": time.perf_counter() - t0,
        "results": results,
    }


# ----------------------------------------------------------------------------------------
# Reports: text table, markdown, JSON, PNG
# ----------------------------------------------------------------------------------------


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0:
            return "0"
        magnitude = math.floor(math.log10(abs(value)))
        decimals = max(digits - 1 - magnitude, 0)
        return f"{value:.{decimals}f}"
    return str(value)


def _ms_cell(res: dict | None, stage: str) -> str:
    """A time in ms; "skip"/"err" when not measured; "*" marks a single too-slow call."""
    if res is None:
        return "-"
    if stage in res["skipped"]:
        return "skip"
    if stage in res["errors"]:
        return "err"
    return _fmt(res["ms"][stage]) + ("*" if res["runs"][stage] == 0 else "")


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _shape_text(r: dict) -> str:
    sp = "x".join(str(v) for v in r["input_spatial"])
    k = "x".join(str(v) for v in r["kernel"])
    s = "x".join(str(v) for v in r["strides"])
    groups = f" g{r['groups']}" if r["groups"] != 1 else ""
    vmap = f"vmap {r['batch']}x " if r["per_example"] else f"{r['batch']}x"
    return f"{vmap}{sp}x{r['c_in']}->{r['c_out']} k{k} s{s}{groups}"


def _main_rows(report: dict):
    headers = [
        "workload",
        "dtype",
        "algo",
        "fwd ms",
        "dx ms",
        "dK ms",
        "fwd+bwd ms",
        "compile s",
        "peak MB",
        "GF/s fwd/dx/dK",
        "vs lax f+b",
        "vs torch fwd",
        "vs torch dx",
        "vs torch dK",
        "vs torch f+b",
    ]
    rows = []
    for r in report["results"]:
        me = r["impls"]["jaxconvt"]
        gf = "/".join(_fmt(me["gflops"][s], 2) for s in ("fwd", "dx", "dk"))
        lax_ = r["speedup"].get("lax", {})
        tor = r["speedup"].get("torch", {})
        compile_total = sum(v for v in me["compile_s"].values() if v is not None)
        rows.append(
            [
                r["workload"],
                r["dtype"],
                r["algorithm"],
                *(_ms_cell(me, s) for s in STAGES),
                _fmt(compile_total, 2),
                _fmt(me["peak_mb"]["fwdbwd"]),
                gf,
                _ratio(lax_.get("fwdbwd")),
                *(_ratio(tor.get(s)) for s in STAGES),
            ]
        )
    return headers, rows


def _baseline_rows(report: dict):
    headers = ["workload", "dtype", "shape"]
    headers += [f"torch {STAGE_LABELS[s]}" for s in STAGES]
    headers += [f"lax {STAGE_LABELS[s]}" for s in STAGES]
    headers += ["lax compile s", "lax peak MB", "max rel diff"]
    rows = []
    for r in report["results"]:
        tor = r["impls"].get("torch")
        lx = r["impls"].get("lax")
        diffs = [
            d
            for impl in ("lax", "torch")
            if r["impls"].get(impl)
            for d in r["impls"][impl]["max_rel_diff"].values()
            if d is not None
        ]
        lax_compile = sum(v for v in lx["compile_s"].values() if v is not None) if lx else None
        rows.append(
            [
                r["workload"],
                r["dtype"],
                _shape_text(r),
                *(_ms_cell(tor, s) for s in STAGES),
                *(_ms_cell(lx, s) for s in STAGES),
                _fmt(lax_compile, 2),
                _fmt(lx["peak_mb"]["fwdbwd"]) if lx else "-",
                f"{max(diffs):.1e}" if diffs else "-",
            ]
        )
    return headers, rows


def _min_speedup(r: dict, impl: str, stage: str) -> float | None:
    """``impl``'s minimum time / jaxconvt's minimum time (None when either is missing)."""
    other = r["impls"].get(impl)
    mine = r["impls"]["jaxconvt"]
    if other is None or not other["min_ms"][stage] or not mine["min_ms"][stage]:
        return None
    return other["min_ms"][stage] / mine["min_ms"][stage]


def _min_rows(report: dict):
    headers = ["workload", "dtype"]
    headers += [f"vs torch {STAGE_LABELS[s]}" for s in STAGES]
    headers += [f"vs lax {STAGE_LABELS[s]}" for s in STAGES]
    rows = []
    for r in report["results"]:
        cells = [_ratio(_min_speedup(r, impl, s)) for impl in ("torch", "lax") for s in STAGES]
        rows.append([r["workload"], r["dtype"], *cells])
    return headers, rows


def _table(headers, rows, markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(h)), *(len(str(row[i])) for row in rows)) if rows else len(h) for i, h in enumerate(headers)]
    fmt_row = lambda row: "  ".join(
        str(c).ljust(w) if i < 3 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))
    )
    return "\n".join([fmt_row(headers), fmt_row(["-" * w for w in widths]), *map(fmt_row, rows)])


def _machine_line(m: dict) -> str:
    torch_part = f", torch {m['torch']} on {m['torch_device']} ({m['torch_threads']} threads)" if m["torch"] else ""
    return (
        f"{m['platform']} ({m['device_kind']}), CPU {m['cpu_model']} x {m['cpu_count']} cores; "
        f"jax {m['jax']}, jaxlib {m['jaxlib']}{torch_part}; jaxconvt {m.get('git') or m['jaxconvt']}; {m['date']}; "
        f"load average {m['load_avg_start']} at start, {m['load_avg_end']} at end"
    )


def _notes(report: dict) -> list[str]:
    """Errors, skipped stages and single-call times, one line each."""
    out = []
    for r in report["results"]:
        for impl, res in r["impls"].items():
            head = f"{r['workload']} {r['dtype']} {impl}"
            for stage, msg in res["errors"].items():
                out.append(f"{head} {STAGE_LABELS[stage]}: error {msg.splitlines()[0]}")
            for reason in dict.fromkeys(res["skipped"].values()):
                stages = ", ".join(STAGE_LABELS[st] for st, why in res["skipped"].items() if why == reason)
                out.append(f"{head} {stages}: {reason}")
            for stage in STAGES:
                if res["runs"][stage] == 0:
                    out.append(f"{head} {STAGE_LABELS[stage]} (*): only the warm-up call, slower than max_call_s")
    return out


def text_report(report: dict) -> str:
    """The tables as aligned plain text for a terminal."""
    parts = [
        f"jaxconvt bench: {_machine_line(report['machine'])}",
        "jaxconvt (times in ms, medians; 'vs X' = X ms / jaxconvt ms, > 1 means jaxconvt is faster)",
        _table(*_main_rows(report), markdown=False),
        "",
        "baselines (ms) and the largest relative difference of their outputs from jaxconvt",
        _table(*_baseline_rows(report), markdown=False),
        "",
        "speedups from the minimum times instead of the medians (less sensitive to other load)",
        _table(*_min_rows(report), markdown=False),
    ]
    notes = _notes(report)
    if notes:
        parts += ["", "notes:", *(f"  {e}" for e in notes)]
    return "\n".join(parts)


def markdown_report(report: dict) -> str:
    """The tables as markdown, with the machine description and the command."""
    m = report["machine"]
    s = report["settings"]
    parts = [
        f"Machine: {_machine_line(m)}.",
        "",
        f"Command: `{report['command']}` (sizes `{s['sizes']}`, algorithm `{s['algorithm']}`, "
        f"median of up to {s['repeats']} runs after {s['warmup']} warm-up; suite wall time "
        f"{report['wall_s']:.0f} s).",
        "",
        "jaxconvt, times in ms. `vs X` = X's time / jaxconvt's time: above 1 jaxconvt is faster. "
        "GF/s counts useful (non-zero) multiply-adds only. compile s = all four stages; "
        "peak MB = XLA's argument + output + temp bytes of fwd+bwd.",
        "",
        _table(*_main_rows(report), markdown=True),
        "",
        "Baselines in ms: torch = `torch.nn.functional.conv_transpose{1,2,3}d` with autograd; "
        "lax = `lax.conv_general_dilated(lhs_dilation=s)` differentiated by JAX "
        "(= `keras.ops.conv_transpose`). max rel diff: largest max|other - jaxconvt| / max|jaxconvt| "
        "over fwd, dx and dK.",
        "",
        _table(*_baseline_rows(report), markdown=True),
        "",
        "The same speedups from each implementation's minimum time instead of its median: less "
        "sensitive to other processes on a shared machine (PyTorch's OpenMP threads suffer most "
        "when a core is taken).",
        "",
        _table(*_min_rows(report), markdown=True),
    ]
    notes = _notes(report)
    if notes:
        parts += ["", "Notes:", "", *(f"- {e}" for e in notes)]
    return "\n".join(parts) + "\n"


def _markers(platform_name: str) -> tuple[str, str]:
    return f"<!-- jaxconvt-bench:{platform_name}:begin -->", f"<!-- jaxconvt-bench:{platform_name}:end -->"


def update_markdown(path: Path, report: dict) -> None:
    """Replaces the block between this platform's markers in ``path`` (appends it if absent)."""
    begin, end = _markers(report["machine"]["platform"])
    block = f"{begin}\n{markdown_report(report)}{end}"
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = (text.rstrip("\n") + "\n\n" if text else "") + block + "\n"
    path.write_text(text)


def write_chart(report: dict, path: Path) -> str | None:
    """Speedups per workload and stage as a PNG; returns a note instead when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import ticker
    except ImportError:
        return "matplotlib is not installed: no chart (pip install 'jaxconvt[bench]')"
    results = report["results"]
    labels = [r["workload"] + ("" if r["dtype"] == "float32" else f"\n{r['dtype']}") for r in results]
    panels = [impl for impl in ("torch", "lax") if any(impl in r["speedup"] for r in results)]
    fig, axes = plt.subplots(len(panels) or 1, 1, figsize=(max(8, 0.9 * len(results) + 2), 3.6 * max(len(panels), 1)))
    axes = np.atleast_1d(axes)
    xs = np.arange(len(results))
    width = 0.2
    if not panels:
        ax = axes[0]
        for i, stage in enumerate(STAGES):
            vals = [r["impls"]["jaxconvt"]["gflops"][stage] or 0 for r in results]
            ax.bar(xs + (i - 1.5) * width, vals, width, label=STAGE_LABELS[stage])
        ax.set_ylabel("jaxconvt useful GF/s")
    for ax, impl in zip(axes, panels):
        for i, stage in enumerate(STAGES):
            vals = [(r["speedup"].get(impl) or {}).get(stage) or np.nan for r in results]
            ax.bar(xs + (i - 1.5) * width, vals, width, label=STAGE_LABELS[stage])
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_ylabel(f"{impl} time / jaxconvt time")
        ax.set_title(f"jaxconvt speedup over {impl}, median times (> 1: jaxconvt faster)", fontsize=10)
    for ax in axes:
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, fontsize=8)
        ax.legend(fontsize=8, ncol=4)
        ax.grid(axis="y", alpha=0.3)
    m = report["machine"]
    fig.suptitle(f"jaxconvt bench on {m['platform']} ({m['device_kind']}), jax {m['jax']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def write_outputs(report: dict, out_dir: Path, stem: str) -> tuple[Path, Path | None, str | None]:
    """Writes ``<stem>.json`` and ``<stem>.png``; returns their paths and the chart note."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(report, indent=1, allow_nan=False, default=_json_default) + "\n")
    png_path = out_dir / f"{stem}.png"
    note = write_chart(report, png_path)
    return json_path, (None if note else png_path), note


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {value!r}")


# ----------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` subcommand's options."""
    names = ",".join(w.name for w in _workloads.WORKLOADS)
    parser.add_argument("--quick", action="store_true", help="a subset, fewer runs: about a minute on a 2-core CPU")
    parser.add_argument("--workloads", default=None, help=f"comma-separated subset of: {names}")
    parser.add_argument(
        "--dtype",
        default="auto",
        help="comma-separated dtypes (float32,bfloat16,float16); 'auto': each workload's own "
        "(on GPU: float32 and bfloat16)",
    )
    parser.add_argument("--algorithm", default="auto", choices=ALGORITHMS, help="forward algorithm of jaxconvt")
    parser.add_argument(
        "--sizes", default="auto", choices=("auto", "cpu", "gpu"), help="workload sizes (auto: by device)"
    )
    parser.add_argument("--no-lax", action="store_true", help="skip the lax-autodiff baseline")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch baseline")
    parser.add_argument("--repeats", type=int, default=None, help="most timed runs per stage (default 10, quick 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", default="bench-results", help="output folder for JSON and PNG (default bench-results/)"
    )
    parser.add_argument(
        "--markdown", default=None, help="also write the tables into this markdown file (between markers)"
    )
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    parser.add_argument(
        "--render",
        default=None,
        metavar="JSON",
        help="run nothing: re-render the tables (and --markdown, and the chart into --out) from a results JSON",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _parse_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def main(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    """Runs the ``bench`` subcommand; returns the exit status."""
    # On a GPU, leave room for torch beside JAX (read when JAX's backend starts, just below).
    os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")
    sizes = args.sizes
    if sizes == "auto":
        sizes = "gpu" if jax.default_backend() == "gpu" else "cpu"
    if args.render:
        report = json.loads(Path(args.render).read_text())
        if report.get("schema") != SCHEMA:
            print(f"error: {args.render} is not a {SCHEMA} report", file=sys.stderr)
            return 2
        print(text_report(report))
        Path(args.out).mkdir(parents=True, exist_ok=True)
        note = write_chart(report, Path(args.out) / (Path(args.render).stem + ".png"))
        if note:
            print(f"note: {note}")
        if args.markdown:
            update_markdown(Path(args.markdown), report)
            print(f"updated {args.markdown}")
        return 0
    if args.list:
        for w in _workloads.WORKLOADS:
            sz = w.size(sizes)
            print(f"{w.name:<14}{'quick ' if w.name in _workloads.QUICK else '      '}{sz}  {w.note}")
        return 0
    names = _parse_list(args.workloads)
    if names is None and args.quick:
        names = list(_workloads.QUICK)
    try:
        workloads = _workloads.get_workloads(names)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    dtypes = None if args.dtype == "auto" else tuple(_parse_list(args.dtype))
    bad = [d for d in dtypes or () if d not in DTYPES]
    if bad:
        print(f"error: unknown dtype(s) {bad}; choose from {list(DTYPES)}", file=sys.stderr)
        return 2
    settings = Settings(
        sizes=sizes, dtypes=dtypes, algorithm=args.algorithm, lax=not args.no_lax, torch=not args.no_torch
    )
    if args.quick:
        settings = dataclasses.replace(settings, **QUICK_SETTINGS)
    if args.repeats is not None:
        settings = dataclasses.replace(
            settings, repeats=max(args.repeats, 1), min_repeats=min(settings.min_repeats, max(args.repeats, 1))
        )
    if settings.torch and _torch() is None:
        print("bench: torch is not installed; no PyTorch baseline", file=sys.stderr)
    command = "python -m jaxconvt " + " ".join(argv if argv is not None else sys.argv[1:])
    report = run_suite(workloads, settings, progress=not args.no_progress, command=command.strip())
    print(text_report(report))
    stem = f"results-{report['machine']['platform']}" + ("-quick" if args.quick else "")
    json_path, png_path, note = write_outputs(report, Path(args.out), stem)
    print(f"\nwrote {json_path}" + (f" and {png_path}" if png_path else ""))
    if note:
        print(f"note: {note}")
    if args.markdown:
        update_markdown(Path(args.markdown), report)
        print(f"updated {args.markdown}")
    return 0
