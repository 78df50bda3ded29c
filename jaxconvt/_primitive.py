"""The ``conv_transpose`` primitive and its derivative, transpose and batching rules.

One primitive covers the three slots of the trilinear form ``sum x * K * y`` (see
``_lowering``): ``slot="y"`` is the transposed convolution, ``slot="x"`` its input
gradient and ``slot="k"`` its kernel gradient. The primitive is bilinear in its two
operands, and the transpose of each slot with respect to either operand is another slot
of the same primitive. So reverse mode, forward mode (JVP is bilinear), higher orders,
``linear_transpose`` and ``vmap`` all stay inside three fast lowerings and never reach
XLA's generic convolution transpose.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.interpreters import ad, batching, mlir
from jax.sharding import PartitionSpec

try:  # jax >= 0.4.36
    from jax.extend.core import Primitive
except ImportError:  # pragma: no cover - older jax
    from jax.core import Primitive

from jaxconvt import _lowering
from jaxconvt._lowering._ops import cast_varying, varying_axes
from jaxconvt._spec import ConvSpec

__all__ = ["conv_transpose_p", "bind"]

conv_transpose_p = Primitive("jaxconvt_conv_transpose")

# Which arrays the two operands of each slot are ("x" data in, "y" data out, "k" kernel).
_OPERANDS = {"y": ("x", "k"), "x": ("y", "k"), "k": ("x", "y")}


def bind(a, b, *, spec: ConvSpec, slot: str, out_dtype):
    a, b = _match_varying_axes(a, b)
    return conv_transpose_p.bind(a, b, spec=spec, slot=slot, out_dtype=np.dtype(out_dtype))


def _match_varying_axes(a, b):
    """Inside ``shard_map(check_vma=True)``: mark both operands varying over the same axes, as
    lax does for its own binary ops. Transposing that cast is a ``psum``, so the gradient of a
    replicated kernel comes back replicated (summed over the devices)."""
    va, vb = varying_axes(a), varying_axes(b)
    if va == vb:
        return a, b
    if va - vb:
        b = cast_varying(b, va - vb)
    if vb - va:
        a = cast_varying(a, vb - va)
    return a, b


def _out_shape(a_shape, b_shape, spec: ConvSpec, slot: str) -> tuple[int, ...]:
    n = spec.ndim
    g = spec.groups
    if slot == "y":  # (x, k)
        return (a_shape[0], *spec.output_spatial(a_shape[1 : n + 1]), g * b_shape[n])
    if slot == "x":  # (y, k)
        return (a_shape[0], *spec.input_spatial(a_shape[1 : n + 1]), b_shape[-1])
    # slot == "k": (x, y)
    return (*spec.kernel_size, b_shape[-1] // g, a_shape[-1])


def _result_spec(a, slot: str, ndim: int):
    """Sharding-in-types: a data result keeps the data operand's batch sharding, the rest is replicated."""
    spec = tuple(getattr(a.sharding, "spec", ()))
    lead = spec[0] if slot in ("y", "x") and spec else None
    return PartitionSpec(lead, *([None] * (ndim - 1)))


def _abstract_eval(a, b, *, spec, slot, out_dtype):
    shape = _out_shape(a.shape, b.shape, spec, slot)
    # ``update`` keeps the operand's manual-axes (shard_map) type, equal for both operands.
    sharding = getattr(a, "sharding", None)
    if sharding is None or not hasattr(sharding, "update"):  # jax without sharding in types
        return a.update(shape=shape, dtype=np.dtype(out_dtype), weak_type=False)
    sharding = sharding.update(spec=_result_spec(a, slot, len(shape)))
    return a.update(shape=shape, dtype=np.dtype(out_dtype), weak_type=False, sharding=sharding)


def _uses_explicit_axes(*arrays) -> bool:
    if not hasattr(jax, "typeof") or not hasattr(jax.sharding, "auto_axes"):
        return False
    for arr in arrays:
        spec = getattr(getattr(jax.typeof(arr), "sharding", None), "spec", ())
        if any(p is not None for p in spec):
            return True
    return False


def _impl(a, b, *, spec, slot, out_dtype, platform=None):
    """The slot's lowering (``_lowering.lower``); ``platform="cpu"`` allows the CPU-only
    choices there."""
    shape = _out_shape(a.shape, b.shape, spec, slot)
    if math.prod(shape) == 0 or a.size == 0 or b.size == 0:
        return jnp.zeros(shape, out_dtype)
    fn = functools.partial(_lowering.lower, slot, spec=spec, out_dtype=out_dtype, platform=platform)
    if _uses_explicit_axes(a, b):
        # Explicitly sharded operands: let the partitioner place the reshapes and transposes
        # of the lowering, and hand back the sharding the abstract evaluation promised.
        out_spec = _result_spec(jax.typeof(a), slot, len(shape))
        return jax.sharding.auto_axes(fn, out_sharding=out_spec)(a, b)
    return fn(a, b)


@functools.partial(jax.jit, static_argnames=("spec", "slot", "out_dtype"))
def _eager(a, b, *, spec, slot, out_dtype):
    """Eager calls compile the primitive itself, so the platform's lowering applies."""
    return conv_transpose_p.bind(a, b, spec=spec, slot=slot, out_dtype=out_dtype)


conv_transpose_p.def_abstract_eval(_abstract_eval)
conv_transpose_p.def_impl(_eager)
mlir.register_lowering(conv_transpose_p, mlir.lower_fun(_impl, multiple_results=False))
mlir.register_lowering(
    conv_transpose_p,
    mlir.lower_fun(functools.partial(_impl, platform="cpu"), multiple_results=False),
    platform="cpu",
)


# ----------------------------------------------------------------------------------------
# Transposes: each slot's transpose is another slot.
# ----------------------------------------------------------------------------------------


def _dtype_of(undefined):
    return undefined.aval.dtype


def _lhs_transpose(ct, a, b, *, spec, slot, out_dtype):
    del out_dtype
    if slot == "y":  # a = x (undefined), b = k: dx from (ct=y, k)
        return bind(ct, b, spec=spec, slot="x", out_dtype=_dtype_of(a))
    if slot == "x":  # a = y (undefined), b = k: dy from (ct=x, k)
        return bind(ct, b, spec=spec, slot="y", out_dtype=_dtype_of(a))
    # slot == "k": a = x (undefined), b = y: dx from (y, ct=k)
    return bind(b, ct, spec=spec, slot="x", out_dtype=_dtype_of(a))


def _rhs_transpose(ct, a, b, *, spec, slot, out_dtype):
    del out_dtype
    if slot == "y":  # a = x, b = k (undefined): dk from (x, ct=y)
        return bind(a, ct, spec=spec, slot="k", out_dtype=_dtype_of(b))
    if slot == "x":  # a = y, b = k (undefined): dk from (ct=x, y)
        return bind(ct, a, spec=spec, slot="k", out_dtype=_dtype_of(b))
    # slot == "k": a = x, b = y (undefined): dy from (x, ct=k)
    return bind(a, ct, spec=spec, slot="y", out_dtype=_dtype_of(b))


ad.defbilinear(conv_transpose_p, _lhs_transpose, _rhs_transpose)


# ----------------------------------------------------------------------------------------
# Batching: fold the vmapped axis into the batch (shared kernel) or into the groups.
# ----------------------------------------------------------------------------------------


def _fold_into_groups(arr):
    """Leading ``B`` folded into the channel (last) axis, group-major.

    Data ``(B, N, *sp, C) -> (N, *sp, B*C)``; kernel ``(B, *k, Og, C_in) -> (*k, Og, B*C_in)``.
    Channel ``b*C + c`` then belongs to group ``b*G + c // (C/G)``, so a grouped convolution
    with ``B*G`` groups computes every example's own convolution at once.
    """
    size = arr.shape[0]
    arr = jnp.moveaxis(arr, 0, -2)
    return arr.reshape(*arr.shape[:-2], size * arr.shape[-1])


def _unfold_from_groups(arr, size: int):
    """Inverse of ``_fold_into_groups`` for the result: last axis ``B*C`` -> leading ``B``."""
    arr = arr.reshape(*arr.shape[:-1], size, arr.shape[-1] // size)
    return jnp.moveaxis(arr, -2, 0)


def _batch_rule(args, dims, *, spec, slot, out_dtype):
    a, b = args
    da, db = dims
    kinds = _OPERANDS[slot]
    not_mapped = None  # batching.not_mapped
    size = a.shape[da] if da is not not_mapped else b.shape[db]
    if size == 0:  # nothing to compute; the result has the per-example shape behind an empty axis
        a_shape = tuple(v for i, v in enumerate(a.shape) if i != da)
        b_shape = tuple(v for i, v in enumerate(b.shape) if i != db)
        return jnp.zeros((0, *_out_shape(a_shape, b_shape, spec, slot)), out_dtype), 0
    if kinds[1] == "k" and db is not_mapped:
        # Shared kernel: fold the vmapped axis into the batch axis N.
        a = jnp.moveaxis(a, da, 0)
        a = a.reshape(size * a.shape[1], *a.shape[2:])
        out = bind(a, b, spec=spec, slot=slot, out_dtype=out_dtype)
        return out.reshape(size, out.shape[0] // size, *out.shape[1:]), 0
    # Per-example kernels (or a per-example kernel gradient): one grouped convolution.
    folded = []
    for arr, dim in zip((a, b), (da, db)):
        if dim is not_mapped:
            arr = jnp.broadcast_to(arr, (size, *arr.shape))
        else:
            arr = jnp.moveaxis(arr, dim, 0)
        folded.append(_fold_into_groups(arr))
    spec = dataclasses.replace(spec, groups=spec.groups * size)
    out = bind(*folded, spec=spec, slot=slot, out_dtype=out_dtype)
    return _unfold_from_groups(out, size), 0


batching.primitive_batchers[conv_transpose_p] = _batch_rule
