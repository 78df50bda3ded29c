"""Equinox transposed-convolution layers on :func:`jaxconvt.conv_transpose`.

:class:`ConvTranspose` (and :class:`ConvTranspose1d`, :class:`ConvTranspose2d`,
:class:`ConvTranspose3d`) are drop-in replacements for ``equinox.nn.ConvTranspose*``: the same
constructor arguments with the same meaning, the same fields (names, order, shapes, dtypes)
and the same default initialisation (bitwise, for the same ``key``), so ``eqx.tree_at``,
``eqx.tree_serialise_leaves`` / ``tree_deserialise_leaves`` and existing checkpoints work
unchanged in both directions. The output equals Equinox's to float32 rounding, forward and
gradients, in every mode Equinox has: every ``padding`` form (ints, pairs, ``"SAME"``,
``"SAME_LOWER"``, ``"VALID"``), ``output_padding``, ``dilation``, ``groups`` and
``padding_mode="CIRCULAR"``. Differentiation goes through jaxconvt's fast derivative rules
instead of ``lax.conv_general_dilated``'s generic transpose rule.

Like Equinox's, the layers are unbatched: ``x`` has shape ``(in_channels, *spatial)``; use
``jax.vmap`` for batches (the vmapped batch becomes the op's batch axis, one convolution).

Weight layout (Equinox's): ``weight`` is ``(out_channels, in_channels // groups, *kernel_size)``
and is applied as a correlation over the stride-dilated input, i.e. spatially flipped relative
to PyTorch's and jaxconvt's scatter form. Each call converts it to jaxconvt's kernel with
:func:`kernel_from_weight` (a flip and a transpose, differentiable).

Differences from ``equinox.nn.ConvTranspose`` (all relaxations or clearer errors):

* ``output_padding`` may be smaller than the stride *or* the dilation in each dimension
  (PyTorch's rule; Equinox requires ``output_padding < stride``).
* Bad arguments raise ``ValueError`` / ``TypeError`` naming the argument, including
  ``padding_mode="REFLECT"`` / ``"REPLICATE"`` and the unsupported ``"CIRCULAR"`` forms
  (Equinox raises ``NotImplementedError`` for those), negative padding, and ``groups`` not
  dividing the channel counts.

:meth:`ConvTranspose.from_torch` builds a layer from a ``torch.nn.ConvTranspose{1,2,3}d``
(plain or weight-normed) that computes the same output as the torch module.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import jax.random as jrandom
import numpy as np

from jaxconvt._layers import (
    check_from_torch_kwargs,
    check_torch_padding_mode,
    conv_transpose_crops,
    import_framework,
    read_torch_conv_transpose,
)
from jaxconvt._spec import _describe, _is_int, int_tuple

eqx = import_framework("equinox", "equinox", layer="jaxconvt.equinox")

__all__ = [
    "ConvTranspose",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "kernel_from_weight",
    "weight_from_kernel",
]

_PADDING_STRINGS = ("SAME", "SAME_LOWER", "VALID")
_PADDING_MODES = ("ZEROS", "REFLECT", "REPLICATE", "CIRCULAR")
# Constructor arguments from_torch reads from the torch module.
_FROM_TORCH = ("num_spatial_dims", "in_channels", "out_channels", "kernel_size", "stride", "padding", "output_padding",
               "dilation", "groups", "use_bias", "padding_mode")  # fmt: skip


def kernel_from_weight(weight, groups: int = 1):
    """Converts an Equinox ``ConvTranspose`` weight into a jaxconvt kernel.

    Equinox's ``weight`` ``(C_out, C_in // groups, *k)`` is a correlation kernel over the
    stride-dilated input; jaxconvt's kernel ``(*k, C_out // groups, C_in)`` is its scatter form:
    ``K[j, o, g * C_in/G + c] = W[g * C_out/G + o, c, k - 1 - j]`` (flipped in every spatial
    dimension, channels regrouped).

    Args:
      weight: array of rank ``N + 2`` in Equinox's layout.
      groups: the layer's ``groups``; must divide ``C_out``.

    Returns:
      The kernel, for :func:`jaxconvt.conv_transpose` with the same ``groups`` (a numpy
      array for a numpy ``weight``, else a JAX array; differentiable).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxconvt.equinox import kernel_from_weight, weight_from_kernel
      >>> w = jnp.arange(2 * 3 * 4.0).reshape(2, 3, 4)     # C_out=2, C_in=3, k=4
      >>> k = kernel_from_weight(w)
      >>> k.shape, float(k[0, 1, 2]) == float(w[1, 2, 3])
      ((4, 2, 3), True)
      >>> bool((weight_from_kernel(k) == w).all())
      True
    """
    xp = np if isinstance(weight, np.ndarray) else jnp
    n = weight.ndim - 2
    c_out, c_in_g, ksize = weight.shape[0], weight.shape[1], tuple(weight.shape[2:])
    w = xp.reshape(weight, (groups, c_out // groups, c_in_g, *ksize))
    k = xp.transpose(w, (*range(3, n + 3), 1, 0, 2))  # (*k, C_out/G, G, C_in/G)
    k = xp.reshape(k, (*ksize, c_out // groups, groups * c_in_g))
    return xp.flip(k, axis=tuple(range(n)))


def weight_from_kernel(kernel, groups: int = 1):
    """Converts a jaxconvt kernel into an Equinox ``ConvTranspose`` weight.

    The inverse of :func:`kernel_from_weight`: ``(*k, C_out // groups, C_in)`` ->
    ``(C_out, C_in // groups, *k)``.

    Args:
      kernel: array of rank ``N + 2`` in jaxconvt (Keras) layout.
      groups: the layer's ``groups``; must divide ``C_in``.

    Returns:
      The weight, in Equinox's layout (numpy for a numpy ``kernel``, else JAX).
    """
    xp = np if isinstance(kernel, np.ndarray) else jnp
    n = kernel.ndim - 2
    ksize, c_out_g, c_in = tuple(kernel.shape[:n]), kernel.shape[n], kernel.shape[n + 1]
    k = xp.flip(kernel, axis=tuple(range(n)))
    k = xp.reshape(k, (*ksize, c_out_g, groups, c_in // groups))
    w = xp.transpose(k, (n + 1, n, n + 2, *range(n)))  # (G, C_out/G, C_in/G, *k)
    return xp.reshape(w, (groups * c_out_g, c_in // groups, *ksize))


def _positive_int(value: Any, name: str) -> int:
    if not _is_int(value):
        raise TypeError(f"`{name}` must be a positive int; got {_describe(value)}.")
    value = operator.index(value)
    if value < 1:
        raise ValueError(f"`{name}` must be >= 1; got {name}={value}.")
    return value


def _padding_init(padding: Any, n: int) -> str | tuple[tuple[int, int], ...]:
    """Equinox's ``padding`` forms -> an upper-case string or ``n`` non-negative (low, high) pairs."""
    rule = (
        f"`padding` must be 'SAME', 'SAME_LOWER' or 'VALID' (any case), a non-negative int, a sequence of {n} "
        f"non-negative ints, or a sequence of {n} (low, high) pairs of non-negative ints"
    )
    if isinstance(padding, str):
        if padding.upper() not in _PADDING_STRINGS:
            raise ValueError(f"{rule}; got {padding!r}.")
        return padding.upper()
    if isinstance(padding, np.ndarray):
        padding = padding.tolist()
    if _is_int(padding):
        pairs = ((operator.index(padding),) * 2,) * n
    elif isinstance(padding, Sequence) and len(padding) == n and all(_is_int(p) for p in padding):
        pairs = tuple((operator.index(p),) * 2 for p in padding)
    elif (
        isinstance(padding, Sequence)
        and len(padding) == n
        and all(isinstance(p, Sequence) and len(p) == 2 and all(_is_int(v) for v in p) for p in padding)
    ):
        pairs = tuple((operator.index(p[0]), operator.index(p[1])) for p in padding)
    elif isinstance(padding, Sequence):
        raise ValueError(f"{rule}; got {padding!r}.")
    else:
        raise TypeError(f"{rule}; got {_describe(padding)}.")
    if any(v < 0 for pair in pairs for v in pair):
        raise ValueError(f"{rule}; got negative padding {padding!r}.")
    return pairs


def _padding_mode_init(padding_mode: Any, padding, output_padding: tuple[int, ...]) -> str:
    if not isinstance(padding_mode, str) or padding_mode.upper() not in _PADDING_MODES:
        raise ValueError(
            f"`padding_mode` must be one of 'ZEROS', 'REFLECT', 'REPLICATE', 'CIRCULAR' (any case); "
            f"got {padding_mode!r}."
        )
    mode = padding_mode.upper()
    if mode in ("REFLECT", "REPLICATE"):
        raise ValueError(
            f"`padding_mode` {mode!r} is not supported by transposed convolutions (nor by "
            "equinox.nn.ConvTranspose); use 'ZEROS' or 'CIRCULAR'."
        )
    if mode == "CIRCULAR" and (any(output_padding) or padding not in ("SAME", "SAME_LOWER")):
        raise ValueError(
            "`padding_mode='CIRCULAR'` needs padding='SAME' or 'SAME_LOWER' and output_padding 0 (as in "
            f"equinox.nn.ConvTranspose); got padding={padding!r}, output_padding={output_padding}."
        )
    return mode


def _uniform_init(key, shape: tuple[int, ...], dtype, lim: float):
    """Equinox's default initialiser: uniform on ``[-lim, lim)``, real and imaginary parts for complex dtypes."""
    if jnp.issubdtype(dtype, jnp.complexfloating):
        real_dtype = jnp.finfo(dtype).dtype
        rkey, ikey = jrandom.split(key, 2)
        real = jrandom.uniform(rkey, shape, real_dtype, minval=-lim, maxval=lim)
        imag = jrandom.uniform(ikey, shape, real_dtype, minval=-lim, maxval=lim)
        return real.astype(dtype) + 1j * imag.astype(dtype)
    return jrandom.uniform(key, shape, dtype, minval=-lim, maxval=lim)


class ConvTranspose(eqx.Module):
    """General N-dimensional transposed convolution; a drop-in for ``equinox.nn.ConvTranspose``.

    Fields, initialisation and output are Equinox's (see the module docstring); the computation
    is :func:`jaxconvt.conv_transpose`, with its fast derivative rules.
    """

    num_spatial_dims: int = eqx.field(static=True)
    weight: jax.Array
    bias: jax.Array | None
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    kernel_size: tuple[int, ...] = eqx.field(static=True)
    stride: tuple[int, ...] = eqx.field(static=True)
    padding: str | tuple[tuple[int, int], ...] = eqx.field(static=True)
    output_padding: tuple[int, ...] = eqx.field(static=True)
    dilation: tuple[int, ...] = eqx.field(static=True)
    groups: int = eqx.field(static=True)
    use_bias: bool = eqx.field(static=True)
    padding_mode: str = eqx.field(static=True)

    # The number of spatial dimensions of the 1d/2d/3d subclasses (None: given to __init__).
    _rank: ClassVar[int | None] = None

    def __init__(
        self,
        num_spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: str | int | Sequence[int] | Sequence[tuple[int, int]] = 0,
        output_padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        use_bias: bool = True,
        padding_mode: str = "ZEROS",
        dtype=None,
        *,
        key: jax.Array,
    ):
        """Creates the layer (same arguments, meaning and initialisation as ``equinox.nn.ConvTranspose``).

        Args:
          num_spatial_dims: number of spatial dimensions ``N`` (e.g. 2 for images).
          in_channels: input channels.
          out_channels: output channels.
          kernel_size: int or ``N`` ints.
          stride: int or ``N`` ints: the stride of the equivalent forward convolution.
          padding: the padding of the equivalent forward ``equinox.nn.Conv``: an int, ``N`` ints
            or ``N`` ``(low, high)`` pairs (non-negative; PyTorch's meaning: the full output
            is cropped by ``low`` at the start and ``high - output_padding`` at the end), or
            ``"VALID"`` (no crop), ``"SAME"`` / ``"SAME_LOWER"`` (output ``input * stride -
            output_padding``; an odd total crop puts the extra element at the end / start).
            Strings in any case.
          output_padding: int or ``N`` ints, each smaller than the stride or the dilation in
            that dimension (Equinox: the stride). With explicit or ``"VALID"`` padding it
            extends the output at the end; with ``"SAME"`` it reduces the output size.
          dilation: int or ``N`` ints: kernel dilation.
          groups: channel groups; must divide ``in_channels`` and ``out_channels``.
          use_bias: whether to add a bias.
          padding_mode: ``"ZEROS"`` (default) or ``"CIRCULAR"`` (only with ``"SAME"`` /
            ``"SAME_LOWER"`` padding and ``output_padding`` 0: the input wraps around, as in
            Equinox). ``"REFLECT"`` and ``"REPLICATE"`` raise, as in Equinox.
          dtype: parameter dtype; default float32 (float64 when JAX runs in 64-bit mode).
          key: a ``jax.random`` key for the initialisation (keyword-only).

        Raises:
          TypeError, ValueError: a bad argument, named in the message.
        """
        num_spatial_dims = _positive_int(num_spatial_dims, "num_spatial_dims")
        n = num_spatial_dims
        in_channels = _positive_int(in_channels, "in_channels")
        out_channels = _positive_int(out_channels, "out_channels")
        groups = _positive_int(groups, "groups")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"`groups` must divide `in_channels` and `out_channels`; got groups={groups}, "
                f"in_channels={in_channels}, out_channels={out_channels}."
            )
        kernel_size = int_tuple(kernel_size, n, "kernel_size", minimum=1)
        stride = int_tuple(stride, n, "stride", minimum=1)
        output_padding = int_tuple(output_padding, n, "output_padding", minimum=0)
        dilation = int_tuple(dilation, n, "dilation", minimum=1)
        if any(o >= s and o >= d for o, s, d in zip(output_padding, stride, dilation)):
            raise ValueError(
                "`output_padding` must be smaller than `stride` or `dilation` in every spatial dimension; got "
                f"output_padding={output_padding}, stride={stride}, dilation={dilation}."
            )
        padding = _padding_init(padding, n)
        padding_mode = _padding_mode_init(padding_mode, padding, output_padding)

        if dtype is None:
            dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
        wkey, bkey = jrandom.split(key, 2)
        grouped_in_channels = in_channels // groups
        lim = 1 / math.sqrt(grouped_in_channels * math.prod(kernel_size))
        self.weight = _uniform_init(wkey, (out_channels, grouped_in_channels, *kernel_size), dtype, lim)
        self.bias = _uniform_init(bkey, (out_channels,) + (1,) * n, dtype, lim) if use_bias else None

        self.num_spatial_dims = n
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.output_padding = output_padding
        self.dilation = dilation
        self.groups = groups
        self.use_bias = bool(use_bias)
        self.padding_mode = padding_mode

    def _lax_padding(self) -> tuple[tuple[int, int], ...]:
        """Equinox's padding of the stride-dilated input (its ``_padding_transpose``), per dimension."""
        pads = []
        for j in range(self.num_spatial_dims):
            k, s, a, d = self.kernel_size[j], self.stride[j], self.output_padding[j], self.dilation[j]
            if self.padding == "VALID":
                p0 = p1 = 0
            elif isinstance(self.padding, str):  # SAME, SAME_LOWER: output input * s - a
                p_sum = d * (k - 1) - s + a + 1
                a = -p_sum if p_sum < 0 else 0
                p_sum = max(p_sum, 0)
                p0 = (p_sum + (self.padding == "SAME_LOWER")) // 2
                p1 = p_sum - p0
            else:
                p0, p1 = self.padding[j]
            pads.append((d * (k - 1) - p0, d * (k - 1) - p1 + a))
        return tuple(pads)

    @jax.named_scope("jaxconvt.equinox.ConvTranspose")
    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        """Applies the layer to one example.

        Args:
          x: array of shape ``(in_channels, *spatial)``.
          key: ignored; for compatibility with the rest of the Equinox API (keyword-only).

        Returns:
          An array of shape ``(out_channels, *new_spatial)`` (empty where the padding crops
          more than the output holds, as in Equinox).

        Raises:
          ValueError: ``x`` of the wrong rank or channel count.
        """
        del key
        n = self.num_spatial_dims
        if x.ndim != n + 1 or x.shape[0] != self.in_channels:
            raise ValueError(
                f"`x` must have shape (in_channels={self.in_channels}, *spatial) with {n} spatial dimensions "
                f"(unbatched; use jax.vmap for batches); got shape {tuple(x.shape)}."
            )
        pads = self._lax_padding()
        if self.padding_mode == "CIRCULAR":
            wrap = [(0, 0)] + [(lo // s, hi // s) for (lo, hi), s in zip(pads, self.stride)]
            x = jnp.pad(x, wrap, mode="wrap")
            pads = tuple((lo % s, hi % s) for (lo, hi), s in zip(pads, self.stride))
        # A padding of the dilated input by (lo, hi) is a crop of the full scatter output by
        # (ke - 1 - lo, ke - 1 - hi); a negative crop is a zero extension.
        crops = [(d * (k - 1) - lo, d * (k - 1) - hi) for (lo, hi), k, d in zip(pads, self.kernel_size, self.dilation)]
        y = conv_transpose_crops(
            jnp.moveaxis(x, 0, -1)[None],
            kernel_from_weight(self.weight, self.groups),
            self.stride,
            crops,
            self.dilation,
            groups=self.groups,
        )
        y = jnp.moveaxis(y[0], -1, 0)
        if self.use_bias:
            y = y + self.bias
        return y

    @classmethod
    def from_torch(cls, module, *, dtype=None, **kwargs):
        """The layer computing what a ``torch.nn.ConvTranspose{1,2,3}d`` computes.

        Stride, padding, output padding, dilation, groups, bias and the weight come from the
        module. A module with ``torch.nn.utils.weight_norm`` (``weight_g`` / ``weight_v``) or
        ``torch.nn.utils.parametrizations.weight_norm`` gives a plain layer holding the
        effective weight ``g * v / ||v||``. Torch's input ``(N, C_in, *spatial)`` maps to
        ``jax.vmap(layer)`` on the same array.

        Args:
          module: a ``torch.nn.ConvTranspose1d``, ``2d`` or ``3d`` (``ConvTranspose`` takes any;
            the 1d/2d/3d classes want their own rank).
          dtype: parameter dtype; default the torch weight's (as JAX canonicalises it, so
            float64 becomes float32 unless 64-bit mode is on).
          **kwargs: nothing else: every other constructor argument comes from the module
            (``key`` is not needed), and giving one raises ``TypeError``.

        Returns:
          An instance of ``cls`` with ``padding`` given as PyTorch's ``(p, p)`` pairs and
          ``padding_mode="ZEROS"``.

        Raises:
          TypeError: ``module`` is not a torch transposed convolution, or has another rank, or
            ``kwargs`` is not empty.
          ValueError: the module's ``padding_mode`` is not ``"zeros"``.

        Example:
          >>> import jax, numpy as np, torch
          >>> from jaxconvt.equinox import ConvTranspose1d
          >>> _ = torch.manual_seed(0)
          >>> tm = torch.nn.utils.parametrizations.weight_norm(torch.nn.ConvTranspose1d(4, 2, 16, 8, padding=4))
          >>> layer = ConvTranspose1d.from_torch(tm)
          >>> x = torch.randn(3, 4, 10)
          >>> y = jax.vmap(layer)(x.numpy())
          >>> y.shape, bool(np.allclose(y, tm(x).detach().numpy(), atol=1e-5))
          ((3, 2, 80), True)
        """
        layer = f"jaxconvt.equinox.{cls.__name__}.from_torch"
        spec = read_torch_conv_transpose(module, layer=layer)
        if cls._rank is not None and spec.ndim != cls._rank:
            raise TypeError(
                f"`module` must be a torch.nn.ConvTranspose{cls._rank}d for {cls.__name__}.from_torch; got a "
                f"{spec.ndim}-D {type(module).__name__} (use ConvTranspose{spec.ndim}d or ConvTranspose)."
            )
        check_torch_padding_mode(spec, layer=layer)
        check_from_torch_kwargs(kwargs, _FROM_TORCH, layer=layer)
        if kwargs:
            raise TypeError(f"{layer} takes only `dtype` besides the module; got {', '.join(sorted(kwargs))}.")
        if dtype is None:
            dtype = jax.dtypes.canonicalize_dtype(spec.weight.dtype)
        kwargs = dict(
            in_channels=spec.in_channels,
            out_channels=spec.out_channels,
            kernel_size=spec.kernel_size,
            stride=spec.stride,
            padding=tuple((p, p) for p in spec.padding),
            output_padding=spec.output_padding,
            dilation=spec.dilation,
            groups=spec.groups,
            use_bias=spec.bias is not None,
            dtype=dtype,
            key=jax.ShapeDtypeStruct((2,), jnp.uint32),
        )
        if cls._rank is None:
            kwargs["num_spatial_dims"] = spec.ndim
        # The fields without running the initialisation (abstract parameters), then the torch ones.
        out = eqx.filter_eval_shape(cls, **kwargs)
        weight = jnp.asarray(weight_from_kernel(spec.kernel(), spec.groups), dtype)
        out = eqx.tree_at(lambda m: m.weight, out, weight)
        if spec.bias is not None:
            bias = jnp.asarray(spec.bias.reshape((spec.out_channels,) + (1,) * spec.ndim), dtype)
            out = eqx.tree_at(lambda m: m.bias, out, bias)
        return out


class ConvTranspose1d(ConvTranspose):
    """As :class:`ConvTranspose` with ``num_spatial_dims=1``; a drop-in for ``equinox.nn.ConvTranspose1d``."""

    _rank: ClassVar[int | None] = 1

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        output_padding: int | Sequence[int] = 0,
        padding: str | int | Sequence[int] | Sequence[tuple[int, int]] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        use_bias: bool = True,
        padding_mode: str = "ZEROS",
        dtype=None,
        *,
        key: jax.Array,
    ):
        """Same arguments as ``equinox.nn.ConvTranspose1d`` (note ``output_padding`` before ``padding``)."""
        super().__init__(
            1, in_channels, out_channels, kernel_size, stride, padding, output_padding, dilation, groups,
            use_bias, padding_mode, dtype, key=key,
        )  # fmt: skip


class ConvTranspose2d(ConvTranspose):
    """As :class:`ConvTranspose` with ``num_spatial_dims=2``; a drop-in for ``equinox.nn.ConvTranspose2d``."""

    _rank: ClassVar[int | None] = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = (1, 1),
        output_padding: int | Sequence[int] = (0, 0),
        padding: str | int | Sequence[int] | Sequence[tuple[int, int]] = (0, 0),
        dilation: int | Sequence[int] = (1, 1),
        groups: int = 1,
        use_bias: bool = True,
        padding_mode: str = "ZEROS",
        dtype=None,
        *,
        key: jax.Array,
    ):
        """Same arguments as ``equinox.nn.ConvTranspose2d`` (note ``output_padding`` before ``padding``)."""
        super().__init__(
            2, in_channels, out_channels, kernel_size, stride, padding, output_padding, dilation, groups,
            use_bias, padding_mode, dtype, key=key,
        )  # fmt: skip


class ConvTranspose3d(ConvTranspose):
    """As :class:`ConvTranspose` with ``num_spatial_dims=3``; a drop-in for ``equinox.nn.ConvTranspose3d``."""

    _rank: ClassVar[int | None] = 3

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = (1, 1, 1),
        output_padding: int | Sequence[int] = (0, 0, 0),
        padding: str | int | Sequence[int] | Sequence[tuple[int, int]] = (0, 0, 0),
        dilation: int | Sequence[int] = (1, 1, 1),
        groups: int = 1,
        use_bias: bool = True,
        padding_mode: str = "ZEROS",
        dtype=None,
        *,
        key: jax.Array,
    ):
        """Same arguments as ``equinox.nn.ConvTranspose3d`` (note ``output_padding`` before ``padding``)."""
        super().__init__(
            3, in_channels, out_channels, kernel_size, stride, padding, output_padding, dilation, groups,
            use_bias, padding_mode, dtype, key=key,
        )  # fmt: skip
