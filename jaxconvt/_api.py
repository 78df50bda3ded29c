"""The public transposed-convolution functions."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxconvt import _primitive
from jaxconvt._spec import make_spec, normalize_data_format, shape_tuple

__all__ = ["conv_transpose", "conv_transpose_output_shape"]


#: The dtypes the op computes in (operands and ``preferred_element_type``).
DTYPES = tuple(np.dtype(d) for d in ("float16", jnp.bfloat16, "float32", "float64", "complex64", "complex128"))
_DTYPE_NAMES = ", ".join(d.name for d in DTYPES)


def as_operand(value: Any, name: str):
    """An operand of the op (named ``name`` in errors) -> an array of a supported dtype.

    JAX and numpy arrays (and tracers) pass through after their dtype is checked; anything else
    goes through ``jnp.asarray``. The adapters call this with their own argument names.
    """
    if isinstance(value, (jax.Array, np.ndarray, np.generic)) or hasattr(value, "aval"):
        arr = value
    elif value is None:
        raise TypeError(f"`{name}` must be an array of floating-point or complex numbers; got None.")
    else:
        try:
            arr = jnp.asarray(value)
        except (TypeError, ValueError) as err:
            raise TypeError(f"`{name}` must be an array of floating-point or complex numbers; got {value!r}.") from err
    dtype = np.dtype(arr.dtype)
    if dtype not in DTYPES:
        raise TypeError(
            f"`{name}` must have a floating-point or complex dtype ({_DTYPE_NAMES}); got dtype {dtype.name}. "
            f"Cast it first, e.g. `{name}.astype(jnp.float32)`."
        )
    return arr


def _requested_dtype(requested: Any) -> np.dtype:
    """``preferred_element_type`` -> the dtype JAX would give an explicitly requested dtype.

    As in ``jnp.zeros(..., dtype=...)``: the Python types ``float`` and ``complex`` mean JAX's
    default float and complex dtypes; a 64-bit dtype while x64 is off is truncated to 32 bits
    with JAX's "Explicitly requested dtype" UserWarning (or refused / kept, following
    ``jax_explicit_x64_dtypes``).
    """
    try:
        dtype = np.dtype(requested)
    except TypeError as err:
        raise TypeError(f"`preferred_element_type` must be None or a dtype; got {requested!r}.") from err
    if dtype not in DTYPES:
        raise TypeError(
            f"`preferred_element_type` must be None or a floating-point or complex dtype ({_DTYPE_NAMES}); "
            f"got {dtype.name}."
        )
    canonical = np.dtype(jax.dtypes.canonicalize_dtype(dtype))
    if requested is float or requested is complex or canonical == dtype:
        return canonical
    mode = getattr(getattr(jax.config, "jax_explicit_x64_dtypes", None), "name", "WARN")
    if mode == "ALLOW":
        return dtype
    if mode == "ERROR":
        raise ValueError(
            f"`preferred_element_type` {dtype.name} is not available: x64 is disabled and "
            "jax_explicit_x64_dtypes='error'. Enable x64 (jax_enable_x64) or ask for "
            f"{canonical.name}; got preferred_element_type={requested!r}."
        )
    warnings.warn(
        f"Explicitly requested dtype {dtype.name} requested in conv_transpose is not available, and will be "
        f"truncated to dtype {canonical.name}. To enable more dtypes, set the jax_enable_x64 configuration option "
        "or the JAX_ENABLE_X64 shell environment variable. See https://github.com/jax-ml/jax#current-gotchas for more.",
        UserWarning,
        stacklevel=4,
    )
    return canonical


def _out_dtype(inputs, kernel, preferred_element_type):
    operands = np.dtype(jnp.result_type(inputs, kernel))  # arrays, not dtypes: no x64 warning for numpy float64
    if preferred_element_type is None:
        return operands
    dtype = _requested_dtype(preferred_element_type)
    if jnp.issubdtype(dtype, jnp.complexfloating) != jnp.issubdtype(operands, jnp.complexfloating):
        raise TypeError(
            "`preferred_element_type` must be complex exactly when the operands are (it sets the "
            f"accumulation and output precision, not the kind); got {dtype.name} for operands of dtype "
            f"{operands.name}."
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
        ``channels_first``. Of dtype float16, bfloat16, float32, float64, complex64 or
        complex128 (as JAX holds it: numpy float64 is float32 unless x64 is enabled).
      kernel: array ``(*kernel_spatial, out_channels // groups, in_channels)`` (Keras's
        layout; note output channels come before input channels).
      strides: int or ``N`` ints, each >= 1. Here and in every integer argument a numpy
        integer or 0-d integer array counts as an int (a bool or float one is refused), and
        values must fit XLA's int64 sizes (at most ``2**63 - 1``).
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
        and ``kernel``. float16 and bfloat16 operands always accumulate in float32. One of
        the six operand dtypes, complex exactly when the operands are; given as JAX takes an
        explicitly requested dtype: ``float`` / ``complex`` mean JAX's default dtypes, and
        float64 / complex128 while x64 is off become float32 / complex64 with JAX's
        "Explicitly requested dtype" ``UserWarning`` (a ``ValueError`` or kept, following
        ``jax_explicit_x64_dtypes``), identically eagerly, under ``jit``, ``grad`` and
        ``eval_shape``.
      algorithm: lowering algorithm (keyword-only), one of ``"auto"`` (default: picks the
        fastest for the platform, dtype and static shapes; see the design page),
        ``"phase"`` (sub-pixel decomposition: stride-1 convolutions over the output phases
        plus an interleave), ``"dot"`` (the same sums as one matrix product per kernel tap,
        in every derivative too; what "auto" picks on CPU for bfloat16), ``"gemm"`` (every
        slot as ONE matrix product over all kernel taps: the forward with an overlap-add,
        the gradients with an im2col of the cotangent; "auto" picks it per slot on CPU
        where it measured faster), ``"pad"`` (explicit zero insertion) or ``"dilate"``
        (XLA's ``lhs_dilation``). On CPU, "auto" also runs some slots of strided kernels
        that overlap the stride (2-D, and the 3-D input gradient, with enough channels) as
        a loop of one matrix product per kernel tap. All give the same values up to
        rounding. Non-finite
        values (``inf``, ``nan``) reach exactly the outputs the definition sends them to with
        every algorithm but ``"pad"`` and ``"dilate"``, which multiply the zeros they insert.

    Returns:
      The output, of dtype ``preferred_element_type`` or the promoted operand dtype, with
      shape ``conv_transpose_output_shape(inputs.shape, kernel.shape, ...)``.

    Raises:
      TypeError: an argument of the wrong type, or an operand or ``preferred_element_type``
        of a dtype other than the six above (integers, bools, float8, ``np.longdouble``).
      ValueError: inconsistent shapes or out-of-range values, including an integer
        argument beyond ``2**63 - 1`` and arguments whose output (or uncropped result) would
        have a size beyond ``2**63 - 1`` or more than ``2**56`` elements (XLA computes sizes
        in bytes as int64 and aborts the process when they overflow). Both are raised at
        trace time, identically under ``jax.jit``, in time independent of the stride.

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
    inputs = as_operand(inputs, "inputs")
    kernel = as_operand(kernel, "kernel")
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
      input_shape: shape of ``inputs``: a sequence of ints (numpy integers and 0-d integer
        arrays count), each in ``[0, 2**63)``.
      kernel_shape: shape of ``kernel``, likewise.
      strides, padding, output_padding, data_format, dilation_rate, groups, output_shape:
        as for :func:`conv_transpose`.

    Returns:
      The full output shape (batch, spatial and channels in ``data_format`` order).

    Raises:
      TypeError, ValueError: as :func:`conv_transpose` for the same shapes, and for shapes
        that are not sequences of ints (``4.7``, ``"2"``, ``True``) or have negative sizes.

    Example:
      >>> import jaxconvt
      >>> jaxconvt.conv_transpose_output_shape((8, 16, 16, 64), (3, 3, 32, 64), strides=2,
      ...                                      padding=1, output_padding=1)
      (8, 32, 32, 32)
    """
    input_shape = shape_tuple(input_shape, "input_shape")
    kernel_shape = shape_tuple(kernel_shape, "kernel_shape")
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
