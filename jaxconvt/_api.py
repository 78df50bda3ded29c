"""The public transposed-convolution functions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxconvt import _primitive
from jaxconvt._spec import make_spec, normalize_data_format

__all__ = ["conv_transpose", "conv_transpose_output_shape"]


def _as_array(value: Any, name: str):
    if isinstance(value, (jax.Array, np.ndarray)) or hasattr(value, "aval"):
        arr = value
    else:
        try:
            arr = jnp.asarray(value)
        except (TypeError, ValueError) as err:
            raise TypeError(f"`{name}` must be an array of floating-point or complex numbers; got {value!r}.") from err
    dtype = np.dtype(arr.dtype)
    if not jnp.issubdtype(dtype, jnp.inexact):
        raise TypeError(
            f"`{name}` must have a floating-point or complex dtype (float16, bfloat16, float32, "
            f"float64, complex64, complex128); got dtype {dtype.name}. Cast it first, e.g. "
            f"`{name}.astype(jnp.float32)`."
        )
    return arr


def _out_dtype(inputs, kernel, preferred_element_type):
    if preferred_element_type is None:
        return np.dtype(jnp.result_type(inputs.dtype, kernel.dtype))
    try:
        dtype = np.dtype(preferred_element_type)
    except TypeError as err:
        raise TypeError(f"`preferred_element_type` must be None or a dtype; got {preferred_element_type!r}.") from err
    if not jnp.issubdtype(dtype, jnp.inexact):
        raise TypeError(f"`preferred_element_type` must be a floating-point or complex dtype; got {dtype.name}.")
    operands = jnp.result_type(inputs.dtype, kernel.dtype)
    if jnp.issubdtype(dtype, jnp.complexfloating) != jnp.issubdtype(operands, jnp.complexfloating):
        raise TypeError(
            "`preferred_element_type` must be complex exactly when the operands are (it sets the "
            f"accumulation and output precision, not the kind); got {dtype.name} for operands of dtype "
            f"{np.dtype(operands).name}."
        )
    return dtype


def conv_transpose(
    inputs,
    kernel,
    strides: int | Sequence[int] = 1,
    padding: str | int | Sequence[int] | Sequence[tuple[int, int]] = "valid",
    output_padding: int | Sequence[int] | None = None,
    data_format: str | None = None,
    dilation_rate: int | Sequence[int] = 1,
    *,
    groups: int = 1,
    output_shape: Sequence[int] | None = None,
    precision: Any = None,
    preferred_element_type: Any = None,
    algorithm: str = "auto",
) -> jax.Array:
    """N-D transposed convolution with exactly ``keras.ops.conv_transpose``'s semantics.

    Every input element scatters a copy of the kernel, scaled by it, into the output at
    ``stride`` spacing; the result is then cropped according to ``padding`` and
    ``output_padding``. This is the gradient (adjoint) of the forward convolution with
    the same kernel, strides and dilation. Works for any number ``N >= 1`` of spatial
    dimensions, inside ``jax.jit``, and under every JAX transformation (``grad``, ``jvp``,
    ``vmap``, ``linear_transpose``, higher orders), with fast hand-written derivative rules.

    Args:
      inputs: array of rank ``N + 2``: ``(batch, *spatial, channels)`` for
        ``channels_last`` (default) or ``(batch, channels, *spatial)`` for
        ``channels_first``. Floating-point or complex.
      kernel: array ``(*kernel_spatial, out_channels // groups, in_channels)`` (Keras's
        layout; note output channels come before input channels).
      strides: int or ``N`` ints, each >= 1.
      padding: ``"valid"`` or ``"same"`` (any case) with Keras's meaning, or explicit
        crops with PyTorch's meaning: an int ``p`` (crop ``p`` from both ends of every
        spatial dimension), ``N`` ints, or ``N`` ``(low, high)`` pairs; non-negative.
      output_padding: ``None``, an int or ``N`` ints, each smaller than the stride or the
        dilation in that dimension; extends the output at the high end. ``None`` keeps
        Keras's default for string paddings and means 0 for explicit paddings.
      data_format: ``"channels_last"`` (default, also for ``None``) or
        ``"channels_first"``.
      dilation_rate: int or ``N`` ints, each >= 1: kernel dilation.
      groups: number of channel groups (keyword-only). ``in_channels`` must be divisible
        by it; the output has ``groups * kernel.shape[-2]`` channels, as in PyTorch.
      output_shape: wanted output spatial shape (``N`` ints, or ``N + 2`` including batch
        and channels); the op derives ``output_padding`` and raises if no valid
        ``output_padding`` reaches it. Not together with ``output_padding``.
      precision: passed to ``lax.conv_general_dilated`` (e.g. ``"highest"``).
      preferred_element_type: output dtype; by default the promoted dtype of ``inputs``
        and ``kernel``. float16 and bfloat16 operands always accumulate in float32.
      algorithm: lowering algorithm (keyword-only), one of ``"auto"`` (default: picks the
        fastest for the platform, dtype and static shapes; see the design page),
        ``"phase"`` (sub-pixel decomposition: stride-1 convolutions over the output phases
        plus an interleave), ``"dot"`` (the same sums as one matrix product per kernel tap,
        in every derivative too; what "auto" picks on CPU for bfloat16), ``"pad"``
        (explicit zero insertion) or ``"dilate"`` (XLA's ``lhs_dilation``). All give the
        same values up to rounding.

    Returns:
      The output, of dtype ``preferred_element_type`` or the promoted operand dtype, with
      shape ``conv_transpose_output_shape(inputs.shape, kernel.shape, ...)``.

    Raises:
      TypeError: an argument of the wrong type, or an integer/bool dtype.
      ValueError: inconsistent shapes or out-of-range values. Both are raised at trace
        time, identically under ``jax.jit``.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxconvt
      >>> x = jnp.ones((1, 3, 1))            # batch 1, length 3, 1 channel
      >>> k = jnp.ones((2, 1, 1))            # kernel size 2, 1 -> 1 channel
      >>> jaxconvt.conv_transpose(x, k, strides=2)[0, :, 0]
      Array([1., 1., 1., 1., 1., 1.], dtype=float32)
      >>> jaxconvt.conv_transpose(jnp.ones((2, 8, 8, 16)), jnp.ones((4, 4, 32, 16)),
      ...                         strides=2, padding="same").shape
      (2, 16, 16, 32)
    """
    inputs = _as_array(inputs, "inputs")
    kernel = _as_array(kernel, "kernel")
    spec, out_shape = make_spec(
        inputs.shape,
        kernel.shape,
        strides,
        padding,
        output_padding,
        data_format,
        dilation_rate,
        groups=groups,
        output_shape=output_shape,
        precision=precision,
        algorithm=algorithm,
    )
    out_dtype = _out_dtype(inputs, kernel, preferred_element_type)
    channels_last = normalize_data_format(data_format)
    if not channels_last:
        inputs = jnp.moveaxis(inputs, 1, -1)
    out = _primitive.bind(inputs, kernel, spec=spec, slot="y", out_dtype=out_dtype)
    if not channels_last:
        out = jnp.moveaxis(out, -1, 1)
    return out


def conv_transpose_output_shape(
    input_shape: Sequence[int],
    kernel_shape: Sequence[int],
    strides: int | Sequence[int] = 1,
    padding: str | int | Sequence[int] | Sequence[tuple[int, int]] = "valid",
    output_padding: int | Sequence[int] | None = None,
    data_format: str | None = None,
    dilation_rate: int | Sequence[int] = 1,
    *,
    groups: int = 1,
    output_shape: Sequence[int] | None = None,
) -> tuple[int, ...]:
    """Output shape of :func:`conv_transpose` from shapes alone, with the same validation.

    Args:
      input_shape: shape of ``inputs``.
      kernel_shape: shape of ``kernel``.
      strides, padding, output_padding, data_format, dilation_rate, groups, output_shape:
        as for :func:`conv_transpose`.

    Returns:
      The full output shape (batch, spatial and channels in ``data_format`` order).

    Example:
      >>> import jaxconvt
      >>> jaxconvt.conv_transpose_output_shape((8, 16, 16, 64), (3, 3, 32, 64), strides=2,
      ...                                      padding=1, output_padding=1)
      (8, 32, 32, 32)
    """
    try:
        input_shape = tuple(int(v) for v in input_shape)
        kernel_shape = tuple(int(v) for v in kernel_shape)
    except TypeError as err:
        raise TypeError(
            f"`input_shape` and `kernel_shape` must be sequences of ints; got {input_shape!r} and {kernel_shape!r}."
        ) from err
    _, out_shape = make_spec(
        input_shape,
        kernel_shape,
        strides,
        padding,
        output_padding,
        data_format,
        dilation_rate,
        groups=groups,
        output_shape=output_shape,
    )
    return out_shape
