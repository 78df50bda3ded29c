"""Pieces shared by the framework layers (``jaxconvt.nnx``, ``linen``, ``equinox``, ``keras``).

Nothing here imports a framework at module level: ``import jaxconvt`` must keep needing only
jax and numpy. torch is imported only inside :func:`read_torch_conv_transpose`, a framework only
inside :func:`import_framework`.

Contents:

- :func:`import_framework` imports a framework module or raises an ``ImportError`` that names
  the extra to install (``pip install 'jaxconvt[flax]'``).
- :class:`TorchConvTranspose` and :func:`read_torch_conv_transpose`: everything a layer's
  ``from_torch`` needs from a ``torch.nn.ConvTranspose{1,2,3}d`` (plain, with
  ``torch.nn.utils.weight_norm`` or with ``torch.nn.utils.parametrizations.weight_norm``), as
  numpy arrays and tuples; :func:`check_torch_padding_mode` refuses a ``padding_mode`` other
  than ``'zeros'``; :func:`check_from_torch_kwargs` refuses keyword arguments that the module
  already determines.
- :func:`torch_crops`: PyTorch's explicit padding plus ``output_padding`` -> jaxconvt crops.
- :func:`conv_transpose_crops`: :func:`jaxconvt.conv_transpose` for arbitrary ``(lo, hi)``
  crops, negative ones (zero-extension) included; the single call every layer makes.
- :func:`int_tuple`, :func:`check_groups`, :func:`check_output_padding`: argument checks
  in the house style, shared by the layers.
- The Flax conventions, shared by ``jaxconvt.nnx`` and ``jaxconvt.linen``:
  :func:`flax_crops` (``lax.conv_transpose``'s padding of the dilated input -> crops),
  :func:`flax_kernel_to_jaxconvt` / :func:`jaxconvt_kernel_to_flax` (the ``transpose_kernel``
  layouts, with groups), :func:`flax_circular_wrap` (Flax's ``'CIRCULAR'`` post-processing),
  :func:`flax_padding`, :func:`flax_kernel_shape` and :func:`flax_conv_transpose` (the body of
  both layers' ``__call__``).

Crops: jaxconvt scatters every input element into a "full" output of length
``(i - 1) * s + (k - 1) * d + 1`` per spatial dimension and crops ``(lo, hi)`` from its ends; a
negative crop zero-extends (see docs/semantics.md).
"""

from __future__ import annotations

import dataclasses
import importlib
import operator
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "TorchConvTranspose",
    "check_groups",
    "check_output_padding",
    "check_from_torch_kwargs",
    "check_torch_padding_mode",
    "conv_transpose_crops",
    "flax_circular_wrap",
    "flax_crops",
    "flax_conv_transpose",
    "flax_kernel_shape",
    "flax_kernel_to_jaxconvt",
    "flax_padding",
    "flax_stride1_pads",
    "import_framework",
    "int_tuple",
    "jaxconvt_kernel_to_flax",
    "read_torch_conv_transpose",
    "torch_crops",
]


def import_framework(module: str, extra: str, *, layer: str):
    """Imports ``module`` or raises an ``ImportError`` naming the extra that installs it.

    Args:
      module: the module to import, e.g. ``"flax.nnx"``.
      extra: the jaxconvt extra that provides it, e.g. ``"flax"``.
      layer: the jaxconvt module that needs it, for the message, e.g. ``"jaxconvt.nnx"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{layer} needs `{module.split('.')[0]}`, which is not installed (importing {module!r} failed: "
            f"{err}). Install it with `pip install 'jaxconvt[{extra}]'`."
        ) from err


# --------------------------------------------------------------------------- argument checks


def _is_int(v: Any) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return False
    try:
        operator.index(v)
    except TypeError:
        return False
    return True


def int_tuple(value: Any, n: int, name: str, *, minimum: int) -> tuple[int, ...]:
    """An int or a sequence of ``n`` ints -> an ``n``-tuple, each ``>= minimum`` (else TypeError/ValueError)."""
    if _is_int(value):
        values = (operator.index(value),) * n
    elif isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, str):
        items = list(np.asarray(value).tolist()) if isinstance(value, np.ndarray) else list(value)
        if not all(_is_int(v) for v in items):
            raise TypeError(f"`{name}` must be an int or a sequence of {n} ints; got {value!r}.")
        if len(items) != n:
            raise ValueError(
                f"`{name}` must be an int or a sequence of {n} ints (one per spatial dimension); "
                f"got {value!r} of length {len(items)}."
            )
        values = tuple(operator.index(v) for v in items)
    else:
        kind = type(value).__name__
        raise TypeError(f"`{name}` must be an int or a sequence of {n} ints; got {value!r} (type {kind}).")
    if any(v < minimum for v in values):
        raise ValueError(f"`{name}` must be >= {minimum} in every spatial dimension; got {name}={value!r}.")
    return values


def check_groups(groups: Any, in_channels: int | None, out_channels: int | None) -> int:
    """``groups`` must be an int >= 1 dividing both channel counts (``None``: not known yet)."""
    if not _is_int(groups):
        raise TypeError(f"`groups` must be an int; got {groups!r} (type {type(groups).__name__}).")
    groups = operator.index(groups)
    if groups < 1:
        raise ValueError(f"`groups` must be >= 1; got groups={groups}.")
    for name, count in (("input", in_channels), ("output", out_channels)):
        if count is not None and count % groups:
            raise ValueError(
                f"`groups` must divide the number of {name} channels; got groups={groups} and {count} {name} channels."
            )
    return groups


def check_output_padding(
    output_padding: Any, strides: tuple[int, ...], dilation: tuple[int, ...], *, dilation_name: str = "kernel_dilation"
) -> tuple[int, ...]:
    """``None`` -> zeros; else ints each smaller than the stride or the dilation (PyTorch's rule)."""
    n = len(strides)
    if output_padding is None:
        return (0,) * n
    op = int_tuple(output_padding, n, "output_padding", minimum=0)
    if any(o >= s and o >= d for o, s, d in zip(op, strides, dilation)):
        raise ValueError(
            f"`output_padding` must be smaller than `strides` or `{dilation_name}` in every spatial dimension; "
            f"got output_padding={op}, strides={strides}, {dilation_name}={dilation}."
        )
    return op


def _pairs(padding: Any, n: int, name: str, rule: str) -> tuple[tuple[int, int], ...]:
    """int | n ints | n (lo, hi) pairs -> n pairs (no sign check)."""
    if isinstance(padding, np.ndarray):
        padding = padding.tolist()
    if _is_int(padding):
        return ((operator.index(padding),) * 2,) * n
    if isinstance(padding, Sequence) and not isinstance(padding, str) and len(padding) == n:
        pairs = []
        for p in padding:
            if _is_int(p):
                pairs.append((operator.index(p),) * 2)
            elif isinstance(p, Sequence) and not isinstance(p, str) and len(p) == 2 and all(_is_int(v) for v in p):
                pairs.append((operator.index(p[0]), operator.index(p[1])))
            else:
                break
        else:
            return tuple(pairs)
    raise ValueError(f"`{name}` must be {rule}; got {name}={padding!r}.")


def torch_crops(padding: Any, output_padding: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """PyTorch-style explicit padding and ``output_padding`` -> jaxconvt crops.

    ``padding`` is an int ``p`` (crop ``p`` from both ends of every spatial dimension), ``N``
    ints, or ``N`` ``(low, high)`` pairs, all non-negative; ``output_padding`` (``N`` ints, already
    checked) gives elements back at the high end: crops ``(lo, hi - op)``.
    """
    n = len(output_padding)
    rule = f"a non-negative int, a sequence of {n} non-negative ints or a sequence of {n} (low, high) pairs of them"
    pairs = _pairs(padding, n, "torch_padding", rule)
    if any(v < 0 for pair in pairs for v in pair):
        raise ValueError(f"`torch_padding` must be {rule}; got torch_padding={padding!r}.")
    return tuple((lo, hi - op) for (lo, hi), op in zip(pairs, output_padding))


# --------------------------------------------------------------------------- the op, any crops


def conv_transpose_crops(
    inputs,
    kernel,
    strides: tuple[int, ...],
    crops: Sequence[tuple[int, int]],
    dilation: tuple[int, ...],
    *,
    groups: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
):
    """:func:`jaxconvt.conv_transpose` (channels_last, jaxconvt kernel layout) for any ``(lo, hi)`` crops.

    Non-negative crops are passed as explicit padding; a negative high crop becomes
    ``output_padding`` as far as the op allows it (``< max(stride, dilation)``); what remains
    (negative low crops, the rest of the high side) is zero-extension with ``jnp.pad``, exactly
    zeros because it lies outside the scatter result. A dimension whose kept range misses the
    scatter result altogether gives zeros; crops larger than the result give size 0 (as
    ``lax.conv_general_dilated`` does, and so Flax's layer).
    """
    import jax.numpy as jnp

    from jaxconvt._api import conv_transpose

    n = len(strides)
    spatial = inputs.shape[1:-1]
    ksize = kernel.shape[:n]
    full = [(i - 1) * s + (k - 1) * d + 1 for i, k, s, d in zip(spatial, ksize, strides, dilation)]
    # Like lax.conv_general_dilated, a window larger than the result gives size 0, not an error.
    out_len = [max(f - lo - hi, 0) for f, (lo, hi) in zip(full, crops)]
    if any(lo >= f or hi >= f or v == 0 for f, (lo, hi), v in zip(full, crops, out_len)):
        # The output window lies outside the scatter result (or is empty): zeros, the inputs kept in the graph.
        import jax

        out_dtype = preferred_element_type or jnp.result_type(inputs.dtype, kernel.dtype)
        zero = (jnp.sum(inputs) * jnp.sum(kernel) * 0).astype(out_dtype)
        return jax.lax.broadcast(zero, (inputs.shape[0], *out_len, groups * kernel.shape[n]))
    pads, op, extend = [], [], []
    for (lo, hi), s, d in zip(crops, strides, dilation):
        hi_op = min(max(-hi, 0), max(s, d) - 1)
        pads.append((max(lo, 0), max(hi, 0)))
        op.append(hi_op)
        extend.append((max(-lo, 0), max(-hi, 0) - hi_op))
    y = conv_transpose(
        inputs,
        kernel,
        strides=strides,
        padding=tuple(pads),
        output_padding=tuple(op),
        dilation_rate=dilation,
        groups=groups,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    if any(e != (0, 0) for e in extend):
        y = jnp.pad(y, [(0, 0), *extend, (0, 0)])
    return y


# --------------------------------------------------------------------------- Flax conventions


def flax_crops(
    padding: str | Sequence[tuple[int, int]],
    kernel_size: tuple[int, ...],
    strides: tuple[int, ...],
    dilation: tuple[int, ...],
) -> tuple[tuple[int, int], ...]:
    """Crops equal to ``lax.conv_transpose(..., padding)`` as Flax calls it (legacy padding).

    ``lax.conv_transpose`` is ``conv_general_dilated(x, K', window_strides=1, padding=(pa, pb),
    lhs_dilation=s, rhs_dilation=d)``: a correlation over the stride-dilated input padded by
    ``(pa, pb)``. Output ``t`` collects input ``a`` through tap ``j`` where ``t = a*s + pa - j*d``
    (``K'`` unflipped) — the scatter result shifted by ``ke - 1 - pa``: crops
    ``(ke - 1 - pa, ke - 1 - pb)`` with ``ke = (k - 1)*d + 1``. ``'SAME'`` and ``'VALID'`` give
    ``(pa, pb)`` by lax's ``_conv_transpose_padding``: ``'VALID'`` ``pa = ke - 1``,
    ``pb = s - 1 + max(ke - s, 0)``; ``'SAME'`` total ``ke + s - 2`` with ``pa = ke - 1`` if
    ``s > ke - 1`` else ``ceil(total / 2)``.

    Args:
      padding: ``'SAME'``, ``'VALID'`` (upper case) or ``N`` ``(pa, pb)`` pairs (any sign).
    """
    crops = []
    for idx, (k, s, d) in enumerate(zip(kernel_size, strides, dilation)):
        ke = (k - 1) * d + 1
        if padding == "SAME":
            total = ke + s - 2
            pa = ke - 1 if s > ke - 1 else -(-total // 2)
            pb = total - pa
        elif padding == "VALID":
            pa, pb = ke - 1, s - 1 + max(ke - s, 0)
        else:
            pa, pb = padding[idx]
        crops.append((ke - 1 - pa, ke - 1 - pb))
    return tuple(crops)


def _regroup(kernel, groups: int, xp):
    """``(*k, A // G, G * B)`` -> ``(*k, B, G * (A // G))``: swaps the two channel axes per group."""
    n = kernel.ndim - 2
    a_g, gb = kernel.shape[-2:]
    b = gb // groups
    kernel = xp.reshape(kernel, (*kernel.shape[:n], a_g, groups, b))
    kernel = xp.transpose(kernel, (*range(n), n + 2, n + 1, n))
    return xp.reshape(kernel, (*kernel.shape[:n], b, groups * a_g))


def flax_kernel_to_jaxconvt(kernel, transpose_kernel: bool, groups: int = 1):
    """A Flax ``ConvTranspose`` kernel -> jaxconvt's layout ``(*k, C_out // G, C_in)`` (jax arrays).

    ``transpose_kernel=True``: Flax's kernel ``(*k, C_out // G, C_in)`` is the kernel of the forward
    convolution this layer transposes, already jaxconvt's layout. ``transpose_kernel=False``: Flax's
    kernel ``(*k, C_in // G, C_out)`` is the correlation kernel of ``lax.conv_general_dilated``
    (``lhs_dilation=strides``, ``feature_group_count=G``): flip every spatial axis and swap the two
    channel axes within each group.
    """
    import jax.numpy as jnp

    if transpose_kernel:
        return kernel
    n = kernel.ndim - 2
    return jnp.flip(_regroup(kernel, groups, jnp), axis=tuple(range(n)))


def jaxconvt_kernel_to_flax(kernel, transpose_kernel: bool, groups: int = 1):
    """The inverse of :func:`flax_kernel_to_jaxconvt`, on numpy arrays (used by ``from_torch``)."""
    kernel = np.asarray(kernel)
    if transpose_kernel:
        return kernel
    n = kernel.ndim - 2
    return _regroup(np.flip(kernel, axis=tuple(range(n))), groups, np)


def flax_circular_wrap(y, input_spatial: tuple[int, ...], strides: tuple[int, ...], transpose_kernel: bool):
    """Flax's ``padding='CIRCULAR'``: wrap the ``'VALID'`` output ``y`` (N, *spatial, C) periodically.

    The period is ``input_size * stride``; ``y`` is zero-padded to a whole number of periods (the odd
    element on the left unless ``transpose_kernel``, as Flax does) and the periods are summed.
    """
    import jax.numpy as jnp

    periods = [i * s for i, s in zip(input_spatial, strides)]
    diffs = [-(y_dim - p) % (2 * p) for y_dim, p in zip(y.shape[1:-1], periods)]
    if transpose_kernel:
        pads = [(d // 2, (d + 1) // 2) for d in diffs]
    else:
        pads = [((d + 1) // 2, d // 2) for d in diffs]
    y = jnp.pad(y, [(0, 0), *pads, (0, 0)])
    for axis in range(1, y.ndim - 1):
        y = y.reshape(y.shape[:axis] + (-1, periods[axis - 1]) + y.shape[axis + 1 :])
        y = y.sum(axis=axis)
    return y


FLAX_PADDING_STRINGS = ("SAME", "VALID", "CIRCULAR")

#: The other strings Flax's ``ConvTranspose`` runs: ``lax.conv_transpose`` hands them on to
#: ``lax.conv_general_dilated`` as forward-convolution padding (any case), which takes them only
#: without ``lhs_dilation``, i.e. when every stride is 1.
FLAX_STRIDE1_STRINGS = ("SAME", "VALID", "SAME_LOWER")


def flax_padding(padding: Any, n: int) -> str | tuple[tuple[int, int], ...]:
    """Flax's ``padding`` -> a string or ``n`` pairs, validated as far as it can be without strides.

    Accepts what Flax's ``ConvTranspose`` runs: ``'SAME'``, ``'VALID'``, ``'CIRCULAR'`` (exactly
    so), the forward-convolution strings of ``FLAX_STRIDE1_STRINGS`` in any case (meaningful at
    stride 1 only: :func:`flax_stride1_pads`), an int, or ``n`` ints or ``(low, high)`` pairs (lists
    too); raises ``ValueError`` otherwise.
    """
    rule = (
        f"'SAME', 'VALID', 'CIRCULAR', an int, or a sequence of {n} ints or (low, high) pairs of ints "
        "(Flax's padding of the stride-dilated input), or at stride 1 'same', 'valid' or 'SAME_LOWER' in any "
        "case (forward-convolution padding, as lax.conv_general_dilated reads them)"
    )
    if isinstance(padding, str):
        if padding in FLAX_PADDING_STRINGS or padding.upper() in FLAX_STRIDE1_STRINGS:
            return padding
        raise ValueError(
            f"`padding` must be {rule}; got padding={padding!r} (Flax's ConvTranspose does not run it either)."
        )
    return _pairs(padding, n, "padding", rule)


def flax_stride1_pads(
    padding: str, kernel_size: tuple[int, ...], strides: tuple[int, ...], dilation: tuple[int, ...]
) -> tuple[tuple[int, int], ...]:
    """Flax's pairs for a padding string other than exactly ``'SAME'``, ``'VALID'``, ``'CIRCULAR'``.

    Flax passes such a string through ``lax.conv_transpose`` to ``lax.conv_general_dilated``,
    which pads like a stride-1 forward convolution with the dilated kernel ``ke``: ``'VALID'``
    ``(0, 0)``, ``'SAME'`` ``ke - 1`` in all with the odd one high, ``'SAME_LOWER'`` with it low
    (so ``padding='same'`` keeps the input size, unlike ``'SAME'``'s transposed meaning), and
    refuses it with a stride above 1, as this does.
    """
    if any(s != 1 for s in strides):
        raise ValueError(
            f"`padding` {padding!r} is a forward-convolution padding that Flax's ConvTranspose runs only with "
            f"every stride 1 (lax: 'String padding is not implemented for transposed convolution'); got "
            f"strides={strides}. Use 'SAME' or 'VALID' (upper case: the transposed meaning) or explicit pairs."
        )
    mode, pads = padding.upper(), []
    for k, d in zip(kernel_size, dilation):
        total = 0 if mode == "VALID" else (k - 1) * d
        high = total // 2 if mode == "SAME_LOWER" else total - total // 2
        pads.append((total - high, high))
    return tuple(pads)


def flax_kernel_shape(
    kernel_size: tuple[int, ...], in_features: int, out_features: int, transpose_kernel: bool, groups: int
) -> tuple[int, ...]:
    """Shape of a Flax ``ConvTranspose`` kernel, with groups (``groups=1``: exactly Flax's).

    ``transpose_kernel=False``: ``(*k, in // G, out)``; ``True``: ``(*k, out // G, in)``.
    """
    if transpose_kernel:
        return (*kernel_size, out_features // groups, in_features)
    return (*kernel_size, in_features // groups, out_features)


def flax_conv_transpose(
    inputs,
    kernel,
    bias,
    *,
    strides: Any,
    padding: Any,
    kernel_dilation: Any,
    transpose_kernel: bool,
    groups: Any,
    output_padding: Any,
    torch_padding: Any,
    precision: Any,
    preferred_element_type: Any,
):
    """Flax ``ConvTranspose.__call__`` after the parameters are read, masked and promoted.

    Flattens the batch dimensions (adding one when there is none) as Flax does, runs
    :func:`conv_transpose_crops` with the Flax crops (or ``torch_padding``'s), wraps for
    ``'CIRCULAR'``, adds the bias (``y += bias``, Flax's dtype rule) and restores the batch shape.
    All checks run at trace time on static shapes.
    """
    import jax.numpy as jnp

    n = kernel.ndim - 2
    strides = int_tuple(1 if strides is None else strides, n, "strides", minimum=1)
    dilation = int_tuple(1 if kernel_dilation is None else kernel_dilation, n, "kernel_dilation", minimum=1)
    groups = check_groups(groups, None, None)
    op = check_output_padding(output_padding, strides, dilation)
    mode = flax_padding(padding, n)
    if isinstance(mode, str) and mode not in FLAX_PADDING_STRINGS:
        mode = flax_stride1_pads(mode, kernel.shape[:n], strides, dilation)
    if transpose_kernel:
        c_in, c_out = kernel.shape[-1], kernel.shape[-2] * groups
    else:
        c_in, c_out = kernel.shape[-2] * groups, kernel.shape[-1]
        check_groups(groups, None, c_out)
    if inputs.ndim < n + 1 or inputs.shape[-1] != c_in:
        raise ValueError(
            f"`inputs` must have shape (*batch, *spatial, {c_in}) with {n} spatial dimensions for a kernel of shape "
            f"{tuple(kernel.shape)} (transpose_kernel={transpose_kernel}, groups={groups}); got shape "
            f"{tuple(inputs.shape)}."
        )
    if torch_padding is not None:
        if mode != "SAME":
            raise ValueError(
                "`torch_padding` replaces `padding`: leave `padding` at its default 'SAME' when giving "
                f"`torch_padding`; got padding={padding!r}, torch_padding={torch_padding!r}."
            )
        crops = torch_crops(torch_padding, op)
    elif mode == "CIRCULAR":
        if any(op):
            raise ValueError(
                "`output_padding` must be zero with padding='CIRCULAR' (the output wraps to input size * strides); "
                f"got output_padding={op}."
            )
        crops = flax_crops("VALID", kernel.shape[:n], strides, dilation)
    else:
        crops = flax_crops(mode, kernel.shape[:n], strides, dilation)
        crops = tuple((lo, hi - o) for (lo, hi), o in zip(crops, op))

    batch_shape = inputs.shape[: inputs.ndim - n - 1]
    if len(batch_shape) != 1:
        inputs = jnp.reshape(inputs, (-1, *inputs.shape[len(batch_shape) :]))
    y = conv_transpose_crops(
        inputs,
        flax_kernel_to_jaxconvt(kernel, transpose_kernel, groups),
        strides,
        crops,
        dilation,
        groups=groups,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    if mode == "CIRCULAR" and torch_padding is None:
        y = flax_circular_wrap(y, inputs.shape[1:-1], strides, transpose_kernel)
    if bias is not None:
        y += jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
    if len(batch_shape) != 1:
        y = jnp.reshape(y, batch_shape + y.shape[1:])
    return y


# --------------------------------------------------------------------------- torch


@dataclasses.dataclass(frozen=True)
class TorchConvTranspose:
    """What a layer's ``from_torch`` reads from a ``torch.nn.ConvTranspose{1,2,3}d``.

    Attributes:
      ndim: number of spatial dimensions (1, 2 or 3).
      in_channels, out_channels: the module's channel counts.
      kernel_size, stride, padding, output_padding, dilation: per spatial dimension, as tuples.
      groups: channel groups.
      padding_mode: the module's ``padding_mode`` (torch runs only ``'zeros'``).
      weight: the effective weight (weight norm applied) in torch's layout
        ``(C_in, C_out // groups, *k)``, a numpy array of the stored float dtype.
      bias: ``(C_out,)`` or ``None``.
    """

    ndim: int
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    output_padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    padding_mode: str
    weight: np.ndarray
    bias: np.ndarray | None

    def kernel(self) -> np.ndarray:
        """The weight in jaxconvt's (and Keras's) layout ``(*k, C_out // groups, C_in)``."""
        return np.ascontiguousarray(np.transpose(self.weight, (*range(2, self.weight.ndim), 1, 0)))


def _tensor_to_numpy(t) -> np.ndarray:
    import torch

    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.float().numpy().astype(ml_dtypes.bfloat16)
    return t.numpy().copy()


def read_torch_conv_transpose(module: Any, *, layer: str) -> TorchConvTranspose:
    """Reads a ``torch.nn.ConvTranspose{1,2,3}d`` into a :class:`TorchConvTranspose`.

    Handles plain modules, ``torch.nn.utils.weight_norm`` (``weight_g`` / ``weight_v``: the weight
    is recomputed from them with the hook's own ``compute_weight``, so a stale ``module.weight``
    does not matter) and ``torch.nn.utils.parametrizations.weight_norm`` (``module.weight``
    computes it).

    Args:
      module: the torch module.
      layer: the calling method for messages, e.g. ``"jaxconvt.nnx.ConvTranspose.from_torch"``.

    Raises:
      TypeError: ``module`` is not a ``torch.nn.ConvTranspose1d/2d/3d`` (or torch is not installed).
      ValueError: an uninitialized lazy module.
    """
    kinds = {"ConvTranspose1d": 1, "ConvTranspose2d": 2, "ConvTranspose3d": 3}
    torch = sys.modules.get("torch")  # a torch module exists only once torch is imported
    ndim = None
    if torch is not None:
        for name, n in kinds.items():
            if isinstance(module, getattr(torch.nn, name)):
                ndim = n
    if ndim is None:
        raise TypeError(
            f"{layer} needs a torch.nn.ConvTranspose1d, ConvTranspose2d or ConvTranspose3d module; got "
            f"{type(module).__module__}.{type(module).__qualname__}."
        )
    from torch.nn.utils.weight_norm import WeightNorm

    weight_t = None
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, WeightNorm) and hook.name == "weight":
            with torch.no_grad():
                weight_t = hook.compute_weight(module)
    with torch.no_grad():
        if weight_t is None:
            weight_t = module.weight  # a parametrization (e.g. weight norm) computes it on access
        if isinstance(weight_t, torch.nn.parameter.UninitializedParameter):
            raise ValueError(
                f"{layer} got an uninitialized lazy module ({type(module).__name__}); run it on one input first."
            )
        weight = _tensor_to_numpy(weight_t)
        bias = None if module.bias is None else _tensor_to_numpy(module.bias)

    def tup(v):
        return tuple(int(x) for x in v) if isinstance(v, (tuple, list)) else (int(v),) * ndim

    if isinstance(module.padding, str):
        raise ValueError(f"{layer}: the torch module has string padding {module.padding!r}; torch runs only ints.")
    return TorchConvTranspose(
        ndim=ndim,
        in_channels=int(module.in_channels),
        out_channels=int(module.out_channels),
        kernel_size=tup(module.kernel_size),
        stride=tup(module.stride),
        padding=tup(module.padding),
        output_padding=tup(module.output_padding),
        dilation=tup(module.dilation),
        groups=int(module.groups),
        padding_mode=str(module.padding_mode),
        weight=weight,
        bias=bias,
    )


def check_torch_padding_mode(info: TorchConvTranspose, *, layer: str, supported: Sequence[str] = ("zeros",)) -> None:
    """Raises ``ValueError`` naming ``padding_mode`` unless it is one ``layer`` supports."""
    if info.padding_mode not in supported:
        raise ValueError(
            f"`padding_mode` {info.padding_mode!r} of the torch module is not supported by {layer}; it supports "
            f"{', '.join(repr(m) for m in supported)} (the only padding_mode torch's ConvTranspose runs)."
        )


def check_from_torch_kwargs(kwargs: dict, taken: Sequence[str], *, layer: str) -> None:
    """Raises ``TypeError`` if ``kwargs`` sets a constructor argument that ``from_torch`` takes from the module."""
    clash = [name for name in taken if name in kwargs]
    if clash:
        raise TypeError(
            f"{layer} takes {', '.join(f'`{name}`' for name in clash)} from the torch module; leave "
            f"{'it' if len(clash) == 1 else 'them'} out of the keyword arguments; got "
            f"{', '.join(f'{name}={kwargs[name]!r}' for name in clash)}."
        )
