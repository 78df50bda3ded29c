"""The ONNX ``ConvTranspose`` operator (opsets 11-22) on top of :func:`jaxconvt.conv_transpose`.

``conv_transpose(X, W, B, **attributes)`` takes the operator's inputs and attributes with their
ONNX names and meanings: ``X (N, C, *spatial)``, ``W (C, M // group, *kernel)``, optional
``B (M,)``; ``pads = [begin..., end...]`` crop the full result, ``output_padding`` extends it
at the end, and ``output_shape`` or ``auto_pad="SAME_UPPER" / "SAME_LOWER"`` derive the pads
from a target size with the operator's formulas::

    total = strides * (in - 1) + output_padding + (kernel - 1) * dilations + 1 - out
    SAME_UPPER:          begin = total // 2,         end = total - begin
    otherwise:           end   = total // 2,         begin = total - end

with floor division, so a negative total (a target larger than the full result) zero-extends
the output, the odd element going to the beginning for SAME_UPPER and to the end otherwise.
``out`` is ``output_shape`` when given (which overrides ``pads``), else ``in * strides``.

Notes on other implementations (checked with onnx 1.23):

* ``onnx.reference.ReferenceEvaluator`` follows these formulas for SAME_UPPER / SAME_LOWER.
  With ``auto_pad`` NOTSET or VALID and ``output_shape`` it instead keeps ``pads`` (or 0) as the
  beginning crop and fills the target size from there: with no ``pads`` it agrees with the
  formula when ``total`` is 0 or -1, puts all the zeros at the end for totals from
  ``-(strides - 1)`` to -2, and raises otherwise. This module follows the operator
  specification (the formula) there; see
  https://github.com/onnx/onnx/issues/4527 for the ambiguity.
* The reference evaluator raises for ``group > 1`` unless every group has exactly one input and
  one output channel; this module computes every group (checked per group against it).
* The reference evaluator also raises for ``output_padding >= strides``, which the operator
  allows when ``output_padding < dilations`` (as PyTorch does); this module computes it.

The crops go to jaxconvt's explicit per-side padding; the parts of a negative crop (zero
extension) are added afterwards with ``lax.pad``, so the result is exact and differentiable
under every JAX transformation.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconvt._api import as_operand
from jaxconvt._api import conv_transpose as _core_conv_transpose
from jaxconvt._spec import INT64_MAX, _is_int, _scalar, check_sizes_fit

__all__ = ["conv_transpose", "conv_transpose_crops"]

AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")


def _ints(value: Any, length: int, name: str, default: int, minimum: int) -> tuple[int, ...]:
    """An ONNX ints attribute: ``None`` (default) or a sequence of exactly ``length`` ints."""
    if value is None:
        return (default,) * length
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)) or not all(_is_int(v) for v in value):
        raise TypeError(f"`{name}` must be a sequence of {length} ints; got {value!r} (type {type(value).__name__}).")
    if len(value) != length:
        raise ValueError(f"`{name}` must have {length} elements; got {name}={list(value)!r} of length {len(value)}.")
    values = tuple(operator.index(_scalar(v)) for v in value)
    if any(v < minimum for v in values):
        raise ValueError(f"`{name}` must be >= {minimum} everywhere; got {name}={list(values)!r}.")
    if any(v > INT64_MAX for v in values):
        raise ValueError(
            f"`{name}` must be at most 2**63 - 1 everywhere (ONNX ints are int64); got {name}={list(values)!r}."
        )
    return values


def _auto_pad(auto_pad: Any) -> str:
    if auto_pad is None:  # attribute absent
        return "NOTSET"
    if isinstance(auto_pad, bytes):  # onnx.helper.get_attribute_value gives bytes for strings
        try:
            auto_pad = auto_pad.decode()
        except UnicodeDecodeError as err:
            raise ValueError(f"`auto_pad` must be one of {AUTO_PADS}; got {auto_pad!r} (not UTF-8).") from err
    if not isinstance(auto_pad, str):
        raise TypeError(f"`auto_pad` must be one of {AUTO_PADS}; got {auto_pad!r} (type {type(auto_pad).__name__}).")
    if auto_pad not in AUTO_PADS:
        raise ValueError(f"`auto_pad` must be one of {AUTO_PADS}; got {auto_pad!r}.")
    return auto_pad


def conv_transpose_crops(
    input_spatial: Sequence[int],
    kernel_spatial: Sequence[int],
    *,
    auto_pad: str | bytes | None = "NOTSET",
    dilations: Sequence[int] | None = None,
    output_padding: Sequence[int] | None = None,
    output_shape: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
) -> tuple[tuple[int, int], ...]:
    """Per-dimension ``(begin, end)`` crops of ONNX ``ConvTranspose``'s full scatter result.

    The output is ``full[begin : len(full) - end]`` along each spatial dimension, where
    ``full`` has length ``strides * (in - 1) + (kernel - 1) * dilations + 1`` and a negative crop
    means that many zeros added on that side. ``end`` already includes ``output_padding``
    (``end = pads_end - output_padding``). Validates the attributes like :func:`conv_transpose`.

    Args:
      input_spatial: spatial shape of ``X``.
      kernel_spatial: spatial shape of ``W``.
      auto_pad, dilations, output_padding, output_shape, pads, strides: the operator's
        attributes, as for :func:`conv_transpose`.

    Returns:
      A tuple of ``(begin, end)`` pairs, one per spatial dimension.

    Example:
      >>> from jaxconvt import onnx_compat
      >>> onnx_compat.conv_transpose_crops((4,), (3,), strides=[3], output_shape=[14])
      ((-1, -1),)
      >>> onnx_compat.conv_transpose_crops((3,), (2,), strides=[3], auto_pad="SAME_UPPER")
      ((-1, 0),)
      >>> onnx_compat.conv_transpose_crops((3, 3), (3, 3), strides=[3, 2], pads=[1, 2, 1, 2],
      ...                                  output_padding=[1, 1])
      ((1, 0), (2, 1))
    """
    n = len(input_spatial)
    auto_pad = _auto_pad(auto_pad)
    strides = _ints(strides, n, "strides", 1, 1)
    dilations = _ints(dilations, n, "dilations", 1, 1)
    output_padding = _ints(output_padding, n, "output_padding", 0, 0)
    if pads is not None and auto_pad != "NOTSET":
        raise ValueError(
            f"`pads` cannot be used together with `auto_pad` (only with auto_pad='NOTSET'); got pads={pads!r} "
            f"and auto_pad={auto_pad!r}."
        )
    pads = _ints(pads, 2 * n, "pads", 0, 0)
    bad = [j for j in range(n) if output_padding[j] >= max(strides[j], dilations[j])]
    if bad:
        raise ValueError(
            "`output_padding` must be smaller than `strides` or `dilations` in every spatial dimension; got "
            f"output_padding={list(output_padding)}, strides={list(strides)}, dilations={list(dilations)}."
        )
    if output_shape is not None:
        target = _ints(output_shape, n, "output_shape", 0, 0)
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        target = tuple(i * s for i, s in zip(input_spatial, strides))
    else:
        target = None
    crops = []
    for j in range(n):
        full = strides[j] * (input_spatial[j] - 1) + (kernel_spatial[j] - 1) * dilations[j] + 1
        if target is not None:
            total = full + output_padding[j] - target[j]
            if auto_pad == "SAME_UPPER":
                begin = total // 2
                end = total - begin
            else:
                end = total // 2
                begin = total - end
        elif auto_pad == "VALID":
            begin = end = 0
        else:
            begin, end = pads[j], pads[j + n]
        crops.append((begin, end - output_padding[j]))
    return tuple(crops)


def conv_transpose(
    X,
    W,
    B=None,
    *,
    auto_pad: str | bytes | None = "NOTSET",
    dilations: Sequence[int] | None = None,
    group: int = 1,
    kernel_shape: Sequence[int] | None = None,
    output_padding: Sequence[int] | None = None,
    output_shape: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
):
    """The ONNX ``ConvTranspose`` operator (opsets 11-22) in JAX.

    Args:
      X: input ``(N, C, *spatial)``, any number ``>= 1`` of spatial dimensions.
      W: weight ``(C, M // group, *kernel)``.
      B: optional bias ``(M,)``.
      auto_pad: ``"NOTSET"`` (default: use ``pads``), ``"VALID"`` (no crop),
        ``"SAME_UPPER"`` or ``"SAME_LOWER"`` (output ``in * strides``; an odd crop goes to the
        end for SAME_UPPER, to the beginning for SAME_LOWER). A str or bytes; ``None`` (like
        every other attribute here) means absent, i.e. NOTSET.
      dilations: ints >= 1 per spatial dimension (default 1).
      group: number of groups; ``C`` must be divisible by it.
      kernel_shape: optional; must equal ``W.shape[2:]``.
      output_padding: ints >= 0 per spatial dimension, each smaller than the stride or the
        dilation; added at the end (default 0).
      output_shape: optional spatial output shape; overrides ``pads`` (see the module
        docstring for the formula).
      pads: ``[begin..., end...]``, ints >= 0 cropped from the full result (default 0); only
        with ``auto_pad="NOTSET"``.
      strides: ints >= 1 per spatial dimension (default 1).

    Returns:
      ``Y`` of shape ``(N, M, *out)`` and the promoted dtype of ``X``, ``W`` and ``B``.

    Raises:
      TypeError, ValueError: for attributes or shapes the operator does not allow, naming the
        operator's input or attribute: operands that are not arrays of float16, bfloat16,
        float32, float64, complex64 or complex128 (``TypeError``), ints beyond int64 (ONNX's
        ints) and sizes beyond what XLA's int64 arithmetic holds (``ValueError``).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxconvt import onnx_compat
      >>> x = jnp.arange(9.0).reshape(1, 1, 3, 3)
      >>> w = jnp.ones((1, 2, 3, 3))
      >>> onnx_compat.conv_transpose(x, w, strides=[3, 2], output_shape=[10, 8]).shape
      (1, 2, 10, 8)
      >>> onnx_compat.conv_transpose(x, w, auto_pad="SAME_UPPER", strides=[2, 2])[0, 0, 0]
      Array([0., 0., 1., 1., 3., 2.], dtype=float32)
    """
    X = as_operand(X, "X")
    W = as_operand(W, "W")
    if X.ndim < 3:
        raise ValueError(f"`X` must have rank >= 3 (N, C, *spatial); got shape {tuple(X.shape)}.")
    n = X.ndim - 2
    if W.ndim != n + 2:
        raise ValueError(
            f"`W` must have rank {n + 2} (C, M // group, *kernel) like `X`; got X shape {tuple(X.shape)} and W shape "
            f"{tuple(W.shape)}."
        )
    if not _is_int(group):
        raise TypeError(f"`group` must be an int; got {group!r} (type {type(group).__name__}).")
    group = operator.index(_scalar(group))
    if group < 1:
        raise ValueError(f"`group` must be >= 1; got group={group}.")
    if group > INT64_MAX:
        raise ValueError(f"`group` must be at most 2**63 - 1 (ONNX ints are int64); got group={group}.")
    if W.shape[0] != X.shape[1]:
        raise ValueError(
            f"`W`'s first axis must equal the input channels C of `X`; got X shape {tuple(X.shape)} and W shape "
            f"{tuple(W.shape)}."
        )
    if X.shape[1] % group:
        raise ValueError(f"`group` must divide the input channels; got group={group} and X shape {tuple(X.shape)}.")
    ksize = tuple(W.shape[2:])
    if kernel_shape is not None and _ints(kernel_shape, n, "kernel_shape", 1, 1) != ksize:
        raise ValueError(
            f"`kernel_shape` must equal W's spatial shape {list(ksize)}; got kernel_shape={list(kernel_shape)!r}."
        )
    if any(k < 1 for k in ksize):
        raise ValueError(f"`W` spatial dimensions must be >= 1; got W shape {tuple(W.shape)}.")
    m = W.shape[1] * group
    if B is not None:
        B = as_operand(B, "B")
        if tuple(B.shape) != (m,):
            raise ValueError(f"`B` must have shape (M,) = ({m},) (M = W.shape[1] * group); got B shape {B.shape}.")

    spatial = tuple(X.shape[2:])
    crops = conv_transpose_crops(
        spatial,
        ksize,
        auto_pad=auto_pad,
        dilations=dilations,
        output_padding=output_padding,
        output_shape=output_shape,
        pads=pads,
        strides=strides,
    )
    strides = _ints(strides, n, "strides", 1, 1)
    dilations = _ints(dilations, n, "dilations", 1, 1)
    fulls = [s * (i - 1) + (k - 1) * d + 1 for i, k, s, d in zip(spatial, ksize, strides, dilations)]
    out_spatial = [f - lo - hi for f, (lo, hi) in zip(fulls, crops)]
    if any(size < 0 for size in out_spatial):
        raise ValueError(
            f"`pads` crop more than the full output holds: the output would have spatial shape {out_spatial}; got "
            f"pads={pads!r}, output_padding={output_padding!r} for X shape {tuple(X.shape)}, W shape "
            f"{tuple(W.shape)}, strides={list(strides)}, dilations={list(dilations)}."
        )
    check_sizes_fit(
        fulls,
        out_spatial,
        X.shape[0],
        (X.shape[1], m),
        "`strides` and `dilations`",
        f"strides={list(strides)}, dilations={list(dilations)} for X shape {tuple(X.shape)} and W shape "
        f"{tuple(W.shape)}",
    )

    # The core takes non-negative crops that fit in the full result; the rest is lax.pad
    # (positive: zero extension, negative: a further crop of the all-zero extension).
    inner = []
    for f, (lo, hi) in zip(fulls, crops):
        a = min(max(lo, 0), f)
        inner.append((a, min(max(hi, 0), f - a)))
    kernel = jnp.transpose(W, (*range(2, n + 2), 1, 0))  # (C, M/G, *k) -> (*k, M/G, C)
    Y = _core_conv_transpose(
        X,
        kernel,
        strides=strides,
        padding=tuple(inner),
        data_format="channels_first",
        dilation_rate=dilations,
        groups=group,
    )
    extra = [(a - lo, b - hi) for (a, b), (lo, hi) in zip(inner, crops)]
    if any(v != 0 for pair in extra for v in pair):
        Y = lax.pad(Y, jnp.zeros((), Y.dtype), [(0, 0, 0), (0, 0, 0), *((lo, hi, 0) for lo, hi in extra)])
    if B is not None:
        Y = Y + jnp.reshape(B, (m,) + (1,) * n)
    return Y
