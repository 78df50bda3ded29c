"""The input-gradient slot (``x`` from the output cotangent ``y`` and ``K``)."""

from __future__ import annotations

import itertools
import math

import jax.numpy as jnp
from jax import lax

from jaxconvt._lowering._ops import conv, dot, finish, keep_rows, pad_spatial
from jaxconvt._spec import ConvSpec


def x_direct(y, kernel, spec: ConvSpec, out_dtype):
    """Input gradient as a strided forward convolution with the kernel as it is."""
    return conv(
        y,
        kernel,
        spec,
        out_dtype,
        window_strides=spec.strides,
        padding=list(spec.crops),
        rhs_dilation=spec.dilation,
        feature_group_count=spec.groups,
    )


def tap_range(i: int, length: int, offset: int, s: int) -> tuple[int, int]:
    """Input positions ``a`` in ``[0, i)`` with ``0 <= a * s + offset < length``, as ``(a0, a1)``
    (``a1 <= a0``: none): the rows of one tap's product that meet a real element."""
    a0 = max(0, -(offset // s))
    a1 = min(i, (length - 1 - offset) // s + 1)
    return a0, max(a0, a1)


def x_dot(y, kernel, spec: ConvSpec, out_dtype):
    """Input gradient as matrix products, one per kernel tap ``j``:
    ``dx[n, a] = sum over j of y_full[n, a * s + j * d] @ K[j]`` (strided slices of the
    cotangent padded back to the full extent). The rows of a tap's product that read a
    cropped-away position are selected away (``keep_rows``) before the sum, so no padding
    zero times a non-finite kernel tap reaches the result: exact, no guard."""
    n = spec.ndim
    g = spec.groups
    batch, length, c_out = y.shape[0], y.shape[1 : n + 1], y.shape[-1]
    spatial = spec.input_spatial(length)
    og, c_in = kernel.shape[n], kernel.shape[n + 1]
    rows = batch * math.prod(spatial)
    y_full = pad_spatial(y, spec.crops)
    total = None
    for j in itertools.product(*(range(k) for k in spec.kernel_size)):
        start = (0, *(j[a] * spec.dilation[a] for a in range(n)), 0)
        limit = (batch, *(start[1 + a] + (spatial[a] - 1) * spec.strides[a] + 1 for a in range(n)), c_out)
        taps = lax.slice(y_full, start, limit, (1, *spec.strides, 1))
        # (rows, G, Og) x (Og, G, Cg) -> (G, rows, Cg)
        part = dot(
            taps.reshape(rows, g, og), kernel[j].reshape(og, g, -1), (((2,), (0,)), ((1,), (1,))), spec, out_dtype
        )
        # positions a whose tap a * s + j * d - lo lies inside the cotangent
        offsets = [start[1 + a] - spec.crops[a][0] for a in range(n)]
        ranges = [tap_range(spatial[a], length[a], offsets[a], spec.strides[a]) for a in range(n)]
        part = keep_rows(part.reshape(g * batch, *spatial, -1), ranges).reshape(part.shape)
        total = part if total is None else total + part
    return finish(jnp.moveaxis(total, 0, 1), out_dtype).reshape(batch, *spatial, c_in)
