"""Flax NNX drop-in: :class:`ConvTranspose` replaces ``flax.nnx.ConvTranspose``.

Install with ``pip install 'jaxconvt[flax]'``. Importing this module imports Flax (``import
jaxconvt`` alone does not).

``jaxconvt.nnx.ConvTranspose`` is a subclass of ``flax.nnx.ConvTranspose`` with the same
constructor arguments, meanings and defaults, the same parameters (``kernel``, ``bias``: names,
shapes, dtypes, initializers, even the same random draws from the same ``rngs``) and the same
output, computed by :func:`jaxconvt.conv_transpose` so that its gradients take jaxconvt's fast
derivative rules. ``nnx.state`` / ``nnx.update`` move parameters between the two unchanged.
Keyword-only additions: ``groups``, ``output_padding`` and ``torch_padding`` (explicit padding with
PyTorch's meaning); :meth:`ConvTranspose.from_torch` loads a ``torch.nn.ConvTranspose{1,2,3}d``.
"""

from __future__ import annotations

import typing as tp
from types import MappingProxyType

import jax
import jax.numpy as jnp
import numpy as np

from jaxconvt import _layers

_flax_nnx = _layers.import_framework("flax.nnx", "flax", layer="jaxconvt.nnx")
_flax_linear = _layers.import_framework("flax.nnx.nn.linear", "flax", layer="jaxconvt.nnx")
_flax_dtypes = _layers.import_framework("flax.nnx.nn.dtypes", "flax", layer="jaxconvt.nnx")

__all__ = ["ConvTranspose"]

# Arguments from_torch reads from the torch module.
_FROM_TORCH = (
    "in_features",
    "out_features",
    "kernel_size",
    "strides",
    "padding",
    "kernel_dilation",
    "use_bias",
    "kernel_init",
    "bias_init",
    "groups",
    "output_padding",
    "torch_padding",
)


class ConvTranspose(_flax_nnx.ConvTranspose):
    """Transposed convolution layer: ``flax.nnx.ConvTranspose``, computed by :func:`jaxconvt.conv_transpose`.

    Every argument of ``flax.nnx.ConvTranspose`` (Flax 0.12) has Flax's meaning; see Flax's
    documentation for them. In short: ``kernel`` has shape ``(*kernel_size, in_features,
    out_features)`` and is used as the correlation kernel of ``lax.conv_transpose`` (no flip); with
    ``transpose_kernel=True`` it has shape ``(*kernel_size, out_features, in_features)``, is
    flipped and has its channel axes swapped, which makes the layer the transpose (gradient) of an
    ``nnx.Conv`` with the same kernel — and is jaxconvt's and Keras's own layout. ``padding`` is
    Flax's: ``'SAME'`` (output ``input * strides``), ``'VALID'``, ``'CIRCULAR'`` (periodic, output
    ``input * strides``), or explicit ``(low, high)`` pairs (an int or ``N`` ints for equal pairs)
    that pad the *stride-dilated input* of a correlation, as ``lax.conv_transpose`` does; this is
    not PyTorch's meaning (see ``torch_padding``). The strings are Flax's: exactly ``'SAME'``,
    ``'VALID'``, ``'CIRCULAR'``; in another case, or ``'SAME_LOWER'``, they are
    forward-convolution paddings that Flax runs only at stride 1 (so does this). Inputs are
    ``(*batch, *spatial, in_features)``; several batch dimensions are flattened and restored, no
    batch dimension is allowed, as in Flax. Any number of spatial dimensions works (Flax's stops
    at 3).

    Args:
      in_features, out_features, kernel_size, strides, padding, kernel_dilation, use_bias, mask: as for
        ``flax.nnx.ConvTranspose`` (summarised above).
      dtype, param_dtype, precision, kernel_init, bias_init, transpose_kernel, promote_dtype: as for Flax's layer.
      preferred_element_type, rngs, kernel_metadata, bias_metadata: as for Flax's layer.
      groups: (keyword-only, default 1) channel groups, as PyTorch's ``groups``: input channel
        group ``g`` feeds only output channel group ``g``. Both feature counts must be divisible
        by it. The kernel has shape ``(*kernel_size, in_features // groups, out_features)``, the
        correlation kernel of ``lax.conv_general_dilated(..., lhs_dilation=strides,
        feature_group_count=groups)``; with ``transpose_kernel=True``
        ``(*kernel_size, out_features // groups, in_features)``, the kernel of the ``nnx.Conv(
        out_features, in_features, feature_group_count=groups)`` whose transpose this is.
      output_padding: (keyword-only) ``None`` (default: 0), an int or ``N`` ints, each smaller than
        the stride or the kernel dilation: the output grows by this much at the high end (the
        crop there shrinks), with ``padding`` strings, Flax pairs or ``torch_padding``, as in
        PyTorch. Not with ``'CIRCULAR'``.
      torch_padding: (keyword-only) ``None`` (default: use ``padding``), or explicit padding with
        PyTorch's meaning: an int ``p``, ``N`` ints or ``N`` ``(low, high)`` pairs, non-negative,
        cropped from the ends of the full transposed convolution, so the output size is
        ``(i - 1) * s - low - high + (k - 1) * d + 1 + output_padding``. Flax's explicit
        ``padding=(pa, pb)`` is the same as ``torch_padding=(ke - 1 - pa, ke - 1 - pb)`` with
        ``ke = (k - 1) * d + 1``. Leave ``padding`` at ``'SAME'`` when giving it.

    Raises:
      ValueError: a padding Flax does not define (e.g. ``'CAUSAL'``), ``groups`` not dividing the
        features, ``output_padding`` too large or with ``'CIRCULAR'``, ``torch_padding`` together
        with a non-default ``padding``, inputs whose channel count does not match the kernel.
      TypeError: arguments of the wrong type.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jaxconvt.nnx
      >>> layer = jaxconvt.nnx.ConvTranspose(3, 4, kernel_size=(3, 3), strides=2, rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((1, 8, 8, 3))).shape
      (1, 16, 16, 4)
      >>> flax_layer = nnx.ConvTranspose(3, 4, kernel_size=(3, 3), strides=2, rngs=nnx.Rngs(0))
      >>> bool(jnp.all(flax_layer.kernel[...] == layer.kernel[...]))   # same initial draws
      True
      >>> grouped = jaxconvt.nnx.ConvTranspose(4, 6, (4, 4), 2, groups=2, torch_padding=1, rngs=nnx.Rngs(0))
      >>> grouped.kernel.shape, grouped(jnp.ones((1, 8, 8, 4))).shape
      ((4, 4, 2, 6), (1, 16, 16, 6))
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | tp.Sequence[int],
        strides: int | tp.Sequence[int] | None = None,
        *,
        padding: tp.Any = "SAME",
        kernel_dilation: int | tp.Sequence[int] | None = None,
        use_bias: bool = True,
        mask: jax.Array | None = None,
        dtype: tp.Any = None,
        param_dtype: tp.Any = jnp.float32,
        precision: tp.Any = None,
        kernel_init: tp.Any = _flax_linear.default_kernel_init,
        bias_init: tp.Any = _flax_linear.default_bias_init,
        transpose_kernel: bool = False,
        promote_dtype: tp.Any = _flax_dtypes.promote_dtype,
        preferred_element_type: tp.Any = None,
        rngs: tp.Any,
        kernel_metadata: tp.Mapping[str, tp.Any] = MappingProxyType({}),
        bias_metadata: tp.Mapping[str, tp.Any] = MappingProxyType({}),
        groups: int = 1,
        output_padding: int | tp.Sequence[int] | None = None,
        torch_padding: int | tp.Sequence[int] | tp.Sequence[tuple[int, int]] | None = None,
    ):
        kernel_size = (kernel_size,) if isinstance(kernel_size, int) else tuple(kernel_size)
        n = len(kernel_size)
        groups = _layers.check_groups(groups, in_features, out_features)
        # Check the geometry now (Flax checks it at call time); the call checks again.
        strides_t = _layers.int_tuple(1 if strides is None else strides, n, "strides", minimum=1)
        dilation_t = _layers.int_tuple(
            1 if kernel_dilation is None else kernel_dilation, n, "kernel_dilation", minimum=1
        )
        _layers.check_output_padding(output_padding, strides_t, dilation_t)
        _layers.flax_padding(padding, n)
        if torch_padding is not None:
            _layers.torch_crops(torch_padding, (0,) * n)

        # The attributes flax.nnx.ConvTranspose sets, in its order, then the additions.
        self.kernel_size = kernel_size
        self.in_features = in_features
        self.out_features = out_features
        self.strides = strides
        self.padding = padding
        self.kernel_dilation = kernel_dilation
        self.use_bias = use_bias
        self.mask = mask
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        self.transpose_kernel = transpose_kernel
        self.promote_dtype = promote_dtype
        self.preferred_element_type = preferred_element_type
        self.groups = groups
        self.output_padding = output_padding
        self.torch_padding = torch_padding

        kernel_shape = _layers.flax_kernel_shape(kernel_size, in_features, out_features, transpose_kernel, groups)
        self.kernel_shape = kernel_shape
        self.kernel = _flax_nnx.Param(kernel_init(rngs.params(), kernel_shape, self.param_dtype), **kernel_metadata)
        self.bias: tp.Any
        if self.use_bias:
            bias = bias_init(rngs.params(), (self.out_features,), self.param_dtype)
            self.bias = _flax_nnx.Param(bias, **bias_metadata)
        else:
            self.bias = _flax_nnx.data(None)

    def __call__(self, inputs: jax.Array) -> jax.Array:
        """Applies the transposed convolution: ``flax.nnx.ConvTranspose.__call__``'s result.

        Args:
          inputs: ``(*batch, *spatial, in_features)`` (channels last); several batch dimensions
            are flattened and restored, none is allowed.

        Returns:
          The output ``(*batch, *out_spatial, out_features)``.
        """
        if self.mask is not None and self.mask.shape != self.kernel_shape:
            raise ValueError(
                f"`mask` must have the kernel's shape {self.kernel_shape}; got shape {tuple(self.mask.shape)}."
            )
        kernel = self.kernel[...]
        if self.mask is not None:
            kernel *= self.mask
        bias = self.bias[...] if self.bias is not None else None
        inputs, kernel, bias = self.promote_dtype((inputs, kernel, bias), dtype=self.dtype)
        return _layers.flax_conv_transpose(
            inputs,
            kernel,
            bias,
            strides=self.strides,
            padding=self.padding,
            kernel_dilation=self.kernel_dilation,
            transpose_kernel=self.transpose_kernel,
            groups=self.groups,
            output_padding=self.output_padding,
            torch_padding=self.torch_padding,
            precision=self.precision,
            preferred_element_type=self.preferred_element_type,
        )

    @classmethod
    def from_torch(cls, module: tp.Any, *, rngs: tp.Any = None, **kwargs: tp.Any) -> ConvTranspose:
        """Builds the layer from a ``torch.nn.ConvTranspose{1,2,3}d``, with its weights.

        Stride, padding (as ``torch_padding``), output padding, dilation, groups, bias and the
        weight (with ``torch.nn.utils.weight_norm`` or ``torch.nn.utils.parametrizations.weight_norm``
        applied) come from the module; on the same input in channels-last layout the layer
        returns torch's output in channels-last layout.

        Args:
          module: a ``torch.nn.ConvTranspose1d``, ``2d`` or ``3d``.
          rngs: not needed (no parameter is drawn); accepted for symmetry.
          **kwargs: other constructor arguments, e.g. ``transpose_kernel`` (default ``False``:
            the kernel is stored flipped in Flax's default layout; ``True`` stores torch's weight
            transposed to ``(*k, C_out // groups, C_in)``), ``param_dtype`` (default: the torch
            weight's dtype), ``dtype``, ``precision``, ``mask``.

        Returns:
          The layer.

        Raises:
          TypeError: ``module`` is not a torch ConvTranspose, or ``kwargs`` sets an argument the
            module determines.
          ValueError: the module's ``padding_mode`` is not ``'zeros'``.

        Example:
          >>> import numpy as np, torch
          >>> import jaxconvt.nnx
          >>> m = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
          >>> layer = jaxconvt.nnx.ConvTranspose.from_torch(m)
          >>> x = np.random.default_rng(0).standard_normal((1, 4, 5, 5)).astype(np.float32)
          >>> y = layer(x.transpose(0, 2, 3, 1))                    # NHWC
          >>> np.allclose(y.transpose(0, 3, 1, 2), m(torch.from_numpy(x)).detach().numpy(), atol=1e-5)
          True
        """
        name = f"{cls.__module__}.{cls.__qualname__}.from_torch"
        info = _layers.read_torch_conv_transpose(module, layer=name)
        _layers.check_torch_padding_mode(info, layer=name)
        _layers.check_from_torch_kwargs(kwargs, _FROM_TORCH, layer=name)
        transpose_kernel = bool(kwargs.pop("transpose_kernel", False))
        param_dtype = kwargs.pop("param_dtype", jax.dtypes.canonicalize_dtype(info.weight.dtype))
        kernel = _layers.jaxconvt_kernel_to_flax(info.kernel(), transpose_kernel, info.groups)
        bias = info.bias
        return cls(
            info.in_channels,
            info.out_channels,
            info.kernel_size,
            info.stride,
            kernel_dilation=info.dilation,
            use_bias=bias is not None,
            transpose_kernel=transpose_kernel,
            param_dtype=param_dtype,
            kernel_init=lambda key, shape, dtype: jnp.asarray(kernel, dtype),
            bias_init=lambda key, shape, dtype: jnp.asarray(np.asarray(bias), dtype),
            groups=info.groups,
            output_padding=info.output_padding,
            torch_padding=info.padding,
            rngs=_flax_nnx.Rngs(0) if rngs is None else rngs,
            **kwargs,
        )
