"""The GEMM forms: each slot as ONE matrix product over all kernel taps (im2col / col2im).

With ``P`` rows ``= N * prod(i)`` (batch times input positions), the three slots are the
three products of one shape, as in GEMM-based deconvolution:

* forward: ``P[a, j] = x[a] @ K[j]`` (``rows x C_in/G`` times ``C_in/G x prod(k)*Og``), then
  the overlap-add ``full[a*s + j*d] += P[a, j]`` (col2im);
* input gradient: ``dx[a] = sum over j of y_full[a*s + j*d] @ K[j]^T``, the im2col of the
  cotangent (``rows x prod(k)*Og``) times the kernel;
* kernel gradient: ``dK[j] = sum over a of x[a] (x) y_full[a*s + j*d]``, the input
  transposed times the same im2col.

Every product is a term of the definition except, in the gradients, the cropped-away
positions of the cotangent (zeros of its padding): the forward has no hazard, the input
gradient has the kernel's (positive crops), the kernel gradient the input's. Groups are the
batch dimension of the products. The overlap-add and im2col are pads, reshapes and slices
that XLA fuses: per dimension the taps ``j * d = m * s + r`` are laid out as ``w`` window
shifts ``m`` times ``s`` phases ``r`` (``phase.phase_window``).
"""

from __future__ import annotations

import itertools
import math

import jax.numpy as jnp
from jax import lax

from jaxconvt import _padding
from jaxconvt._lowering._ops import dot, finish, pad_spatial, product_rows
from jaxconvt._lowering.phase import phase_window
from jaxconvt._spec import ConvSpec

__all__ = ["y_col2im", "x_im2col", "k_im2col"]


def _windows(spec: ConvSpec) -> tuple[int, ...]:
    return tuple(phase_window(k, s, d) for k, s, d in zip(spec.kernel_size, spec.strides, spec.dilation))


def _rows(spec: ConvSpec, spatial) -> tuple[int, ...]:
    """Rows ``i + w - 1`` of the phase grid ``(N, *rows, *s, C)`` that holds the full result."""
    return tuple(i + w - 1 for i, w in zip(spatial, _windows(spec)))


def y_col2im(x, kernel, spec: ConvSpec, out_dtype):
    """Forward: ``(N, *i, C_in), (*k, Og, C_in) -> (N, *L, G*Og)``; exact for non-finite values."""
    n, g = spec.ndim, spec.groups
    batch, spatial, c_in = x.shape[0], tuple(x.shape[1 : n + 1]), x.shape[-1]
    ks, og = spec.kernel_size, kernel.shape[n]
    cg = c_in // g
    s, d, w = spec.strides, spec.dilation, _windows(spec)
    # (N, *i, G, Cg) x (*k, Og, G, Cg) -> (G, N, *i, *k, Og)
    prod = dot(
        x.reshape(batch, *spatial, g, cg),
        kernel.reshape(*ks, og, g, cg),
        (((n + 2,), (n + 2,)), ((n + 1,), (n + 1,))),
        spec,
        out_dtype,
    )
    prod = jnp.moveaxis(prod, 0, -2)  # (N, *i, *k, G, Og)
    # tap j*d = m*s + r: dilate and zero-extend each tap axis to w*s, then split it into (m, r)
    config = [(0, 0, 0)] * (n + 1)
    config += [(0, w[a] * s[a] - _padding.dilated_size(ks[a], d[a]), d[a] - 1) for a in range(n)]
    prod = lax.pad(prod, jnp.zeros((), prod.dtype), [*config, (0, 0, 0), (0, 0, 0)])
    prod = prod.reshape(batch, *spatial, *(v for a in range(n) for v in (w[a], s[a])), g * og)
    grid = None
    for m in itertools.product(*(range(v) for v in w)):
        index = (slice(None),) * (n + 1) + tuple(v for a in range(n) for v in (m[a], slice(None)))
        shift = [(0, 0, 0), *((m[a], w[a] - 1 - m[a], 0) for a in range(n)), *[(0, 0, 0)] * (n + 1)]
        part = lax.pad(prod[index], jnp.zeros((), prod.dtype), shift)  # (N, *rows, *s, G*Og)
        grid = part if grid is None else grid + part
    rows = _rows(spec, spatial)
    perm = (0, *(v for a in range(n) for v in (1 + a, 1 + n + a)), 2 * n + 1)
    full = jnp.transpose(grid, perm).reshape(batch, *(r * st for r, st in zip(rows, s)), g * og)
    ends = [r * st - _padding.full_size(i, k, st, dl) for r, st, i, k, dl in zip(rows, s, spatial, ks, d)]
    return finish(pad_spatial(full, [(-lo, -hi - e) for (lo, hi), e in zip(spec.crops, ends)]), out_dtype)


def im2col(y, spec: ConvSpec, spatial):
    """``(N, *L, C)`` cotangent -> ``(N, *i, *k, C)`` with ``[a, j] = y_full[a*s + j*d]``
    (``y_full``: the cotangent padded back to the full, uncropped extent; zeros there)."""
    n = spec.ndim
    batch, c = y.shape[0], y.shape[-1]
    ks, s, d, w = spec.kernel_size, spec.strides, spec.dilation, _windows(spec)
    rows = _rows(spec, spatial)
    full = [_padding.full_size(i, k, st, dl) for i, k, st, dl in zip(spatial, ks, s, d)]
    # the full extent, then on to rows * s so it splits into (row, phase)
    pads = [(lo, hi + r * st - f) for (lo, hi), r, st, f in zip(spec.crops, rows, s, full)]
    grid = pad_spatial(y, pads).reshape(batch, *(v for a in range(n) for v in (rows[a], s[a])), c)
    parts = []
    for m in itertools.product(*(range(v) for v in w)):
        start = [0] * (2 * n + 2)
        limit = list(grid.shape)
        for a in range(n):
            start[1 + 2 * a], limit[1 + 2 * a] = m[a], m[a] + spatial[a]
        parts.append(lax.slice(grid, start, limit))  # (N, i1, s1, ..., C)
    cols = jnp.stack(parts, axis=1).reshape(batch, *w, *(v for a in range(n) for v in (spatial[a], s[a])), c)
    # (N, w1..wn, i1, s1, ..., in, sn, C) -> (N, i1..in, w1, s1, ..., wn, sn, C) -> taps m*s + r
    perm = (0, *(n + 1 + 2 * a for a in range(n)), *(v for a in range(n) for v in (1 + a, n + 2 + 2 * a)), 3 * n + 1)
    cols = jnp.transpose(cols, perm).reshape(batch, *spatial, *(wa * sa for wa, sa in zip(w, s)), c)
    ke = [_padding.dilated_size(k, dl) for k, dl in zip(ks, d)]
    return lax.slice(cols, (0,) * (2 * n + 2), (batch, *spatial, *ke, c), (1,) * (n + 1) + tuple(d) + (1,))


def x_im2col(y, kernel, spec: ConvSpec, out_dtype):
    """Input gradient: ``(N, *L, G*Og), (*k, Og, C_in) -> (N, *i, C_in)``."""
    n, g = spec.ndim, spec.groups
    batch = y.shape[0]
    spatial = spec.input_spatial(y.shape[1 : n + 1])
    ks, og, c_in = spec.kernel_size, kernel.shape[n], kernel.shape[n + 1]
    cols = im2col(y, spec, spatial).reshape(batch, *spatial, *ks, g, og)
    # (N, *i, *k, G, Og) x (*k, Og, G, Cg) -> (G, N, *i, Cg)
    taps = tuple(range(n + 1, 2 * n + 1))
    out = dot(
        cols,
        kernel.reshape(*ks, og, g, c_in // g),
        (((*taps, 2 * n + 2), (*range(n), n)), ((2 * n + 1,), (n + 1,))),
        spec,
        out_dtype,
    )
    return finish(jnp.moveaxis(out, 0, -2).reshape(batch, *spatial, c_in), out_dtype)


def k_im2col(x, y, spec: ConvSpec, out_dtype):
    """Kernel gradient: ``(N, *i, C_in), (N, *L, G*Og) -> (*k, Og, C_in)``.

    Both operands are contracted over their rows, in one of two orders. Columns first: the
    column matrix (which is built anyway) transposed times the input, both read as they lie,
    the result in the kernel's own layout. Input first: XLA copies the input into (channels,
    rows) order for its faster product, and the result ``(C_in, *k, Og)`` is permuted once (a
    kernel-sized copy). Columns first is taken when the column matrix has at most half as many
    elements as the input and the kernel together: few rows and a large kernel (audio_vae,
    128 rows: 100 vs 190 ms); near a tie input first is as fast or faster (bigvgan 1.7 vs
    1.8-2.0 ms, unet2d 4.7 vs 5.2).
    """
    n, g = spec.ndim, spec.groups
    batch, spatial, c_in = x.shape[0], tuple(x.shape[1 : n + 1]), x.shape[-1]
    ks, og = spec.kernel_size, y.shape[-1] // g
    cg, taps = c_in // g, math.prod(ks) * og
    cols = im2col(y, spec, spatial).reshape(batch, *spatial, *ks, g, og)
    xg = x.reshape(batch, *spatial, g, cg)
    rows = tuple(range(n + 1))
    r = product_rows(x.shape)
    if 2 * r * taps <= r * cg + taps * cg:  # columns first
        # (N, *i, *k, G, Og) x (N, *i, G, Cg) -> (G, *k, Og, Cg)
        out = dot(cols, xg, ((rows, rows), ((2 * n + 1,), (n + 1,))), spec, out_dtype, plain=True)
        out = jnp.moveaxis(out, 0, -2)  # (*k, Og, G, Cg)
    else:
        # (N, *i, G, Cg) x (N, *i, *k, G, Og) -> (G, Cg, *k, Og)
        out = dot(xg, cols, ((rows, rows), ((n + 1,), (2 * n + 1,))), spec, out_dtype)
        out = jnp.transpose(out, (*range(2, n + 2), n + 2, 0, 1))  # (*k, Og, G, Cg)
    return finish(out.reshape(*ks, og, c_in), out_dtype)
