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

import dataclasses
import functools
import itertools
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
    return _finish(out, out_dtype)


def _finish(out, out_dtype):
    """Cast to the slot's dtype (the real part where a real primal got a complex cotangent)."""
    if jnp.iscomplexobj(out) and not jnp.issubdtype(out_dtype, jnp.complexfloating):
        out = jnp.real(out)  # cotangent of a real primal from a complex computation
    return out.astype(out_dtype)


def _dot(lhs, rhs, dimension_numbers, spec: ConvSpec, out_dtype):
    """``lax.dot_general`` with the same dtype handling as ``_conv`` (the result stays in the
    accumulation dtype, so per-tap products can be summed before the final cast)."""
    compute, acc = _accumulation_dtype(lhs, rhs, out_dtype)
    return lax.dot_general(
        lhs.astype(compute),
        rhs.astype(compute),
        dimension_numbers,
        precision=spec.precision,
        preferred_element_type=None if acc == compute else acc,
    )


def _pad_spatial(a, pads):
    """Pads (negative: crops) the spatial axes of a channels-last ``(N, *spatial, C)`` array."""
    return lax.pad(a, jnp.zeros((), a.dtype), [(0, 0, 0), *((lo, hi, 0) for lo, hi in pads), (0, 0, 0)])


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


def _phase_window(k: int, s: int, d: int) -> int:
    """Common window of the phase form: taps ``j`` sit at input shift ``(j * d) // s``."""
    return (k - 1) * d // s + 1


def phase_waste(kernel_spatial, spec: ConvSpec) -> float:
    """Multiply-adds of the phase algorithm divided by the useful ones (>= 1)."""
    ratio = 1.0
    for k, s, d in zip(kernel_spatial, spec.strides, spec.dilation):
        ratio *= _phase_window(k, s, d) * s / k
    return ratio


@functools.lru_cache(maxsize=1024)
def _phase_classes(k: int, s: int, d: int, w: int) -> tuple[tuple[int, int, int, int], ...]:
    """Runs of consecutive phases of one dimension that use the same taps of the phase window.

    Phase ``r`` holds the kernel taps ``j`` with ``(j * d) mod s == r``, at window shifts
    ``(j * d) // s`` (window tap ``w - 1 - shift`` after the flip). Returns
    ``(r_lo, r_hi, t_lo, t_hi)`` per run: phases ``r_lo .. r_hi - 1`` use window taps
    ``t_lo .. t_hi - 1`` and no others (an empty range for phases without taps). For ``k``
    a multiple of ``s`` this is one run over everything; for k3 s2 it is phase 0 with two
    taps and phase 1 with one. When some phase's shifts are not contiguous (a dilation that
    shares a factor with the stride) the whole dimension is one run over the full window.
    """
    ranges = []
    for r in range(s):
        shifts = sorted({(j * d) // s for j in range(k) if (j * d) % s == r})
        if shifts and shifts != list(range(shifts[0], shifts[-1] + 1)):
            return ((0, s, 0, w),)
        ranges.append((w - 1 - shifts[-1], w - shifts[0]) if shifts else (0, 0))
    runs = []
    for r, taps in enumerate(ranges):
        if runs and runs[-1][2:] == taps:
            runs[-1] = (runs[-1][0], r + 1, *taps)
        else:
            runs.append((r, r + 1, *taps))
    return tuple(runs)


#: Most class combinations the exact phase form (``_use_exact``) runs as separate products.
EXACT_MAX_CLASSES = 8
#: Fewest input and output channels per group for the exact forward (see ``_use_exact``).
EXACT_MIN_CHANNELS = 64


@dataclasses.dataclass(frozen=True)
class _PhasePlan:
    """Static geometry of the phase (sub-pixel) form of one transposed convolution.

    In phase form the op is ``y = D2S(conv(x, Kc))``: a stride-1, undilated convolution
    of the input with a combined kernel ``Kc = scatter(K)`` whose output channels hold all
    ``prod(strides)`` phases, followed by a depth-to-space interleave and a crop (``D2S``).
    The stride-1 convolution is the "x" slot of ``inner``, a stride-1 spec whose crops are
    the convolution's padding; the phase-form kernel gradient uses the exact adjoints of
    ``D2S`` (``S2D``) and of the scatter (a gather).
    """

    n: int
    strides: tuple[int, ...]
    groups: int
    window: tuple[int, ...]
    kernel_size: tuple[int, ...]
    dilation: tuple[int, ...]
    lengths: tuple[int, ...]  # output spatial shape
    starts: tuple[int, ...]  # crop offset inside the interleaved phase output
    inner: ConvSpec
    classes: tuple[tuple[tuple[int, int, int, int], ...], ...]  # per dimension, see _phase_classes


@functools.lru_cache(maxsize=512)
def _phase_plan(spec: ConvSpec, input_spatial: tuple[int, ...]) -> _PhasePlan:
    n = spec.ndim
    window, pads, lengths, starts = [], [], [], []
    for a in range(n):
        k, s, d = spec.kernel_size[a], spec.strides[a], spec.dilation[a]
        w = _phase_window(k, s, d)
        lo, hi = spec.crops[a]
        length = _padding.output_size(input_spatial[a], k, s, d, (lo, hi))
        q0 = lo // s  # first phase-output row needed (floor; lo may be negative)
        q1 = (lo + length - 1) // s + 1
        pad_lo = w - 1 - q0
        pad_hi = (q1 - q0) + (w - 1) - input_spatial[a] - pad_lo
        window.append(w)
        pads.append((pad_lo, pad_hi))
        lengths.append(length)
        starts.append(lo - q0 * s)
    inner = ConvSpec(
        kernel_size=tuple(window),
        strides=(1,) * n,
        dilation=(1,) * n,
        crops=tuple(pads),
        groups=spec.groups,
        precision=spec.precision,
        algorithm="pad",
    )
    return _PhasePlan(
        n,
        spec.strides,
        spec.groups,
        tuple(window),
        spec.kernel_size,
        spec.dilation,
        tuple(lengths),
        tuple(starts),
        inner,
        tuple(_phase_classes(k, s, d, w) for k, s, d, w in zip(spec.kernel_size, spec.strides, spec.dilation, window)),
    )


def _phase_kernel_blocks(kernel, plan: _PhasePlan):
    """Keras kernel ``(*k, Og, G*Cg)`` -> combined kernel blocks ``(*w, Cg, G, *s, Og)``.

    Per dimension the taps are dilated (``d - 1`` zeros between them) and zero-extended to
    ``w * s``; tap ``m * s + r`` of that is phase ``r`` at window shift ``m``, so a reshape to
    ``(w, s)`` and a flip of the window axis place every tap: no scatter, exact.
    """
    n, g, s, w, ks = plan.n, plan.groups, plan.strides, plan.window, plan.kernel_size
    og, c_in = kernel.shape[n], kernel.shape[n + 1]
    cg = c_in // g
    src = jnp.transpose(kernel.reshape(*ks, og, g, cg), (*range(n), n + 2, n + 1, n))  # (*k, Cg, G, Og)
    config = [(0, w[a] * s[a] - _padding.dilated_size(ks[a], plan.dilation[a]), plan.dilation[a] - 1) for a in range(n)]
    dilated = lax.pad(src, jnp.zeros((), src.dtype), [*config, (0, 0, 0), (0, 0, 0), (0, 0, 0)])
    comb = dilated.reshape(*(v for a in range(n) for v in (w[a], s[a])), cg, g, og)
    comb = lax.rev(comb, tuple(range(0, 2 * n, 2)))  # window shift m -> window tap w - 1 - m
    perm = (*range(0, 2 * n, 2), 2 * n, 2 * n + 1, *range(1, 2 * n, 2), 2 * n + 2)
    return jnp.transpose(comb, perm)


def _phase_kernel(kernel, plan: _PhasePlan):
    """Keras kernel ``(*k, Og, G*Cg)`` -> combined kernel ``(*w, Cg, G*S*Og)`` (S = prod strides).

    Used as the kernel of the inner spec (its "Og" is ``Cg`` and its "C_in" is ``G*S*Og``).
    """
    blocks = _phase_kernel_blocks(kernel, plan)
    return blocks.reshape(*plan.window, blocks.shape[plan.n], -1)


def _phase_kernel_adjoint(comb, plan: _PhasePlan):
    """Adjoint of ``_phase_kernel``: combined-kernel gradient -> Keras kernel gradient."""
    n, g, s, w = plan.n, plan.groups, plan.strides, plan.window
    cg = comb.shape[n]
    og = comb.shape[n + 1] // (g * math.prod(s))
    comb = comb.reshape(*w, cg, g, *s, og)
    # (*w, Cg, G, *s, Og) -> (w1, s1, ..., wN, sN, Cg, G, Og)
    perm = (*(i for a in range(n) for i in (a, n + 2 + a)), n, n + 1, 2 * n + 2)
    comb = lax.rev(jnp.transpose(comb, perm), tuple(range(0, 2 * n, 2)))
    dilated = comb.reshape(*(w[a] * s[a] for a in range(n)), cg, g, og)
    ke = [_padding.dilated_size(plan.kernel_size[a], plan.dilation[a]) for a in range(n)]
    src = lax.slice(dilated, (0,) * (n + 3), (*ke, cg, g, og), (*plan.dilation, 1, 1, 1))  # (*k, Cg, G, Og)
    return jnp.transpose(src, (*range(n), n + 2, n + 1, n)).reshape(*plan.kernel_size, og, g * cg)


def _depth_to_space(out, plan: _PhasePlan):
    """``(N, *V, G*S*Og)`` phase outputs -> interleaved and cropped ``(N, *L, G*Og)``."""
    n, g, s = plan.n, plan.groups, plan.strides
    batch, v = out.shape[0], out.shape[1 : n + 1]
    og = out.shape[-1] // (g * math.prod(s))
    out = out.reshape(batch, *v, g, *s, og)
    perm = (0, *(i for a in range(n) for i in (1 + a, n + 2 + a)), n + 1, 2 * n + 2)
    out = jnp.transpose(out, perm).reshape(batch, *(v[a] * s[a] for a in range(n)), g * og)
    return lax.slice(
        out,
        (0, *plan.starts, 0),
        (batch, *(plan.starts[a] + plan.lengths[a] for a in range(n)), g * og),
    )


def _space_to_depth(y, plan: _PhasePlan, v):
    """Adjoint of ``_depth_to_space``: ``(N, *L, G*Og)`` -> ``(N, *V, G*S*Og)``."""
    n, g, s = plan.n, plan.groups, plan.strides
    batch = y.shape[0]
    og = y.shape[-1] // g
    config = [(0, 0, 0)]
    for a in range(n):
        config.append((plan.starts[a], v[a] * s[a] - plan.starts[a] - plan.lengths[a], 0))
    config.append((0, 0, 0))
    y = lax.pad(y, jnp.zeros((), y.dtype), config)
    y = y.reshape(batch, *(i for a in range(n) for i in (v[a], s[a])), g, og)
    perm = (0, *range(1, 2 * n, 2), 2 * n + 1, *range(2, 2 * n + 1, 2), 2 * n + 2)
    return jnp.transpose(y, perm).reshape(batch, *v, g * math.prod(s) * og)


def _phase_rows(plan: _PhasePlan):
    """Phase-output spatial shape ``V``: rows of every phase needed to cover the output."""
    return tuple(-(-(plan.starts[a] + plan.lengths[a]) // plan.strides[a]) for a in range(plan.n))


def _use_exact(plan: _PhasePlan, cg: int, og: int, exact: bool | None, slot: str) -> bool:
    """Whether the phase form runs per class of phases; ``exact=None`` applies the measured rule.

    Exact forms skip the structural zeros of a kernel size that is not a multiple of the
    stride, at the price of one convolution (forward) or narrower products (kernel gradient)
    per class combination. Measured on the 2-core CPU (ms, common window vs exact):

    * kernel gradient ("k"): always at least as fast, so always used (at most
      ``EXACT_MAX_CLASSES`` combinations): vae3d_k3 11 vs 5.6, a 128x128x512 -> 256 k3 s2
      bfloat16 layer 331 vs 202, bigvgan k11 s5 3.0 vs 2.6;
    * forward ("y"): only for 1-D and 2-D with at least ``EXACT_MIN_CHANNELS`` channels, where
      the convolutions are compute-bound: the 128x128 bfloat16 layer 422 vs 263, 64x64 in
      float32 99 vs 63, bigvgan 2.2 vs 1.8; but 3-D at 32 or 64 channels (8 convolutions)
      7-11 vs 8-10 and 20 vs 22.5, and 16-channel groups 0.3 vs 0.6-1.0.
    """
    combos = math.prod(len(c) for c in plan.classes)
    if exact is not None:
        return exact and combos > 1
    if not 1 < combos <= EXACT_MAX_CLASSES:
        return False
    return slot == "k" or (plan.n <= 2 and min(cg, og) >= EXACT_MIN_CHANNELS)


def _over_classes(plan: _PhasePlan, block, phase_axis: int):
    """``block(combo)`` for every combination of one phase class per dimension, concatenated
    along the phase axes ``phase_axis + a``: the classes of a dimension are consecutive runs
    of phases, so this reassembles all ``s`` phases in order."""

    def build(a, chosen):
        if a == plan.n:
            return block(tuple(chosen))
        parts = [build(a + 1, [*chosen, c]) for c in plan.classes[a]]
        return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=phase_axis + a)

    return build(0, [])


def _class_shape(combo):
    """Phases per dimension and window taps per dimension of one class combination."""
    return tuple(r1 - r0 for r0, r1, _, _ in combo), tuple(t1 - t0 for _, _, t0, t1 in combo)


def _y_phase(x, kernel, spec: ConvSpec, out_dtype, exact: bool | None = None):
    """Sub-pixel (phase) decomposition as ONE stride-1 convolution (or one per phase class).

    Every output phase (position modulo the stride) is a stride-1 correlation of the input
    with the kernel taps that land on that phase. All phases become output channels of one
    convolution over a common window; a depth-to-space interleave and a crop give the
    result. No zero is inserted and no ``lhs_dilation`` is used.

    When the kernel size is not a multiple of the stride, phases have different numbers of
    taps and the common window multiplies structural zeros (16/9 of the work for k3 s2 in
    2-D). The exact form runs one convolution per combination of phase classes
    (``_phase_classes``), each over only its own taps, and concatenates their phases; it is
    chosen for wide channels (``_use_exact``), where the convolutions are compute-bound.
    """
    n = spec.ndim
    plan = _phase_plan(spec, x.shape[1 : n + 1])
    cg, og = x.shape[-1] // spec.groups, kernel.shape[n]
    if not _use_exact(plan, cg, og, exact, "y"):
        return _depth_to_space(x_from_yk(x, _phase_kernel(kernel, plan), plan.inner, out_dtype), plan)
    blocks = _phase_kernel_blocks(kernel, plan)  # (*w, Cg, G, *s, Og)
    batch, g, v = x.shape[0], spec.groups, _phase_rows(plan)

    def block(combo):
        phases, widths = _class_shape(combo)
        if 0 in widths:  # phases no tap lands on
            return jnp.zeros((batch, *v, g, *phases, og), out_dtype)
        index = (*(slice(t0, t1) for *_, t0, t1 in combo), slice(None), slice(None))
        sub = blocks[(*index, *(slice(r0, r1) for r0, r1, *_ in combo))].reshape(*widths, cg, -1)
        crops = tuple(
            (lo - t0, hi - (w - t1)) for (lo, hi), w, (*_, t0, t1) in zip(plan.inner.crops, plan.window, combo)
        )
        inner = dataclasses.replace(plan.inner, kernel_size=widths, crops=crops)
        return x_from_yk(x, sub, inner, out_dtype).reshape(batch, *v, g, *phases, og)

    return _depth_to_space(_over_classes(plan, block, n + 2).reshape(batch, *v, -1), plan)


def _k_phase(x, y, spec: ConvSpec, out_dtype, exact: bool | None = None):
    """Kernel gradient in phase form as one matrix product per window tap.

    ``dKc[t] = sum over (n, v) of xpad[n, v + t, :] (x) y_p[n, v, :]`` for each of the
    ``prod(w)`` taps of the phase window: plain (grouped: batched) matrix products with the
    batch and every spatial position as the contraction, which XLA runs at matmul speed,
    instead of a convolution whose window is as large as the input. In the exact form
    (``_y_phase``) each tap's product only covers the phases that use the tap.
    """
    n = spec.ndim
    plan = _phase_plan(spec, x.shape[1 : n + 1])
    v = _phase_rows(plan)
    y_p = _space_to_depth(y, plan, v)  # (N, *V, G*S*Og)
    g = spec.groups
    batch, c_in = x.shape[0], x.shape[-1]
    cg = c_in // g
    og = y.shape[-1] // g
    xpad = _pad_spatial(x, plan.inner.crops)  # (N, *(V + w - 1), C_in)
    rows = batch * math.prod(v)

    def products(taps, rhs):
        """(rows, G, P) -> (*taps, G, Cg, P): one product per window tap."""
        out = []
        for t in itertools.product(*taps):
            window = lax.slice(xpad, (0, *t, 0), (batch, *(t[a] + v[a] for a in range(n)), c_in))
            # (rows, G, Cg) x (rows, G, P) -> (G, Cg, P)
            out.append(_dot(window.reshape(rows, g, cg), rhs, (((0,), (0,)), ((1,), (1,))), spec, out_dtype))
        return jnp.stack(out).reshape(*(len(t) for t in taps), g, cg, -1)

    if not _use_exact(plan, cg, og, exact, "k"):
        comb = products([range(w) for w in plan.window], y_p.reshape(rows, g, -1))
    else:
        y_b = y_p.reshape(batch, *v, g, *plan.strides, og)

        def block(combo):
            phases, widths = _class_shape(combo)
            if 0 in widths:
                return jnp.zeros((*plan.window, g, cg, *phases, og), _accumulation_dtype(x, y, out_dtype)[1])
            rhs = y_b[(slice(None),) * (n + 2) + tuple(slice(r0, r1) for r0, r1, *_ in combo)]
            taps = products([range(t0, t1) for *_, t0, t1 in combo], rhs.reshape(rows, g, -1))
            taps = taps.reshape(*widths, g, cg, *phases, og)
            config = [(t0, w - t1, 0) for w, (*_, t0, t1) in zip(plan.window, combo)]
            return lax.pad(taps, jnp.zeros((), taps.dtype), [*config, *[(0, 0, 0)] * (n + 3)])

        comb = _over_classes(plan, block, n + 2).reshape(*plan.window, g, cg, -1)
    comb = jnp.moveaxis(comb, n, n + 1).reshape(*plan.window, cg, -1)  # (*w, Cg, G*S*Og)
    return _phase_kernel_adjoint(_finish(comb, out_dtype), plan)


def _y_dot(x, kernel, spec: ConvSpec, out_dtype):
    """The phase form as matrix products, one per window tap of each phase class.

    ``y_p[n, v, phases of a class] = sum over its taps t of xpad[n, v + t, :] @ Kc[t]``: the
    same exact arithmetic as ``_y_phase`` with every class (no structural zeros), written as
    plain (grouped: batched) matrix products summed in the accumulation dtype. XLA:CPU runs
    bfloat16 matrix products with float32 accumulation up to twice as fast as its bfloat16
    convolutions, see ``choose_algorithm``.
    """
    n = spec.ndim
    plan = _phase_plan(spec, x.shape[1 : n + 1])
    v = _phase_rows(plan)
    g = spec.groups
    blocks = _phase_kernel_blocks(kernel, plan)  # (*w, Cg, G, *s, Og)
    batch, c_in, og = x.shape[0], x.shape[-1], kernel.shape[n]
    cg = c_in // g
    rows = batch * math.prod(v)
    xpad = _pad_spatial(x, plan.inner.crops)  # (N, *(V + w - 1), C_in)

    def block(combo):
        phases, widths = _class_shape(combo)
        if 0 in widths:  # phases no tap lands on
            return jnp.zeros((batch, *v, g, *phases, og), out_dtype)
        total = None
        for t in itertools.product(*(range(t0, t1) for *_, t0, t1 in combo)):
            window = lax.slice(xpad, (0, *t, 0), (batch, *(t[a] + v[a] for a in range(n)), c_in))
            taps = blocks[(*t, slice(None), slice(None), *(slice(r0, r1) for r0, r1, *_ in combo))]
            # (rows, G, Cg) x (Cg, G, Pc*Og) -> (G, rows, Pc*Og)
            part = _dot(
                window.reshape(rows, g, cg), taps.reshape(cg, g, -1), (((2,), (0,)), ((1,), (1,))), spec, out_dtype
            )
            total = part if total is None else total + part
        return _finish(jnp.moveaxis(total, 0, 1), out_dtype).reshape(batch, *v, g, *phases, og)

    return _depth_to_space(_over_classes(plan, block, n + 2).reshape(batch, *v, -1), plan)


def _x_dot(y, kernel, spec: ConvSpec, out_dtype):
    """Input gradient as matrix products, one per kernel tap ``j``:
    ``dx[n, a] = sum over j of y_full[n, a * s + j * d] @ K[j]`` (strided slices of the
    cotangent padded back to the full extent; no wasted work, see ``_y_dot``)."""
    n = spec.ndim
    g = spec.groups
    batch, c_out = y.shape[0], y.shape[-1]
    spatial = spec.input_spatial(y.shape[1 : n + 1])
    og, c_in = kernel.shape[n], kernel.shape[n + 1]
    rows = batch * math.prod(spatial)
    y_full = _pad_spatial(y, spec.crops)
    total = None
    for j in itertools.product(*(range(k) for k in spec.kernel_size)):
        start = (0, *(j[a] * spec.dilation[a] for a in range(n)), 0)
        limit = (batch, *(start[1 + a] + (spatial[a] - 1) * spec.strides[a] + 1 for a in range(n)), c_out)
        taps = lax.slice(y_full, start, limit, (1, *spec.strides, 1))
        # (rows, G, Og) x (Og, G, Cg) -> (G, rows, Cg)
        part = _dot(
            taps.reshape(rows, g, og), kernel[j].reshape(og, g, -1), (((2,), (0,)), ((1,), (1,))), spec, out_dtype
        )
        total = part if total is None else total + part
    return _finish(jnp.moveaxis(total, 0, 1), out_dtype).reshape(batch, *spatial, c_in)


_FORWARD = {"dilate": _y_dilate, "pad": _y_pad, "phase": _y_phase, "dot": _y_dot}

#: ``"auto"`` on CPU picks ``"dot"`` only for kernels of at most this many taps (one matrix
#: product per tap: compile time and partial sums grow with it) ...
DOT_MAX_TAPS = 64
#: ... and inputs of at least this many elements (smaller problems are overhead-bound).
DOT_MIN_ELEMENTS = 32768


def _exact_classes(spec: ConvSpec) -> bool:
    """Whether the phase classes hold only real taps (each class's window is fully used)."""
    for k, s, d in zip(spec.kernel_size, spec.strides, spec.dilation):
        classes = _phase_classes(k, s, d, _phase_window(k, s, d))
        if sum((r1 - r0) * (t1 - t0) for r0, r1, t0, t1 in classes) != k:
            return False
    return True


def choose_algorithm(spec: ConvSpec, dtype=None, platform: str | None = None, input_shape=None) -> str:
    """The algorithm ``algorithm="auto"`` selects, from static facts only.

    Args:
      spec: the op's spec (an explicit ``algorithm`` is returned as it is).
      dtype: the dtype the slot computes in (``None``: not low precision).
      platform: the lowering platform (``"cpu"`` enables the CPU-only choice below).
      input_shape: the op's input shape ``(N, *spatial, C_in)``, for the size bound.

    * On CPU, for bfloat16: ``"dot"``, the exact phase form written as one matrix product
      per kernel tap (forward, input and kernel gradients alike), if the kernel has at most
      ``DOT_MAX_TAPS`` taps, the input at least ``DOT_MIN_ELEMENTS`` elements and the phase
      classes hold no structural zeros (a dilation sharing a factor with the stride leaves
      holes in them). XLA:CPU's bfloat16 convolutions run at the float32 rate at best, while
      its bfloat16 matrix products accumulate in float32 at up to twice that rate (measured
      264 vs 140 GF/s with and without float32 accumulation). Measured on the 2-core CPU (ms,
      convolution vs products): a 128x128x512 -> 256 k3 s2 layer (vae2d_bf16) forward 274
      vs 208 and input gradient 505 vs 239, HiFi-GAN's k16 s8 forward 31 vs 17, unet2d 4.6
      vs 2.3. Not for float32 or float16 (no such hardware rate): 1-D/2-D convolutions are as
      fast or faster there (dcgan2d forward 29 vs 57), and for 3-D the products win each
      stage alone (vae3d_k3 input gradient 8.8 vs 6.8) but not a whole training step (23
      vs 26 ms), at 4x the compile time.
    * Stride 1 in every dimension: ``"pad"``, which is then a plain padded convolution
      with the flipped kernel (nothing to zero-insert).
    * Otherwise ``"phase"``: one stride-1 convolution over all output phases plus an
      interleave. It never multiplies inserted zeros (``lhs_dilation`` does: ``prod(strides)``
      times the work, and XLA:CPU runs 3-D ``lhs_dilation`` as a generic loop), and it is the
      only form XLA:CPU never aborts on. When a kernel size is not a multiple of the stride
      its exact variant skips the structural zeros (``_use_exact``).

    GPU and TPU get ``"pad"`` / ``"phase"``: they run stride-1 convolutions best (cuDNN).
    """
    if spec.algorithm != "auto":
        return spec.algorithm
    if platform == "cpu" and math.prod(spec.kernel_size) <= DOT_MAX_TAPS and _exact_classes(spec):
        if dtype is not None and np.dtype(dtype) == np.dtype(jnp.bfloat16) and input_shape is not None:
            batch = input_shape[0] if isinstance(input_shape[0], int) else DOT_MIN_ELEMENTS  # symbolic batch
            if batch * math.prod(input_shape[1:]) >= DOT_MIN_ELEMENTS:
                return "dot"
    if all(s == 1 for s in spec.strides):
        return "pad"
    return "phase"


def y_from_xk(x, kernel, spec: ConvSpec, out_dtype, platform: str | None = None):
    """The transposed convolution: ``(N, *i, C_in), (*k, Og, C_in) -> (N, *L, G*Og)``."""
    algorithm = choose_algorithm(spec, jnp.result_type(x.dtype, kernel.dtype), platform, x.shape)
    return _FORWARD[algorithm](x, kernel, spec, out_dtype)


def x_from_yk(y, kernel, spec: ConvSpec, out_dtype, platform: str | None = None):
    """Input gradient: ``(N, *L, G*Og), (*k, Og, C_in) -> (N, *i, C_in)``.

    The direct strided convolution (``_x_direct``): it does no wasted work (the stride skips
    what zero insertion would create) and measured faster than a phase form (space-to-depth,
    then a stride-1 transposed convolution) on the workloads, e.g. dcgan2d 38 vs 183 ms and
    vae3d_k3 12 vs 46 ms on the 2-core CPU. Where ``choose_algorithm`` picks ``"dot"``, the
    same sum as one matrix product per kernel tap (``_x_dot``).
    """
    x_shape = (y.shape[0], *spec.input_spatial(y.shape[1 : spec.ndim + 1]), kernel.shape[-1])
    if choose_algorithm(spec, jnp.result_type(y.dtype, kernel.dtype), platform, x_shape) == "dot":
        return _x_dot(y, kernel, spec, out_dtype)
    return _x_direct(y, kernel, spec, out_dtype)


def k_from_xy(x, y, spec: ConvSpec, out_dtype, platform: str | None = None):
    """Kernel gradient: ``(N, *i, C_in), (N, *L, G*Og) -> (*k, Og, C_in)``.

    Phase form (``_k_phase``: one matrix product per tap of the phase window, then the
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
        return _k_phase(x, y, spec, out_dtype)
    if algorithm == "phase" and spec.groups == 1 and x.shape[-1] >= 32:
        plan = _phase_plan(spec, x.shape[1 : spec.ndim + 1])
        batch = x.shape[0] if isinstance(x.shape[0], int) else 256  # symbolic (exported) batch: assume large
        rows = batch * math.prod(_phase_rows(plan))
        columns = math.prod(spec.strides) * y.shape[-1]
        if rows >= 256 and rows * x.shape[-1] >= 32768 and columns >= 128:
            return _k_phase(x, y, spec, out_dtype)
    return _k_direct(x, y, spec, out_dtype)


# ----------------------------------------------------------------------------------------
# Input gradient (x from y and K)
# ----------------------------------------------------------------------------------------


def _x_direct(y, kernel, spec: ConvSpec, out_dtype):
    """Input gradient as a strided forward convolution with the kernel as it is."""
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


def _k_direct(x, y, spec: ConvSpec, out_dtype):
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
