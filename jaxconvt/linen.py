"""Flax Linen drop-in: :class:`ConvTranspose` replaces ``flax.linen.ConvTranspose``.

Install with ``pip install 'jaxconvt[flax]'``. Importing this module imports Flax (``import
jaxconvt`` alone does not).

``jaxconvt.linen.ConvTranspose`` is a subclass of ``flax.linen.ConvTranspose`` with the same
fields, meanings and defaults, the same variables (``params/kernel``, ``params/bias``: names,
shapes, dtypes, initializers, the same random draws from the same key) and the same output,
computed by :func:`jaxconvt.conv_transpose` so that its gradients take jaxconvt's fast derivative
rules. Variable dicts (and checkpoints of them) move between the two unchanged. Keyword-only
additions: ``groups``, ``output_padding`` and ``torch_padding`` (explicit padding with PyTorch's
meaning); :meth:`ConvTranspose.from_torch` loads a ``torch.nn.ConvTranspose{1,2,3}d``.
"""

from __future__ import annotations

import dataclasses
import typing as tp

import jax
import jax.numpy as jnp

from jaxconvt import _layers

_nn = _layers.import_framework("flax.linen", "flax", layer="jaxconvt.linen")

__all__ = ["ConvTranspose"]

# Fields from_torch reads from the torch module.
_FROM_TORCH = (
    "features",
    "kernel_size",
    "strides",
    "padding",
    "kernel_dilation",
    "use_bias",
    "groups",
    "output_padding",
    "torch_padding",
)


class ConvTranspose(_nn.ConvTranspose):
    """Transposed convolution module: ``flax.linen.ConvTranspose``, computed by :func:`jaxconvt.conv_transpose`.

    Every field of ``flax.linen.ConvTranspose`` (Flax 0.12) has Flax's meaning; see Flax's
    documentation for them. In short: the ``kernel`` parameter has shape ``(*kernel_size,
    in_features, features)`` and is the correlation kernel of ``lax.conv_transpose`` (no flip);
    with ``transpose_kernel=True`` it has shape ``(*kernel_size, features, in_features)``, is
    flipped and has its channel axes swapped, which makes the module the transpose (gradient) of a
    ``nn.Conv`` with the same kernel — and is jaxconvt's and Keras's own layout. ``padding`` is
    Flax's: ``'SAME'`` (output ``input * strides``), ``'VALID'``, ``'CIRCULAR'`` (periodic), or
    explicit ``(low, high)`` pairs (an int or ``N`` ints for equal pairs) that pad the
    *stride-dilated input* of a correlation, as ``lax.conv_transpose`` does; this is not PyTorch's
    meaning (see ``torch_padding``). The strings are Flax's: exactly ``'SAME'``,
    ``'VALID'``, ``'CIRCULAR'``; in another case, or ``'SAME_LOWER'``, forward-convolution
    paddings that Flax runs only at stride 1 (so does this).
    Inputs are ``(*batch, *spatial, in_features)``; several batch dimensions are flattened and
    restored, no batch dimension is allowed, as in Flax. Any number of spatial dimensions works.

    Attributes:
      features, kernel_size, strides, padding, kernel_dilation, use_bias, mask, dtype, param_dtype, precision,
      kernel_init, bias_init, transpose_kernel, promote_dtype, preferred_element_type: as for Flax's layer.
      groups: (keyword-only, default 1) channel groups, as PyTorch's ``groups``: input channel
        group ``g`` feeds only output channel group ``g``. The input features and ``features``
        must be divisible by it. The kernel has shape ``(*kernel_size, in_features // groups,
        features)``, the correlation kernel of ``lax.conv_general_dilated(...,
        lhs_dilation=strides, feature_group_count=groups)``; with ``transpose_kernel=True``
        ``(*kernel_size, features // groups, in_features)``, the kernel of the ``nn.Conv(
        in_features, feature_group_count=groups)`` whose transpose this is.
      output_padding: (keyword-only) ``None`` (default: 0), an int or ``N`` ints, each smaller than
        the stride or the kernel dilation: the output grows by this much at the high end, with
        ``padding`` strings, Flax pairs or ``torch_padding``, as in PyTorch. Not with ``'CIRCULAR'``.
      torch_padding: (keyword-only) ``None`` (default: use ``padding``), or explicit padding with
        PyTorch's meaning: an int ``p``, ``N`` ints or ``N`` ``(low, high)`` pairs, non-negative,
        cropped from the ends of the full transposed convolution, so the output size is
        ``(i - 1) * s - low - high + (k - 1) * d + 1 + output_padding``. Flax's explicit
        ``padding=(pa, pb)`` equals ``torch_padding=(ke - 1 - pa, ke - 1 - pb)`` with
        ``ke = (k - 1) * d + 1``. Leave ``padding`` at ``'SAME'`` when giving it.

    Raises:
      ValueError: (at trace time) a padding Flax does not define (e.g. ``'CAUSAL'``), ``groups``
        not dividing the features, ``output_padding`` too large or with ``'CIRCULAR'``,
        ``torch_padding`` together with a non-default ``padding``, a ``mask`` of the wrong shape.
      TypeError: fields of the wrong type.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import flax.linen as nn
      >>> import jaxconvt.linen
      >>> x = jnp.ones((1, 8, 8, 3))
      >>> module = jaxconvt.linen.ConvTranspose(4, (3, 3), strides=(2, 2))
      >>> variables = module.init(jax.random.key(0), x)
      >>> jax.tree.map(jnp.shape, variables)
      {'params': {'bias': (4,), 'kernel': (3, 3, 3, 4)}}
      >>> y = module.apply(variables, x)
      >>> bool(jnp.allclose(y, nn.ConvTranspose(4, (3, 3), strides=(2, 2)).apply(variables, x), atol=1e-6))
      True
      >>> grouped = jaxconvt.linen.ConvTranspose(6, (4, 4), (2, 2), groups=2, torch_padding=1)
      >>> y, v = grouped.init_with_output(jax.random.key(0), jnp.ones((1, 8, 8, 4)))
      >>> jax.tree.map(jnp.shape, v), y.shape
      ({'params': {'bias': (6,), 'kernel': (4, 4, 2, 6)}}, (1, 16, 16, 6))
    """

    groups: int = dataclasses.field(default=1, kw_only=True)
    output_padding: int | tp.Sequence[int] | None = dataclasses.field(default=None, kw_only=True)
    torch_padding: int | tp.Sequence[int] | tp.Sequence[tuple[int, int]] | None = dataclasses.field(
        default=None, kw_only=True
    )

    @_nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        """Applies the transposed convolution: ``flax.linen.ConvTranspose.__call__``'s result.

        Args:
          inputs: ``(*batch, *spatial, in_features)`` (channels last); several batch dimensions
            are flattened and restored, none is allowed.

        Returns:
          The output ``(*batch, *out_spatial, features)``.
        """
        kernel_size = (self.kernel_size,) if isinstance(self.kernel_size, int) else tuple(self.kernel_size)
        n = len(kernel_size)
        if inputs.ndim < n + 1:
            raise ValueError(
                f"`inputs` must have shape (*batch, *spatial, in_features) with {n} spatial dimensions; got shape "
                f"{tuple(inputs.shape)}."
            )
        in_features = jnp.shape(inputs)[-1]
        groups = _layers.check_groups(self.groups, in_features, self.features)
        kernel_shape = _layers.flax_kernel_shape(kernel_size, in_features, self.features, self.transpose_kernel, groups)
        if self.mask is not None and self.mask.shape != kernel_shape:
            raise ValueError(f"`mask` must have the kernel's shape {kernel_shape}; got shape {tuple(self.mask.shape)}.")
        kernel = self.param("kernel", self.kernel_init, kernel_shape, self.param_dtype)
        if self.mask is not None:
            kernel *= self.mask
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
        inputs, kernel, bias = self.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
        return _layers.flax_conv_transpose(
            inputs,
            kernel,
            bias,
            strides=self.strides,
            padding=self.padding,
            kernel_dilation=self.kernel_dilation,
            transpose_kernel=self.transpose_kernel,
            groups=groups,
            output_padding=self.output_padding,
            torch_padding=self.torch_padding,
            precision=self.precision,
            preferred_element_type=self.preferred_element_type,
        )

    @classmethod
    def from_torch(cls, module: tp.Any, **kwargs: tp.Any) -> tuple[ConvTranspose, dict]:
        """Builds the module and its variables from a ``torch.nn.ConvTranspose{1,2,3}d``.

        Stride, padding (as ``torch_padding``), output padding, dilation, groups, bias and the
        weight (with ``torch.nn.utils.weight_norm`` or ``torch.nn.utils.parametrizations.weight_norm``
        applied) come from the module; ``module.apply(variables, x)`` on the same input in
        channels-last layout returns torch's output in channels-last layout.

        Args:
          module: a ``torch.nn.ConvTranspose1d``, ``2d`` or ``3d``.
          **kwargs: other fields, e.g. ``transpose_kernel`` (default ``False``: the kernel is stored
            flipped in Flax's default layout; ``True`` stores torch's weight transposed to
            ``(*k, C_out // groups, C_in)``), ``param_dtype`` (default: the torch weight's dtype),
            ``dtype``, ``precision``, ``mask``, ``name``.

        Returns:
          ``(module, variables)`` with ``variables = {"params": {"kernel": ..., "bias": ...}}``.

        Raises:
          TypeError: ``module`` is not a torch ConvTranspose, or ``kwargs`` sets a field the
            module determines.
          ValueError: the module's ``padding_mode`` is not ``'zeros'``.

        Example:
          >>> import numpy as np, torch
          >>> import jaxconvt.linen
          >>> m = torch.nn.ConvTranspose1d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
          >>> module, variables = jaxconvt.linen.ConvTranspose.from_torch(m)
          >>> x = np.random.default_rng(0).standard_normal((1, 4, 5)).astype(np.float32)
          >>> y = module.apply(variables, x.transpose(0, 2, 1))           # NWC
          >>> np.allclose(y.transpose(0, 2, 1), m(torch.from_numpy(x)).detach().numpy(), atol=1e-5)
          True
        """
        name = f"{cls.__module__}.{cls.__qualname__}.from_torch"
        info = _layers.read_torch_conv_transpose(module, layer=name)
        _layers.check_torch_padding_mode(info, layer=name)
        _layers.check_from_torch_kwargs(kwargs, _FROM_TORCH, layer=name)
        transpose_kernel = bool(kwargs.pop("transpose_kernel", False))
        param_dtype = kwargs.pop("param_dtype", jax.dtypes.canonicalize_dtype(info.weight.dtype))
        layer = cls(
            info.out_channels,
            info.kernel_size,
            info.stride,
            kernel_dilation=info.dilation,
            use_bias=info.bias is not None,
            transpose_kernel=transpose_kernel,
            param_dtype=param_dtype,
            groups=info.groups,
            output_padding=info.output_padding,
            torch_padding=info.padding,
            **kwargs,
        )
        kernel = _layers.jaxconvt_kernel_to_flax(info.kernel(), transpose_kernel, info.groups)
        params = {"kernel": jnp.asarray(kernel, param_dtype)}
        if info.bias is not None:
            params["bias"] = jnp.asarray(info.bias, param_dtype)
        return layer, {"params": params}
