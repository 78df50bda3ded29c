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
