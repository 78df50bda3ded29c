"""Argument normalisation and validation.

``make_spec`` turns the user's arguments and the static shapes into a frozen, hashable
:class:`ConvSpec` plus the output shape. It runs once per trace on static values, so
every error is raised at trace time, identically eagerly and under ``jax.jit``.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxconvt import _padding

__all__ = ["ConvSpec", "make_spec", "normalize_data_format", "ALGORITHMS"]

#: Lowering algorithms ``conv_transpose`` accepts (see ``_lowering.choose_algorithm``); "dot" applies to every slot.
ALGORITHMS = ("auto", "dilate", "pad", "phase", "dot")


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """Geometry of one transposed convolution, in canonical channels-last layout.

    Attributes:
      kernel_size: kernel spatial shape.
      strides: stride per spatial dimension.
      dilation: kernel dilation per spatial dimension.
      crops: ``(lo, hi)`` cropped from the full scatter result per spatial dimension;
        negative values zero-extend.
      groups: number of channel groups.
      precision: passed through to ``lax.conv_general_dilated``.
      algorithm: lowering algorithm ("auto" chooses at lowering time, per slot and platform).
    """

    kernel_size: tuple[int, ...]
    strides: tuple[int, ...]
    dilation: tuple[int, ...]
    crops: tuple[tuple[int, int], ...]
    groups: int = 1
    precision: Any = None
    algorithm: str = "auto"

    @property
    def ndim(self) -> int:
        return len(self.strides)

    def output_spatial(self, input_spatial) -> tuple[int, ...]:
        """Output spatial shape for an input spatial shape."""
        return tuple(
            _padding.output_size(i, k, s, d, c)
            for i, k, s, d, c in zip(input_spatial, self.kernel_size, self.strides, self.dilation, self.crops)
        )

    def input_spatial(self, output_spatial) -> tuple[int, ...]:
        """Input spatial shape that produces an output spatial shape."""
        return tuple(
            (out + lo + hi - _padding.dilated_size(k, d)) // s + 1
            for out, k, s, d, (lo, hi) in zip(output_spatial, self.kernel_size, self.strides, self.dilation, self.crops)
        )


def _is_int(v: Any) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return False
    try:
        operator.index(v)
    except TypeError:
        return False
    return True


def _describe(v: Any) -> str:
    return f"{v!r} (type {type(v).__name__})"


def int_tuple(value: Any, n: int, name: str, *, minimum: int) -> tuple[int, ...]:
    """An int or a length-``n`` sequence of ints -> an ``n``-tuple, each ``>= minimum``."""
    if _is_int(value):
        values = (operator.index(value),) * n
    elif isinstance(value, Sequence) and not isinstance(value, str) or isinstance(value, np.ndarray):
        items = list(np.asarray(value).tolist()) if isinstance(value, np.ndarray) else list(value)
        if not all(_is_int(v) for v in items):
            raise TypeError(f"`{name}` must be an int or a sequence of {n} ints; got {_describe(value)}.")
        if len(items) != n:
            raise ValueError(
                f"`{name}` must be an int or a sequence of {n} ints (one per spatial "
                f"dimension); got {value!r} of length {len(items)}."
            )
        values = tuple(operator.index(v) for v in items)
    else:
        raise TypeError(f"`{name}` must be an int or a sequence of {n} ints; got {_describe(value)}.")
    if any(v < minimum for v in values):
        raise ValueError(f"`{name}` must be >= {minimum} in every spatial dimension; got {name}={value!r}.")
    return values


def _precision(precision: Any):
    """None, a name, a ``lax.Precision`` or a pair of them -> a hashable value lax accepts."""
    from jax import lax

    rule = "`precision` must be None, a lax.Precision, one of its names (e.g. 'highest'), or a pair of them"

    def one(p):
        if isinstance(p, lax.Precision):
            return p
        if isinstance(p, str):
            try:
                return lax.Precision(p.lower())
            except (ValueError, KeyError) as err:
                names = sorted({m.name.lower() for m in lax.Precision})
                raise ValueError(f"{rule}; got {p!r} (known names: {names}).") from err
        raise TypeError(f"{rule}; got {_describe(p)}.")

    if precision is None:
        return None
    algorithms = tuple(getattr(lax, name) for name in ("DotAlgorithmPreset", "DotAlgorithm") if hasattr(lax, name))
    if algorithms and isinstance(precision, algorithms):
        return precision
    if isinstance(precision, (list, tuple)):
        if len(precision) != 2:
            raise ValueError(f"{rule}; got a sequence of length {len(precision)}: {precision!r}.")
        return (one(precision[0]), one(precision[1]))
    return one(precision)


def normalize_data_format(data_format: Any) -> bool:
    """Returns True for channels_last (the default), False for channels_first."""
    if data_format is None:
        return True
    if not isinstance(data_format, str):
        raise TypeError(
            f"`data_format` must be None, 'channels_last' or 'channels_first'; got {_describe(data_format)}."
        )
    fmt = data_format.lower()
    if fmt not in ("channels_last", "channels_first"):
        raise ValueError(f"`data_format` must be None, 'channels_last' or 'channels_first'; got {data_format!r}.")
    return fmt == "channels_last"


def _explicit_padding(padding: Any, n: int) -> tuple[tuple[int, int], ...]:
    """int | sequence of n ints | sequence of n (lo, hi) pairs -> n (lo, hi) pairs."""
    rule = (
        f"`padding` must be 'valid', 'same', a non-negative int, a sequence of {n} "
        f"non-negative ints, or a sequence of {n} (low, high) pairs of non-negative ints"
    )
    if isinstance(padding, np.ndarray):
        padding = padding.tolist()
    if _is_int(padding):
        pairs = ((operator.index(padding),) * 2,) * n
    elif isinstance(padding, Sequence) and not isinstance(padding, str):
        items = list(padding)
        if len(items) != n:
            raise ValueError(f"{rule}; got {padding!r} of length {len(items)}.")
        if all(_is_int(v) for v in items):
            pairs = tuple((operator.index(v),) * 2 for v in items)
        elif all(
            isinstance(p, Sequence) and not isinstance(p, str) and len(p) == 2 and all(_is_int(v) for v in p)
            for p in items
        ):
            pairs = tuple((operator.index(p[0]), operator.index(p[1])) for p in items)
        else:
            raise TypeError(f"{rule}; got {padding!r}.")
    else:
        raise TypeError(f"{rule}; got {_describe(padding)}.")
    if any(v < 0 for pair in pairs for v in pair):
        raise ValueError(f"{rule}; got negative padding {padding!r}.")
    return pairs


def _spatial_output_shape(output_shape: Any, n: int, batch: int, channels_out: int, channels_last: bool):
    """Validates ``output_shape`` (spatial, or full with batch and channels) -> spatial tuple."""
    rule = f"`output_shape` must be a sequence of {n} spatial sizes (or {n + 2} including batch and channels)"
    if _is_int(output_shape) and n == 1:
        output_shape = (output_shape,)
    if not (isinstance(output_shape, Sequence) and not isinstance(output_shape, str)) and not isinstance(
        output_shape, np.ndarray
    ):
        raise TypeError(f"{rule}; got {_describe(output_shape)}.")
    items = list(np.asarray(output_shape).tolist()) if isinstance(output_shape, np.ndarray) else list(output_shape)
    if not all(_is_int(v) for v in items):
        raise TypeError(f"{rule}; got {output_shape!r}.")
    items = [operator.index(v) for v in items]
    if len(items) == n + 2:
        full = items
        b, c = (full[0], full[-1]) if channels_last else (full[0], full[1])
        if b != batch or c != channels_out:
            raise ValueError(
                f"`output_shape` {tuple(full)} disagrees with the batch size {batch} and output "
                f"channels {channels_out} the op produces."
            )
        items = full[1:-1] if channels_last else full[2:]
    elif len(items) != n:
        raise ValueError(f"{rule}; got {output_shape!r} of length {len(items)}.")
    if any(v < 0 for v in items):
        raise ValueError(f"`output_shape` sizes must be >= 0; got {output_shape!r}.")
    return tuple(items)


def make_spec(
    input_shape: Sequence[int],
    kernel_shape: Sequence[int],
    strides: Any = 1,
    padding: Any = "valid",
    output_padding: Any = None,
    data_format: Any = None,
    dilation_rate: Any = 1,
    *,
    groups: Any = 1,
    output_shape: Any = None,
    precision: Any = None,
    algorithm: Any = "auto",
) -> tuple[ConvSpec, tuple[int, ...]]:
    """Validates every argument against the static shapes.

    Returns the spec and the full output shape (in the caller's ``data_format``).
    """
    input_shape = tuple(input_shape)
    kernel_shape = tuple(kernel_shape)
    channels_last = normalize_data_format(data_format)
    fmt = "channels_last" if channels_last else "channels_first"
    if len(input_shape) < 3:
        raise ValueError(
            "`inputs` must have rank >= 3 (batch, spatial dimensions..., channels, or "
            f"batch, channels, spatial... for channels_first); got shape {input_shape} of rank {len(input_shape)}."
        )
    n = len(input_shape) - 2
    if len(kernel_shape) != n + 2:
        raise ValueError(
            f"`kernel` must have rank {n + 2} (kernel spatial dimensions..., out channels // groups, "
            f"in channels) to match `inputs` of rank {n + 2}; got kernel shape {kernel_shape}."
        )
    batch = input_shape[0]
    if channels_last:
        spatial, c_in = input_shape[1:-1], input_shape[-1]
    else:
        spatial, c_in = input_shape[2:], input_shape[1]
    ksize, og, kc_in = kernel_shape[:-2], kernel_shape[-2], kernel_shape[-1]
    if any(k < 1 for k in ksize):
        raise ValueError(f"`kernel` spatial dimensions must all be >= 1; got kernel shape {kernel_shape}.")

    if not _is_int(groups):
        raise TypeError(f"`groups` must be a positive int; got {_describe(groups)}.")
    groups = operator.index(groups)
    if groups < 1:
        raise ValueError(f"`groups` must be >= 1; got groups={groups}.")
    if kc_in != c_in:
        raise ValueError(
            f"`kernel` input channels (its last axis, {kc_in}) must equal the input channels "
            f"({c_in}, axis {-1 if channels_last else 1} of `inputs` for data_format={fmt!r}); "
            f"got inputs shape {input_shape} and kernel shape {kernel_shape}."
        )
    if c_in % groups:
        raise ValueError(f"`groups` must divide the input channels; got groups={groups} and {c_in} input channels.")
    c_out = og * groups

    strides = int_tuple(strides, n, "strides", minimum=1)
    dilation = int_tuple(dilation_rate, n, "dilation_rate", minimum=1)

    if output_padding is not None and output_shape is not None:
        raise ValueError(
            "Give at most one of `output_padding` and `output_shape`; got "
            f"output_padding={output_padding!r} and output_shape={output_shape!r}."
        )
    if output_padding is not None:
        op = int_tuple(output_padding, n, "output_padding", minimum=0)
        bad = [j for j in range(n) if op[j] > _padding.max_output_padding(strides[j], dilation[j])]
        if bad:
            raise ValueError(
                "`output_padding` must be smaller than `strides` or `dilation_rate` in every "
                f"spatial dimension; got output_padding={op}, strides={strides}, dilation_rate={dilation}."
            )
    else:
        op = None

    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in ("valid", "same"):
            raise ValueError(
                f"`padding` must be 'valid' or 'same' (any case), or explicit integer crops; got {padding!r}."
            )

        def crops_for(ops):
            return tuple(
                _padding.keras_crops(mode, ksize[j], strides[j], dilation[j], None if ops is None else ops[j])
                for j in range(n)
            )
    else:
        pairs = _explicit_padding(padding, n)

        def crops_for(ops):
            return tuple(
                _padding.explicit_crops(lo, hi, None if ops is None else ops[j]) for j, (lo, hi) in enumerate(pairs)
            )

    if output_shape is not None:
        target = _spatial_output_shape(output_shape, n, batch, c_out, channels_last)
        base_crops = crops_for((0,) * n)
        base = [_padding.output_size(spatial[j], ksize[j], strides[j], dilation[j], base_crops[j]) for j in range(n)]
        op = []
        for j in range(n):
            hi_ = base[j] + _padding.max_output_padding(strides[j], dilation[j])
            if not base[j] <= target[j] <= hi_:
                reach = f"from {max(base[j], 0)} to {hi_}" if hi_ >= 0 else "no size (the padding crops everything)"
                raise ValueError(
                    f"`output_shape` {target} is not reachable: spatial dimension {j} can have any size "
                    f"{reach} with these inputs, strides, padding and dilation; got {target[j]}."
                )
            op.append(target[j] - base[j])
        op = tuple(op)

    crops = crops_for(op)
    out_spatial = tuple(_padding.output_size(spatial[j], ksize[j], strides[j], dilation[j], crops[j]) for j in range(n))
    if any(o < 0 for o in out_spatial):
        raise ValueError(
            f"`padding` crops more than the full output holds: the output would have spatial shape "
            f"{out_spatial}; got padding={padding!r} for inputs spatial shape {tuple(spatial)}, kernel "
            f"spatial shape {tuple(ksize)}, strides={strides}, dilation_rate={dilation}."
        )

    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise ValueError(f"`algorithm` must be one of {ALGORITHMS}; got {algorithm!r}.")
    if algorithm in ("dilate", "pad") and any(v > 1 for v in strides):
        dilated = tuple(_padding.dilated_size(ksize[j], dilation[j]) for j in range(n))
        if any(dilated[j] > spatial[j] for j in range(n)):
            raise ValueError(
                f"`algorithm={algorithm!r}` is refused when the dilated kernel {dilated} is larger than the input "
                f"spatial shape {tuple(spatial)} in some dimension: XLA's simplifier can abort the whole process on "
                "zero-inserted convolutions of that form. Use algorithm='auto' or 'phase' (same values)."
            )
    precision = _precision(precision)

    spec = ConvSpec(tuple(ksize), strides, dilation, crops, groups, precision, algorithm)
    out_shape = (batch, *out_spatial, c_out) if channels_last else (batch, c_out, *out_spatial)
    return spec, out_shape
