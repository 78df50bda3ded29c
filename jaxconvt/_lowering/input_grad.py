"""The input-gradient slot (``x`` from the output cotangent ``y`` and ``K``)."""

from __future__ import annotations

import itertools
import math

import jax.numpy as jnp
from jax import lax

from jaxconvt._lowering._ops import conv, dot, finish, pad_spatial
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


def x_dot(y, kernel, spec: ConvSpec, out_dtype):
    """Input gradient as matrix products, one per kernel tap ``j``:
    ``dx[n, a] = sum over j of y_full[n, a * s + j * d] @ K[j]`` (strided slices of the
    cotangent padded back to the full extent; no wasted work, see ``y_dot``)."""
    n = spec.ndim
    g = spec.groups
    batch, c_out = y.shape[0], y.shape[-1]
    spatial = spec.input_spatial(y.shape[1 : n + 1])
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
        total = part if total is None else total + part
    return finish(jnp.moveaxis(total, 0, 1), out_dtype).reshape(batch, *spatial, c_in)
