"""The JAX implementations: jaxconvt and the lax-autodiff baseline, compiled ahead of time."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jaxconvt
from jaxconvt._spec import ConvSpec
from jaxconvt.bench.problem import Problem
from jaxconvt.bench.settings import STAGES, Settings
from jaxconvt.bench.timing import Runner


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


def prepare_jax(problem: Problem, impl: str, settings: Settings, result: dict) -> dict[str, Runner]:
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
        runners[stage] = Runner(
            functools.partial(compiled, *args), jax.block_until_ready, None if stage == "fwdbwd" else to_numpy
        )
    return runners
