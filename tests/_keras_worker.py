"""Random transposed-convolution configurations, and a child process that evaluates them.

A configuration ("config") is a JSON-compatible dict: operand shapes, a seed for the
operand values, and the keyword arguments of ``jaxconvt.conv_transpose`` exactly as they
are passed (so ``padding="sAmE"``, ``[1, 2]`` or ``[[0, 1], [2, 0]]`` all occur).
``random_config`` draws only configurations jaxconvt accepts.

Run as a script, this module evaluates a list of configs in a fresh process, because
XLA:CPU aborts the whole process on some inputs (a fatal check; see SEMANTICS.md):

    python tests/_keras_worker.py ENGINE CONFIGS.json OUTDIR

``ENGINE`` is ``keras`` (``keras.ops.conv_transpose`` in float64 with ``KERAS_BACKEND=jax``,
compiled with ``FAST_COMPILE``),
``jaxconvt`` (the op's forward pass in float32, default algorithm, and both gradients
unless the config says ``"grad": false``; with shape checks) or ``selftest`` (no jax;
aborts on configs marked ``"abort": true``).
``CONFIGS.json`` holds ``{"groups": [[index, ...], ...], "configs": {index: config}}``;
each group is compiled as one ``jax.jit``. The child prints ``start G`` before and
``done G`` after each group, writes every output to ``OUTDIR/<index>.npy`` (not for
jaxconvt), and prints ``ALL-CONFIGS-DONE`` last. The parent side, ``run_configs``, reads
which group was running from the last ``start`` line when a child dies. No heavy import
happens at module level.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

SENTINEL = "ALL-CONFIGS-DONE"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PADDING_STRINGS = ("valid", "VALID", "Valid", "same", "SAME", "Same", "sAmE")

# XLA compile options for the big value grids. Compile time dominates them (~80 ms per
# configuration with the defaults, most of it XLA:CPU's fusion emitters and LLVM working on
# the phase forward's kernel scatter); these options cut it ~7x. They change only code
# generation, not the HLO the op emits (the thing under test) nor XLA's HLO passes (the
# fatal check SEMANTICS.md describes still fires under them). Other tests use the defaults.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}

# Per spatial rank: (max input size, max kernel size, max stride, max dilation).
SMALL_LIMITS = {1: (5, 4, 3, 3), 2: (5, 4, 3, 3), 3: (4, 3, 3, 2), 4: (3, 2, 2, 2)}

# The two configurations on which SEMANTICS.md saw keras.ops.conv_transpose abort the process.
SEMANTICS_KERAS_ABORTS = [
    {
        "x_shape": [1, 5, 2, 2],
        "k_shape": [2, 4, 3, 2],
        "seed": 11,
        "strides": [2, 3],
        "padding": "same",
        "output_padding": [0, 2],
        "data_format": "channels_last",
        "dilation_rate": 1,
        "groups": 1,
        "output_shape": None,
    },
    {
        "x_shape": [1, 2, 5, 2, 3],
        "k_shape": [4, 4, 2, 2, 2],
        "seed": 12,
        "strides": [1, 3, 2],
        "padding": "same",
        "output_padding": [0, 2, 0],
        "data_format": "channels_first",
        "dilation_rate": [2, 1, 1],
        "groups": 1,
        "output_shape": None,
    },
]


def _ints(rng, low, high, n):
    return [int(v) for v in rng.integers(low, high + 1, n)]


def _per_dim_arg(rng, values):
    """An int when all values agree (half the time), else a list or a tuple."""
    if len(set(values)) == 1 and rng.random() < 0.5:
        return values[0]
    return list(values) if rng.random() < 0.5 else tuple(values)


def random_config(
    rng,
    *,
    ranks=(1, 2, 3, 4),
    rank_weights=(0.3, 0.3, 0.25, 0.15),
    limits=SMALL_LIMITS,
    explicit_padding=True,
    output_shape=True,
    groups=True,
    max_batch=2,
):
    """Draws one valid configuration (see the module docstring) from ``rng``."""
    p = np.asarray(rank_weights, float)
    n = int(rng.choice(ranks, p=p / p.sum()))
    max_i, max_k, max_s, max_d = limits[n]
    spatial = _ints(rng, 1, max_i, n)
    ksize = _ints(rng, 1, max_k, n)
    strides = _ints(rng, 1, max_s, n)
    dilation = _ints(rng, 1, max_d, n) if rng.random() < 0.6 else [1] * n
    g = int(rng.choice([1, 1, 1, 2, 3])) if groups else 1
    cg = int(rng.integers(1, 4 // g + 1)) if g < 3 else 1
    og = int(rng.integers(1, 4))
    batch = int(rng.integers(1, max_batch + 1))
    max_op = [max(s, d) - 1 for s, d in zip(strides, dilation)]
    full = [(i - 1) * s + (k - 1) * d + 1 for i, k, s, d in zip(spatial, ksize, strides, dilation)]

    if explicit_padding and rng.random() < 0.45:
        # Crops that leave a non-negative output even with output_padding 0.
        form = int(rng.integers(3))
        if form == 0:
            padding = int(rng.integers(0, min(2, *(f // 2 for f in full)) + 1))
        elif form == 1:
            padding = [int(rng.integers(0, min(3, f // 2) + 1)) for f in full]
        else:
            pairs = []
            for f in full:
                lo = int(rng.integers(0, min(3, f) + 1))
                pairs.append([lo, int(rng.integers(0, min(3, f - lo) + 1))])
            padding = pairs if rng.random() < 0.5 else tuple(tuple(pr) for pr in pairs)
    else:
        padding = str(rng.choice(PADDING_STRINGS))

    output_padding, target = None, None
    mode = rng.random()
    if mode < 0.35:
        ops = [int(rng.integers(0, m + 1)) for m in max_op]
        output_padding = ops[0] if len(set(ops)) == 1 and rng.random() < 0.5 else ops
    elif mode < 0.6 and output_shape:
        # Reachable target: the size with output_padding 0, plus 0 .. max_op.
        if isinstance(padding, str):
            m = padding.lower()
            base = []
            for i, k, s, d in zip(spatial, ksize, strides, dilation):
                ke = (k - 1) * d + 1
                base.append(i * s - s + ke if m == "valid" else (i - 1) * s + ke % 2)
        else:
            prs = [[padding, padding]] * n if isinstance(padding, int) else padding
            prs = [[v, v] if isinstance(v, int) else list(v) for v in prs]
            base = [f - lo - hi for f, (lo, hi) in zip(full, prs)]
        target = [b + int(rng.integers(0, m + 1)) for b, m in zip(base, max_op)]

    data_format = [None, "channels_last", "channels_first"][int(rng.integers(3))]
    c_in = g * cg
    if data_format == "channels_first":
        x_shape = [batch, c_in, *spatial]
    else:
        x_shape = [batch, *spatial, c_in]
    if target is not None and rng.random() < 0.3:
        c_out = g * og
        target = [batch, c_out, *target] if data_format == "channels_first" else [batch, *target, c_out]
    cfg = {
        "x_shape": x_shape,
        "k_shape": [*ksize, og, c_in],
        "seed": int(rng.integers(2**31)),
        "strides": _per_dim_arg(rng, strides),
        "padding": padding,
        "output_padding": output_padding,
        "data_format": data_format,
        "dilation_rate": _per_dim_arg(rng, dilation),
        "groups": g,
        "output_shape": target,
    }
    return cfg


def conv_kwargs(cfg):
    """Keyword arguments of ``jaxconvt.conv_transpose`` (and ``conv_transpose_output_shape``)."""
    keys = ("strides", "padding", "output_padding", "data_format", "dilation_rate", "groups", "output_shape")
    return {key: cfg[key] for key in keys}


def operands(cfg, dtype=np.float64):
    """Seeded standard-normal operands, rounded to ``dtype``."""
    rng = np.random.default_rng(cfg["seed"])
    x = rng.standard_normal(cfg["x_shape"])
    k = rng.standard_normal(cfg["k_shape"])
    return x.astype(dtype), k.astype(dtype)


def _keras_group(cfgs):
    import jax
    import keras

    def call(cfg, x, k):
        return keras.ops.conv_transpose(
            x,
            k,
            strides=cfg["strides"],
            padding=cfg["padding"],
            output_padding=cfg["output_padding"],
            data_format=cfg["data_format"] or "channels_last",
            dilation_rate=cfg["dilation_rate"],
        )

    args = [operands(cfg) for cfg in cfgs]
    fn = jax.jit(lambda args: [call(cfg, x, k) for cfg, (x, k) in zip(cfgs, args)])
    return [np.asarray(y) for y in fn.lower(args).compile(FAST_COMPILE)(args)]


def _jaxconvt_group(cfgs):
    import jax
    import jax.numpy as jnp

    import jaxconvt

    def loss(args, grads):
        """Forward of every config, plus a weighted sum of the outputs for those with ``grads``."""
        outs, total = [], 0.0
        for cfg, (x, k), grad in zip(cfgs, args, grads):
            y = jaxconvt.conv_transpose(x, k, **conv_kwargs(cfg))
            outs.append(y)
            if grad:
                total = total + jnp.sum(y * jnp.cos(jnp.arange(y.size, dtype=y.dtype).reshape(y.shape)))
        return total, outs

    args = [operands(cfg, np.float32) for cfg in cfgs]
    grads, outs = jax.jit(jax.grad(loss, has_aux=True), static_argnums=1)(
        args, tuple(c.get("grad", True) for c in cfgs)
    )
    for cfg, y, (gx, gk), (x, k) in zip(cfgs, outs, grads, args):
        expect = jaxconvt.conv_transpose_output_shape(x.shape, k.shape, **conv_kwargs(cfg))
        if y.shape != expect or gx.shape != x.shape or gk.shape != k.shape:
            raise AssertionError(f"shape mismatch for {cfg}: {y.shape} vs {expect}")
        if not (np.isfinite(np.asarray(y)).all() and np.isfinite(np.asarray(gk)).all()):
            raise AssertionError(f"non-finite output for {cfg}")
    return [np.asarray(y) for y in outs]


def _selftest_group(cfgs):
    """For testing the harness: aborts like XLA does on configs marked ``"abort": true``."""
    for cfg in cfgs:
        if cfg.get("abort"):
            os.abort()
    return [np.full(3, float(cfg["seed"])) for cfg in cfgs]


def main(argv):
    engine, config_path, out_dir = argv
    with open(config_path) as f:
        spec = json.load(f)
    configs = spec["configs"]
    if engine == "keras":
        os.environ.setdefault("KERAS_BACKEND", "jax")
        import jax

        jax.config.update("jax_enable_x64", True)
        run = _keras_group
    elif engine == "jaxconvt":
        run = _jaxconvt_group
    elif engine == "selftest":
        run = _selftest_group
    else:
        raise SystemExit(f"unknown engine {engine!r}")
    for number, group in enumerate(spec["groups"]):
        print(f"start {number}", flush=True)
        outs = run([configs[str(index)] for index in group])
        if engine != "jaxconvt":
            for index, y in zip(group, outs):
                np.save(os.path.join(out_dir, f"{index}.npy"), y)
        print(f"done {number}", flush=True)
    print(SENTINEL, flush=True)


def run_configs(engine, configs, workdir, *, group_size, max_aborts=10, timeout=600):
    """Parent side: evaluates ``configs`` with ``engine`` in child processes, surviving aborts.

    Groups of ``group_size`` configs are compiled together. When a child dies from a signal
    (XLA's fatal checks abort), the group it was running is split into single configs and a
    new child continues from there; a single config that kills its child is recorded as
    aborting and skipped. Any other child failure (an exception, a timeout) is raised.

    Returns:
      ``(outputs, aborted, children)``: ``{index: array}`` (for engines that save outputs),
      the indices of the configs that aborted, and how many children ran.
    """
    os.makedirs(workdir, exist_ok=True)
    pending = [
        list(range(start, min(start + group_size, len(configs)))) for start in range(0, len(configs), group_size)
    ]
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
    }
    aborted, children = [], 0
    while pending:
        path = os.path.join(workdir, f"configs{children}.json")
        with open(path, "w") as f:
            json.dump({"groups": pending, "configs": {str(i): configs[i] for group in pending for i in group}}, f)
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), engine, path, workdir],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        children += 1
        lines = proc.stdout.splitlines()
        if proc.returncode == 0 and SENTINEL in lines:
            break
        started = [int(line.split()[1]) for line in lines if line.startswith("start ")]
        finished = {int(line.split()[1]) for line in lines if line.startswith("done ")}
        if proc.returncode >= 0 or not started or started[-1] in finished:
            raise RuntimeError(
                f"{engine} child failed without aborting (exit status {proc.returncode}):\n{proc.stderr[-4000:]}"
            )
        group = pending[started[-1]]
        pending = pending[started[-1] + 1 :]
        if len(group) > 1:
            pending = [[index] for index in group] + pending
        else:
            aborted.append(group[0])
            if len(aborted) > max_aborts:
                listing = "\n".join(str(configs[i]) for i in aborted)
                raise RuntimeError(f"{engine} aborted the process on more than {max_aborts} configs:\n{listing}")
    outputs = {}
    for index in range(len(configs)):
        file = os.path.join(workdir, f"{index}.npy")
        if os.path.exists(file):
            outputs[index] = np.load(file)
    return outputs, aborted, children


if __name__ == "__main__":
    main(sys.argv[1:])
