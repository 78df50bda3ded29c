"""The three slots computed straight from the definition, one kernel tap at a time.

``full[n, a*s + j*d] += x[n, a] @ K[j]`` for every input position ``a`` and kernel tap ``j``,
then the crop. Every product here is a real term of the definition: no padding zero and no
structural zero of a phase kernel is ever multiplied, so non-finite values (``inf``, ``nan``)
reach exactly the outputs the definition sends them to. Positions a tap does not reach keep the
zeros they start with (forward), are masked out with a select (gradients), or in the input
gradient's in-place path are never read (``_shifted_starts``).

These forms are the exact fallback of the fast ones (see ``lower`` in ``__init__``), the
forward for kernels whose phase form would waste too much (``rules.SCATTER_MIN_WASTE``),
and on CPU the fast form itself where one product per tap accumulated in place beats the
convolution or the per-tap products summed at the end (``rules.*_tap_loop``: wide, strided,
overlapping kernels, most of them 2-D); they need no guard. The
taps run in a ``lax.fori_loop`` / ``lax.scan``, so tracing and compiling cost the same for
any kernel size; each tap is one matrix product (batched over groups) plus an update of a
strided slab of the output (forward) or a strided read of the cotangent (gradients).
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconvt import _padding
from jaxconvt._lowering._ops import accumulation_dtype, dot, finish, pad_spatial, zeros_like_varying
from jaxconvt._spec import ConvSpec

__all__ = ["y_scatter", "x_scatter", "k_scatter"]


def _offsets(spec: ConvSpec):
    """``(T, n + 2)`` int32: ``(0, *(j * d), 0)`` for every kernel tap ``j`` (row-major tap
    order), the start of the tap's footprint in a channels-last ``(N, *full, C)`` array."""
    taps = itertools.product(*(range(k) for k in spec.kernel_size))
    table = [[0, *(j * d for j, d in zip(tap, spec.dilation)), 0] for tap in taps]
    return jnp.asarray(np.array(table, np.int32).reshape(-1, spec.ndim + 2))


def _full(spec: ConvSpec, spatial) -> tuple[int, ...]:
    return tuple(
        _padding.full_size(i, k, s, d) for i, k, s, d in zip(spatial, spec.kernel_size, spec.strides, spec.dilation)
    )


def _span(spec: ConvSpec, spatial) -> tuple[int, ...]:
    """Extent ``(i - 1) * s + 1`` of one tap's strided footprint per dimension."""
    return tuple((i - 1) * s + 1 for i, s in zip(spatial, spec.strides))


def _tap_slab(y_full, start, spec: ConvSpec, spatial):
    """``y_full[:, j*d + a*s]`` for every input position ``a`` (``start`` from ``_offsets``): ``(N, *i, C)``."""
    n = spec.ndim
    batch, c = y_full.shape[0], y_full.shape[-1]
    slab = lax.dynamic_slice(y_full, start, (batch, *_span(spec, spatial), c))
    return lax.slice(slab, (0,) * (n + 2), slab.shape, (1, *spec.strides, 1))


def _reached(start, spec: ConvSpec, spatial, length):
    """Boolean ``(*i)``: input positions whose tap (``start`` from ``_offsets``) lands inside the cropped output."""
    mask = None
    for a in range(spec.ndim):
        pos = lax.broadcasted_iota(jnp.int32, tuple(spatial), a) * spec.strides[a] + start[1 + a] - spec.crops[a][0]
        inside = (pos >= 0) & (pos < length[a])
        mask = inside if mask is None else mask & inside
    return mask


def _needs_mask(spec: ConvSpec) -> bool:
    """Some tap reaches a cropped-away position only when a crop is positive."""
    return any(lo > 0 or hi > 0 for lo, hi in spec.crops)


def _phase_offsets(spec: ConvSpec):
    """``(T, 2n + 2)`` int32: ``(0, *(j*d // s), *(j*d % s), 0)`` per kernel tap ``j``, the
    tap's (row shift, phase) start in a phase grid ``(N, *rows, *s, C)``."""
    taps = itertools.product(*(range(k) for k in spec.kernel_size))
    geometry = list(zip(spec.dilation, spec.strides))
    table = [
        [0, *((j * d) // s for j, (d, s) in zip(tap, geometry)), *((j * d) % s for j, (d, s) in zip(tap, geometry)), 0]
        for tap in taps
    ]
    return jnp.asarray(np.array(table, np.int32).reshape(-1, 2 * spec.ndim + 2))


def y_scatter(x, kernel, spec: ConvSpec, out_dtype):
    """Forward: ``(N, *i, C_in), (*k, Og, C_in) -> (N, *L, G*Og)``.

    Tap ``j`` adds ``x @ K[j]`` at positions ``a*s + j*d = (a + j*d // s) * s + j*d % s``: a
    contiguous block of rows of one phase of the grid ``(N, *(i + w - 1), *s, C)``, which is
    interleaved into the full output once at the end (no zeros are spread per tap).
    """
    n, g = spec.ndim, spec.groups
    batch, spatial, c_in = x.shape[0], x.shape[1 : n + 1], x.shape[-1]
    og, cg = kernel.shape[n], c_in // g
    _, acc = accumulation_dtype(x, kernel, out_dtype)
    offsets = _phase_offsets(spec)
    rows = tuple(i + (k - 1) * d // s for i, k, d, s in zip(spatial, spec.kernel_size, spec.dilation, spec.strides))
    xg = x.reshape(batch, *spatial, g, cg)
    taps = kernel.reshape(-1, og, g, cg)

    def body(t, grid):
        # (N, *i, G, Cg) x (Og, G, Cg) -> (G, N, *i, Og)
        part = dot(xg, taps[t], (((n + 2,), (2,)), ((n + 1,), (1,))), spec, out_dtype)
        part = jnp.moveaxis(part, 0, -2).reshape(batch, *spatial, *(1,) * n, g * og)
        start = tuple(offsets[t])
        return lax.dynamic_update_slice(grid, lax.dynamic_slice(grid, start, part.shape) + part, start)

    grid = zeros_like_varying((batch, *rows, *spec.strides, g * og), acc, x)
    grid = lax.fori_loop(0, offsets.shape[0], body, grid)
    perm = (0, *(i for a in range(n) for i in (1 + a, 1 + n + a)), 2 * n + 1)
    full = jnp.transpose(grid, perm).reshape(batch, *(r * s for r, s in zip(rows, spec.strides)), g * og)
    # the grid covers rows * s >= the full length; crop (negative crops zero-extend) from its start
    ends = [r * s - f for r, s, f in zip(rows, spec.strides, _full(spec, spatial))]
    return finish(pad_spatial(full, [(-lo, -hi - e) for (lo, hi), e in zip(spec.crops, ends)]), out_dtype)


def _shifted_starts(spec: ConvSpec, spatial, length):
    """Per kernel tap, where its strided slab of the cotangent can be read without padding.

    Tap ``j`` reads positions ``a * s + o`` (``o = j * d - lo``) for ``a`` in ``[0, i)``;
    some lie outside the cotangent. Read instead the slab that starts at ``o + sh * s`` for
    the shift ``sh`` of least magnitude that puts all of it inside: its row ``a'`` is the
    tap's row ``a' + sh``, so its product lands ``sh`` rows further in the sum. Its rows
    that land in the margin belong to input positions outside ``[0, i)`` and are dropped;
    the tap's rows whose positions lie outside the cotangent are the ones the slab never
    covers, and get nothing (no term). Returns ``(starts, offsets, margin)``: two
    ``(T, n + 2)`` int32 tables (the slab's start; the product's offset ``margin + sh`` in a
    sum extended by ``margin`` rows at both ends) and the margin per dimension, or ``None``
    when some dimension's cotangent is shorter than a slab plus ``s - 1``.
    """
    n = spec.ndim
    room = [length[a] - (spatial[a] - 1) * spec.strides[a] for a in range(n)]  # start positions + 1
    if any(r < spec.strides[a] for a, r in enumerate(room)):
        return None
    starts, shifts = [], []
    for tap in itertools.product(*(range(k) for k in spec.kernel_size)):
        start, shift = [0], [0]
        for a in range(n):
            o, st = tap[a] * spec.dilation[a] - spec.crops[a][0], spec.strides[a]
            if o < 0:  # the first rows reach before the start: shift the slab up
                sh = -(o // st)
            elif o > room[a] - 1:  # the last rows reach past the end: shift it down
                sh = -((o - room[a] + st) // st)
            else:
                sh = 0
            start.append(o + sh * st)
            shift.append(sh)
        starts.append([*start, 0])
        shifts.append([*shift, 0])
    margin = [max(abs(row[1 + a]) for row in shifts) for a in range(n)]
    offsets = [[0, *(m + row[1 + a] for a, m in enumerate(margin)), 0] for row in shifts]
    return (
        jnp.asarray(np.array(starts, np.int32).reshape(-1, n + 2)),
        jnp.asarray(np.array(offsets, np.int32).reshape(-1, n + 2)),
        margin,
    )


def x_scatter(y, kernel, spec: ConvSpec, out_dtype, in_place: bool = False):
    """Input gradient: ``(N, *L, G*Og), (*k, Og, C_in) -> (N, *i, C_in)``.

    Each tap reads a strided slab of the cotangent padded back to its full extent, and the
    rows that read a cropped-away position are masked. With ``in_place`` the slabs are read
    from the cotangent as it is, shifted inside it where a tap reaches past an end
    (``_shifted_starts``), and each product is added into a sum with a margin: no padded
    copy of the cotangent (which a training step may hold beside the kernel gradient), at
    the price of an update of a window of the sum per tap instead of a plain sum: in place
    vs padded, float32 dcgan2d 27.4 vs 25.0 ms; vae3d_k3 5.1 vs 4.5 ms with temporaries of
    1.4 vs 5.8 MB (chosen in 3-D for the memory). A cotangent too short for the shifted
    slabs (e.g. k3 s2 with padding 1 and no output padding) is padded either way.
    """
    n, g = spec.ndim, spec.groups
    batch, length = y.shape[0], y.shape[1 : n + 1]
    spatial = spec.input_spatial(length)
    og, c_in = kernel.shape[n], kernel.shape[n + 1]
    cg = c_in // g
    _, acc = accumulation_dtype(y, kernel, out_dtype)
    shifted = _shifted_starts(spec, spatial, length) if in_place else None

    def product(slab, taps, t):
        # (N, *i, G, Og) x (Og, G, Cg) -> (G, N, *i, Cg) -> (N, *i, G, Cg)
        slab = slab.reshape(batch, *spatial, g, og)
        return jnp.moveaxis(dot(slab, taps[t], (((n + 2,), (0,)), ((n + 1,), (1,))), spec, out_dtype), 0, -2)

    if shifted is not None:
        starts, offsets, margin = shifted
        taps = kernel.reshape(-1, og, g, cg)
        extent = tuple((i - 1) * s + 1 for i, s in zip(spatial, spec.strides))

        def body(t, total):
            slab = lax.dynamic_slice(y, tuple(starts[t]), (batch, *extent, y.shape[-1]))
            slab = lax.slice(slab, (0,) * (n + 2), slab.shape, (1, *spec.strides, 1))
            part = product(slab, taps, t).reshape(batch, *spatial, c_in)
            at = tuple(offsets[t])
            return lax.dynamic_update_slice(total, lax.dynamic_slice(total, at, part.shape) + part, at)

        shape = (batch, *(i + 2 * m for i, m in zip(spatial, margin)), c_in)
        total = lax.fori_loop(0, starts.shape[0], body, zeros_like_varying(shape, acc, y))
        total = lax.slice(total, (0, *margin, 0), (batch, *(m + i for m, i in zip(margin, spatial)), c_in))
        return finish(total, out_dtype)

    offsets = _offsets(spec)
    y_full = pad_spatial(y, spec.crops)  # zeros where the output was cropped away
    taps = kernel.reshape(-1, og, g, cg)
    masked = _needs_mask(spec)

    def padded_body(t, total):
        start = tuple(offsets[t])
        part = product(_tap_slab(y_full, start, spec, spatial), taps, t)
        if masked:  # a cropped-away position times a non-finite tap is no term of the definition
            part = jnp.where(_reached(start, spec, spatial, length)[None, ..., None, None], part, 0)
        return total + part

    total = lax.fori_loop(0, offsets.shape[0], padded_body, zeros_like_varying((batch, *spatial, g, cg), acc, y))
    return finish(total.reshape(batch, *spatial, c_in), out_dtype)


def k_scatter(x, y, spec: ConvSpec, out_dtype):
    """Kernel gradient: ``(N, *i, C_in), (N, *L, G*Og) -> (*k, Og, C_in)``."""
    n, g = spec.ndim, spec.groups
    batch, spatial, c_in = x.shape[0], x.shape[1 : n + 1], x.shape[-1]
    length = y.shape[1 : n + 1]
    og, cg = y.shape[-1] // g, c_in // g
    offsets = _offsets(spec)
    y_full = pad_spatial(y, spec.crops)
    xg = x.reshape(batch, *spatial, g, cg)
    masked = _needs_mask(spec)
    contract = (0, *range(1, n + 1))

    def body(carry, t):
        start = tuple(offsets[t])
        slab = _tap_slab(y_full, start, spec, spatial).reshape(batch, *spatial, g, og)
        xs = xg
        if masked:  # a non-finite input times a cropped-away zero is no term of the definition
            xs = jnp.where(_reached(start, spec, spatial, length)[None, ..., None, None], xg, 0)
        # (N, *i, G, Og) x (N, *i, G, Cg) -> (G, Og, Cg)
        return carry, dot(slab, xs, ((contract, contract), ((n + 1,), (n + 1,))), spec, out_dtype)

    _, parts = lax.scan(body, None, jnp.arange(offsets.shape[0]))  # (T, G, Og, Cg)
    parts = jnp.transpose(parts, (0, 2, 1, 3)).reshape(*spec.kernel_size, og, c_in)
    return finish(parts, out_dtype)
