"""Lowerings of the three slots of the transposed-convolution trilinear form to ``lax``.

The op is one trilinear form ``<y, T(x, K)>`` = sum over ``x[n, a, c] * K[j, o, c] *
y[n, a*s + j*d - lo, o]``. Each slot computes the derivative of that form with respect to
one of ``x`` (input), ``K`` (kernel), ``y`` (output) from the other two:

* slot ``"y"`` — the transposed convolution itself (``forward.py``);
* slot ``"x"`` — the input gradient, a strided forward convolution (``input_grad.py``);
* slot ``"k"`` — the kernel gradient (``kernel_grad.py``).

``lower`` is the one entry point: it picks a form per slot from static facts (``rules.py``),
splits groups on CPU, and guards the form against non-finite values (below). ``phase.py``
holds the sub-pixel geometry the forms share, ``scatter.py`` the forms computed straight
from the definition (the exact fallbacks, and on CPU the tap loops some slots run as their
fast form), ``_ops.py`` the common ``lax`` calls. All arrays are channels-last:
data ``(N, *spatial, C)``, kernel ``(*k, C_out // G, C_in)``.

Non-finite values. The fast forms multiply zeros that are no term of the definition:
padding (the borders of a convolution) and, in the phase form, the structural zeros of the
combined kernel where a phase lacks a tap. ``0 * inf`` is ``nan``, so a non-finite value
there would spread to outputs the definition never sends it to. Each form therefore names
the operands whose non-finite values can meet such a zero (its *hazards*, from static
shapes); when there are any, ``lower`` runs the form under ``lax.cond`` on "every hazard
operand is finite" and otherwise the exact tap-by-tap form of ``scatter.py`` (on CPU with
split groups: every group's form outside the conditional, and one exact form for all groups
inside it). The test is one reduction over each hazard operand (a kernel, often): finite
inputs pay only that.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax.numpy as jnp
from jax import lax

from jaxconvt._lowering import forward, gemm, input_grad, kernel_grad, rules, scatter
from jaxconvt._lowering.phase import phase_plan, phase_rows, phase_waste, structural_zeros, use_exact
from jaxconvt._lowering.rules import MAX_SPLIT_GROUPS, choose_algorithm
from jaxconvt._spec import ConvSpec

__all__ = ["lower", "choose", "Choice", "choose_algorithm", "phase_waste", "MAX_SPLIT_GROUPS"]

#: The exact forms ``lower`` falls back to when a hazard operand is not finite: the tap loops of
#: ``scatter.py`` (one product per tap, no padding or structural zero ever multiplied).
_EXACT = {"y": scatter.y_scatter, "x": scatter.x_scatter, "k": scatter.k_scatter}


@dataclasses.dataclass(frozen=True)
class Choice:
    """The form one slot lowers with.

    Attributes:
      name: the form, for tests and the design notes (e.g. ``"phase"``, ``"direct"``).
      form: ``form(a, b, spec, out_dtype)`` computes the slot.
      hazards: per operand, whether a non-finite value in it can meet a zero the form
        multiplies that is no term of the definition (then ``lower`` guards the form).
    """

    name: str
    form: Callable
    hazards: tuple[bool, bool]


def _positive(pads) -> bool:
    return any(lo > 0 or hi > 0 for lo, hi in pads)


def _input_spatial(slot: str, a_shape, spec: ConvSpec) -> tuple[int, ...]:
    n = spec.ndim
    return spec.input_spatial(a_shape[1 : n + 1]) if slot == "x" else tuple(a_shape[1 : n + 1])


def effective_spec(spec: ConvSpec, input_spatial) -> ConvSpec:
    """The stride of a dimension with one input position changes nothing (only ``a = 0``
    scatters): it is set to 1 so no form's size or trace time depends on it."""
    strides = tuple(1 if i == 1 else s for i, s in zip(input_spatial, spec.strides))
    return spec if strides == spec.strides else dataclasses.replace(spec, strides=strides)


def _choose_y(x_shape, k_shape, dtype, spec: ConvSpec, platform) -> Choice:
    algorithm = choose_algorithm(spec, dtype, platform, x_shape)
    n = spec.ndim
    if algorithm == "scatter":
        return Choice("scatter", scatter.y_scatter, (False, False))
    if spec.algorithm in ("dilate", "pad"):  # explicit zero insertion: documented to multiply inserted zeros
        return Choice(algorithm, forward.FORWARD[algorithm], (False, False))
    if algorithm == "pad":  # stride 1: a padded convolution
        ke = [(k - 1) * d + 1 for k, d in zip(spec.kernel_size, spec.dilation)]
        return Choice(
            "pad", forward.y_pad, (False, _positive([(e - 1 - lo, e - 1 - hi) for e, (lo, hi) in zip(ke, spec.crops)]))
        )
    if algorithm == "gemm" or (
        algorithm == "phase"
        and spec.algorithm == "auto"
        and platform == "cpu"
        and rules.forward_col2im(spec, x_shape, k_shape)
    ):
        return Choice("gemm", gemm.y_col2im, (False, False))  # every product is a term of the definition
    if (
        spec.algorithm == "auto"
        and platform == "cpu"
        and algorithm in ("phase", "dot")
        and rules.forward_tap_loop(spec, x_shape, k_shape)
    ):
        return Choice("scatter", scatter.y_scatter, (False, False))  # every product is a term of the definition
    plan = phase_plan(spec, tuple(x_shape[1 : n + 1]))
    borders = _positive(plan.inner.crops)
    if algorithm == "dot":  # the rows that read padding are selected away: the borders are no hazard
        return Choice("dot", forward.y_dot, (structural_zeros(plan, True), False))
    exact = use_exact(plan, x_shape[-1] // spec.groups, k_shape[n], None, "y")
    return Choice("phase", forward.y_phase, (structural_zeros(plan, exact), borders))


def _choose_x(y_shape, k_shape, dtype, spec: ConvSpec, platform) -> Choice:
    x_shape = (y_shape[0], *spec.input_spatial(y_shape[1 : spec.ndim + 1]), k_shape[-1])
    hazards = (False, _positive(spec.crops))  # the cotangent's padding (positive crops) meets the kernel
    algorithm = choose_algorithm(spec, dtype, platform, x_shape)
    if (
        spec.algorithm == "auto"
        and platform == "cpu"
        and algorithm in ("dot", "phase")  # strided (the loops' rules exclude stride 1: "pad")
        and rules.input_grad_tap_loop(spec, x_shape, k_shape, dtype)
    ):
        # every product is a term of the definition; in 3-D without a padded copy of the cotangent
        form = functools.partial(scatter.x_scatter, in_place=spec.ndim == 3)
        return Choice("scatter", form, (False, False))
    if algorithm == "dot":  # the rows that read cropped-away positions are selected away: no hazard
        return Choice("dot", input_grad.x_dot, (False, False))
    if algorithm == "gemm" or (
        spec.algorithm == "auto" and platform == "cpu" and rules.input_grad_im2col(spec, x_shape, k_shape)
    ):
        return Choice("gemm", gemm.x_im2col, hazards)
    return Choice("direct", input_grad.x_direct, hazards)


def _choose_k(x_shape, y_shape, dtype, spec: ConvSpec, platform) -> Choice:
    n = spec.ndim
    algorithm = choose_algorithm(spec, dtype, platform, x_shape)
    if algorithm == "gemm" or (
        spec.algorithm == "auto"
        and algorithm in ("phase", "pad")
        and platform == "cpu"
        and rules.kernel_grad_im2col(spec, x_shape, y_shape)
    ):
        return Choice("gemm", gemm.k_im2col, (_positive(spec.crops), False))  # the cotangent's padding meets the input
    if (
        spec.algorithm == "auto"
        and algorithm == "phase"
        and platform == "cpu"
        and rules.kernel_grad_tap_loop(spec, x_shape, y_shape, dtype)
    ):
        return Choice("scatter", scatter.k_scatter, (False, False))
    if algorithm in ("dot", "phase") and rules.kernel_gradient_in_phase_form(spec, x_shape, y_shape, algorithm):
        plan = phase_plan(spec, tuple(x_shape[1 : n + 1]))
        v = phase_rows(plan)
        # the space-to-depth padding of the cotangent meets the input; the input's padding meets the cotangent
        s2d = _positive((st, vv * s - st - ln) for st, vv, s, ln in zip(plan.starts, v, plan.strides, plan.lengths))
        return Choice("phase", kernel_grad.k_phase, (s2d, _positive(plan.inner.crops)))
    return Choice("direct", kernel_grad.k_direct, (_positive(spec.crops), False))


_CHOOSERS = {"y": _choose_y, "x": _choose_x, "k": _choose_k}


def choose(slot: str, a_shape, b_shape, dtype, spec: ConvSpec, platform: str | None = None) -> Choice:
    """The form ``lower`` uses for ``slot`` with operands of these shapes (after
    ``effective_spec``)."""
    return _CHOOSERS[slot](tuple(a_shape), tuple(b_shape), dtype, spec, platform)


def _all_finite(arrays):
    """Whether every element of every array is finite, as ``isfinite(sum(a * 0))``: ``inf * 0``
    and ``nan * 0`` are ``nan``, finite values add up to exactly 0, and a plain sum vectorises
    (5x faster on XLA:CPU than ``all(isfinite(a))``: 9.6 vs 52 ms over a 168 MB kernel)."""
    total = None
    for arr in arrays:
        part = jnp.sum(arr * jnp.zeros((), arr.dtype))
        total = part if total is None else total + part
    return jnp.isfinite(total)


def _per_group(form, a, b, spec: ConvSpec, out_dtype):
    """Every group as its own ungrouped call, concatenated on the channel axis.

    In all three slots both operands and the result keep their groups as contiguous blocks of
    the last axis, so slicing both operands per group and concatenating is exact. XLA:CPU runs
    ``feature_group_count`` convolutions on a slow generic path: measured 2-4x faster split
    (grouped2d 3.0 -> 1.4 ms forward, per-example kernels 102 -> 23 ms input gradient).
    """
    g = spec.groups
    inner = dataclasses.replace(spec, groups=1)
    ca, cb = a.shape[-1] // g, b.shape[-1] // g
    parts = [form(a[..., i * ca : (i + 1) * ca], b[..., i * cb : (i + 1) * cb], inner, out_dtype) for i in range(g)]
    return jnp.concatenate(parts, axis=-1)


def lower(slot: str, a, b, spec: ConvSpec, out_dtype, platform: str | None = None):
    """The slot computed from its two operands (see ``_primitive``: ``y`` from ``(x, K)``,
    ``x`` from ``(y, K)``, ``k`` from ``(x, y)``), exact for non-finite values.

    ``platform="cpu"`` allows the CPU-only algorithm choices and runs up to
    ``MAX_SPLIT_GROUPS`` groups as separate calls (except for ``"dot"`` and the scatter
    form, whose products batch over the groups).
    """
    spec = effective_spec(spec, _input_spatial(slot, a.shape, spec))
    choice = choose(slot, a.shape, b.shape, jnp.result_type(a.dtype, b.dtype), spec, platform)
    hazards = [arr for arr, hazard in zip((a, b), choice.hazards) if hazard]
    finite = _all_finite(hazards) if hazards else None

    if platform == "cpu" and 1 < spec.groups <= MAX_SPLIT_GROUPS and choice.name not in ("dot", "scatter"):
        # Every group's fast form runs outside any control flow, so XLA:CPU runs the groups'
        # convolutions concurrently, and one conditional replaces the whole result with the
        # exact form (all groups at once) when a hazard operand is not finite. A guard per
        # group compiled one exact form per group (per-example kernels, 8 groups: 2.9 vs 2.3 s
        # for the four bench stages; grouped2d 2.3 vs 1.7 s) and one guard around all the
        # groups' convolutions ran them one after another (4.8 vs 3.5 ms per-example forward).
        # The price is memory: the result passes through the conditional (a copy) and the exact
        # form's buffers are allocated for all groups (grouped2d's training step 16.0 -> 20.5
        # MB, per-example kernels 15.9 -> 19.6; lax 15.9 and 16.3).
        out = _per_group(choice.form, a, b, spec, out_dtype)
        if finite is None:
            return out
        exact = lambda out, a, b: _EXACT[slot](a, b, spec, out_dtype)
        return lax.cond(finite, lambda out, a, b: out, exact, out, a, b)
    if finite is None:
        return choice.form(a, b, spec, out_dtype)
    # Otherwise the fast form inside the conditional writes its result in place (with the fast
    # form outside and the result passed through, dcgan2d's forward took 29 vs 24 ms).
    return lax.cond(
        finite,
        lambda a, b: choice.form(a, b, spec, out_dtype),
        lambda a, b: _EXACT[slot](a, b, spec, out_dtype),
        a,
        b,
    )
