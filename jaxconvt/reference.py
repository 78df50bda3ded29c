"""A plain numpy reference of :func:`jaxconvt.conv_transpose`, for tests and self-checks.

Values come from a literal scatter: for every kernel tap, the whole input (times that
tap) is added into a strided slice of a float64 "full" buffer, which is then cropped.
Argument handling and crops are shared with the op (so errors match); the arithmetic
shares nothing with the op's ``lax`` lowerings. Use it in your own tests:

>>> import numpy as np, jaxconvt
>>> from jaxconvt.reference import conv_transpose_reference
>>> x, k = np.ones((1, 3, 1)), np.ones((2, 1, 1))
>>> conv_transpose_reference(x, k, strides=2)[0, :, 0]
array([1., 1., 1., 1., 1., 1.])
"""

from __future__ import annotations

import itertools

import numpy as np

from jaxconvt._spec import make_spec, normalize_data_format

__all__ = ["conv_transpose_reference", "scatter"]


def scatter(x, kernel, strides, dilation, crops, groups=1):
    """Channels-last scatter-add: ``x (N, *i, C_in)``, ``kernel (*k, Og, C_in)``.

    Returns ``(N, *out, groups * Og)`` in float64 (complex128 for complex operands), where
    ``out = (i - 1) * s + (k - 1) * d + 1 - lo - hi`` per spatial dimension and
    ``crops = ((lo, hi), ...)``; negative crops zero-extend.
    """
    x = np.asarray(x)
    kernel = np.asarray(kernel)
    dtype = np.result_type(x.dtype, kernel.dtype, np.float64)
    n = x.ndim - 2
    batch, spatial, c_in = x.shape[0], x.shape[1:-1], x.shape[-1]
    ksize, og = kernel.shape[:n], kernel.shape[n]
    cg = c_in // groups
    ext_lo = [max(0, -lo) for lo, _ in crops]
    ext_hi = [max(0, -hi) for _, hi in crops]
    full = [(spatial[a] - 1) * strides[a] + (ksize[a] - 1) * dilation[a] + 1 for a in range(n)]
    buf = np.zeros((batch, *(ext_lo[a] + full[a] + ext_hi[a] for a in range(n)), groups * og), dtype)
    xg = x.astype(dtype).reshape(*x.shape[:-1], groups, cg)
    kg = kernel.astype(dtype).reshape(*ksize, og, groups, cg)
    for tap in itertools.product(*(range(k) for k in ksize)):
        # (N, *i, G, Cg) x (Og, G, Cg) -> (N, *i, G, Og)
        contrib = np.einsum("...gc,ogc->...go", xg, kg[tap])
        where = tuple(
            slice(
                ext_lo[a] + tap[a] * dilation[a],
                ext_lo[a] + tap[a] * dilation[a] + (spatial[a] - 1) * strides[a] + 1,
                strides[a],
            )
            for a in range(n)
        )
        buf[(slice(None), *where, slice(None))] += contrib.reshape(*contrib.shape[:-2], groups * og)
    keep = tuple(slice(ext_lo[a] + crops[a][0], ext_lo[a] + full[a] - crops[a][1]) for a in range(n))
    return buf[(slice(None), *keep, slice(None))]


def conv_transpose_reference(
    inputs,
    kernel,
    strides=1,
    padding="valid",
    output_padding=None,
    data_format=None,
    dilation_rate=1,
    *,
    groups=1,
    output_shape=None,
):
    """Same arguments and result as :func:`jaxconvt.conv_transpose`, in numpy float64.

    Args:
      inputs, kernel, strides, padding, output_padding, data_format, dilation_rate,
      groups, output_shape: as for :func:`jaxconvt.conv_transpose`.

    Returns:
      A numpy array (float64, or complex128 for complex operands).
    """
    inputs = np.asarray(inputs)
    kernel = np.asarray(kernel)
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
    )
    channels_last = normalize_data_format(data_format)
    if not channels_last:
        inputs = np.moveaxis(inputs, 1, -1)
    out = scatter(inputs, kernel, spec.strides, spec.dilation, spec.crops, spec.groups)
    if not channels_last:
        out = np.moveaxis(out, -1, 1)
    del out_shape  # equal to out.shape by construction; checked in the tests
    return out
