"""The PyTorch baseline: ``torch.nn.functional.conv_transpose{1,2,3}d`` with autograd.

torch is imported only when this baseline runs.
"""

from __future__ import annotations

import jax
import numpy as np

from jaxconvt._spec import ConvSpec
from jaxconvt.bench.problem import Problem
from jaxconvt.bench.settings import STAGES
from jaxconvt.bench.timing import Runner


def import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_device_name() -> str | None:
    """``"cuda"`` when JAX runs on a GPU and torch sees CUDA, ``"cpu"`` otherwise; None without torch."""
    torch = import_torch()
    if torch is None:
        return None
    if jax.default_backend() == "gpu" and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def _torch_padding(spec: ConvSpec):
    """(padding, output_padding, extra crops) reproducing ``spec.crops`` in PyTorch.

    PyTorch crops ``p`` low and ``p - output_padding`` high, with ``output_padding`` smaller
    than the stride or the dilation. Crops it cannot express are applied to its output.
    """
    pads, ops, extra = [], [], []
    for (lo, hi), s, d in zip(spec.crops, spec.strides, spec.dilation):
        p, op = lo, lo - hi
        if p >= 0 and 0 <= op < max(s, d):
            pads.append(p)
            ops.append(op)
            extra.append((0, 0))
        else:
            pads.append(0)
            ops.append(0)
            extra.append((lo, hi))
    return tuple(pads), tuple(ops), tuple(extra)


def prepare_torch(problem: Problem) -> dict[str, Runner]:
    """The four stages in PyTorch (autograd for dx, dK and fwd+bwd; no_grad forward)."""
    torch = import_torch()
    import torch.nn.functional as F

    device = torch_device_name()
    tdtype = getattr(torch, problem.dtype)
    spec = problem.spec
    n = spec.ndim
    conv = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[n]
    pads, ops, extra = _torch_padding(spec)
    per_example = problem.per_example
    batch = problem.size.batch
    groups = spec.groups * (batch if per_example else 1)

    def to_torch_x(a):  # JAX (.., N, *sp, C) -> torch (N, C, *sp); per example (1, B*C, *sp)
        if per_example:
            a = a[:, 0]
        a = np.moveaxis(a, -1, 1)
        if per_example:
            a = a.reshape(1, -1, *a.shape[2:])
        return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=tdtype)

    def to_torch_k(a):  # Keras (.., *k, Og, C_in) -> torch (C_in, Og, *k); per example (B*C_in, Og, *k)
        if per_example:
            a = np.transpose(a, (0, n + 2, n + 1, *range(1, n + 1)))  # (B, C_in, Og, *k)
            a = a.reshape(-1, *a.shape[2:])
        else:
            a = np.transpose(a, (n + 1, n, *range(n)))
        return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=tdtype)

    def from_torch_y(t):  # torch (N, C, *L) -> JAX layout
        a = t.detach().float().cpu().numpy()
        if per_example:
            a = a.reshape(batch, -1, *a.shape[2:])
        a = np.moveaxis(a, 1, -1)
        return a[:, None] if per_example else a

    def from_torch_k(t):  # torch (C_in, Og, *k) -> Keras layout
        a = t.detach().float().cpu().numpy()
        if per_example:
            a = a.reshape(batch, -1, *a.shape[1:])
            return np.transpose(a, (0, *range(3, n + 3), 2, 1))
        return np.transpose(a, (*range(2, n + 2), 1, 0))

    def op(x, w):
        y = conv(x, w, stride=spec.strides, padding=pads, output_padding=ops, groups=groups, dilation=spec.dilation)
        if any(e != (0, 0) for e in extra):
            y = F.pad(y, [-v for lo_hi in reversed(extra) for v in lo_hi])
        return y

    x = to_torch_x(problem.x)
    w = to_torch_k(problem.k)
    ct = to_torch_x(problem.ct)

    def sync(out):
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    def fwd():
        with torch.no_grad():
            return op(x, w)

    xr = x.detach().requires_grad_(True)
    wr = w.detach().requires_grad_(True)
    graphs = {}

    def dx():
        if "dx" not in graphs:
            graphs["dx"] = op(xr, w)
        return torch.autograd.grad(graphs["dx"], xr, ct, retain_graph=True)[0]

    def dk():
        if "dk" not in graphs:
            graphs["dk"] = op(x, wr)
        return torch.autograd.grad(graphs["dk"], wr, ct, retain_graph=True)[0]

    def fwdbwd():
        y = op(xr, wr)
        loss = (y * ct).float().sum()
        return loss, torch.autograd.grad(loss, (xr, wr))

    calls = {"fwd": fwd, "dx": dx, "dk": dk, "fwdbwd": fwdbwd}
    convert = {"fwd": from_torch_y, "dx": from_torch_y, "dk": from_torch_k, "fwdbwd": None}
    return {stage: Runner(calls[stage], sync, convert[stage]) for stage in STAGES}
