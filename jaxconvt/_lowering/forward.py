"""The forward slot (``y`` from ``x`` and ``K``): the four algorithms ``conv_transpose`` offers."""

from __future__ import annotations

import dataclasses
import itertools
import math

import jax.numpy as jnp
from jax import lax

from jaxconvt import _padding
from jaxconvt._lowering._ops import conv, dot, finish, grouped_io_kernel, keep_rows, pad_spatial
from jaxconvt._lowering.input_grad import tap_range, x_direct
from jaxconvt._lowering.phase import (
    class_shape,
    combined_kernel,
    depth_to_space,
    kernel_blocks,
    over_classes,
    phase_plan,
    phase_rows,
    use_exact,
)
from jaxconvt._spec import ConvSpec


def y_dilate(x, kernel, spec: ConvSpec, out_dtype):
    """Zero insertion through ``lhs_dilation`` with the flipped, I/O-swapped kernel."""
    n = spec.ndim
    ks = kernel.shape[:n]
    rhs = lax.rev(grouped_io_kernel(kernel, spec.groups), tuple(range(n)))
    pads = []
    for j in range(n):
        ke = _padding.dilated_size(ks[j], spec.dilation[j])
        lo, hi = spec.crops[j]
        pads.append((ke - 1 - lo, ke - 1 - hi))
    return conv(
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


def y_pad(x, kernel, spec: ConvSpec, out_dtype):
    """Zero insertion as an explicit interior ``lax.pad``, then a stride-1 convolution."""
    n = spec.ndim
    ks = kernel.shape[:n]
    rhs = lax.rev(grouped_io_kernel(kernel, spec.groups), tuple(range(n)))
    config = [(0, 0, 0)]
    for j in range(n):
        ke = _padding.dilated_size(ks[j], spec.dilation[j])
        lo, hi = spec.crops[j]
        config.append((ke - 1 - lo, ke - 1 - hi, spec.strides[j] - 1))
    config.append((0, 0, 0))
    xp = lax.pad(x, jnp.zeros((), x.dtype), config)
    return conv(
        xp,
        rhs,
        spec,
        out_dtype,
        window_strides=(1,) * n,
        padding=[(0, 0)] * n,
        rhs_dilation=spec.dilation,
        feature_group_count=spec.groups,
    )


def y_phase(x, kernel, spec: ConvSpec, out_dtype, exact: bool | None = None):
    """Sub-pixel (phase) decomposition as ONE stride-1 convolution (or one per phase class).

    Every output phase (position modulo the stride) is a stride-1 correlation of the input
    with the kernel taps that land on that phase. All phases become output channels of one
    convolution over a common window; a depth-to-space interleave and a crop give the
    result. No zero is inserted and no ``lhs_dilation`` is used.

    When the kernel size is not a multiple of the stride, phases have different numbers of
    taps and the common window multiplies structural zeros (16/9 of the work for k3 s2 in
    2-D). The exact form runs one convolution per combination of phase classes
    (``phase_classes``), each over only its own taps, and concatenates their phases; it is
    chosen for wide channels (``use_exact``), where the convolutions are compute-bound.
    """
    n = spec.ndim
    plan = phase_plan(spec, x.shape[1 : n + 1])
    cg, og = x.shape[-1] // spec.groups, kernel.shape[n]
    if not use_exact(plan, cg, og, exact, "y"):
        return depth_to_space(x_direct(x, combined_kernel(kernel, plan), plan.inner, out_dtype), plan)
    blocks = kernel_blocks(kernel, plan)  # (*w, Cg, G, *s, Og)
    batch, g, v = x.shape[0], spec.groups, phase_rows(plan)

    def block(combo):
        phases, widths = class_shape(combo)
        if 0 in widths:  # phases no tap lands on
            return jnp.zeros((batch, *v, g, *phases, og), out_dtype)
        index = (*(slice(t0, t1) for *_, t0, t1 in combo), slice(None), slice(None))
        sub = blocks[(*index, *(slice(r0, r1) for r0, r1, *_ in combo))].reshape(*widths, cg, -1)
        crops = tuple(
            (lo - t0, hi - (w - t1)) for (lo, hi), w, (*_, t0, t1) in zip(plan.inner.crops, plan.window, combo)
        )
        inner = dataclasses.replace(plan.inner, kernel_size=widths, crops=crops)
        return x_direct(x, sub, inner, out_dtype).reshape(batch, *v, g, *phases, og)

    return depth_to_space(over_classes(plan, block, n + 2).reshape(batch, *v, -1), plan)


def y_dot(x, kernel, spec: ConvSpec, out_dtype):
    """The phase form as matrix products, one per window tap of each phase class.

    ``y_p[n, v, phases of a class] = sum over its taps t of xpad[n, v + t, :] @ Kc[t]``: the
    same exact arithmetic as ``y_phase`` with every class (no structural zeros), written as
    plain (grouped: batched) matrix products summed in the accumulation dtype. XLA:CPU runs
    bfloat16 matrix products with float32 accumulation up to twice as fast as its bfloat16
    convolutions, see ``choose_algorithm``. The rows of a tap's product whose window
    position lies in the padding are selected away (``keep_rows``) before the sum, so a
    border zero times a non-finite kernel tap never reaches the result: no guard, unless the
    phase classes have holes (structural zeros, from a dilation sharing a factor with the
    stride: an explicit ``"dot"`` only).
    """
    n = spec.ndim
    plan = phase_plan(spec, x.shape[1 : n + 1])
    v = phase_rows(plan)
    g = spec.groups
    blocks = kernel_blocks(kernel, plan)  # (*w, Cg, G, *s, Og)
    batch, spatial, c_in, og = x.shape[0], x.shape[1 : n + 1], x.shape[-1], kernel.shape[n]
    cg = c_in // g
    rows = batch * math.prod(v)
    xpad = pad_spatial(x, plan.inner.crops)  # (N, *(V + w - 1), C_in)
    pads = [lo for lo, _ in plan.inner.crops]

    def block(combo):
        phases, widths = class_shape(combo)
        if 0 in widths:  # phases no tap lands on
            return jnp.zeros((batch, *v, g, *phases, og), out_dtype)
        total = None
        for t in itertools.product(*(range(t0, t1) for *_, t0, t1 in combo)):
            window = lax.slice(xpad, (0, *t, 0), (batch, *(t[a] + v[a] for a in range(n)), c_in))
            taps = blocks[(*t, slice(None), slice(None), *(slice(r0, r1) for r0, r1, *_ in combo))]
            # (rows, G, Cg) x (Cg, G, Pc*Og) -> (G, rows, Pc*Og)
            part = dot(
                window.reshape(rows, g, cg), taps.reshape(cg, g, -1), (((2,), (0,)), ((1,), (1,))), spec, out_dtype
            )
            # rows v whose input position v + t - pad is real
            ranges = [tap_range(v[a], spatial[a], t[a] - pads[a], 1) for a in range(n)]
            part = keep_rows(part.reshape(g * batch, *v, -1), ranges).reshape(part.shape)
            total = part if total is None else total + part
        return finish(jnp.moveaxis(total, 0, 1), out_dtype).reshape(batch, *v, g, *phases, og)

    return depth_to_space(over_classes(plan, block, n + 2).reshape(batch, *v, -1), plan)


FORWARD = {"dilate": y_dilate, "pad": y_pad, "phase": y_phase, "dot": y_dot}
