"""Which algorithm ``algorithm="auto"`` lowers each slot with: static rules and the numbers behind them."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from jaxconvt._lowering._ops import LOW_PRECISION, product_rows
from jaxconvt._lowering.phase import exact_classes, phase_plan, phase_rows, phase_waste
from jaxconvt._spec import ConvSpec

#: Largest group count that the CPU lowering splits into separate calls (``lower``).
MAX_SPLIT_GROUPS = 32

#: ``"auto"`` computes the forward from the definition, tap by tap (``scatter.y_scatter``),
#: when the phase form would do at least this many times the useful multiply-adds
#: (``phase_waste``): a stride much larger than the kernel, or a dilation that leaves most
#: phase slots empty. The phase form's combined kernel then holds ``phase_waste`` times the
#: real taps, and for a stride far beyond the kernel it would not fit in memory at all.
SCATTER_MIN_WASTE = 4.0

#: ``"auto"`` on CPU picks ``"dot"`` only for kernels of at most this many taps (one matrix
#: product per tap: compile time and partial sums grow with it) ...
DOT_MAX_TAPS = 64


#: ... and inputs of at least this many elements (smaller problems are overhead-bound).
DOT_MIN_ELEMENTS = 32768


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
      vs 2.3. Within ``"dot"``, the forward and input gradient of strided 2-D kernels that
      overlap the stride, with enough channels, run as tap loops instead
      (``forward_tap_loop``, ``input_grad_tap_loop``); the other ``"dot"`` forwards and
      input gradients select away the rows that read padding, so only a forward whose phase
      classes have holes keeps a guard. Not for float32 or float16 (no such hardware
      rate): 1-D/2-D convolutions are as fast or faster there (dcgan2d forward 29 vs 57),
      and for 3-D the products win each stage alone (vae3d_k3 input gradient 8.8 vs 6.8) but
      not a whole training step (23 vs 26 ms), at 4x the compile time.
    * ``"scatter"`` (the definition, one matrix product per kernel tap) when the phase form
      would waste ``SCATTER_MIN_WASTE`` times the work or more.
    * Stride 1 in every dimension: ``"pad"``, which is then a plain padded convolution
      with the flipped kernel (nothing to zero-insert).
    * Otherwise ``"phase"``: one stride-1 convolution over all output phases plus an
      interleave. It never multiplies inserted zeros (``lhs_dilation`` does: ``prod(strides)``
      times the work, and XLA:CPU runs 3-D ``lhs_dilation`` as a generic loop), and it is the
      only form XLA:CPU never aborts on. When a kernel size is not a multiple of the stride
      its exact variant skips the structural zeros (``use_exact``).

    GPU and TPU get ``"pad"`` / ``"phase"``: they run stride-1 convolutions best (cuDNN).
    """
    if spec.algorithm != "auto":
        return spec.algorithm
    if phase_waste(spec.kernel_size, spec) >= SCATTER_MIN_WASTE:
        return "scatter"
    if platform == "cpu" and math.prod(spec.kernel_size) <= DOT_MAX_TAPS and exact_classes(spec):
        if dtype is not None and np.dtype(dtype) == np.dtype(jnp.bfloat16) and input_shape is not None:
            batch = input_shape[0] if isinstance(input_shape[0], int) else DOT_MIN_ELEMENTS  # symbolic batch
            if batch * math.prod(input_shape[1:]) >= DOT_MIN_ELEMENTS:
                return "dot"
    if all(s == 1 for s in spec.strides):
        return "pad"
    return "phase"


def kernel_gradient_in_phase_form(spec: ConvSpec, x_shape, y_shape, algorithm: str) -> bool:
    """Whether the kernel gradient uses the phase form (``kernel_grad.k_phase``) rather
    than one direct convolution (``kernel_grad.k_direct``).

    Always with ``"dot"``; with ``"phase"`` when the products are large: ungrouped, at least
    32 input channels, at least 256 contraction rows (``N * prod(V)``, batch times
    phase-output positions) and 32768 rows times channels, and at least 128 product columns
    (``prod(s) * C_out``). Measured on the 2-core CPU (ms, phase vs direct; medians, the
    machine is noisy): dcgan2d 50 vs 87, unet2d 4.7 vs 11.5, unet3d 2.9 vs 23.5, vae3d_k3
    4.9 vs 53, hifigan1d 29 vs 34, bigvgan 2.5 vs 3.3; but audio_vae (130 rows) 339 vs
    199, one per-example 16x16x64 kernel (289 rows, 64 channels) 0.85 vs 0.66, istft (64
    columns) 6.5 vs 3.9 and grouped2d's 16-channel groups (split on CPU) 8.9 vs 5.2.
    """
    if algorithm == "dot":
        return True
    if algorithm != "phase" or spec.groups != 1 or x_shape[-1] < 32:
        return False
    plan = phase_plan(spec, tuple(x_shape[1 : spec.ndim + 1]))
    batch = x_shape[0] if isinstance(x_shape[0], int) else 256  # symbolic (exported) batch: assume large
    rows = batch * math.prod(phase_rows(plan))
    columns = math.prod(spec.strides) * y_shape[-1]
    return rows >= 256 and rows * x_shape[-1] >= 32768 and columns >= 128


# ----------------------------------------------------------------------------------------
# The GEMM forms on CPU (gemm.py): which slots ``"auto"`` gives them, measured.
# ----------------------------------------------------------------------------------------

#: Fewest input and output channels per group for a GEMM form: narrower products are
#: memory-bound (grouped2d's 16-channel groups: forward 5.6 vs 2.2 ms as the phase
#: convolution, input gradient 7.4 vs 2.6, kernel gradient 7.9 vs 5.1; istft's one output
#: channel: kernel gradient 6.5 vs 5.1).
GEMM_MIN_CHANNELS = 64


def _no_overlap(spec: ConvSpec) -> bool:
    """Every dimension has a window of one tap (``s >= (k - 1) * d + 1``): each output element
    is one term, im2col and col2im are pure rearrangements."""
    return all((k - 1) * d // s == 0 for k, s, d in zip(spec.kernel_size, spec.strides, spec.dilation))


def forward_col2im(spec: ConvSpec, x_shape, k_shape) -> bool:
    """Whether the forward on CPU is one product plus an overlap-add (``gemm.y_col2im``)
    rather than the phase convolution. Measured on the 2-core CPU (ms, col2im vs phase;
    medians in turns): 1-D layers, where XLA:CPU's convolutions are slow: hifigan1d 32 vs 47,
    audio_vae 203 vs 413, bigvgan 2.2 vs 2.6; kernels without overlap (unet2d 4.5 vs 5.0);
    phase convolutions with few output positions and many phase channels (extreme, 81
    positions x 8192 channels: 8.0 vs 13.4). But dcgan2d 57 vs 37 (16 taps: the
    overlap-add reads four times the output), vae3d_k3 34 vs 8.8 and unet3d 3.0 vs 2.3
    (3-D with 32-64 channels), and narrow channels (istft, one output channel: 5.5 vs 4.0).
    """
    n = spec.ndim
    cg, og = x_shape[-1] // spec.groups, k_shape[n]
    if n == 3 or cg < GEMM_MIN_CHANNELS or og < 16:
        return False
    if n == 1 or _no_overlap(spec):
        return True
    plan = phase_plan(spec, tuple(x_shape[1 : n + 1]))
    positions = (x_shape[0] if isinstance(x_shape[0], int) else 256) * math.prod(phase_rows(plan))
    return positions * 16 <= math.prod(spec.strides) * og


def input_grad_im2col(spec: ConvSpec, x_shape, k_shape) -> bool:
    """Whether the input gradient on CPU is the im2col of the cotangent times the kernel
    (``gemm.x_im2col``) rather than the strided convolution. Measured (ms, im2col vs
    direct): kernels without overlap, where the im2col is a pure rearrangement: unet2d 4.6
    vs 6.2, unet3d 2.1 vs 4.3; very large 2-D/3-D kernels (extreme, 32x32: 8.0 vs 38). But
    overlapping kernels in 2-D and 3-D pay for the copies: dcgan2d 80 vs 47, vae3d_k3 16 vs
    10; 1-D: hifigan1d 30-34 vs 29, bigvgan 2.7 vs 1.7, istft 6.3 vs 3.4.
    """
    n = spec.ndim
    if x_shape[-1] // spec.groups < 32:
        return False
    return (n >= 2 and _no_overlap(spec)) or (n >= 2 and math.prod(spec.kernel_size) >= 256)


#: Most elements the kernel gradient's im2col (``gemm.k_im2col``) may hold, as a multiple of
#: its two operands' elements together: the column matrix is ``prod(k) / prod(s)`` times the
#: cotangent (the kernel's overlap), and a training step holds it beside the forward's
#: intermediates. dcgan2d's (k4 s2: 4x the cotangent, 2.7x both operands) took the step's
#: peak from 55 to 64 MB (lax: 44); without it the kernel gradient takes 43 instead of 39 ms
#: and the training step 103 instead of 101 (same-process A/B, 2-core AMD EPYC).
IM2COL_MAX_GROWTH = 2.0


def kernel_grad_im2col(spec: ConvSpec, x_shape, y_shape) -> bool:
    """Whether the kernel gradient on CPU is one product of the input and the im2col of the
    cotangent, contracting the rows (``gemm.k_im2col``, which picks the product's order).
    Measured (ms, im2col vs the former choice): dcgan2d 66 vs 79, unet2d 4.3 vs 4.7,
    hifigan1d 34 vs 39, bigvgan 2.3-2.7 vs 3.2, per-example kernels 6.7 vs 7.2, extreme 14 vs
    15, audio_vae (128 rows, the product in the kernel's layout) 100 vs 157 direct; but
    narrow channels (vae3d_k3's 32: 17 vs 10.5 in phase form; grouped2d, istft: direct) and
    tiny inputs (one 8x8 image, 64 rows: 0.21 vs 0.11 direct). Only while the column matrix
    stays within ``IM2COL_MAX_GROWTH`` times the operands (memory; dcgan2d takes the tap loop,
    extreme and per-example kernels the direct convolution).
    """
    cg, og = x_shape[-1] // spec.groups, y_shape[-1] // spec.groups
    if cg < GEMM_MIN_CHANNELS or og < 16 or product_rows(x_shape) < 128:
        return False
    # per example (the batch cancels): columns prod(i) * prod(k) * C_out against the operands
    columns = math.prod(x_shape[1:-1]) * math.prod(spec.kernel_size) * y_shape[-1]
    operands = math.prod(x_shape[1:]) + math.prod(y_shape[1:])
    return columns <= IM2COL_MAX_GROWTH * operands


# ----------------------------------------------------------------------------------------
# The tap loops on CPU (scatter.py): one product per kernel tap, accumulated in place.
# ----------------------------------------------------------------------------------------


def _loop_shape(spec: ConvSpec) -> bool:
    """Ungrouped, strided, overlapping and at most ``DOT_MAX_TAPS`` taps: the shapes the tap
    loops were measured on (a stride-1 layer is a plain convolution, which they were not
    measured against)."""
    return (
        spec.groups == 1
        and any(s > 1 for s in spec.strides)
        and not _no_overlap(spec)
        and math.prod(spec.kernel_size) <= DOT_MAX_TAPS
    )


def _low_precision(dtype) -> bool:
    return dtype is not None and np.dtype(dtype) in LOW_PRECISION


def forward_tap_loop(spec: ConvSpec, x_shape, k_shape) -> bool:
    """Whether the forward on CPU is the tap loop (``scatter.y_scatter``: one product per
    kernel tap added into its phase of the output in place) rather than the phase
    convolution or, for ``"dot"``, one product per window tap of each phase class summed at
    the end (``forward.y_dot``, whose products XLA keeps alive together). For 2-D kernels of
    ``_loop_shape`` with at least 64 input and 16 output channels, when the col2im form is
    not chosen. Measured on the 2-core CPU (ms, loop vs the former form, medians in turns):
    bfloat16 vae2d_bf16 160 vs 187 (temporaries 73 vs 169 MB),
    dcgan2d 14.8 vs 28.9; float32 dcgan2d 24.6 vs 24.3 alone, but its training step (both
    gradients tap loops too) 82.9 vs 91.6. But bfloat16 1-D and 3-D kernels and kernels
    without overlap (one window tap, one product) keep the products: hifigan1d 14.8 vs
    13.4, bigvgan 1.31 vs 1.21, vae3d_k3 5.5 vs 4.7, unet2d 3.2 vs 1.7; groups keep the
    split (grouped2d 4.2 vs 2.5).
    """
    if spec.ndim != 2 or not _loop_shape(spec):
        return False
    return x_shape[-1] >= GEMM_MIN_CHANNELS and k_shape[spec.ndim] >= 16


def input_grad_tap_loop(spec: ConvSpec, x_shape, k_shape, dtype) -> bool:
    """Whether the input gradient on CPU is the tap loop (``scatter.x_scatter``: one product
    per kernel tap of a strided slice of the cotangent) rather than the strided convolution
    or, for ``"dot"``, one product per tap summed at the end. For kernels of ``_loop_shape``
    (ungrouped, strided, overlapping, few taps, so never the im2col cases): in 2-D with at
    least 64 input and 16 output channels, in 3-D with at least 32 input channels and not
    for bfloat16 or float16 (its slabs read in place, see ``x_scatter``). Measured on the
    2-core CPU (ms, loop vs the former form, medians in turns): float32 dcgan2d 23.7 vs 27.4,
    vae3d_k3 4.7 vs 6.8 (training step 13.2 vs 15.0, peak 17.2 vs 16.3 MB, lax 14.5);
    bfloat16 vae2d_bf16 176 vs 222, dcgan2d 14.9 vs 34.5. But bfloat16 3-D (vae3d_k3 6.3 vs
    4.2), 1-D kernels (float32, direct: hifigan1d 23.9 vs 22.5, bigvgan 2.7 vs 1.9, istft 9.1
    vs 2.4, audio_vae 126 vs 67), groups (grouped2d 3.6 vs 2.2, split) and the im2col cases
    (extreme 13.5 vs 5.5, unet2d 5.3 vs 4.7) keep theirs.
    """
    n = spec.ndim
    if n < 2 or not _loop_shape(spec):
        return False
    if n == 3:  # not in low precision, 32 channels and up
        return not _low_precision(dtype) and x_shape[-1] >= 32
    return x_shape[-1] >= GEMM_MIN_CHANNELS and k_shape[n] >= 16  # narrower products: memory-bound


def kernel_grad_tap_loop(spec: ConvSpec, x_shape, y_shape, dtype) -> bool:
    """Whether the kernel gradient on CPU is the tap loop (``scatter.k_scatter``: one product
    per kernel tap, contracting the rows) rather than the phase form or one direct
    convolution. For 2-D kernels of ``_loop_shape`` (ungrouped, strided, overlapping, few
    taps) with at least 64 input channels, not in bfloat16 or float16, when the im2col form
    is not chosen. Measured on the 2-core CPU (ms, loop vs the former form, medians in
    turns): dcgan2d 32.6 vs 40.2 (phase form; temporaries 35 vs 48 MB). But the 1024 taps of
    extreme (12.0 vs 11.1, direct), 3-D (vae3d_k3 8.3 vs 5.2), 1-D (hifigan1d 31 vs 25,
    bigvgan 2.6 vs 1.7, istft 12 vs 3.4), groups (grouped2d 6.7 vs 3.7) and bfloat16
    (vae2d_bf16 255 vs 175) keep theirs.
    """
    if spec.ndim != 2 or not _loop_shape(spec) or _low_precision(dtype) or x_shape[-1] < GEMM_MIN_CHANNELS:
        return False
    return not kernel_grad_im2col(spec, x_shape, y_shape)
