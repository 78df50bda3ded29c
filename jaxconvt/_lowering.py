"""Lowerings of the three slots of the transposed-convolution trilinear form to ``lax``.

The op is one trilinear form ``<y, T(x, K)>`` = sum over ``x[n, a, c] * K[j, o, c] *
y[n, a*s + j*d - lo, o]``. Each slot computes the derivative of that form with respect to
one of ``x`` (input), ``K`` (kernel), ``y`` (output) from the other two:

* ``y_from_xk`` — the transposed convolution itself (forward);
* ``x_from_yk`` — a plain strided forward convolution (the input gradient);
* ``k_from_xy`` — a canonical-layout convolution with batch and feature roles swapped and
  ``rhs_dilation = strides`` (the kernel gradient).

All arrays are channels-last: data ``(N, *spatial, C)``, kernel ``(*k, C_out // G, C_in)``.
Every function here takes static shapes from its operands and only emits ``lax`` calls.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconvt import _padding
from jaxconvt._spec import ConvSpec

__all__ = ["y_from_xk", "x_from_yk", "k_from_xy", "choose_algorithm", "phase_waste"]

_LOW_PRECISION = (np.dtype(jnp.bfloat16), np.dtype(jnp.float16))


def _dimension_numbers(n: int) -> lax.ConvDimensionNumbers:
    """Canonical NH..WC / H..WIO / NH..WC dimension numbers for ``n`` spatial dims."""
    spatial = tuple(range(1, n + 1))
    return lax.ConvDimensionNumbers(
        lhs_spec=(0, n + 1, *spatial),
        rhs_spec=(n + 1, n, *range(n)),
        out_spec=(0, n + 1, *spatial),
    )


def _accumulation_dtype(a, b, out_dtype):
    """The dtype operands are promoted to and the dtype XLA accumulates in."""
    compute = jnp.result_type(a.dtype, b.dtype)
    out_dtype = np.dtype(out_dtype)
    if compute in _LOW_PRECISION:
        acc = np.dtype(np.float32) if out_dtype in _LOW_PRECISION else out_dtype
    elif jnp.promote_types(compute, out_dtype) == out_dtype:
        acc = out_dtype
    else:
        acc = compute
    return compute, acc


def _conv(lhs, rhs, spec: ConvSpec, out_dtype, **kwargs):
    """``lax.conv_general_dilated`` in canonical layout with dtype handling."""
    compute, acc = _accumulation_dtype(lhs, rhs, out_dtype)
    out = lax.conv_general_dilated(
        lhs.astype(compute),
        rhs.astype(compute),
        dimension_numbers=_dimension_numbers(lhs.ndim - 2),
        precision=spec.precision,
        preferred_element_type=None if acc == compute else acc,
        **kwargs,
    )
    return out.astype(out_dtype)


def _grouped_io_kernel(kernel, groups: int):
    """Keras kernel ``(*k, Og, G*Cg)`` -> HWIO kernel ``(*k, Cg, G*Og)`` for a grouped conv."""
    *k, og, c_in = kernel.shape
    cg = c_in // groups
    n = len(k)
    kernel = kernel.reshape(*k, og, groups, cg)
    kernel = jnp.transpose(kernel, (*range(n), n + 2, n + 1, n))
    return kernel.reshape(*k, cg, groups * og)


# ----------------------------------------------------------------------------------------
# Forward (y from x and K)
# ----------------------------------------------------------------------------------------


def _y_dilate(x, kernel, spec: ConvSpec, out_dtype):
    """Zero insertion through ``lhs_dilation`` with the flipped, I/O-swapped kernel."""
    n = spec.ndim
    ks = kernel.shape[:n]
    rhs = lax.rev(_grouped_io_kernel(kernel, spec.groups), tuple(range(n)))
    pads = []
    for j in range(n):
        ke = _padding.dilated_size(ks[j], spec.dilation[j])
        lo, hi = spec.crops[j]
        pads.append((ke - 1 - lo, ke - 1 - hi))
    return _conv(
        x,
        rhs,
        spec,
        out_dtype,
        window_strides=(1,) * n,
        padding=pads,
        lhs_dilation=spec.strides,
        rhs_dilation=spec.dilation,
        feature_group_count=spec.groups,
    )


def _y_pad(x, kernel, spec: ConvSpec, out_dtype):
    """Zero insertion as an explicit interior ``lax.pad``, then a stride-1 convolution."""
    n = spec.ndim
    ks = kernel.shape[:n]
    rhs = lax.rev(_grouped_io_kernel(kernel, spec.groups), tuple(range(n)))
    config = [(0, 0, 0)]
    for j in range(n):
        ke = _padding.dilated_size(ks[j], spec.dilation[j])
        lo, hi = spec.crops[j]
        config.append((ke - 1 - lo, ke - 1 - hi, spec.strides[j] - 1))
    config.append((0, 0, 0))
    xp = lax.pad(x, jnp.zeros((), x.dtype), config)
    return _conv(
        xp,
        rhs,
        spec,
        out_dtype,
        window_strides=(1,) * n,
        padding=[(0, 0)] * n,
        rhs_dilation=spec.dilation,
        feature_group_count=spec.groups,
    )


def _phase_geometry(k: int, s: int, d: int):
    """Per dimension: window ``w`` and, for every tap ``j``, its (window tap, phase)."""
    m = [(j * d) // s for j in range(k)]
    w = m[-1] + 1 if k else 1
    taps = np.array([w - 1 - mj for mj in m])
    phases = np.array([(j * d) % s for j in range(k)])
    return w, taps, phases


def phase_waste(kernel_spatial, spec: ConvSpec) -> float:
    """Multiply-adds of the phase algorithm divided by the useful ones (>= 1)."""
    ratio = 1.0
    for k, s, d in zip(kernel_spatial, spec.strides, spec.dilation):
        w, _, _ = _phase_geometry(k, s, d)
        ratio *= w * s / k
    return ratio


def _y_phase(x, kernel, spec: ConvSpec, out_dtype):
    """Sub-pixel (phase) decomposition as ONE stride-1 convolution.

    Every output phase ``r`` (position modulo the stride) is a stride-1 correlation of the
    input with the kernel taps that land on that phase. All phases become output channels
    of one convolution over a common window; a depth-to-space interleave and a crop give
    the result. No zero is inserted into the input and no ``lhs_dilation`` is used.
    """
    n = spec.ndim
    batch = x.shape[0]
    spatial = x.shape[1 : n + 1]
    ks = kernel.shape[:n]
    og, c_in = kernel.shape[n], kernel.shape[n + 1]
    g = spec.groups
    cg = c_in // g
    s = spec.strides

    geo = [_phase_geometry(ks[a], s[a], spec.dilation[a]) for a in range(n)]
    w = tuple(gm[0] for gm in geo)

    # Combined kernel (w1, s1, ..., wN, sN, Cg, G, Og), filled by a static scatter.
    src = jnp.transpose(kernel.reshape(*ks, og, g, cg), (*range(n), n + 2, n + 1, n))
    index = []
    for a in range(n):
        shape = [1] * n
        shape[a] = ks[a]
        index.append(geo[a][1].reshape(shape))
        index.append(geo[a][2].reshape(shape))
    comb_shape = tuple(v for a in range(n) for v in (w[a], s[a])) + (cg, g, og)
    comb = jnp.zeros(comb_shape, src.dtype).at[tuple(index)].set(src, unique_indices=True)
    # -> HWIO (w1..wN, Cg, G * s1..sN * Og): output channels grouped by G first.
    perm = (*range(0, 2 * n, 2), 2 * n, 2 * n + 1, *range(1, 2 * n, 2), 2 * n + 2)
    rhs = jnp.transpose(comb, perm).reshape(*w, cg, g * math.prod(s) * og)

    pads, q_lo, lengths = [], [], []
    for a in range(n):
        lo, hi = spec.crops[a]
        length = _padding.output_size(spatial[a], ks[a], s[a], spec.dilation[a], (lo, hi))
        q0 = lo // s[a]
        q1 = (lo + length - 1) // s[a] + 1
        pad_lo = w[a] - 1 - q0
        pad_hi = (q1 - q0) + (w[a] - 1) - spatial[a] - pad_lo
        pads.append((pad_lo, pad_hi))
        q_lo.append(q0)
        lengths.append(length)
    out = _conv(x, rhs, spec, out_dtype, window_strides=(1,) * n, padding=pads, feature_group_count=g)
    v = out.shape[1 : n + 1]
    out = out.reshape(batch, *v, g, *s, og)
    perm = (0, *(i for a in range(n) for i in (1 + a, n + 2 + a)), n + 1, 2 * n + 2)
    out = jnp.transpose(out, perm).reshape(batch, *(v[a] * s[a] for a in range(n)), g * og)
    starts = [spec.crops[a][0] - q_lo[a] * s[a] for a in range(n)]
    return lax.slice(
        out,
        (0, *starts, 0),
        (batch, *(starts[a] + lengths[a] for a in range(n)), g * og),
    )


_FORWARD = {"dilate": _y_dilate, "pad": _y_pad, "phase": _y_phase}


def choose_algorithm(kernel_spatial, spec: ConvSpec, platform: str | None = None) -> str:
    """The forward algorithm "auto" selects, from static facts only.

    * ``phase`` (one stride-1 convolution, sub-pixel interleave) whenever it wastes at most
      1.5x multiply-adds on structural zeros (always true for kernels divisible by the
      stride with no dilation, e.g. k4 s2, k2 s2, k16 s8): it never zero-inserts, which
      XLA cannot skip, and it avoids every ``lhs_dilation`` code path.
    * ``pad`` otherwise: explicit interior padding then a stride-1 convolution, the same
      arithmetic as ``lhs_dilation`` in a form XLA compiles robustly everywhere.
    """
    if spec.algorithm != "auto":
        return spec.algorithm
    if all(s == 1 for s in spec.strides):
        return "pad"
    if phase_waste(kernel_spatial, spec) <= 1.5:
        return "phase"
    return "pad"


def y_from_xk(x, kernel, spec: ConvSpec, out_dtype):
    """The transposed convolution: ``(N, *i, C_in), (*k, Og, C_in) -> (N, *L, G*Og)``."""
    algorithm = choose_algorithm(kernel.shape[: spec.ndim], spec)
    return _FORWARD[algorithm](x, kernel, spec, out_dtype)


# ----------------------------------------------------------------------------------------
# Input gradient (x from y and K)
# ----------------------------------------------------------------------------------------


def x_from_yk(y, kernel, spec: ConvSpec, out_dtype):
    """Strided forward convolution: ``(N, *L, G*Og), (*k, Og, C_in) -> (N, *i, C_in)``."""
    return _conv(
        y,
        kernel,
        spec,
        out_dtype,
        window_strides=spec.strides,
        padding=list(spec.crops),
        rhs_dilation=spec.dilation,
        feature_group_count=spec.groups,
    )


# ----------------------------------------------------------------------------------------
# Kernel gradient (K from x and y)
# ----------------------------------------------------------------------------------------


def k_from_xy(x, y, spec: ConvSpec, out_dtype):
    """Kernel gradient: ``(N, *i, C_in), (N, *L, G*Og) -> (*k, Og, C_in)``.

    The output (padded back to its full, uncropped extent) plays the input with its
    channels as the batch axis and the batch as the feature axis (one feature group per
    channel group); the original input plays the kernel with ``rhs_dilation = strides``
    and ``window_strides = dilation``. Both operands are transposed into canonical
    layout explicitly, which XLA's fast convolution paths need.
    """
    n = spec.ndim
    batch = x.shape[0]
    g = spec.groups
    c_out = y.shape[-1]
    og = c_out // g
    config = [(0, 0, 0), *((lo, hi, 0) for lo, hi in spec.crops), (0, 0, 0)]
    y_full = lax.pad(y, jnp.zeros((), y.dtype), config)
    full = y_full.shape[1 : n + 1]
    # (N, *full, G, Og) -> (Og, *full, G, N) -> (Og, *full, G*N)
    lhs = y_full.reshape(batch, *full, g, og)
    lhs = jnp.transpose(lhs, (n + 2, *range(1, n + 1), n + 1, 0)).reshape(og, *full, g * batch)
    # (N, *i, C_in) -> (*i, N, C_in): HWIO with I = N, O = C_in (grouped by G).
    rhs = jnp.transpose(x, (*range(1, n + 1), 0, n + 1))
    out = _conv(
        lhs,
        rhs,
        spec,
        out_dtype,
        window_strides=spec.dilation,
        padding=[(0, 0)] * n,
        rhs_dilation=spec.strides,
        feature_group_count=g,
    )
    # (Og, *k, C_in) -> (*k, Og, C_in)
    return jnp.transpose(out, (*range(1, n + 1), 0, n + 1))
