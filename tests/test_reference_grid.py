"""Seeded random grids of configurations: jaxconvt against the independent scatter reference.

Every configuration (1-D..4-D, both data formats, groups, dilation, strides, "valid"/"same"
in random case, explicit int / per-dimension / (lo, hi) padding, output_padding, output_shape;
see ``tests/_keras_worker.random_config``) is checked for:

* values: ``|y - ref| <= rtol * ref_abs`` elementwise, where ``ref`` is ``tests/reference.py``
  on the same (rounded) operands in float64 and ``ref_abs`` the same reference on ``|x|, |k|``
  (the sum of the magnitudes of the terms, which bounds any summation order's error). So
  positions no kernel tap reaches must be exactly zero;
* shape: the op's, the reference's and ``conv_transpose_output_shape``'s agree; dtype kept;
* ``jaxconvt.reference.conv_transpose_reference`` agrees with ``tests/reference.py``.

Many configurations are compiled as one ``jax.jit`` with ``FAST_COMPILE`` (see
``tests/_keras_worker.py``); the first few configurations of every chunk also run eagerly,
with XLA's default options.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconvt
from jaxconvt.reference import conv_transpose_reference
from tests._keras_worker import FAST_COMPILE, conv_kwargs, operands, random_config
from tests.reference import conv_transpose_ref

BATCH = 40  # configurations per jax.jit
EAGER = 4  # configurations per chunk that also run eagerly

# dtype: (number of chunks, configurations per chunk, rtol relative to the sum of |terms|)
PLANS = {
    "float64": (8, 100, 1e-12),
    "float32": (2, 60, 1e-5),
    "bfloat16": (2, 60, 2**-7),
    "float16": (2, 60, 2**-10),
}
CASES = [(name, chunk) for name, (chunks, _, _) in PLANS.items() for chunk in range(chunks)]


def _jit_batch(cfgs, args, compiler_options=None):
    def run(args):
        return [jaxconvt.conv_transpose(x, k, **conv_kwargs(cfg)) for cfg, (x, k) in zip(cfgs, args)]

    compiled = jax.jit(run).lower(args).compile(compiler_options)
    return [np.asarray(y) for y in compiled(args)]


def check_config(cfg, x, k, y, rtol):
    """Problems found in one configuration's result ``y`` (empty list when correct)."""
    kw = conv_kwargs(cfg)
    problems = []
    shape = jaxconvt.conv_transpose_output_shape(x.shape, k.shape, **kw)
    x64, k64 = np.asarray(x, np.float64), np.asarray(k, np.float64)
    ref = conv_transpose_ref(x64, k64, **kw)
    if not (y.shape == shape == ref.shape):
        return [f"shapes: op {y.shape}, conv_transpose_output_shape {shape}, reference {ref.shape}"]
    if y.dtype != x.dtype:
        problems.append(f"dtype {y.dtype}, expected {x.dtype}")
    bound = rtol * conv_transpose_ref(np.abs(x64), np.abs(k64), **kw)
    err = np.abs(y.astype(np.float64) - ref)
    if not np.all(err <= bound):
        worst = np.unravel_index(np.argmax(err - bound), err.shape)
        problems.append(f"values: |y - ref| = {err[worst]:.3g} > {bound[worst]:.3g} at {worst}")
    ours = conv_transpose_reference(x64, k64, **kw)
    if ours.shape != ref.shape or not np.allclose(ours, ref, rtol=1e-12, atol=1e-12):
        problems.append("jaxconvt.reference.conv_transpose_reference disagrees with tests/reference.py")
    return problems


@pytest.mark.slow
@pytest.mark.parametrize(("dtype_name", "chunk"), CASES)
def test_random_grid_against_reference(dtype_name, chunk):
    chunks, count, rtol = PLANS[dtype_name]
    dtype = np.dtype(jnp.dtype(dtype_name))
    rng = np.random.default_rng([chunk, 20240611, list(PLANS).index(dtype_name)])
    cfgs = [random_config(rng) for _ in range(count)]
    failures, checked = [], 0
    with jax.enable_x64(dtype_name == "float64"):
        for start in range(0, count, BATCH):
            batch = cfgs[start : start + BATCH]
            host = [operands(cfg, dtype) for cfg in batch]
            ys = _jit_batch(batch, host, FAST_COMPILE)
            for index, (cfg, (x, k), y) in enumerate(zip(batch, host, ys)):
                problems = check_config(cfg, x, k, y, rtol)
                if start + index < EAGER:
                    eager = np.asarray(jaxconvt.conv_transpose(x, k, **conv_kwargs(cfg)))
                    problems += [f"eager: {p}" for p in check_config(cfg, x, k, eager, rtol)]
                checked += 1
                if problems:
                    failures.append(f"{cfg}: {'; '.join(problems)}")
    assert checked == count
    assert not failures, f"{len(failures)} of {count} configurations fail:\n" + "\n".join(failures[:10])


def test_grid_covers_the_argument_surface():
    """The generator really produces every feature the grid claims to test."""
    rng = np.random.default_rng([0, 20240611, 0])
    cfgs = [random_config(rng) for _ in range(PLANS["float64"][1])]
    seen = set()
    for cfg in cfgs:
        n = len(cfg["k_shape"]) - 2
        pad = cfg["padding"]
        seen.add(f"rank{n}")
        seen.add(f"format={cfg['data_format']}")
        seen.add("groups>1" if cfg["groups"] > 1 else "groups=1")
        seen.add(f"padding:{pad}" if isinstance(pad, str) else f"padding:{type(pad).__name__}")
        if isinstance(pad, (list, tuple)) and not isinstance(pad[0], int):
            seen.add("padding:pairs")
        seen.add("output_padding" if cfg["output_padding"] is not None else "")
        if cfg["output_shape"] is not None:
            seen.add("output_shape:full" if len(cfg["output_shape"]) == n + 2 else "output_shape:spatial")
        if cfg["dilation_rate"] not in (1, [1] * n, (1,) * n):
            seen.add("dilation>1")
        x, k = cfg["x_shape"], cfg["k_shape"]
        if 0 in jaxconvt.conv_transpose_output_shape(x, k, **conv_kwargs(cfg)):
            seen.add("empty output")
    wanted = {f"rank{n}" for n in (1, 2, 3, 4)} | {"format=None", "format=channels_last", "format=channels_first"}
    wanted |= {"groups>1", "groups=1", "dilation>1", "output_padding", "empty output", "padding:pairs"}
    wanted |= {"padding:int", "padding:list", "padding:tuple", "padding:SAME", "padding:valid", "padding:sAmE"}
    wanted |= {"output_shape:spatial", "output_shape:full"}
    assert wanted <= seen, sorted(wanted - seen)
