"""Argument normalisation and validation.

``make_spec`` turns the user's arguments and the static shapes into a frozen, hashable
:class:`ConvSpec` plus the output shape. It runs once per trace on static values, so
every error is raised at trace time, identically eagerly and under ``jax.jit``.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxconvt import _padding

__all__ = [
    "ConvSpec",
    "make_spec",
    "normalize_data_format",
    "shape_tuple",
    "check_sizes_fit",
    "ALGORITHMS",
    "INT64_MAX",
    "MAX_ELEMENTS",
]

#: Lowering algorithms ``conv_transpose`` accepts (``_lowering.choose_algorithm``); "dot" and "gemm" apply to all slots.
ALGORITHMS = ("auto", "dilate", "pad", "phase", "dot", "gemm")

#: Largest size, stride, padding or element count XLA can represent (its shapes are int64).
INT64_MAX = 2**63 - 1
#: Most elements an array of the op may have: 16-byte elements then need 2**60 bytes, within int64.
MAX_ELEMENTS = 2**56
_INT64_RULE = "at most 2**63 - 1 (XLA's sizes are int64)"


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


def _scalar(v: Any) -> Any:
    """A 0-d numpy array -> its numpy scalar, so it is judged like the scalar (``np.array(2)`` is an int,
    ``np.array(True)`` a bool, ``np.array(2.0)`` a float); anything else unchanged."""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return v[()]
    return v


def _is_int(v: Any) -> bool:
    """An int, a numpy integer or a 0-d integer array; never a bool (Python, numpy or array)."""
    v = _scalar(v)
    if isinstance(v, (bool, np.bool_)) or getattr(getattr(v, "dtype", None), "kind", None) == "b":
        return False
    try:
        operator.index(v)
    except TypeError:
        return False
    return True


def _describe(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"{v!r} (a numpy array of dtype {v.dtype})"
    return f"{v!r} (type {type(v).__name__})"


def _sequence_items(value: Any) -> list | None:
    """The items of a non-string sequence or a numpy array of rank >= 1, else None."""
    value = _scalar(value)
    if isinstance(value, np.ndarray):
        return list(value)
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return list(value)
    return None


def check_int64(values: Sequence[int], name: str, shown: Any) -> None:
    """Raises ValueError naming ``name`` when a value does not fit XLA's int64 sizes."""
    if any(v > INT64_MAX for v in values):
        raise ValueError(f"`{name}` must be {_INT64_RULE} in every spatial dimension; got {name}={shown!r}.")


def int_tuple(value: Any, n: int, name: str, *, minimum: int) -> tuple[int, ...]:
    """An int or a length-``n`` sequence of ints -> an ``n``-tuple, each ``>= minimum`` and fitting int64.

    0-d numpy arrays count as their scalar: an integer one is an int, a bool or float one is refused.
    """
    if _is_int(value):
        values = (operator.index(_scalar(value)),) * n
    elif (items := _sequence_items(value)) is not None:
        if not all(_is_int(v) for v in items):
            raise TypeError(f"`{name}` must be an int or a sequence of {n} ints; got {_describe(value)}.")
        if len(items) != n:
            raise ValueError(
                f"`{name}` must be an int or a sequence of {n} ints (one per spatial "
                f"dimension); got {value!r} of length {len(items)}."
            )
        values = tuple(operator.index(_scalar(v)) for v in items)
    else:
        raise TypeError(f"`{name}` must be an int or a sequence of {n} ints; got {_describe(value)}.")
    if any(v < minimum for v in values):
        raise ValueError(f"`{name}` must be >= {minimum} in every spatial dimension; got {name}={value!r}.")
    check_int64(values, name, value)
    return values


def shape_tuple(value: Any, name: str) -> tuple[int, ...]:
    """A shape given by the user (``conv_transpose_output_shape``) -> a tuple of ints in ``[0, 2**63)``."""
    items = _sequence_items(value)
    if items is None or not all(_is_int(v) for v in items):
        raise TypeError(f"`{name}` must be a sequence of ints; got {_describe(value)}.")
    shape = tuple(operator.index(_scalar(v)) for v in items)
    if any(v < 0 for v in shape):
        raise ValueError(f"`{name}` sizes must be >= 0; got {name}={shape}.")
    if any(v > INT64_MAX for v in shape):
        raise ValueError(f"`{name}` sizes must be {_INT64_RULE}; got {name}={shape}.")
    return shape


def check_sizes_fit(
    full: Sequence[int], out: Sequence[int], batch: int, channels: tuple[int, int], names: str, got: str
) -> None:
    """Raises ValueError when the sizes the op works with do not fit XLA's int64 arithmetic.

    ``full`` are the uncropped spatial sizes, ``out`` the output's, ``channels`` the input and
    output channel counts; ``names`` are the backticked arguments that made the sizes and ``got``
    their values, for the message. Two rules: every size is at most ``2**63 - 1``, and the arrays
    the op builds (at most ``batch * max(channels)`` times the larger of the uncropped and
    output spatial sizes; empty axes counted as 1) have at most ``MAX_ELEMENTS`` elements, so
    their sizes in bytes fit int64: XLA aborts the whole process when a byte size overflows.
    Python ints never overflow, so the check is exact and costs the same for any stride.
    """
    if any(v > INT64_MAX for v in (*full, *out)):
        raise ValueError(
            f"{names} must keep every size {_INT64_RULE}: the uncropped result would have spatial shape "
            f"{tuple(full)} and the output {tuple(out)}; got {got}."
        )
    # A symbolic batch size (jax.export) cannot be checked here: it counts as 1.
    batch = batch if isinstance(batch, (int, np.integer)) else 1
    elements = math.prod(max(v, 1) for v in (batch, max(channels), *(max(f, o) for f, o in zip(full, out))))
    if elements > MAX_ELEMENTS:
        raise ValueError(
            f"{names} must keep the op's arrays at most 2**56 elements (XLA computes sizes in bytes as int64 and "
            f"aborts the process when they overflow): the uncropped result would have spatial shape {tuple(full)} "
            f"and the output {tuple(out)}, about {elements:.3g} elements with batch {batch} and "
            f"{max(channels)} channels; got {got}."
        )


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
        padding = padding.tolist()  # a 0-d array becomes its Python scalar
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
    if any(v > INT64_MAX for pair in pairs for v in pair):
        raise ValueError(f"`padding` must be {_INT64_RULE} in every spatial dimension; got padding={padding!r}.")
    return pairs


def _spatial_output_shape(output_shape: Any, n: int, batch: int, channels_out: int, channels_last: bool):
    """Validates ``output_shape`` (spatial, or full with batch and channels) -> spatial tuple."""
    rule = f"`output_shape` must be a sequence of {n} spatial sizes (or {n + 2} including batch and channels)"
    if _is_int(output_shape) and n == 1:
        output_shape = (output_shape,)
    items = _sequence_items(output_shape)
    if items is None:
        raise TypeError(f"{rule}; got {_describe(output_shape)}.")
    if not all(_is_int(v) for v in items):
        raise TypeError(f"{rule}; got {output_shape!r}.")
    items = [operator.index(_scalar(v)) for v in items]
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
    if any(v > INT64_MAX for v in items):
        raise ValueError(f"`output_shape` sizes must be {_INT64_RULE}; got {output_shape!r}.")
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
    groups = operator.index(_scalar(groups))
    if groups < 1:
        raise ValueError(f"`groups` must be >= 1; got groups={groups}.")
    if groups > INT64_MAX:
        raise ValueError(f"`groups` must be {_INT64_RULE}; got groups={groups}.")
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
    full = tuple(_padding.full_size(spatial[j], ksize[j], strides[j], dilation[j]) for j in range(n))
    check_sizes_fit(
        full,
        out_spatial,
        batch,
        (c_in, c_out),
        "`strides` and `dilation_rate`",
        f"strides={strides}, dilation_rate={dilation}, padding={padding!r} for inputs spatial shape "
        f"{tuple(spatial)}, kernel spatial shape {tuple(ksize)}, batch {batch} and {c_out} output channels",
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
