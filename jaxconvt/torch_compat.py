"""PyTorch's ``torch.nn.functional.conv_transpose{1,2,3}d`` on top of :func:`jaxconvt.conv_transpose`.

Same signatures, defaults, layouts, argument rules and results as PyTorch (checked against
torch 2.13 in the test suite): input ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``,
weight ``(C_in, C_out // groups, *kernel)``, optional bias ``(C_out,)``. Where PyTorch refuses
a call, these raise ``ValueError`` (bad values) or ``TypeError`` (bad types and dtypes) at
trace time, with the three exceptions listed below.

Dtypes follow torch (CPU): ``input``, ``weight`` and ``bias`` must all have one dtype (torch
does not promote them), one of float16, bfloat16, float32, float64, complex64 and complex128,
and the output has it. Dtypes are judged as given (torch tensor, numpy or JAX array), before
JAX canonicalises them; the computation then runs in JAX's dtype, so float64 operands compute
in float32 unless x64 is enabled. Torch tensors of any of these dtypes are accepted (detached
and copied to host; bfloat16, conjugate and non-contiguous ones included).

Where this module and torch 2.13 differ:

* int64: torch CPU computes int64 x int64 (torch CUDA does not); this module raises a
  ``TypeError`` naming the int64 operand, as jaxconvt computes floating-point and complex
  numbers only. Cast to float64 (exact while every sum stays below ``2**53``).
* A real ``bias`` of another real dtype than the output: torch refuses it in 3-D and in some
  1-D / 2-D configurations, and casts it to the output dtype in others (it depends on the
  backend torch picks for the shapes); this module always refuses it.
* A numpy 0-d integer array for ``stride``, ``padding``, ``output_padding`` or ``dilation``
  counts as an int, as it does for ``groups`` in torch (torch 2.13 fails with an internal
  assertion on the tuple arguments).

Integers must fit int64 (torch's and XLA's ints), and so must the sizes they give; beyond that
these raise ``ValueError``, as torch does for ints beyond int64 (for sizes beyond it torch
raises ``RuntimeError`` with messages that show the overflowed values).

Each function is a thin adapter: the weight is transposed into jaxconvt's kernel layout
(:func:`kernel_from_torch`) and the call goes to :func:`jaxconvt.conv_transpose` with
``data_format="channels_first"`` and explicit ``(p, p)`` padding plus ``output_padding``. So
the adapters are differentiable and work under ``jit``, ``grad``, ``jvp``, ``vmap`` and every
other transformation exactly like the core op.

``kernel_from_torch`` / ``kernel_to_torch`` convert weights between the two layouts:
``K[j, o, c] = W[c, o, j]`` for kernel tap ``j``, output channel ``o`` within its group and
input channel ``c``. Groups do not change the mapping: both libraries give group ``g`` the
contiguous input channels ``[g * C_in/G, (g + 1) * C_in/G)`` and write its outputs to channels
``g * (C_out/G) + o``, so one transpose serves every ``groups``.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxconvt._api import _DTYPE_NAMES, as_operand, conv_transpose
from jaxconvt._spec import INT64_MAX, _describe, _is_int, _scalar, check_sizes_fit

__all__ = [
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "kernel_from_torch",
    "kernel_to_torch",
]


def _from_torch(value: Any, name: str):
    """A ``torch.Tensor`` -> a numpy array with the same values and dtype (bfloat16 included)."""
    import torch

    tensor = value.detach().cpu().resolve_conj().resolve_neg()
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: reinterpret the bits as ml_dtypes' bfloat16
        return tensor.view(torch.int16).numpy().view(jnp.bfloat16)
    try:
        return tensor.numpy()
    except (TypeError, RuntimeError) as err:
        raise TypeError(
            f"`{name}` must have a floating-point or complex dtype ({_DTYPE_NAMES}); got torch dtype "
            f"{str(tensor.dtype).removeprefix('torch.')}."
        ) from err


def _to_array(value: Any, name: str):
    """An operand named ``name`` -> an array of a dtype jaxconvt computes in.

    Torch tensors become numpy arrays of the same dtype; JAX and numpy arrays pass through; other
    values go through ``jnp.asarray``. The dtype is checked before JAX canonicalises it, so an
    int64 tensor is reported as int64 even with x64 off.
    """
    if type(value).__module__.split(".")[0] == "torch":
        value = _from_torch(value, name)
    if value is not None and not (hasattr(value, "shape") and hasattr(value, "dtype")):
        try:
            value = jnp.asarray(value)
        except (TypeError, ValueError) as err:
            raise TypeError(f"`{name}` must be an array; got {_describe(value)}.") from err
    if value is not None and np.dtype(value.dtype) == np.int64:
        raise TypeError(
            f"`{name}` must have a floating-point or complex dtype ({_DTYPE_NAMES}); got dtype int64. torch CPU "
            "computes int64 transposed convolutions, but jaxconvt computes floating-point and complex numbers "
            "only: cast to float64 first (exact while every sum stays below 2**53 in magnitude)."
        )
    return as_operand(value, name)


def _same_dtypes(x, weight, bias) -> None:
    """torch's rule: ``input``, ``weight`` and ``bias`` have one dtype (it does not promote)."""
    dtypes = {"input": np.dtype(x.dtype), "weight": np.dtype(weight.dtype)}
    if bias is not None:
        dtypes["bias"] = np.dtype(bias.dtype)
    if len(set(dtypes.values())) > 1:
        names = [f"`{name}`" for name in dtypes]
        names = " and ".join([", ".join(names[:-1]), names[-1]])
        shown = ", ".join(f"{name} dtype {dtype.name}" for name, dtype in dtypes.items())
        raise TypeError(f"{names} must have the same dtype (torch does not promote them); got {shown}.")


def _check_groups(groups: Any) -> int:
    if not _is_int(groups):
        raise TypeError(f"`groups` must be an int; got {_describe(groups)}.")
    groups = operator.index(_scalar(groups))
    if groups < 1:
        raise ValueError(f"`groups` must be >= 1 (torch refuses non-positive groups); got groups={groups}.")
    if groups > INT64_MAX:
        raise ValueError(f"`groups` must be at most 2**63 - 1 (torch's and XLA's ints are int64); got groups={groups}.")
    return groups


def _int_tuple(value: Any, n: int, name: str, minimum: int) -> tuple[int, ...]:
    """Torch's ``int or tuple`` argument rule: an int, or a tuple/list of 1 or ``n`` ints (each int64)."""
    if _is_int(value):
        values = (operator.index(_scalar(value)),) * n
    elif isinstance(value, (tuple, list)):
        if not all(_is_int(v) for v in value):
            raise TypeError(f"`{name}` must be an int or a tuple of {n} ints; got {_describe(value)}.")
        if len(value) not in (1, n):
            raise ValueError(
                f"`{name}` must be an int or a tuple of {n} ints (one per spatial dimension, or 1 for all); "
                f"got {name}={tuple(value)!r} of length {len(value)}."
            )
        values = tuple(operator.index(_scalar(v)) for v in value) * (n if len(value) == 1 else 1)
    else:
        raise TypeError(f"`{name}` must be an int or a tuple of {n} ints; got {_describe(value)}.")
    if any(v < minimum for v in values):
        raise ValueError(f"`{name}` must be >= {minimum} in every spatial dimension; got {name}={values}.")
    if any(v > INT64_MAX for v in values):
        raise ValueError(
            f"`{name}` must be at most 2**63 - 1 (torch's and XLA's ints are int64) in every spatial dimension; "
            f"got {name}={values}."
        )
    return values


def kernel_from_torch(weight, groups: int = 1):
    """Converts a PyTorch transposed-convolution weight into a jaxconvt kernel.

    PyTorch's ``ConvTranspose{1,2,3}d.weight`` has shape ``(C_in, C_out // groups, *k)``;
    jaxconvt's kernel has shape ``(*k, C_out // groups, C_in)`` with ``K[j, o, c] = W[c, o, j]``.
    The mapping is the same for every ``groups`` (see the module docstring); ``groups`` is
    only checked against ``C_in``.

    Args:
      weight: array (numpy, JAX, or a ``torch.Tensor``, which is detached and copied to host)
        of rank ``N + 2``.
      groups: the layer's number of groups; ``C_in`` must be divisible by it.

    Returns:
      A JAX array of shape ``(*k, C_out // groups, C_in)`` and ``weight``'s dtype. Inside
      ``jax.jit`` or ``grad`` it is a plain transpose, so gradients flow back to a JAX ``weight``.

    Raises:
      TypeError: ``weight`` is not an array of one of the six floating-point and complex dtypes
        (float16, bfloat16, float32, float64, complex64, complex128).
      ValueError: a rank below 3, or ``C_in`` not divisible by ``groups``.

    Example:
      >>> import numpy as np
      >>> from jaxconvt import torch_compat
      >>> w = np.arange(24.0).reshape(4, 3, 2)      # (C_in=4, C_out // groups=3, k=2)
      >>> k = torch_compat.kernel_from_torch(w, groups=2)
      >>> k.shape
      (2, 3, 4)
      >>> float(k[1, 2, 0]) == float(w[0, 2, 1])
      True
    """
    weight = _to_array(weight, "weight")
    groups = _check_groups(groups)
    if weight.ndim < 3:
        raise ValueError(
            f"`weight` must have rank >= 3 (C_in, C_out // groups, *kernel); got shape {tuple(weight.shape)}."
        )
    if weight.shape[0] % groups:
        raise ValueError(
            f"`weight` input channels (axis 0) must be divisible by `groups`; got weight shape "
            f"{tuple(weight.shape)} and groups={groups}."
        )
    return jnp.transpose(weight, (*range(2, weight.ndim), 1, 0))


def kernel_to_torch(kernel, groups: int = 1):
    """Converts a jaxconvt kernel into a PyTorch transposed-convolution weight.

    The inverse of :func:`kernel_from_torch`: ``(*k, C_out // groups, C_in)`` ->
    ``(C_in, C_out // groups, *k)``.

    Args:
      kernel: array of rank ``N + 2`` in jaxconvt (Keras) layout.
      groups: the layer's number of groups; ``C_in`` must be divisible by it.

    Returns:
      A JAX array of shape ``(C_in, C_out // groups, *k)``; copy it into a torch layer with
      ``torch.from_numpy(np.asarray(w))``.

    Raises:
      TypeError, ValueError: as :func:`kernel_from_torch`, naming ``kernel``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxconvt import torch_compat
      >>> k = jnp.zeros((3, 3, 8, 16))               # (kH, kW, C_out // groups, C_in)
      >>> torch_compat.kernel_to_torch(k, groups=4).shape
      (16, 8, 3, 3)
      >>> bool((torch_compat.kernel_from_torch(torch_compat.kernel_to_torch(k)) == k).all())
      True
    """
    kernel = _to_array(kernel, "kernel")
    groups = _check_groups(groups)
    if kernel.ndim < 3:
        raise ValueError(
            f"`kernel` must have rank >= 3 (*kernel, C_out // groups, C_in); got shape {tuple(kernel.shape)}."
        )
    n = kernel.ndim - 2
    if kernel.shape[-1] % groups:
        raise ValueError(
            f"`kernel` input channels (last axis) must be divisible by `groups`; got kernel shape "
            f"{tuple(kernel.shape)} and groups={groups}."
        )
    return jnp.transpose(kernel, (n + 1, n, *range(n)))


def _output_padding_from_size(output_size, n, spatial, stride, padding, ksize, dilation, batched):
    """``torch.nn.ConvTranspose*d``'s ``output_size`` rule -> output padding per dimension."""
    if (
        not isinstance(output_size, Sequence)
        or isinstance(output_size, str)
        or not all(_is_int(v) for v in output_size)
    ):
        raise TypeError(f"`output_size` must be a sequence of ints; got {_describe(output_size)}.")
    sizes = [operator.index(_scalar(v)) for v in output_size]
    lead = 2 if batched else 1
    if len(sizes) == n + lead:
        sizes = sizes[lead:]
    if len(sizes) != n:
        raise ValueError(
            f"`output_size` must have {n} or {n + lead} elements (spatial sizes, optionally with the leading "
            f"batch/channel sizes); got output_size={tuple(output_size)!r}."
        )
    ops = []
    for j in range(n):
        smallest = (spatial[j] - 1) * stride[j] - 2 * padding[j] + dilation[j] * (ksize[j] - 1) + 1
        largest = smallest + stride[j] - 1
        if not smallest <= sizes[j] <= largest:
            raise ValueError(
                f"`output_size` is not reachable: spatial dimension {j} can have any size from {smallest} to "
                f"{largest} with these inputs, stride, padding and dilation; got output_size={tuple(output_size)!r}."
            )
        ops.append(sizes[j] - smallest)
    return tuple(ops)


def _conv_transpose_nd(
    n: int,
    input,
    weight,
    bias,
    stride,
    padding,
    output_padding,
    groups,
    dilation,
    output_size,
):
    name = f"conv_transpose{n}d"
    x = _to_array(input, "input")
    weight = _to_array(weight, "weight")
    bias = None if bias is None else _to_array(bias, "bias")
    _same_dtypes(x, weight, bias)
    if x.ndim not in (n + 1, n + 2):
        raise ValueError(
            f"`input` of {name} must have rank {n + 1} (unbatched: C_in, *spatial) or {n + 2} "
            f"(batched: N, C_in, *spatial); got shape {tuple(x.shape)}."
        )
    if weight.ndim != n + 2:
        raise ValueError(
            f"`weight` of {name} must have rank {n + 2} (C_in, C_out // groups, *kernel); got shape "
            f"{tuple(weight.shape)}."
        )
    stride = _int_tuple(stride, n, "stride", 1)
    padding = _int_tuple(padding, n, "padding", 0)
    output_padding = _int_tuple(output_padding, n, "output_padding", 0)
    dilation = _int_tuple(dilation, n, "dilation", 1)
    groups = _check_groups(groups)

    batched = x.ndim == n + 2
    in_shape = tuple(x.shape) if batched else (1, *x.shape)
    c_in, spatial = in_shape[1], in_shape[2:]
    ksize = tuple(weight.shape[2:])
    if 0 in weight.shape:
        raise ValueError(f"`weight` must not be empty (torch refuses empty weights); got shape {tuple(weight.shape)}.")
    if weight.shape[0] % groups:
        raise ValueError(
            f"`weight` input channels (axis 0) must be divisible by `groups`; got weight shape "
            f"{tuple(weight.shape)} and groups={groups}."
        )
    if c_in != weight.shape[0]:
        raise ValueError(
            f"`input` channels must equal `weight`'s first axis (C_in); got input shape {tuple(x.shape)} "
            f"and weight shape {tuple(weight.shape)}."
        )
    if 0 in spatial:
        raise ValueError(f"`input` spatial dimensions must all be >= 1; got input shape {tuple(x.shape)}.")
    if output_size is not None:
        if any(output_padding):
            raise ValueError(
                "Give at most one of `output_padding` and `output_size` (output_size determines the output "
                f"padding); got output_padding={output_padding} and output_size={output_size!r}."
            )
        output_padding = _output_padding_from_size(output_size, n, spatial, stride, padding, ksize, dilation, batched)
    if any(op >= s and op >= d for op, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(
            "`output_padding` must be smaller than `stride` or `dilation` in every spatial dimension; got "
            f"output_padding={output_padding}, stride={stride}, dilation={dilation}."
        )
    out_spatial = tuple(
        (i - 1) * s - 2 * p + d * (k - 1) + 1 + op
        for i, s, p, d, k, op in zip(spatial, stride, padding, dilation, ksize, output_padding)
    )
    if any(size < 1 for size in out_spatial):
        raise ValueError(
            f"`padding` must leave every output size >= 1 (as torch requires); the output would have spatial "
            f"shape {out_spatial}; got padding={padding} for input shape {tuple(x.shape)}, weight shape "
            f"{tuple(weight.shape)}, stride={stride}, output_padding={output_padding}, dilation={dilation}."
        )
    c_out = groups * weight.shape[1]
    full = tuple((i - 1) * s + d * (k - 1) + 1 for i, s, d, k in zip(spatial, stride, dilation, ksize))
    check_sizes_fit(
        full,
        out_spatial,
        in_shape[0],
        (c_in, c_out),
        "`stride` and `dilation`",
        f"stride={stride}, dilation={dilation} for input shape {tuple(x.shape)} and weight shape {tuple(weight.shape)}",
    )
    if bias is not None:
        if tuple(bias.shape) != (c_out,):
            raise ValueError(
                f"`bias` must be 1-D with C_out = groups * weight.shape[1] = {c_out} elements; got bias shape "
                f"{tuple(bias.shape)}."
            )

    if not batched:
        x = x[None]
    out = conv_transpose(
        x,
        kernel_from_torch(weight, groups),
        strides=stride,
        padding=tuple((p, p) for p in padding),
        output_padding=output_padding,
        data_format="channels_first",
        dilation_rate=dilation,
        groups=groups,
    )
    if bias is not None:
        out = out + jnp.reshape(bias, (c_out,) + (1,) * n)
    return out if batched else out[0]


def conv_transpose1d(
    input,
    weight,
    bias=None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int] = 0,
    groups: int = 1,
    dilation: int | Sequence[int] = 1,
    *,
    output_size: Sequence[int] | None = None,
):
    """``torch.nn.functional.conv_transpose1d`` in JAX.

    Args:
      input: ``(N, C_in, L)`` or unbatched ``(C_in, L)``.
      weight: ``(C_in, C_out // groups, k)`` (PyTorch layout).
      bias: ``None`` or ``(C_out,)``.
      stride: int or tuple of 1 int, >= 1.
      padding: int or tuple, >= 0: ``dilation * (k - 1) - padding`` zeros of implicit padding on
        both sides (the output is cropped by ``padding`` at both ends).
      output_padding: int or tuple, >= 0, smaller than ``stride`` or ``dilation``: extra size
        added at the end of the output.
      groups: int >= 1 dividing ``C_in``.
      dilation: int or tuple, >= 1.
      output_size: keyword-only extra, like ``torch.nn.ConvTranspose1d.forward(input,
        output_size)``: the wanted output length (``1``, or ``3`` / ``2`` sizes including batch
        and channels); it determines ``output_padding``, which must then be left at 0.

    Returns:
      ``(N, C_out, L_out)`` (or ``(C_out, L_out)`` for unbatched input) with
      ``L_out = (L - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1``.

    Raises:
      TypeError, ValueError: where PyTorch refuses the arguments (dtypes included), and for
        int64 operands and a bias of another dtype (see the module docstring).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxconvt import torch_compat
      >>> x = jnp.ones((1, 1, 3))
      >>> w = jnp.ones((1, 1, 2))
      >>> torch_compat.conv_transpose1d(x, w, stride=2)
      Array([[[1., 1., 1., 1., 1., 1.]]], dtype=float32)
    """
    return _conv_transpose_nd(1, input, weight, bias, stride, padding, output_padding, groups, dilation, output_size)


def conv_transpose2d(
    input,
    weight,
    bias=None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int] = 0,
    groups: int = 1,
    dilation: int | Sequence[int] = 1,
    *,
    output_size: Sequence[int] | None = None,
):
    """``torch.nn.functional.conv_transpose2d`` in JAX.

    Args:
      input: ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``.
      weight: ``(C_in, C_out // groups, kH, kW)`` (PyTorch layout).
      bias: ``None`` or ``(C_out,)``.
      stride: int or tuple of 2 ints (or 1, for both), >= 1.
      padding: int or tuple, >= 0; the output is cropped by ``padding`` at both ends.
      output_padding: int or tuple, >= 0, smaller than ``stride`` or ``dilation`` per
        dimension: extra size added at the end of the output.
      groups: int >= 1 dividing ``C_in``.
      dilation: int or tuple, >= 1.
      output_size: keyword-only extra, like ``torch.nn.ConvTranspose2d.forward(input,
        output_size)``: the wanted ``(H_out, W_out)`` (or with leading batch/channel sizes); it
        determines ``output_padding``, which must then be left at 0.

    Returns:
      ``(N, C_out, H_out, W_out)`` (or unbatched ``(C_out, H_out, W_out)``), each size
      ``(i - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1``.

    Raises:
      TypeError, ValueError: where PyTorch refuses the arguments (dtypes included), and for
        int64 operands and a bias of another dtype (see the module docstring).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxconvt import torch_compat
      >>> x = jnp.ones((2, 16, 8, 8))
      >>> w = jnp.ones((16, 4, 3, 3))                # groups=2 -> C_out = 8
      >>> torch_compat.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1, groups=2).shape
      (2, 8, 16, 16)
      >>> torch_compat.conv_transpose2d(x[0], w, stride=2, padding=1, groups=2, output_size=(16, 16)).shape
      (8, 16, 16)
    """
    return _conv_transpose_nd(2, input, weight, bias, stride, padding, output_padding, groups, dilation, output_size)


def conv_transpose3d(
    input,
    weight,
    bias=None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int] = 0,
    groups: int = 1,
    dilation: int | Sequence[int] = 1,
    *,
    output_size: Sequence[int] | None = None,
):
    """``torch.nn.functional.conv_transpose3d`` in JAX.

    Args:
      input: ``(N, C_in, D, H, W)`` or unbatched ``(C_in, D, H, W)``.
      weight: ``(C_in, C_out // groups, kD, kH, kW)`` (PyTorch layout).
      bias: ``None`` or ``(C_out,)``.
      stride: int or tuple of 3 ints (or 1, for all), >= 1.
      padding: int or tuple, >= 0; the output is cropped by ``padding`` at both ends.
      output_padding: int or tuple, >= 0, smaller than ``stride`` or ``dilation`` per
        dimension: extra size added at the end of the output.
      groups: int >= 1 dividing ``C_in``.
      dilation: int or tuple, >= 1.
      output_size: keyword-only extra, like ``torch.nn.ConvTranspose3d.forward(input,
        output_size)``; it determines ``output_padding``, which must then be left at 0.

    Returns:
      ``(N, C_out, D_out, H_out, W_out)`` (or unbatched without ``N``), each size
      ``(i - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1``.

    Raises:
      TypeError, ValueError: where PyTorch refuses the arguments (dtypes included), and for
        int64 operands and a bias of another dtype (see the module docstring).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxconvt import torch_compat
      >>> x = jnp.ones((1, 4, 4, 4, 4))
      >>> w = jnp.ones((4, 2, 2, 2, 2))
      >>> torch_compat.conv_transpose3d(x, w, bias=jnp.zeros(2), stride=2).shape
      (1, 2, 8, 8, 8)
    """
    return _conv_transpose_nd(3, input, weight, bias, stride, padding, output_padding, groups, dilation, output_size)
