"""The kernel-gradient slot (``K`` from ``x`` and the output cotangent ``y``)."""

from __future__ import annotations

import itertools
import math

import jax.numpy as jnp
from jax import lax

from jaxconvt._lowering._ops import accumulation_dtype, conv, dot, finish, pad_spatial
from jaxconvt._lowering.phase import (
    class_shape,
    combined_kernel_adjoint,
    over_classes,
    phase_plan,
    phase_rows,
    phase_slab,
    space_to_depth,
    use_exact,
)
from jaxconvt._spec import ConvSpec


def k_direct(x, y, spec: ConvSpec, out_dtype):
    """Kernel gradient as one canonical-layout convolution.

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
    out = conv(
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


def k_phase(x, y, spec: ConvSpec, out_dtype, exact: bool | None = None):
    """Kernel gradient in phase form as one matrix product per window tap.

    ``dKc[t] = sum over (n, v) of xpad[n, v + t, :] (x) y_p[n, v, :]`` for each of the
    ``prod(w)`` taps of the phase window: plain (grouped: batched) matrix products with the
    batch and every spatial position as the contraction, which XLA runs at matmul speed,
    instead of a convolution whose window is as large as the input. In the exact form
    (``y_phase``) each tap's product only covers the phases that use the tap.
    """
    n = spec.ndim
    plan = phase_plan(spec, x.shape[1 : n + 1])
    v = phase_rows(plan)
    g = spec.groups
    batch, c_in = x.shape[0], x.shape[-1]
    cg = c_in // g
    og = y.shape[-1] // g
    xpad = pad_spatial(x, plan.inner.crops)  # (N, *(V + w - 1), C_in)
    rows = batch * math.prod(v)

    def products(taps, rhs):
        """(rows, G, P) -> (*taps, G, Cg, P): one product per window tap."""
        out = []
        for t in itertools.product(*taps):
            window = lax.slice(xpad, (0, *t, 0), (batch, *(t[a] + v[a] for a in range(n)), c_in))
            # (rows, G, Cg) x (rows, G, P) -> (G, Cg, P)
            out.append(dot(window.reshape(rows, g, cg), rhs, (((0,), (0,)), ((1,), (1,))), spec, out_dtype))
        return jnp.stack(out).reshape(*(len(t) for t in taps), g, cg, -1)

    if not use_exact(plan, cg, og, exact, "k"):
        comb = products([range(w) for w in plan.window], space_to_depth(y, plan, v).reshape(rows, g, -1))
    else:

        def block(combo):
            phases, widths = class_shape(combo)
            if 0 in widths:
                return jnp.zeros((*plan.window, g, cg, *phases, og), accumulation_dtype(x, y, out_dtype)[1])
            # each class's phases read straight from y: no space-to-depth copy of all of y
            rhs = phase_slab(y, plan, v, [(r0, r1) for r0, r1, *_ in combo])
            taps = products([range(t0, t1) for *_, t0, t1 in combo], rhs.reshape(rows, g, -1))
            taps = taps.reshape(*widths, g, cg, *phases, og)
            config = [(t0, w - t1, 0) for w, (*_, t0, t1) in zip(plan.window, combo)]
            return lax.pad(taps, jnp.zeros((), taps.dtype), [*config, *[(0, 0, 0)] * (n + 3)])

        comb = over_classes(plan, block, n + 2).reshape(*plan.window, g, cg, -1)
    comb = jnp.moveaxis(comb, n, n + 1).reshape(*plan.window, cg, -1)  # (*w, Cg, G*S*Og)
    return combined_kernel_adjoint(finish(comb, out_dtype), plan)
