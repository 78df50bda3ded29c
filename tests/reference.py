"""An independent numpy reference for transposed convolution: scatter, then crop.

Deliberately naive and obviously right: loop over every input position and kernel tap,
add ``x[n, a, c] * K[j, o, c]`` at ``a * s + j * d`` into a "full" buffer, then crop
``(lo, hi)`` per spatial dimension (a negative crop zero-extends). Channels-last only;
callers move axes themselves. Shares no code with jaxconvt.
"""

from __future__ import annotations

import itertools

import numpy as np


def keras_crop(mode, k, s, d, op):
    """Crops per SEMANTICS.md, written out independently of jaxconvt._padding."""
    ke = (k - 1) * d + 1
    if mode == "valid":
        return (0, -(op if op is not None else max(s - ke, 0)))
    m = (ke - s) if op is None else (2 * (ke // 2) - op)
    return (m // 2, m - m // 2) if m >= 0 else (0, m)


def scatter_conv_transpose(x, kernel, strides, dilation, crops, groups=1):
    """x (N, *i, C_in), kernel (*k, Og, C_in) -> (N, *out, G*Og) in float64/complex128."""
    x = np.asarray(x)
    kernel = np.asarray(kernel)
    acc = np.result_type(x.dtype, kernel.dtype, np.float64)
    n_sp = x.ndim - 2
    batch, spatial, c_in = x.shape[0], x.shape[1:-1], x.shape[-1]
    ksize, og = kernel.shape[:n_sp], kernel.shape[n_sp]
    cg = c_in // groups
    full = [(spatial[a] - 1) * strides[a] + (ksize[a] - 1) * dilation[a] + 1 for a in range(n_sp)]
    # Zero-extension: allocate room for negative crops on both sides.
    ext_lo = [max(-crops[a][0], 0) for a in range(n_sp)]
    ext_hi = [max(-crops[a][1], 0) for a in range(n_sp)]
    buf = np.zeros((batch, *[full[a] + ext_lo[a] + ext_hi[a] for a in range(n_sp)], groups * og), acc)
    for pos in itertools.product(*[range(v) for v in spatial]):
        for tap in itertools.product(*[range(v) for v in ksize]):
            where = tuple(ext_lo[a] + pos[a] * strides[a] + tap[a] * dilation[a] for a in range(n_sp))
            for g in range(groups):
                xs = x[(slice(None), *pos, slice(g * cg, (g + 1) * cg))].astype(acc)  # (N, cg)
                ks = kernel[(*tap, slice(None), slice(g * cg, (g + 1) * cg))].astype(acc)  # (og, cg)
                buf[(slice(None), *where, slice(g * og, (g + 1) * og))] += xs @ ks.T
    index = tuple(slice(ext_lo[a] + crops[a][0], ext_lo[a] + full[a] - crops[a][1]) for a in range(n_sp))
    return buf[(slice(None), *index, slice(None))]


def explicit_crop(lo, hi, op):
    """Crops for explicit (PyTorch-style) padding: ``lo`` at the start, ``hi`` at the end,
    and ``output_padding`` gives ``op`` elements back at the end."""
    return (lo, hi - (op or 0))


def _per_dim(value, n):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def conv_transpose_ref(
    x,
    kernel,
    strides=1,
    padding="valid",
    output_padding=None,
    data_format=None,
    dilation_rate=1,
    groups=1,
    output_shape=None,
):
    """The argument surface of ``jaxconvt.conv_transpose`` on top of ``scatter_conv_transpose``.

    Written from SEMANTICS.md only, for VALID arguments (no validation at all): string
    padding uses ``keras_crop``, explicit padding (int, N ints or N (lo, hi) pairs) uses
    ``explicit_crop``; ``output_shape`` (N spatial sizes, or N + 2 with batch and channels)
    picks ``output_padding = target - (size with output_padding 0)`` per dimension.
    """
    x = np.asarray(x)
    channels_first = data_format == "channels_first"
    if channels_first:
        x = np.moveaxis(x, 1, -1)
    n = x.ndim - 2
    spatial, ksize = x.shape[1:-1], kernel.shape[:n]
    s, d = _per_dim(strides, n), _per_dim(dilation_rate, n)
    if isinstance(padding, str):

        def crop(a, op):
            return keras_crop(padding.lower(), ksize[a], s[a], d[a], op)

    else:
        pairs = [(p, p) if isinstance(p, int) else tuple(p) for p in _per_dim(padding, n)]

        def crop(a, op):
            return explicit_crop(pairs[a][0], pairs[a][1], op)

    if output_shape is not None:
        target = tuple(output_shape)
        if len(target) == n + 2:
            target = target[2:] if channels_first else target[1:-1]
        full = [(spatial[a] - 1) * s[a] + (ksize[a] - 1) * d[a] + 1 for a in range(n)]
        ops = [target[a] - (full[a] - sum(crop(a, 0))) for a in range(n)]
    elif output_padding is None:
        ops = [None] * n
    else:
        ops = list(_per_dim(output_padding, n))
    out = scatter_conv_transpose(x, kernel, s, d, [crop(a, ops[a]) for a in range(n)], groups)
    return np.moveaxis(out, -1, 1) if channels_first else out
