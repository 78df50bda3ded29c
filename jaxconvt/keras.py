"""Keras 3 transposed-convolution layers on :func:`jaxconvt.conv_transpose`, and an opt-in for Keras's own.

:class:`Conv1DTranspose`, :class:`Conv2DTranspose` and :class:`Conv3DTranspose` subclass
``keras.layers.Conv{1,2,3}DTranspose`` and replace only the convolution: every constructor
argument keeps its meaning, the weights (``kernel`` ``(*kernel_size, filters, C_in)`` and
``bias`` ``(filters,)``) keep their names, shapes, dtypes, initialisers, regularisers and
constraints, and ``get_config`` / ``from_config``, ``get_weights`` / ``set_weights``,
``.weights.h5`` and ``.keras`` files work as for Keras's layers (checkpoints of Keras's layers
load into these). With the same weights the output equals Keras's to float32 rounding,
forward and gradients, for both data formats, ``output_padding``, ``dilation_rate`` and mixed
precision; differentiation goes through jaxconvt's fast derivative rules.

Added, keyword-only or as wider argument ranges:

* ``groups`` (keyword-only): the kernel becomes ``(*kernel_size, filters // groups, C_in)``;
  ``groups`` must divide ``filters`` and the input channels (PyTorch's grouping).
* ``padding`` may also be explicit crops with PyTorch's meaning: an int, ``rank`` ints or
  ``rank`` ``(low, high)`` pairs; ``output_padding`` then extends the end (default 0).
* ``strides > 1`` together with ``dilation_rate > 1``, and ``output_padding`` smaller than
  the stride *or* the dilation (Keras's layers refuse both; ``keras.ops.conv_transpose``
  and PyTorch compute them, and so do these layers).

Only Keras's JAX backend is supported. Importing this module sets ``KERAS_BACKEND=jax`` when
the variable is unset (before importing Keras); a layer or :func:`enable` under another
backend raises ``RuntimeError``.

:func:`enable` / :func:`disable` / :func:`enabled` route Keras's JAX-backend
``conv_transpose`` (behind ``keras.ops.conv_transpose`` and therefore behind
``keras.layers.Conv*DTranspose``) through jaxconvt, so existing Keras models train faster
with no other change.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax.numpy as jnp  # noqa: E402

from jaxconvt._api import conv_transpose, conv_transpose_output_shape  # noqa: E402
from jaxconvt._layers import (  # noqa: E402
    check_from_torch_kwargs,
    check_torch_padding_mode,
    import_framework,
    read_torch_conv_transpose,
)
from jaxconvt._spec import _describe, _explicit_padding, _is_int  # noqa: E402

keras = import_framework("keras", "keras", layer="jaxconvt.keras")
from keras.src.backend import standardize_data_format  # noqa: E402
from keras.src.layers.input_spec import InputSpec  # noqa: E402
from keras.src.utils.argument_validation import standardize_tuple  # noqa: E402

__all__ = [
    "Conv1DTranspose",
    "Conv2DTranspose",
    "Conv3DTranspose",
    "TESTED_KERAS_VERSIONS",
    "disable",
    "enable",
    "enabled",
    "is_enabled",
]

TESTED_KERAS_VERSIONS = ((3, 15),)
"""Keras ``(major, minor)`` versions :func:`enable` is tested with (it replaces a Keras internal)."""


def _check_backend(what: str) -> None:
    backend = keras.backend.backend()
    if backend != "jax":
        raise RuntimeError(
            f"{what} needs Keras's JAX backend (set KERAS_BACKEND=jax before importing keras); got backend {backend!r}."
        )


class _JaxconvtConvTranspose:
    """The shared implementation; the public classes put it before Keras's own class."""

    _rank: int

    def __init__(
        self,
        filters,
        kernel_size,
        *,
        strides,
        padding,
        output_padding,
        data_format,
        dilation_rate,
        activation,
        use_bias,
        kernel_initializer,
        bias_initializer,
        kernel_regularizer,
        bias_regularizer,
        activity_regularizer,
        kernel_constraint,
        bias_constraint,
        groups,
        **kwargs,
    ):
        _check_backend(type(self).__name__)
        n = self._rank
        if not _is_int(groups):
            raise TypeError(f"`groups` must be a positive int; got {_describe(groups)}.")
        groups = int(groups)
        if groups < 1:
            raise ValueError(f"`groups` must be >= 1; got groups={groups}.")
        if _is_int(filters) and filters > 0 and filters % groups:
            raise ValueError(f"`groups` must divide `filters`; got groups={groups}, filters={filters}.")
        strides_t = standardize_tuple(strides, n, "strides")
        dilation_t = standardize_tuple(dilation_rate, n, "dilation_rate")
        op_t = None if output_padding is None else standardize_tuple(output_padding, n, "output_padding", True)
        explicit = not isinstance(padding, str)
        # What Keras's layer refuses but the op computes: take Keras's path with neutral values
        # (so every other argument gets Keras's own checks), then set the real ones.
        wider = (max(strides_t) > 1 and max(dilation_t) > 1) or (
            op_t is not None and any(o >= s for o, s in zip(op_t, strides_t))
        )
        if op_t is not None and any(o >= max(s, d) for o, s, d in zip(op_t, strides_t, dilation_t)):
            raise ValueError(
                "`output_padding` must be smaller than `strides` or `dilation_rate` in every spatial dimension; "
                f"got output_padding={op_t}, strides={strides_t}, dilation_rate={dilation_t}."
            )
        pairs = _explicit_padding(padding, n) if explicit else None
        super().__init__(
            filters,
            kernel_size,
            strides=1 if wider else strides,
            padding="valid" if explicit else padding,
            output_padding=None if wider else output_padding,
            data_format=data_format,
            dilation_rate=1 if wider else dilation_rate,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
            **kwargs,
        )
        self.strides, self.dilation_rate, self.output_padding = strides_t, dilation_t, op_t
        if explicit:
            self.padding = pairs
        self.groups = groups

    def build(self, input_shape):
        """Creates ``kernel`` ``(*kernel_size, filters // groups, C_in)`` and ``bias`` as Keras does."""
        channel_axis = -1 if self.data_format == "channels_last" else 1
        input_channel = input_shape[channel_axis]
        if input_channel is not None and input_channel % self.groups:
            raise ValueError(
                f"`groups` must divide the input channels; got groups={self.groups} and {input_channel} input "
                f"channels (input shape {tuple(input_shape)}, data_format={self.data_format!r})."
            )
        self.input_spec = InputSpec(min_ndim=self.rank + 2, axes={channel_axis: input_channel})
        self.kernel = self.add_weight(
            name="kernel",
            shape=self.kernel_size + (self.filters // self.groups, input_channel),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
            trainable=True,
            dtype=self.dtype,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.filters,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
                trainable=True,
                dtype=self.dtype,
            )
        else:
            self.bias = None

    def call(self, inputs):
        outputs = conv_transpose(
            inputs,
            keras.ops.convert_to_tensor(self.kernel),
            strides=self.strides,
            padding=self.padding,
            output_padding=self.output_padding,
            data_format=self.data_format,
            dilation_rate=self.dilation_rate,
            groups=self.groups,
        )
        if self.use_bias:
            if self.data_format == "channels_last":
                bias_shape = (1,) * (self.rank + 1) + (self.filters,)
            else:
                bias_shape = (1, self.filters) + (1,) * self.rank
            outputs = keras.ops.add(outputs, keras.ops.reshape(self.bias, bias_shape))
        if self.activation is not None:
            return self.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        input_shape = list(input_shape)
        channels_last = self.data_format == "channels_last"
        spatial = input_shape[1:-1] if channels_last else input_shape[2:]
        out = []
        for j, size in enumerate(spatial):  # one dimension at a time; unknown sizes stay unknown
            if size is None:
                out.append(None)
                continue
            padding = self.padding if isinstance(self.padding, str) else [self.padding[j]]
            shape = conv_transpose_output_shape(
                (1, size, 1),
                (self.kernel_size[j], 1, 1),
                strides=self.strides[j],
                padding=padding,
                output_padding=None if self.output_padding is None else self.output_padding[j],
                dilation_rate=self.dilation_rate[j],
            )
            out.append(shape[1])
        if channels_last:
            return [input_shape[0], *out, self.filters]
        return [input_shape[0], self.filters, *out]

    def get_config(self):
        config = super().get_config()
        config["groups"] = self.groups
        return config

    @classmethod
    def from_torch(cls, module, **kwargs):
        """The built layer computing what a ``torch.nn.ConvTranspose{1,2,3}d`` of the same rank computes.

        Stride, padding (as PyTorch-style explicit pairs), output padding, dilation, groups, the
        bias and the weight (``kernel = weight.permute(*spatial, 1, 0)``) come from the module;
        with ``torch.nn.utils.weight_norm`` or ``torch.nn.utils.parametrizations.weight_norm``
        the layer holds the effective weight. With ``data_format="channels_first"`` the layer
        takes torch's input layout ``(N, C_in, *spatial)`` as is; with the default
        ``channels_last``, move the channel axis last.

        Args:
          module: a ``torch.nn.ConvTranspose{rank}d``.
          **kwargs: other constructor arguments (``data_format``, ``activation``, ``name``,
            ``dtype``, regularisers, constraints, ...); not the ones the module determines.

        Returns:
          The layer, built, with the module's weights.

        Raises:
          TypeError: ``module`` is not a torch transposed convolution of this rank, or
            ``kwargs`` holds an argument the module determines.
          ValueError: the module's ``padding_mode`` is not ``"zeros"``.

        Example:
          >>> import numpy as np, torch
          >>> from jaxconvt.keras import Conv2DTranspose
          >>> _ = torch.manual_seed(0)
          >>> tm = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
          >>> layer = Conv2DTranspose.from_torch(tm, data_format="channels_first")
          >>> x = torch.randn(2, 4, 5, 5)
          >>> y = layer(x.numpy())
          >>> y.shape, bool(np.allclose(y, tm(x).detach().numpy(), atol=1e-5))
          ((2, 6, 10, 10), True)
        """
        layer_name = f"jaxconvt.keras.{cls.__name__}.from_torch"
        spec = read_torch_conv_transpose(module, layer=layer_name)
        if spec.ndim != cls._rank:
            raise TypeError(
                f"`module` must be a torch.nn.ConvTranspose{cls._rank}d for {cls.__name__}.from_torch; got a "
                f"{spec.ndim}-D {type(module).__name__} (use Conv{spec.ndim}DTranspose)."
            )
        check_torch_padding_mode(spec, layer=layer_name)
        check_from_torch_kwargs(kwargs, _FROM_MODULE, layer=layer_name)
        layer = cls(
            filters=spec.out_channels,
            kernel_size=spec.kernel_size,
            strides=spec.stride,
            padding=tuple((p, p) for p in spec.padding),
            output_padding=spec.output_padding,
            dilation_rate=spec.dilation,
            groups=spec.groups,
            use_bias=spec.bias is not None,
            **kwargs,
        )
        n = cls._rank
        shape = (None, *([None] * n), spec.in_channels)
        if layer.data_format == "channels_first":
            shape = (None, spec.in_channels, *([None] * n))
        # Build with the torch values as initial values (drawing random ones first would compile
        # jax.random for nothing), then put the configured initialisers back for get_config.
        initializers = layer.kernel_initializer, layer.bias_initializer
        layer.kernel_initializer = lambda shape, dtype=None: keras.ops.cast(spec.kernel(), dtype)
        layer.bias_initializer = lambda shape, dtype=None: keras.ops.cast(spec.bias, dtype)
        try:
            layer.build(shape)
        finally:
            layer.kernel_initializer, layer.bias_initializer = initializers
        return layer


_FROM_MODULE = ("filters", "kernel_size", "strides", "padding", "output_padding", "dilation_rate", "groups", "use_bias")


@keras.saving.register_keras_serializable(package="jaxconvt")
class Conv1DTranspose(_JaxconvtConvTranspose, keras.layers.Conv1DTranspose):
    """1-D transposed convolution; a drop-in for ``keras.layers.Conv1DTranspose``.

    Example:
      >>> import numpy as np
      >>> from jaxconvt.keras import Conv1DTranspose
      >>> layer = Conv1DTranspose(4, 16, strides=8, padding=4, groups=2)
      >>> layer(np.ones((2, 10, 2), "float32")).shape
      (2, 80, 4)
      >>> layer.kernel.shape
      (16, 2, 2)

    Args:
      filters, kernel_size, strides, padding, output_padding, data_format, dilation_rate: as for
        ``keras.layers.Conv1DTranspose``, widened as the module docstring says: ``padding`` may
        also be an int, 1 ints or 1 ``(low, high)`` pairs (PyTorch's crops), ``strides > 1``
        may go with ``dilation_rate > 1``, and ``output_padding`` may be up to
        ``max(strides, dilation_rate) - 1``.
      activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
      bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint: as for
        ``keras.layers.Conv1DTranspose``.
      groups: channel groups (keyword-only, default 1); must divide ``filters`` and the input
        channels. The kernel is then ``(*kernel_size, filters // groups, C_in)``.
      **kwargs: the base layer's arguments (``name``, ``dtype``, dtype policies included,
        ``trainable``, ...).

    Raises:
      ValueError: a bad argument (Keras's message for what Keras checks, jaxconvt's for the rest).
      RuntimeError: Keras runs another backend than JAX.
    """

    _rank = 1

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        output_padding=None,
        data_format=None,
        dilation_rate=1,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        *,
        groups=1,
        **kwargs,
    ):
        super().__init__(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            output_padding=output_padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
            groups=groups,
            **kwargs,
        )


@keras.saving.register_keras_serializable(package="jaxconvt")
class Conv2DTranspose(_JaxconvtConvTranspose, keras.layers.Conv2DTranspose):
    """2-D transposed convolution; a drop-in for ``keras.layers.Conv2DTranspose``.

    Example:
      >>> import numpy as np
      >>> from jaxconvt.keras import Conv2DTranspose
      >>> layer = Conv2DTranspose(4, 3, strides=2, padding="same")
      >>> layer(np.ones((2, 5, 5, 2), "float32")).shape
      (2, 10, 10, 4)

    Args:
      filters, kernel_size, strides, padding, output_padding, data_format, dilation_rate: as for
        ``keras.layers.Conv2DTranspose``, widened as the module docstring says: ``padding`` may
        also be an int, 2 ints or 2 ``(low, high)`` pairs (PyTorch's crops), ``strides > 1``
        may go with ``dilation_rate > 1``, and ``output_padding`` may be up to
        ``max(strides, dilation_rate) - 1``.
      activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
      bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint: as for
        ``keras.layers.Conv2DTranspose``.
      groups: channel groups (keyword-only, default 1); must divide ``filters`` and the input
        channels. The kernel is then ``(*kernel_size, filters // groups, C_in)``.
      **kwargs: the base layer's arguments (``name``, ``dtype``, dtype policies included,
        ``trainable``, ...).

    Raises:
      ValueError: a bad argument (Keras's message for what Keras checks, jaxconvt's for the rest).
      RuntimeError: Keras runs another backend than JAX.
    """

    _rank = 2

    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        output_padding=None,
        data_format=None,
        dilation_rate=(1, 1),
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        *,
        groups=1,
        **kwargs,
    ):
        super().__init__(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            output_padding=output_padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
            groups=groups,
            **kwargs,
        )


@keras.saving.register_keras_serializable(package="jaxconvt")
class Conv3DTranspose(_JaxconvtConvTranspose, keras.layers.Conv3DTranspose):
    """3-D transposed convolution; a drop-in for ``keras.layers.Conv3DTranspose``.

    Example:
      >>> import numpy as np
      >>> from jaxconvt.keras import Conv3DTranspose
      >>> layer = Conv3DTranspose(2, 3, strides=2, padding=1, output_padding=1)
      >>> layer(np.ones((1, 4, 4, 4, 1), "float32")).shape
      (1, 8, 8, 8, 2)

    Args:
      filters, kernel_size, strides, padding, output_padding, data_format, dilation_rate: as for
        ``keras.layers.Conv3DTranspose``, widened as the module docstring says: ``padding`` may
        also be an int, 3 ints or 3 ``(low, high)`` pairs (PyTorch's crops), ``strides > 1``
        may go with ``dilation_rate > 1``, and ``output_padding`` may be up to
        ``max(strides, dilation_rate) - 1``.
      activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
      bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint: as for
        ``keras.layers.Conv3DTranspose``.
      groups: channel groups (keyword-only, default 1); must divide ``filters`` and the input
        channels. The kernel is then ``(*kernel_size, filters // groups, C_in)``.
      **kwargs: the base layer's arguments (``name``, ``dtype``, dtype policies included,
        ``trainable``, ...).

    Raises:
      ValueError: a bad argument (Keras's message for what Keras checks, jaxconvt's for the rest).
      RuntimeError: Keras runs another backend than JAX.
    """

    _rank = 3

    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1, 1),
        padding="valid",
        data_format=None,
        output_padding=None,
        dilation_rate=(1, 1, 1),
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        *,
        groups=1,
        **kwargs,
    ):
        super().__init__(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            output_padding=output_padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
            groups=groups,
            **kwargs,
        )


# ---------------------------------------------------------------------------------------------
# The opt-in: Keras's own conv_transpose through jaxconvt.

_state: dict[str, Any] = {"original": None}


def _backend_nn():
    from keras.src.backend.jax import nn

    return nn


def _conv_transpose_via_jaxconvt(
    inputs,
    kernel,
    strides=1,
    padding="valid",
    output_padding=None,
    data_format=None,
    dilation_rate=1,
):
    """Keras's JAX-backend ``conv_transpose``, computed by jaxconvt where jaxconvt accepts the call.

    Calls jaxconvt does not accept (a padding other than 'valid'/'same', operands of
    different or non-floating dtypes, ``output_padding`` not smaller than the stride or the
    dilation, which Keras zero-extends, and every invalid call) go to the function that was in
    place before :func:`enable`, so they behave, and fail, exactly as without it.
    """
    original = _state["original"]
    args = (inputs, kernel, strides, padding, output_padding, data_format, dilation_rate)
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        return original(*args)
    data_format = standardize_data_format(data_format)
    x = keras.ops.convert_to_tensor(inputs)
    k = keras.ops.convert_to_tensor(kernel)
    if x.dtype != k.dtype or not jnp.issubdtype(x.dtype, jnp.inexact):
        return original(*args)
    try:
        conv_transpose_output_shape(x.shape, k.shape, strides, padding, output_padding, data_format, dilation_rate)
    except (TypeError, ValueError):
        return original(*args)
    return conv_transpose(x, k, strides, padding, output_padding, data_format, dilation_rate)


def _check_version(allow_untested_keras: bool) -> None:
    version = keras.version()
    try:
        major_minor = tuple(int(v) for v in version.split(".")[:2])
    except ValueError:
        major_minor = None
    if major_minor not in TESTED_KERAS_VERSIONS and not allow_untested_keras:
        tested = ", ".join(f"{a}.{b}" for a, b in TESTED_KERAS_VERSIONS)
        raise RuntimeError(
            f"jaxconvt.keras.enable() replaces a Keras internal (keras.src.backend.jax.nn.conv_transpose) and is "
            f"tested with Keras {tested}; got Keras {version}. Pass allow_untested_keras=True to enable it anyway "
            "(then run your model once with and once without it and compare)."
        )


def enable(*, allow_untested_keras: bool = False) -> None:
    """Routes Keras's JAX-backend ``conv_transpose`` through jaxconvt, for the whole process.

    Afterwards ``keras.ops.conv_transpose`` and every ``keras.layers.Conv*DTranspose`` (and
    models built from them) compute with :func:`jaxconvt.conv_transpose`: same values, same
    errors, fast gradients. Calls jaxconvt does not accept (e.g. ``output_padding`` not
    smaller than the stride or the dilation, which Keras zero-extends) still go to Keras's
    own implementation. Functions Keras compiled before (e.g. a model's train function after
    its first ``fit``) keep what they traced; enable it before the first call, or recompile.
    Calling it again while enabled does nothing; :func:`disable` restores the exact function
    that was there before.

    Args:
      allow_untested_keras: enable it even on a Keras version not in
        :data:`TESTED_KERAS_VERSIONS` (keyword-only).

    Raises:
      RuntimeError: Keras runs another backend than JAX, or its version is untested and
        ``allow_untested_keras`` is False.

    Example:
      >>> import numpy as np, keras, jaxconvt.keras
      >>> x, k = np.ones((1, 3, 1), "float32"), np.ones((2, 1, 1), "float32")
      >>> jaxconvt.keras.enable()
      >>> jaxconvt.keras.is_enabled(), keras.ops.conv_transpose(x, k, 2)[0, :, 0].tolist()
      (True, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
      >>> jaxconvt.keras.disable()
      >>> jaxconvt.keras.is_enabled()
      False
    """
    _check_backend("jaxconvt.keras.enable()")
    _check_version(allow_untested_keras)
    nn = _backend_nn()
    if nn.conv_transpose is not _conv_transpose_via_jaxconvt:
        _state["original"] = nn.conv_transpose
        nn.conv_transpose = _conv_transpose_via_jaxconvt


def disable() -> None:
    """Undoes :func:`enable`: puts back the function that was there before it. Does nothing when not enabled."""
    nn = _backend_nn()
    if nn.conv_transpose is _conv_transpose_via_jaxconvt:
        nn.conv_transpose = _state["original"]
        _state["original"] = None


def is_enabled() -> bool:
    """Whether Keras's ``conv_transpose`` currently goes through jaxconvt."""
    return _backend_nn().conv_transpose is _conv_transpose_via_jaxconvt


@contextlib.contextmanager
def enabled(*, allow_untested_keras: bool = False):
    """Context manager: :func:`enable` inside the block, and the previous state after it (also on errors).

    Args:
      allow_untested_keras: as for :func:`enable`.

    Example:
      >>> import numpy as np, keras, jaxconvt.keras
      >>> layer = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same")
      >>> with jaxconvt.keras.enabled():
      ...     y = layer(np.ones((1, 5, 5, 2), "float32"))       # computed by jaxconvt
      >>> y.shape, jaxconvt.keras.is_enabled()
      ((1, 10, 10, 4), False)
    """
    was_enabled = is_enabled()
    enable(allow_untested_keras=allow_untested_keras)
    try:
        yield
    finally:
        if not was_enabled:
            disable()
