"""Pure integer arithmetic of transposed convolution: crops and output sizes.

Everything here works per spatial dimension on plain Python ints, imports nothing
from JAX, and is shared by the op, its shape function and the adapters.

Notation: ``i`` input size, ``k`` kernel size, ``s`` stride, ``d`` dilation,
``ke = (k - 1) * d + 1`` the dilated kernel size, ``op`` output padding. The op
scatters every input element into a "full" output of length ``(i - 1) * s + ke``
and then crops ``(lo, hi)`` from its two ends; a negative crop zero-extends.
"""

from __future__ import annotations

__all__ = [
    "dilated_size",
    "full_size",
    "keras_crops",
    "explicit_crops",
    "output_size",
    "max_output_padding",
]


def dilated_size(k: int, d: int) -> int:
    """Size of a kernel of size ``k`` dilated by ``d``."""
    return (k - 1) * d + 1


def full_size(i: int, k: int, s: int, d: int) -> int:
    """Length of the uncropped scatter result."""
    return (i - 1) * s + dilated_size(k, d)


def keras_crops(mode: str, k: int, s: int, d: int, op: int | None) -> tuple[int, int]:
    """Crops of ``keras.ops.conv_transpose`` for ``padding=mode`` ("valid" or "same")."""
    ke = dilated_size(k, d)
    if mode == "valid":
        op_eff = max(s - ke, 0) if op is None else op
        return 0, -op_eff
    # "same"
    m = ke - s if op is None else 2 * (ke // 2) - op
    if m >= 0:
        return m // 2, m - m // 2
    return 0, m


def explicit_crops(lo: int, hi: int, op: int | None) -> tuple[int, int]:
    """Crops for PyTorch-style explicit padding: ``output_padding`` extends the high side."""
    return lo, hi - (op or 0)


def output_size(i: int, k: int, s: int, d: int, crops: tuple[int, int]) -> int:
    """Output length after cropping ``crops = (lo, hi)`` from the full scatter result."""
    return full_size(i, k, s, d) - crops[0] - crops[1]


def max_output_padding(s: int, d: int) -> int:
    """Largest output padding allowed: it must be smaller than the stride or the dilation."""
    return max(s, d) - 1
