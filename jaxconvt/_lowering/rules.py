"""Which algorithm ``algorithm="auto"`` lowers each slot with: static rules and the numbers behind them."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from jaxconvt._lowering.phase import exact_classes
from jaxconvt._spec import ConvSpec

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
      its exact variant skips the structural zeros (``use_exact``).

    GPU and TPU get ``"pad"`` / ``"phase"``: they run stride-1 convolutions best (cuDNN).
    """
    if spec.algorithm != "auto":
        return spec.algorithm
    if platform == "cpu" and math.prod(spec.kernel_size) <= DOT_MAX_TAPS and exact_classes(spec):
        if dtype is not None and np.dtype(dtype) == np.dtype(jnp.bfloat16) and input_shape is not None:
            batch = input_shape[0] if isinstance(input_shape[0], int) else DOT_MIN_ELEMENTS  # symbolic batch
            if batch * math.prod(input_shape[1:]) >= DOT_MIN_ELEMENTS:
                return "dot"
    if all(s == 1 for s in spec.strides):
        return "pad"
    return "phase"
