"""Phase (sub-pixel) geometry: the output phases, their classes, and the kernel and data
rearrangements between the phase form and the op's layout.

In phase form the op is ``y = D2S(conv(x, Kc))``: a stride-1, undilated convolution of the
input with a combined kernel ``Kc = scatter(K)`` whose output channels hold all
``prod(strides)`` phases, followed by a depth-to-space interleave and a crop (``D2S``).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax.numpy as jnp
from jax import lax

from jaxconvt import _padding
from jaxconvt._spec import ConvSpec


def phase_window(k: int, s: int, d: int) -> int:
    """Common window of the phase form: taps ``j`` sit at input shift ``(j * d) // s``."""
    return (k - 1) * d // s + 1


def phase_waste(kernel_spatial, spec: ConvSpec) -> float:
    """Multiply-adds of the phase algorithm divided by the useful ones (>= 1)."""
    ratio = 1.0
    for k, s, d in zip(kernel_spatial, spec.strides, spec.dilation):
        ratio *= phase_window(k, s, d) * s / k
    return ratio


@functools.lru_cache(maxsize=1024)
def phase_classes(k: int, s: int, d: int, w: int) -> tuple[tuple[int, int, int, int], ...]:
    """Runs of consecutive phases of one dimension that use the same taps of the phase window.

    Phase ``r`` holds the kernel taps ``j`` with ``(j * d) mod s == r``, at window shifts
    ``(j * d) // s`` (window tap ``w - 1 - shift`` after the flip). Returns
    ``(r_lo, r_hi, t_lo, t_hi)`` per run: phases ``r_lo .. r_hi - 1`` use window taps
    ``t_lo .. t_hi - 1`` and no others (an empty range for phases without taps). For ``k``
    a multiple of ``s`` this is one run over everything; for k3 s2 it is phase 0 with two
    taps and phase 1 with one. When some phase's shifts are not contiguous (a dilation that
    shares a factor with the stride) the whole dimension is one run over the full window.
    """
    shifts_of: dict[int, list[int]] = {}
    for j in range(k):  # O(k): only the phases that hold a tap are visited, whatever the stride
        shifts_of.setdefault((j * d) % s, []).append((j * d) // s)
    runs: list[tuple[int, int, int, int]] = []

    def extend(r0: int, r1: int, taps: tuple[int, int]) -> None:
        if runs and runs[-1][1] == r0 and runs[-1][2:] == taps:
            runs[-1] = (runs[-1][0], r1, *taps)
        else:
            runs.append((r0, r1, *taps))

    done = 0
    for r in sorted(shifts_of):
        shifts = shifts_of[r]  # ascending, as j ascends
        if shifts != list(range(shifts[0], shifts[-1] + 1)):
            return ((0, s, 0, w),)
        if r > done:
            extend(done, r, (0, 0))  # phases without taps
        extend(r, r + 1, (w - 1 - shifts[-1], w - shifts[0]))
        done = r + 1
    if done < s:
        extend(done, s, (0, 0))
    return tuple(runs)


#: Most class combinations the exact phase form (``use_exact``) runs as separate products.
EXACT_MAX_CLASSES = 8


#: Fewest input and output channels per group for the exact forward (see ``use_exact``).
EXACT_MIN_CHANNELS = 64


@dataclasses.dataclass(frozen=True)
class PhasePlan:
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
    classes: tuple[tuple[tuple[int, int, int, int], ...], ...]  # per dimension, see phase_classes


@functools.lru_cache(maxsize=512)
def phase_plan(spec: ConvSpec, input_spatial: tuple[int, ...]) -> PhasePlan:
    n = spec.ndim
    window, pads, lengths, starts = [], [], [], []
    for a in range(n):
        k, s, d = spec.kernel_size[a], spec.strides[a], spec.dilation[a]
        w = phase_window(k, s, d)
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
    return PhasePlan(
        n,
        spec.strides,
        spec.groups,
        tuple(window),
        spec.kernel_size,
        spec.dilation,
        tuple(lengths),
        tuple(starts),
        inner,
        tuple(phase_classes(k, s, d, w) for k, s, d, w in zip(spec.kernel_size, spec.strides, spec.dilation, window)),
    )


def kernel_blocks(kernel, plan: PhasePlan):
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


def combined_kernel(kernel, plan: PhasePlan):
    """Keras kernel ``(*k, Og, G*Cg)`` -> combined kernel ``(*w, Cg, G*S*Og)`` (S = prod strides).

    Used as the kernel of the inner spec (its "Og" is ``Cg`` and its "C_in" is ``G*S*Og``).
    """
    blocks = kernel_blocks(kernel, plan)
    return blocks.reshape(*plan.window, blocks.shape[plan.n], -1)


def combined_kernel_adjoint(comb, plan: PhasePlan):
    """Adjoint of ``combined_kernel``: combined-kernel gradient -> Keras kernel gradient."""
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


def depth_to_space(out, plan: PhasePlan):
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


def space_to_depth(y, plan: PhasePlan, v):
    """Adjoint of ``depth_to_space``: ``(N, *L, G*Og)`` -> ``(N, *V, G*S*Og)``."""
    grid = jnp.transpose(_phase_grid(y, plan, v), _rows_first(plan.n))
    return grid.reshape(y.shape[0], *v, y.shape[-1] * math.prod(plan.strides))


def _phase_grid(y, plan: PhasePlan, v):
    """``(N, *L, G*Og)`` -> ``(N, V1, s1, ..., Vn, sn, G, Og)``: ``y`` zero-extended to the phase
    grid (row ``v``, phase ``r`` holds ``y[v*s + r - start]``), split into rows and phases."""
    n, g, s = plan.n, plan.groups, plan.strides
    config = [(0, 0, 0)]
    for a in range(n):
        config.append((plan.starts[a], v[a] * s[a] - plan.starts[a] - plan.lengths[a], 0))
    config.append((0, 0, 0))
    y = lax.pad(y, jnp.zeros((), y.dtype), config)
    return y.reshape(y.shape[0], *(i for a in range(n) for i in (v[a], s[a])), g, y.shape[-1] // g)


def _rows_first(n: int) -> tuple[int, ...]:
    """The permutation ``(N, V1, s1, ..., Vn, sn, G, Og)`` -> ``(N, *V, G, *s, Og)``."""
    return (0, *range(1, 2 * n, 2), 2 * n + 1, *range(2, 2 * n + 1, 2), 2 * n + 2)


def phase_slab(y, plan: PhasePlan, v, phases):
    """Phases ``r0 .. r1 - 1`` per dimension (``phases``: ``(r0, r1)`` per dimension) of
    ``space_to_depth``: ``(N, *L, G*Og)`` -> ``(N, *V, G, *(r1 - r0), Og)``, read from ``y``
    without the whole space-to-depth array (one copy of just these phases)."""
    n, g, s = plan.n, plan.groups, plan.strides
    batch = y.shape[0]
    og = y.shape[-1] // g
    if all(r1 - r0 == 1 for r0, r1 in phases):
        # one phase per dimension: a strided slice of y, zero-extended to V rows (the phase
        # grid's row v holds y[v*s + r - start]), so no padded copy of all of y is made
        start, limit, strides, config = [0], [batch], [1], [(0, 0, 0)]
        for a in range(n):
            off = phases[a][0] - plan.starts[a]
            lo = max(0, -(off // s[a]))
            hi = min(v[a] - 1, (y.shape[1 + a] - 1 - off) // s[a])
            if hi < lo:  # no row of this phase lies inside y
                return jnp.zeros((batch, *v, g, *(1,) * n, og), y.dtype)
            start.append(lo * s[a] + off)
            limit.append(hi * s[a] + off + 1)
            strides.append(s[a])
            config.append((lo, v[a] - 1 - hi, 0))
        y = lax.slice(y, (*start, 0), (*limit, y.shape[-1]), (*strides, 1))
        y = lax.pad(y, jnp.zeros((), y.dtype), [*config, (0, 0, 0)])
        return y.reshape(batch, *v, g, *(1,) * n, og)
    start = (0, *(i for a in range(n) for i in (0, phases[a][0])), 0, 0)
    limit = (batch, *(i for a in range(n) for i in (v[a], phases[a][1])), g, og)
    return jnp.transpose(lax.slice(_phase_grid(y, plan, v), start, limit), _rows_first(n))


def phase_rows(plan: PhasePlan):
    """Phase-output spatial shape ``V``: rows of every phase needed to cover the output."""
    return tuple(-(-(plan.starts[a] + plan.lengths[a]) // plan.strides[a]) for a in range(plan.n))


def use_exact(plan: PhasePlan, cg: int, og: int, exact: bool | None, slot: str) -> bool:
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


def over_classes(plan: PhasePlan, block, phase_axis: int):
    """``block(combo)`` for every combination of one phase class per dimension, concatenated
    along the phase axes ``phase_axis + a``: the classes of a dimension are consecutive runs
    of phases, so this reassembles all ``s`` phases in order."""

    def build(a, chosen):
        if a == plan.n:
            return block(tuple(chosen))
        parts = [build(a + 1, [*chosen, c]) for c in plan.classes[a]]
        return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=phase_axis + a)

    return build(0, [])


def class_shape(combo):
    """Phases per dimension and window taps per dimension of one class combination."""
    return tuple(r1 - r0 for r0, r1, _, _ in combo), tuple(t1 - t0 for _, _, t0, t1 in combo)


def structural_zeros(plan: PhasePlan, exact: bool) -> bool:
    """Whether the phase form multiplies structural zeros of the combined kernel (with the
    input): the common window does wherever a phase lacks a window tap, the exact form only
    where a class has holes (``phase_classes`` then falls back to the full window)."""
    for k, s, w, classes in zip(plan.kernel_size, plan.strides, plan.window, plan.classes):
        used = sum((r1 - r0) * (t1 - t0) for r0, r1, t0, t1 in classes) if exact else s * w
        if used != k:
            return True
    return False


def exact_classes(spec: ConvSpec) -> bool:
    """Whether the phase classes hold only real taps (each class's window is fully used)."""
    for k, s, d in zip(spec.kernel_size, spec.strides, spec.dilation):
        classes = phase_classes(k, s, d, phase_window(k, s, d))
        if sum((r1 - r0) * (t1 - t0) for r0, r1, t0, t1 in classes) != k:
            return False
    return True
