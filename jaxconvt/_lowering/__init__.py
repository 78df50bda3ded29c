"""Lowerings of the three slots of the transposed-convolution trilinear form to ``lax``.

The op is one trilinear form ``<y, T(x, K)>`` = sum over ``x[n, a, c] * K[j, o, c] *
y[n, a*s + j*d - lo, o]``. Each slot computes the derivative of that form with respect to
one of ``x`` (input), ``K`` (kernel), ``y`` (output) from the other two:

* ``y_from_xk`` — the transposed convolution itself (forward, ``forward.py``);
* ``x_from_yk`` — a plain strided forward convolution (the input gradient, ``input_grad.py``);
* ``k_from_xy`` — the kernel gradient (``kernel_grad.py``).

``phase.py`` holds the sub-pixel geometry the forward and kernel-gradient forms share,
``rules.py`` the static choices of ``algorithm="auto"``, ``_ops.py`` the common ``lax`` calls.
All arrays are channels-last: data ``(N, *spatial, C)``, kernel ``(*k, C_out // G, C_in)``.
Every function here takes static shapes from its operands and only emits ``lax`` calls.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from jaxconvt._lowering.forward import FORWARD
from jaxconvt._lowering.input_grad import x_direct, x_dot
from jaxconvt._lowering.kernel_grad import k_direct, k_phase
from jaxconvt._lowering.phase import phase_plan, phase_rows, phase_waste
from jaxconvt._lowering.rules import choose_algorithm
from jaxconvt._spec import ConvSpec

__all__ = ["y_from_xk", "x_from_yk", "k_from_xy", "choose_algorithm", "phase_waste"]


def y_from_xk(x, kernel, spec: ConvSpec, out_dtype, platform: str | None = None):
    """The transposed convolution: ``(N, *i, C_in), (*k, Og, C_in) -> (N, *L, G*Og)``."""
    algorithm = choose_algorithm(spec, jnp.result_type(x.dtype, kernel.dtype), platform, x.shape)
    return FORWARD[algorithm](x, kernel, spec, out_dtype)


def x_from_yk(y, kernel, spec: ConvSpec, out_dtype, platform: str | None = None):
    """Input gradient: ``(N, *L, G*Og), (*k, Og, C_in) -> (N, *i, C_in)``.

    The direct strided convolution (``x_direct``): it does no wasted work (the stride skips
    what zero insertion would create) and measured faster than a phase form (space-to-depth,
    then a stride-1 transposed convolution) on the workloads, e.g. dcgan2d 38 vs 183 ms and
    vae3d_k3 12 vs 46 ms on the 2-core CPU. Where ``choose_algorithm`` picks ``"dot"``, the
    same sum as one matrix product per kernel tap (``x_dot``).
    """
    x_shape = (y.shape[0], *spec.input_spatial(y.shape[1 : spec.ndim + 1]), kernel.shape[-1])
    if choose_algorithm(spec, jnp.result_type(y.dtype, kernel.dtype), platform, x_shape) == "dot":
        return x_dot(y, kernel, spec, out_dtype)
    return x_direct(y, kernel, spec, out_dtype)


def k_from_xy(x, y, spec: ConvSpec, out_dtype, platform: str | None = None):
    """Kernel gradient: ``(N, *i, C_in), (N, *L, G*Og) -> (*k, Og, C_in)``.

    Phase form (``k_phase``: one matrix product per tap of the phase window, then the
    gather adjoint to the kernel scatter) with ``"dot"``, and with ``"phase"`` when the
    products are large: ungrouped, at least 32 input channels, at least 256 contraction rows
    (``N * prod(V)``, batch times phase-output positions) and 32768 rows times channels, and
    at least 128 product columns (``prod(s) * C_out``). Otherwise the direct form, one
    convolution. Measured on the 2-core CPU (ms, phase vs direct; medians, the machine is
    noisy): dcgan2d 50 vs 87, unet2d 4.7 vs 11.5, unet3d 2.9 vs 23.5, vae3d_k3 4.9 vs 53,
    hifigan1d 29 vs 34, bigvgan 2.5 vs 3.3; but audio_vae (130 rows) 339 vs 199, one
    per-example 16x16x64 kernel (289 rows, 64 channels) 0.85 vs 0.66, istft (64 columns)
    6.5 vs 3.9 and grouped2d's 16-channel groups (split on CPU) 8.9 vs 5.2.
    """
    algorithm = choose_algorithm(spec, jnp.result_type(x.dtype, y.dtype), platform, x.shape)
    if algorithm == "dot":
        return k_phase(x, y, spec, out_dtype)
    if algorithm == "phase" and spec.groups == 1 and x.shape[-1] >= 32:
        plan = phase_plan(spec, x.shape[1 : spec.ndim + 1])
        batch = x.shape[0] if isinstance(x.shape[0], int) else 256  # symbolic (exported) batch: assume large
        rows = batch * math.prod(phase_rows(plan))
        columns = math.prod(spec.strides) * y.shape[-1]
        if rows >= 256 and rows * x.shape[-1] >= 32768 and columns >= 128:
            return k_phase(x, y, spec, out_dtype)
    return k_direct(x, y, spec, out_dtype)
