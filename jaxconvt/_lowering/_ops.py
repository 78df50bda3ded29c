"""The ``lax`` calls every lowering shares: canonical convolution layout, dtypes, padding."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconvt._spec import ConvSpec

LOW_PRECISION = (np.dtype(jnp.bfloat16), np.dtype(jnp.float16))


def dimension_numbers(n: int) -> lax.ConvDimensionNumbers:
    """Canonical NH..WC / H..WIO / NH..WC dimension numbers for ``n`` spatial dims."""
    spatial = tuple(range(1, n + 1))
    return lax.ConvDimensionNumbers(
        lhs_spec=(0, n + 1, *spatial),
        rhs_spec=(n + 1, n, *range(n)),
        out_spec=(0, n + 1, *spatial),
    )


def accumulation_dtype(a, b, out_dtype):
    """The dtype operands are promoted to and the dtype XLA accumulates in."""
    compute = jnp.result_type(a.dtype, b.dtype)
    out_dtype = np.dtype(out_dtype)
    if compute in LOW_PRECISION:
        acc = np.dtype(np.float32) if out_dtype in LOW_PRECISION else out_dtype
    elif jnp.promote_types(compute, out_dtype) == out_dtype:
        acc = out_dtype
    else:
        acc = compute
    return compute, acc


def conv(lhs, rhs, spec: ConvSpec, out_dtype, **kwargs):
    """``lax.conv_general_dilated`` in canonical layout with dtype handling."""
    compute, acc = accumulation_dtype(lhs, rhs, out_dtype)
    out = lax.conv_general_dilated(
        lhs.astype(compute),
        rhs.astype(compute),
        dimension_numbers=dimension_numbers(lhs.ndim - 2),
        precision=spec.precision,
        preferred_element_type=None if acc == compute else acc,
        **kwargs,
    )
    return finish(out, out_dtype)


def finish(out, out_dtype):
    """Cast to the slot's dtype (the real part where a real primal got a complex cotangent)."""
    if jnp.iscomplexobj(out) and not jnp.issubdtype(out_dtype, jnp.complexfloating):
        out = jnp.real(out)  # cotangent of a real primal from a complex computation
    return out.astype(out_dtype)


def dot(lhs, rhs, dimension_numbers, spec: ConvSpec, out_dtype, plain: bool = False):
    """``lax.dot_general`` with the same dtype handling as ``conv`` (the result stays in the
    accumulation dtype, so per-tap products can be summed before the final cast).

    Where the left operand's last listed contracted axis is its last axis, the product
    reaches XLA in its plainest form: batch axes of size 1 (one group) are dropped, and each
    operand's free axes, and both operands' contracted axes, are merged into one axis where
    they lie next to each other (a free reshape). XLA:CPU otherwise copies an operand into
    (batch, contracted, free) order first; audio_vae's forward copied its 168 MB kernel that
    way (145 vs 60 ms). Any other product, e.g. a left operand contracted over its leading
    axes (the rows, in a kernel gradient), is left to XLA, whose copy into (free, contracted)
    order runs a faster product than the transposed one (unet2d's kernel gradient 4.3 vs 5.5
    ms), unless ``plain``: with a short contraction the transposed product is the faster
    (audio_vae's kernel gradient, 128 rows: 100 vs 118 ms).
    """
    compute, acc = accumulation_dtype(lhs, rhs, out_dtype)
    lhs, rhs = lhs.astype(compute), rhs.astype(compute)
    (lc, rc), (lb, rb) = ((tuple(a), tuple(b)) for a, b in dimension_numbers)
    out_shape, unit = None, []
    if plain or (lc and lc[-1] == lhs.ndim - 1):
        unit = [i for i, (a, b) in enumerate(zip(lb, rb)) if lhs.shape[a] == 1 and rhs.shape[b] == 1]
        lhs, lc, lb = _squeeze(lhs, lc, lb, [lb[i] for i in unit])
        rhs, rc, rb = _squeeze(rhs, rc, rb, [rb[i] for i in unit])
        lfree = [a for a in range(lhs.ndim) if a not in lc and a not in lb]
        rfree = [a for a in range(rhs.ndim) if a not in rc and a not in rb]
        out_shape = (*(lhs.shape[a] for a in lb), *(lhs.shape[a] for a in lfree), *(rhs.shape[a] for a in rfree))
        both = _contiguous(lc) and _contiguous(rc)
        lhs, lc, lb = _merge(lhs, lc, lb, lfree, both)
        rhs, rc, rb = _merge(rhs, rc, rb, rfree, both)
    out = lax.dot_general(
        lhs,
        rhs,
        ((lc, rc), (lb, rb)),
        precision=spec.precision,
        preferred_element_type=None if acc == compute else acc,
    )
    if out_shape is not None:
        out = out.reshape(out_shape)
    return lax.expand_dims(out, unit) if unit else out


def _contiguous(axes) -> bool:
    return len(axes) > 0 and tuple(axes) == tuple(range(axes[0], axes[0] + len(axes)))


def _squeeze(a, contracting, batch, axes):
    """``a`` without its size-1 batch ``axes``; the other axis numbers renumbered."""
    if not axes:
        return a, contracting, batch
    renumber = lambda dims: tuple(d - sum(x < d for x in axes) for d in dims if d not in axes)
    return lax.squeeze(a, axes), renumber(contracting), renumber(batch)


def _merge(a, contracting, batch, free, merge_contracting: bool):
    """``a`` with its free axes (if adjacent) and contracted axes (if ``merge_contracting``)
    each reshaped into one axis; the axis numbers renumbered."""
    groups = [g for g in (free, contracting if merge_contracting else ()) if len(g) > 1 and _contiguous(g)]
    if not groups:
        return a, contracting, batch
    starts = {g[0]: g for g in groups}
    shape, where, i = [], {}, 0
    while i < a.ndim:
        g = starts.get(i, (i,))
        where.update({axis: len(shape) for axis in g})
        shape.append(math.prod(a.shape[axis] for axis in g))
        i = g[-1] + 1
    renumber = lambda dims: tuple(dict.fromkeys(where[d] for d in dims))
    return a.reshape(shape), renumber(contracting), renumber(batch)


def product_rows(shape) -> int:
    """Rows ``N * prod(spatial)`` of a channels-last array's products (a symbolic, exported
    batch counts as 256: large)."""
    batch = shape[0] if isinstance(shape[0], int) else 256
    return batch * math.prod(shape[1:-1])


def pad_spatial(a, pads):
    """Pads (negative: crops) the spatial axes of a channels-last ``(N, *spatial, C)`` array."""
    return lax.pad(a, jnp.zeros((), a.dtype), [(0, 0, 0), *((lo, hi, 0) for lo, hi in pads), (0, 0, 0)])


def keep_rows(part, ranges):
    """``part`` ``(B, *spatial, C)`` with zeros outside the spatial ``ranges`` (``(lo, hi)``
    per axis), as a select: the rows outside may hold ``0 * inf = nan`` from a padding zero,
    and selecting them away (not multiplying them) keeps the real rows exact."""
    spatial = part.shape[1:-1]
    if all(lo <= 0 and hi >= size for (lo, hi), size in zip(ranges, spatial)):
        return part
    mask = None
    for a, (lo, hi) in enumerate(ranges):
        index = lax.broadcasted_iota(jnp.int32, spatial, a)
        inside = (index >= lo) & (index < hi)
        mask = inside if mask is None else mask & inside
    return jnp.where(mask[None, ..., None], part, jnp.zeros((), part.dtype))


def grouped_io_kernel(kernel, groups: int):
    """Keras kernel ``(*k, Og, G*Cg)`` -> HWIO kernel ``(*k, Cg, G*Og)`` for a grouped conv."""
    *k, og, c_in = kernel.shape
    cg = c_in // groups
    n = len(k)
    kernel = kernel.reshape(*k, og, groups, cg)
    kernel = jnp.transpose(kernel, (*range(n), n + 2, n + 1, n))
    return kernel.reshape(*k, cg, groups * og)


def varying_axes(x) -> frozenset:
    """Manual mesh axes ``x`` varies over inside ``shard_map`` (empty outside, or on old jax)."""
    if not hasattr(jax, "typeof"):
        return frozenset()
    aval = jax.typeof(x)
    mat = getattr(aval, "mat", None)
    if mat is not None:
        return frozenset(mat.varying)
    return frozenset(getattr(aval, "vma", ()))


def cast_varying(x, names):
    """``x`` marked varying over the manual mesh axes ``names`` as well (``shard_map``)."""
    names = tuple(sorted(names))
    if not names:
        return x
    if hasattr(lax, "pcast"):
        return lax.pcast(x, names, to="varying")
    return lax.pvary(x, names)


def zeros_like_varying(shape, dtype, like):
    """Zeros that vary over the same manual mesh axes as ``like``: the initial value of a
    loop whose body mixes in ``like`` (``shard_map`` with ``check_vma`` requires equal types)."""
    return cast_varying(jnp.zeros(shape, dtype), varying_axes(like))
