"""Flax's own ``ConvTranspose`` layers as the oracle, evaluated in a child process.

``flax.nnx.ConvTranspose`` and ``flax.linen.ConvTranspose`` run ``lax.conv_transpose``, whose
``lhs_dilation`` convolutions (and their autodiff transposes) can make XLA:CPU abort the whole
process on some shapes (see SEMANTICS.md). So the random grid's oracle values come from a child:

    python tests/_layers_flax_worker.py OUTDIR INDEX[,INDEX...]

evaluates the configurations ``grid()[INDEX]`` with Flax's layers (float32), writes
``OUTDIR/<INDEX>.npz`` (``y``, ``dx``, ``dkernel``, ``dbias``) and prints ``start I`` / ``done I``
around each one. :func:`run_oracle` (parent side) restarts the child after the config that killed
it and reports those configs as aborted.

A configuration is a dict: ``api`` ("nnx" or "linen"), the layer arguments (``in_features``,
``out_features``, ``kernel_size``, ``strides``, ``padding``, ``kernel_dilation``, ``use_bias``,
``transpose_kernel``, ``mask``), jaxconvt's additions (``groups``, ``output_padding``,
``torch_padding``), the input shape and a seed. The oracle maps the additions onto plain Flax
layers without jaxconvt code: ``groups`` = ``groups`` Flax layers on channel slices
concatenated, ``output_padding`` = ``op`` more high padding in Flax's explicit pairs (strings
first turned into lax's own pairs), ``torch_padding=(lo, hi)`` = Flax pairs
``(ke - 1 - lo, ke - 1 - hi + op)`` — PyTorch's definition (crop the full result) written in
Flax's convention. Parameters and the output cotangent are seeded from the config, so the
parent builds the same ones (:func:`arrays`).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_NNX = 44  # random configurations for jaxconvt.nnx
N_LINEN = 16  # and for jaxconvt.linen
# XLA options that cut compile time several-fold without changing the HLO (as in tests/_keras_worker.py).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


def _per_dim(rng, values, allow_none=False):
    """An int when all values agree (often), else a tuple; None for all-ones sometimes."""
    if allow_none and all(v == 1 for v in values) and rng.random() < 0.5:
        return None
    if len(set(values)) == 1 and rng.random() < 0.5:
        return values[0]
    return tuple(values)


def random_config(seed: int, api: str) -> dict:
    """One random configuration (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
    kmax, imax = (4, 5) if n < 3 else (3, 4)
    ksize = [int(v) for v in rng.integers(1, kmax + 1, n)]
    strides = [int(v) for v in rng.integers(1, 4, n)]
    dilation = [int(v) for v in rng.integers(1, 3, n)] if rng.random() < 0.5 else [1] * n
    spatial = [int(v) for v in rng.integers(1, imax + 1, n)]
    kes = [(k - 1) * d + 1 for k, d in zip(ksize, dilation)]
    extra = rng.random()
    groups = int(rng.choice([2, 3])) if extra < 0.3 else 1
    c_in = groups * int(rng.integers(1, 3))
    c_out = groups * int(rng.integers(1, 3))
    output_padding, torch_padding = None, None
    r = rng.random()
    if r < 0.2:
        padding = "SAME"
    elif r < 0.35:
        padding = "VALID"
    elif r < 0.45:
        padding = "CIRCULAR"
    elif r < 0.55:
        padding = int(rng.integers(0, 3))
    elif r < 0.65:
        padding = [int(rng.integers(0, ke + 1)) for ke in kes]
    elif r < 0.85:
        # Negative pads crop the dilated input; lax refuses crops beyond its size (i - 1) * s.
        low = [max(-2, -(i - 1) * s) for i, s in zip(spatial, strides)]
        padding = [(int(rng.integers(m, ke + 2)), int(rng.integers(m, ke + 2))) for m, ke in zip(low, kes)]
    else:
        padding = "SAME"
        torch_padding = [(int(rng.integers(0, 3)), int(rng.integers(0, 3))) for _ in range(n)]
        if rng.random() < 0.4:
            torch_padding = int(rng.integers(0, 2))
    if padding != "CIRCULAR" and (0.3 <= extra < 0.55 or torch_padding is not None and rng.random() < 0.5):
        output_padding = [int(rng.integers(0, max(s, d))) for s, d in zip(strides, dilation)]
    batch = [(2,), (2,), (1,), (), (2, 1)][int(rng.integers(5))]
    cfg = {
        "api": api,
        "in_features": c_in,
        "out_features": c_out,
        "kernel_size": ksize[0] if n == 1 and rng.random() < 0.3 else tuple(ksize),
        "strides": _per_dim(rng, strides, allow_none=True),
        "padding": padding,
        "kernel_dilation": _per_dim(rng, dilation, allow_none=True),
        "use_bias": bool(rng.random() < 0.75),
        "transpose_kernel": bool(rng.random() < 0.5),
        "mask": bool(rng.random() < 0.15),
        "groups": groups,
        "output_padding": output_padding,
        "torch_padding": torch_padding,
        "x_shape": (*batch, *spatial, c_in),
        "seed": int(rng.integers(2**31)),
        "n": n,
    }
    return cfg


def _edge(api, kernel_size, strides, padding, spatial, transpose_kernel):
    cfg = dict(random_config(0, api), kernel_size=kernel_size, strides=strides, padding=padding)
    cfg.update(kernel_dilation=None, transpose_kernel=transpose_kernel, groups=1, in_features=2, out_features=3)
    cfg.update(mask=False, output_padding=None, torch_padding=None, use_bias=True, n=1, x_shape=(2, spatial, 2))
    return cfg


# Pads that push the output window wholly outside the scatter result (all zeros plus bias): a low
# pad of -((i - 1) * s + 1), the most lax allows, crops the whole result from the left; same on the right.
EDGE = [
    _edge("nnx", (2,), (2,), [(-5, 4)], 3, False),
    _edge("linen", (3,), (3,), [(3, -4)], 2, True),
]


def grid() -> list[dict]:
    """The seeded grid: ``N_NNX`` configurations for nnx, ``N_LINEN`` for linen, then the ``EDGE`` cases."""
    return (
        [random_config(1000 + i, "nnx") for i in range(N_NNX)]
        + [random_config(5000 + i, "linen") for i in range(N_LINEN)]
        + EDGE
    )


def kernel_shape(cfg) -> tuple[int, ...]:
    """The kernel shape the layer must have (Flax's, generalised to groups)."""
    ks = cfg["kernel_size"]
    ks = (ks,) if isinstance(ks, int) else tuple(ks)
    g = cfg["groups"]
    if cfg["transpose_kernel"]:
        return (*ks, cfg["out_features"] // g, cfg["in_features"])
    return (*ks, cfg["in_features"] // g, cfg["out_features"])


def arrays(cfg) -> dict[str, np.ndarray]:
    """Seeded float32 input, kernel, bias (or None), mask (or None) for a config."""
    rng = np.random.default_rng(cfg["seed"])
    shape = kernel_shape(cfg)
    out = {
        "x": rng.standard_normal(cfg["x_shape"]).astype(np.float32),
        "kernel": rng.standard_normal(shape).astype(np.float32),
        "bias": rng.standard_normal(cfg["out_features"]).astype(np.float32) if cfg["use_bias"] else None,
        "mask": (rng.random(shape) < 0.7).astype(np.float32) if cfg["mask"] else None,
    }
    return out


def cotangent(shape) -> np.ndarray:
    """A fixed, non-constant output weighting for the loss ``sum(y * w)``."""
    size = int(np.prod(shape))
    return np.cos(np.arange(size, dtype=np.float32) * 0.7).reshape(shape)


def _as_flax_padding(padding):
    if isinstance(padding, list):
        return [tuple(p) if isinstance(p, (list, tuple)) else p for p in padding]
    return padding


def flax_pairs(cfg) -> object:
    """The Flax padding that gives the config's output padding / torch padding (Flax's own convention)."""
    from jax._src.lax.convolution import _conv_transpose_padding

    n = cfg["n"]
    ks = cfg["kernel_size"]
    ks = (ks,) * n if isinstance(ks, int) else tuple(ks)
    strides = (1,) * n if cfg["strides"] is None else cfg["strides"]
    strides = (strides,) * n if isinstance(strides, int) else tuple(strides)
    dil = (1,) * n if cfg["kernel_dilation"] is None else cfg["kernel_dilation"]
    dil = (dil,) * n if isinstance(dil, int) else tuple(dil)
    op = cfg["output_padding"] or (0,) * n
    padding, tp = cfg["padding"], cfg["torch_padding"]
    if tp is None and not any(op):
        return _as_flax_padding(padding)
    pairs = []
    for j in range(n):
        ke = (ks[j] - 1) * dil[j] + 1
        if tp is not None:
            lo, hi = (tp, tp) if isinstance(tp, int) else tuple(tp[j])
            pairs.append((ke - 1 - lo, ke - 1 - hi + op[j]))
        elif isinstance(padding, str):
            pa, pb = _conv_transpose_padding(ke, strides[j], padding)
            pairs.append((pa, pb + op[j]))
        else:
            p = padding if isinstance(padding, int) else padding[j]
            pa, pb = (p, p) if isinstance(p, int) else tuple(p)
            pairs.append((pa, pb + op[j]))
    return pairs


def flax_oracle(cfg):
    """``(loss, y)`` as a function of ``(x, kernel, bias)`` computed with Flax's own layers only."""
    import jax.numpy as jnp

    n, g = cfg["n"], cfg["groups"]
    ks = cfg["kernel_size"]
    common = dict(
        kernel_size=ks,
        strides=cfg["strides"],
        padding=flax_pairs(cfg),
        kernel_dilation=cfg["kernel_dilation"],
        use_bias=cfg["use_bias"],
        transpose_kernel=cfg["transpose_kernel"],
    )
    c_in, c_out = cfg["in_features"], cfg["out_features"]
    ig, og = c_in // g, c_out // g
    mask = arrays(cfg)["mask"]

    def group_kernel(kernel, i):
        if cfg["transpose_kernel"]:  # (*k, out // g, in): group i's input channels
            return kernel[..., i * ig : (i + 1) * ig]
        return kernel[..., i * og : (i + 1) * og]  # (*k, in // g, out): group i's output channels

    if cfg["api"] == "nnx":
        from flax import nnx

        def apply_group(xg, kernel, bias):
            layer = nnx.ConvTranspose(ig, og, rngs=nnx.Rngs(0), **common)
            layer.kernel[...] = kernel
            if bias is not None:
                layer.bias[...] = bias
            return layer(xg)
    else:
        import flax.linen as nn

        def apply_group(xg, kernel, bias):
            params = {"kernel": kernel} if bias is None else {"kernel": kernel, "bias": bias}
            return nn.ConvTranspose(og, **common).apply({"params": params}, xg)

    def run(x, kernel, bias):
        if mask is not None:
            kernel = kernel * mask
        outs = [
            apply_group(
                x[..., i * ig : (i + 1) * ig],
                group_kernel(kernel, i),
                None if bias is None else bias[i * og : (i + 1) * og],
            )
            for i in range(g)
        ]
        return outs[0] if g == 1 else jnp.concatenate(outs, axis=-1)

    del n
    return run


def value_and_grads(run, x, kernel, bias):
    """``y`` and the gradients of ``sum(y * cotangent)`` w.r.t. ``x``, ``kernel`` (and ``bias``), in one jit.

    Compiled with ``FAST_COMPILE`` (code generation only; the HLO under test is unchanged).
    """
    import jax

    w = cotangent(jax.eval_shape(run, x, kernel, bias).shape)
    argnums = (0, 1) if bias is None else (0, 1, 2)

    def loss(x, kernel, bias):
        y = run(x, kernel, bias)
        return (y * w).sum(), y

    fn = jax.jit(jax.grad(loss, argnums=argnums, has_aux=True))
    grads, y = fn.lower(x, kernel, bias).compile(FAST_COMPILE)(x, kernel, bias)
    out = {"y": np.asarray(y), "dx": np.asarray(grads[0]), "dkernel": np.asarray(grads[1])}
    if bias is not None:
        out["dbias"] = np.asarray(grads[2])
    return out


def _evaluate(cfg):
    a = arrays(cfg)
    return value_and_grads(flax_oracle(cfg), a["x"], a["kernel"], a["bias"])


def main(argv):
    out_dir, indices = argv[0], [int(v) for v in argv[1].split(",") if v]
    configs = grid()
    for index in indices:
        print(f"start {index}", flush=True)
        np.savez(os.path.join(out_dir, f"{index}.npz"), **_evaluate(configs[index]))
        print(f"done {index}", flush=True)
    print("ALL-DONE", flush=True)


def run_oracle(out_dir, indices, *, timeout=600):
    """Parent side: evaluates ``grid()[i]`` for ``i in indices`` in child processes.

    Returns ``(outputs, aborted)``: ``{index: dict of arrays}`` and the indices whose config
    killed the child with a signal (XLA's fatal checks). Any other child failure is raised.
    """
    os.makedirs(out_dir, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    pending, aborted = list(indices), []
    while pending:
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), out_dir, ",".join(map(str, pending))],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        lines = proc.stdout.splitlines()
        if proc.returncode == 0 and "ALL-DONE" in lines:
            break
        started = [int(line.split()[1]) for line in lines if line.startswith("start ")]
        if proc.returncode >= 0 or not started:
            raise RuntimeError(f"flax oracle child failed (exit status {proc.returncode}):\n{proc.stderr[-4000:]}")
        aborted.append(started[-1])
        pending = pending[pending.index(started[-1]) + 1 :]
    outputs = {}
    for index in indices:
        path = os.path.join(out_dir, f"{index}.npz")
        if os.path.exists(path):
            with np.load(path) as f:
                outputs[index] = dict(f)
    return outputs, aborted


if __name__ == "__main__":
    main(sys.argv[1:])
