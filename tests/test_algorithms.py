"""Forward algorithms and their selection: every algorithm equals the reference; "auto"
never emits zero insertion or strided convolutions in any slot; risky overrides are refused.

The "dilate" and "pad" algorithms go through XLA's zero-insertion path, which can abort
the process on configurations the spec refuses; the grid for them runs in a child
process anyway, so a regression there fails this test instead of killing the run.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconvt
from jaxconvt import _lowering, _primitive
from jaxconvt._lowering import forward, input_grad, kernel_grad, phase, rules, scatter
from jaxconvt._spec import make_spec
from tests._keras_worker import FAST_COMPILE
from tests.reference import keras_crop, scatter_conv_transpose

ROOT = Path(__file__).resolve().parents[1]


def _random_config(rng, max_dims=3, min_size=1):
    n = int(rng.integers(1, max_dims + 1))
    sp = tuple(int(v) for v in rng.integers(min_size, min_size + 4, n))
    ks = tuple(int(v) for v in rng.integers(1, 5, n))
    s = tuple(int(v) for v in rng.integers(1, 4, n))
    d = tuple(int(v) for v in rng.integers(1, 3, n))
    groups = int(rng.choice([1, 2]))
    op = tuple(int(rng.integers(0, max(a, b))) for a, b in zip(s, d)) if rng.random() < 0.5 else None
    if rng.random() < 0.3:
        padding = tuple((int(rng.integers(0, 3)), int(rng.integers(0, 3))) for _ in range(n))
        crops = tuple((lo, hi - (op[a] if op else 0)) for a, (lo, hi) in enumerate(padding))
    else:
        padding = str(rng.choice(["valid", "same"]))
        crops = tuple(keras_crop(padding, ks[a], s[a], d[a], op[a] if op else None) for a in range(n))
    return dict(sp=sp, ks=ks, s=s, d=d, groups=groups, op=op, padding=padding, crops=crops)


def _operands(rng, cfg, dtype=np.float64):
    x = rng.standard_normal((2, *cfg["sp"], 2 * cfg["groups"])).astype(dtype)
    k = rng.standard_normal((*cfg["ks"], 3, 2 * cfg["groups"])).astype(dtype)
    return x, k


def _spec_of(cfg):
    """The spec and output shape of a random configuration with ``_operands``' shapes."""
    x_shape, k_shape = (2, *cfg["sp"], 2 * cfg["groups"]), (*cfg["ks"], 3, 2 * cfg["groups"])
    return make_spec(x_shape, k_shape, cfg["s"], cfg["padding"], cfg["op"], None, cfg["d"], groups=cfg["groups"])


def _nonempty_configs(rng):
    """Random valid configurations with a non-empty output, endlessly: ``(cfg, spec, out)``."""
    while True:
        cfg = _random_config(rng)
        if not _valid(cfg):
            continue
        spec, out = _spec_of(cfg)
        if 0 not in out:
            yield cfg, spec, out


def _fast(form, a, b, *static):
    """``form(a, b, *static)`` jitted and compiled with ``FAST_COMPILE`` (code generation only)."""
    fn = jax.jit(lambda a, b: form(a, b, *static))
    return fn.lower(a, b).compile(FAST_COMPILE)(a, b)


def _basis(shape, flat):
    """The one-hot array of ``shape`` with a 1 at flat index ``flat``."""
    e = np.zeros(math.prod(shape))
    e[flat] = 1.0
    return e.reshape(shape)


def _valid(cfg):
    out = [
        (i - 1) * s + (k - 1) * d + 1 - lo - hi
        for i, k, s, d, (lo, hi) in zip(cfg["sp"], cfg["ks"], cfg["s"], cfg["d"], cfg["crops"])
    ]
    return all(o >= 0 for o in out)


def test_choose_algorithm_rules():
    strided, _ = make_spec((1, 5, 5, 2), (3, 3, 2, 2), strides=(1, 2))
    unit, _ = make_spec((1, 5, 5, 2), (3, 3, 2, 2), strides=1, dilation_rate=2)
    forced, _ = make_spec((1, 5, 5, 2), (3, 3, 2, 2), strides=2, algorithm="dilate")
    assert _lowering.choose_algorithm(strided) == "phase"
    assert _lowering.choose_algorithm(unit) == "pad"
    assert _lowering.choose_algorithm(forced) == "dilate"


def test_choose_dot_for_bfloat16_on_cpu():
    """ "dot" only on CPU, only for bfloat16, only for big enough inputs without holes in the phase classes."""
    spec, _ = make_spec((1, 64, 64, 64), (3, 3, 32, 64), 2, 1, 1)
    bf16, big = jnp.bfloat16, (1, 64, 64, 64)
    choose = _lowering.choose_algorithm
    assert choose(spec, bf16, "cpu", big) == "dot"
    assert choose(spec, jnp.float32, "cpu", big) == "phase"
    assert choose(spec, jnp.float16, "cpu", big) == "phase"
    assert choose(spec, bf16, "gpu", big) == "phase"
    assert choose(spec, bf16, None, big) == "phase"
    assert choose(spec, bf16, "cpu", (1, 8, 8, 64)) == "phase"  # 4096 elements: overhead-bound
    holes, _ = make_spec((1, 64, 64, 64), (4, 4, 32, 64), 2, dilation_rate=(3, 1))  # shifts {0, 3}: not contiguous
    assert choose(holes, bf16, "cpu", big) == "phase"
    # a phase form doing >= SCATTER_MIN_WASTE times the useful work: the definition, tap by tap
    sparse, _ = make_spec((1, 64, 64, 64), (4, 4, 32, 64), 2, dilation_rate=3)  # waste 2.5 per dimension
    assert _lowering.phase_waste(sparse.kernel_size, sparse) >= rules.SCATTER_MIN_WASTE
    assert choose(sparse, bf16, "cpu", big) == choose(sparse, jnp.float32, None, big) == "scatter"
    huge, _ = make_spec((1, 64, 64, 64), (9, 9, 32, 64), 2)  # 81 taps > DOT_MAX_TAPS
    assert choose(huge, bf16, "cpu", big) == "phase"
    # the whole training step lowers to matrix products on CPU: no convolution left in any slot
    x, k = jnp.ones(big, bf16), jnp.ones((3, 3, 32, 64), bf16)
    loss = lambda x, k: jnp.sum(jaxconvt.conv_transpose(x, k, 2, 1, 1).astype(jnp.float32))
    hlo = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(x, k).as_text()
    assert "stablehlo.dot_general" in hlo and "stablehlo.convolution" not in hlo


@pytest.mark.parametrize(
    "kernel, strides, dilation, expected",
    [
        ((4, 4), (2, 2), (1, 1), 1.0),
        ((3,), (2,), (1,), 4 / 3),
        ((3, 3, 3), (2, 2, 2), (1, 1, 1), (4 / 3) ** 3),
        ((16,), (8,), (1,), 1.0),
        ((3,), (2,), (2,), 2.0),
    ],
)
def test_phase_waste(kernel, strides, dilation, expected):
    spec, _ = make_spec((1, *(8,) * len(kernel), 1), (*kernel, 1, 1), strides, dilation_rate=dilation)
    assert _lowering.phase_waste(kernel, spec) == pytest.approx(expected)


def _op(cfg, algorithm):
    return lambda x, k: jaxconvt.conv_transpose(
        x, k, cfg["s"], cfg["padding"], cfg["op"], None, cfg["d"], groups=cfg["groups"], algorithm=algorithm
    )


def _conv_windows(hlo: str):
    """(stride, lhs_dilate) lists of every stablehlo.convolution in a lowered module."""
    out = []
    for line in hlo.splitlines():
        if "stablehlo.convolution" not in line:
            continue
        stride = re.search(r"stride = \[([\d, ]*)\]", line)
        lhs = re.search(r"lhs_dilate = \[([\d, ]*)\]", line)
        parse = lambda m: [int(v) for v in m.group(1).split(",")] if m and m.group(1).strip() else []
        out.append((parse(stride), parse(lhs)))
    return out


def _interior_pads(hlo: str):
    return [
        [int(v) for v in m.group(1).split(",")] for m in re.finditer(r"stablehlo.pad .*?interior = \[([\d, -]*)\]", hlo)
    ]


@pytest.mark.parametrize(
    "ndim, kernel, strides, padding, output_padding, dilation, groups",
    [
        (2, 4, 2, "same", None, 1, 1),
        (1, 16, 8, 4, None, 1, 2),
        (3, 3, 2, 1, 1, 1, 1),
        (2, 3, (2, 3), "valid", (1, 0), (1, 2), 2),
    ],
)
def test_auto_never_zero_inserts_in_any_slot(ndim, kernel, strides, padding, output_padding, dilation, groups):
    """Forward, input/kernel gradients and second order: no lhs_dilation, no interior padding,
    and the forward itself is one stride-1 convolution."""
    x = jnp.ones((2, *(5,) * ndim, 2 * groups))
    k = jnp.ones(((kernel,) * ndim) + (3, 2 * groups))
    f = lambda x, k: jaxconvt.conv_transpose(
        x, k, strides, padding, output_padding, dilation_rate=dilation, groups=groups
    )
    ct = jnp.ones(f(x, k).shape)
    loss = lambda x, k: jnp.sum(f(x, k) * ct)
    grad2 = jax.grad(lambda x, k: jnp.sum(jax.grad(loss, argnums=(0, 1))(x, k)[1] ** 2), argnums=(0, 1))
    forward = _conv_windows(jax.jit(f).lower(x, k).as_text())
    # One convolution; on CPU one per group (groups <= MAX_SPLIT_GROUPS are split there).
    per_group = jax.default_backend() == "cpu" and groups <= _lowering.MAX_SPLIT_GROUPS
    assert len(forward) == (groups if per_group else 1), forward
    assert all(set(stride) == {1} for stride, _ in forward), forward
    for fn in (f, jax.grad(loss, argnums=(0, 1)), grad2):
        hlo = jax.jit(fn).lower(x, k).as_text()
        windows = _conv_windows(hlo)
        assert windows, "expected convolutions in the lowered module"
        for _, lhs in windows:
            assert set(lhs) <= {1}, lhs
        if set(np.atleast_1d(dilation)) == {1}:  # with dilation the (tiny) kernel itself is dilated by a pad
            for interior in _interior_pads(hlo):
                assert set(interior) <= {0}, interior


@pytest.mark.parametrize("seed", range(2))
def test_kernel_gradient_forms_agree(seed, x64):
    """The phase (per-tap matrix product) and direct kernel gradients, on forced paths."""
    rng = np.random.default_rng(50 + seed)
    for _, (cfg, spec, out) in zip(range(15), _nonempty_configs(rng)):
        x, k = _operands(rng, cfg)
        y = rng.standard_normal(out)
        ref = _fast(kernel_grad.k_direct, x, y, spec, np.dtype(np.float64))
        got = _fast(kernel_grad.k_phase, x, y, spec, np.dtype(np.float64))
        assert got.shape == k.shape
        np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-11, atol=1e-11)
        # and both against the reference through the adjoint identity <dK, K> = <y, f(x, K)>
        want = np.sum(y * scatter_conv_transpose(x, k, cfg["s"], cfg["d"], cfg["crops"], cfg["groups"]))
        assert abs(np.sum(np.asarray(got) * k) - want) < 1e-9 * max(1.0, abs(want))


@pytest.mark.parametrize("seed", range(2))
def test_input_gradient_tap_loop_reads_the_cotangent_in_place(seed, x64):
    """``scatter.x_scatter(in_place=True)`` against the direct input gradient on random
    configurations, on both of its paths: slabs shifted inside the cotangent (no padded
    copy), and the padded cotangent with the cropped-away rows masked where it is too short
    for that (the default path, also the exact fallback of ``test_nonfinite``)."""
    rng = np.random.default_rng(70 + seed)
    paths = {True: 0, False: 0}
    configs = _nonempty_configs(rng)
    while min(paths.values()) < 4 or sum(paths.values()) < 12:
        cfg, spec, out = next(configs)
        _, k = _operands(rng, cfg)
        y = rng.standard_normal(out)
        spatial = spec.input_spatial(out[1:-1])
        shifted = scatter._shifted_starts(spec, spatial, out[1:-1]) is not None
        got = _fast(scatter.x_scatter, y, k, spec, np.dtype(np.float64), True)
        want = _fast(input_grad.x_direct, y, k, spec, np.dtype(np.float64))
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-11, atol=1e-11, err_msg=str(cfg))
        paths[shifted] += 1


def test_kernel_gradient_selection():
    """Large ungrouped problems take the per-tap product form; tiny, narrow or grouped ones the direct conv."""

    def dots(x_shape, k_shape, groups=1):
        spec, out = make_spec(x_shape, k_shape, 2, "same", groups=groups)
        if _lowering.choose("k", x_shape, out, np.float32, spec).name == "direct":
            return 0
        fn = lambda x, y: kernel_grad.k_phase(x, y, spec, np.float32)
        return str(jax.make_jaxpr(fn)(jnp.ones(x_shape), jnp.ones(out))).count("dot_general")

    assert dots((4, 32, 32, 32), (4, 4, 32, 32)) == 4  # one product per tap of the 2x2 phase window
    assert dots((4, 32, 32, 16), (4, 4, 32, 16)) == 0  # fewer than 32 input channels
    assert dots((4, 32, 32, 32), (4, 4, 16, 32), groups=2) == 0  # grouped
    assert dots((4, 32, 32, 32), (4, 4, 8, 32)) == 0  # 4 phases x 8 channels: 32 product columns
    assert dots((1, 8, 8, 64), (4, 4, 64, 64)) == 0  # 81 rows
    assert dots((1, 16, 16, 64), (4, 4, 64, 64)) == 0  # 289 rows x 64 channels < 32768


@pytest.mark.parametrize(
    "k, s, d, expected",
    [
        (4, 2, 1, ((0, 2, 0, 2),)),  # k a multiple of s: one class, the whole window
        (3, 2, 1, ((0, 1, 0, 2), (1, 2, 1, 2))),  # phase 0 taps {0, 2}, phase 1 tap {1}
        (11, 5, 1, ((0, 1, 0, 3), (1, 5, 1, 3))),  # bigvgan: 3 taps on phase 0, 2 on the others
        (1, 3, 1, ((0, 1, 0, 1), (1, 3, 0, 0))),  # phases 1 and 2 get no tap at all
        (3, 2, 2, ((0, 1, 0, 3), (1, 2, 0, 0))),  # even dilation: every tap on phase 0
        (4, 2, 3, ((0, 2, 0, 5),)),  # shifts {0, 3} on phase 0 are not contiguous: one class
    ],
)
def test_phase_classes(k, s, d, expected):
    w = phase.phase_window(k, s, d)
    classes = phase.phase_classes(k, s, d, w)
    assert classes == expected
    # every phase once, in order; every tap of the kernel counted once over the classes
    assert [r for r0, r1, *_ in classes for r in range(r0, r1)] == list(range(s))
    assert sum((r1 - r0) * (t1 - t0) for r0, r1, t0, t1 in classes) == k or len(classes) == 1


@pytest.mark.parametrize("seed", range(2))
def test_exact_phase_forms_match_reference(seed, x64):
    """The per-class (exact) forward and kernel gradient, forced on, against the scatter reference
    and the direct kernel gradient, on random configurations (most have several classes)."""
    rng = np.random.default_rng(70 + seed)
    checked = multi = 0
    while checked < 40:
        cfg = _random_config(rng)
        if not _valid(cfg) or all(v == 1 for v in cfg["s"]):
            continue
        spec, out = _spec_of(cfg)
        if 0 in out:
            continue
        x, k = _operands(rng, cfg)
        f64 = np.dtype(np.float64)
        got = _fast(forward.y_phase, x, k, spec, f64, True)
        want = scatter_conv_transpose(x, k, cfg["s"], cfg["d"], cfg["crops"], cfg["groups"])
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-11, atol=1e-11)
        y = rng.standard_normal(out)
        dk = _fast(kernel_grad.k_phase, x, y, spec, f64, True)
        ref = _fast(kernel_grad.k_direct, x, y, spec, f64)
        np.testing.assert_allclose(np.asarray(dk), np.asarray(ref), rtol=1e-11, atol=1e-11)
        multi += math.prod(len(c) for c in phase.phase_plan(spec, cfg["sp"]).classes) > 1
        checked += 1
    assert multi >= 20  # the grid really exercises several classes


def test_exact_phase_selection():
    """The measured rule: exact forward for wide 1-D/2-D layers, exact kernel gradient for every
    multi-class phase problem, nothing for k a multiple of s."""

    def plan_of(x_shape, k_shape, *args, **kwargs):
        spec, _ = make_spec(x_shape, k_shape, *args, **kwargs)
        return phase.phase_plan(spec, x_shape[1:-1])

    vae2d = plan_of((1, 16, 16, 512), (3, 3, 256, 512), 2, 1, 1)
    vae3d = plan_of((1, 8, 8, 8, 64), (3, 3, 3, 64, 64), 2, 1, 1)
    dcgan = plan_of((1, 8, 8, 256), (4, 4, 128, 256), 2, 1)
    use = phase.use_exact
    assert use(vae2d, 512, 256, None, "y") and use(vae2d, 512, 256, None, "k")
    assert not use(vae2d, 16, 16, None, "y")  # narrow: the extra convolutions cost more
    assert not use(vae3d, 64, 64, None, "y") and use(vae3d, 64, 64, None, "k")
    assert not use(dcgan, 256, 128, None, "y") and not use(dcgan, 256, 128, None, "k")
    assert not use(dcgan, 256, 128, True, "y")  # one class: nothing to split even when forced

    def convs(x_shape, k_shape):
        fn = lambda x, k: forward.y_phase(x, k, make_spec(x_shape, k_shape, 2, 1, 1)[0], np.float32)
        return str(jax.make_jaxpr(fn)(jnp.ones(x_shape), jnp.ones(k_shape))).count("conv_general_dilated")

    assert convs((1, 16, 16, 512), (3, 3, 256, 512)) == 4  # 2 classes per dimension
    assert convs((1, 16, 16, 32), (3, 3, 16, 32)) == 1


def test_dilate_really_dilates():
    """The override is honoured: "dilate" emits lhs_dilate, "pad" an interior pad."""
    x, k = jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 2, 2))
    dil = jax.jit(lambda x, k: jaxconvt.conv_transpose(x, k, 2, algorithm="dilate")).lower(x, k).as_text()
    assert any(lhs == [2, 2] for _, lhs in _conv_windows(dil))
    pad = jax.jit(lambda x, k: jaxconvt.conv_transpose(x, k, 2, algorithm="pad")).lower(x, k).as_text()
    assert any(interior[1:3] == [1, 1] for interior in _interior_pads(pad))


@pytest.mark.parametrize("algorithm", ["dilate", "pad"])
def test_risky_overrides_are_refused(algorithm):
    # The configuration on which XLA:CPU (jax 0.10.2) aborted in our scan, and SEMANTICS.md's 2-D case.
    with pytest.raises(ValueError, match=rf"algorithm='{algorithm}'.*larger than the input"):
        jaxconvt.conv_transpose(jnp.ones((1, 2, 3, 3)), jnp.ones((4, 2, 2, 3)), (3, 2), "same", 0, algorithm=algorithm)
    with pytest.raises(ValueError, match="larger than the input"):
        jax.jit(lambda x, k: jaxconvt.conv_transpose(x, k, (2, 3), "same", (0, 2), algorithm=algorithm))(
            jnp.ones((1, 5, 2, 3)), jnp.ones((2, 4, 2, 3))
        )


def test_unknown_algorithm():
    with pytest.raises(ValueError, match=r"`algorithm` must be one of"):
        jaxconvt.conv_transpose(jnp.ones((1, 3, 1)), jnp.ones((2, 1, 1)), algorithm="fft")


@pytest.mark.parametrize("seed", range(2))
def test_phase_and_auto_match_reference_with_gradients(seed):
    """Values and the adjoint identity for input and kernel gradients, every algorithm of a
    configuration in one ``jax.jit`` (compiled with ``FAST_COMPILE``: code generation only)."""
    rng = np.random.default_rng(100 + seed)
    checked = 0
    with jax.enable_x64(True):
        while checked < 12:
            cfg = _random_config(rng)
            if not _valid(cfg):
                continue
            x, k = _operands(rng, cfg)
            ref = scatter_conv_transpose(x, k, cfg["s"], cfg["d"], cfg["crops"], cfg["groups"])
            ct = rng.standard_normal(ref.shape)
            # "auto" is "phase" for these small strided configurations; force "phase" on the
            # stride-1 ones too, and the per-tap and one-product forms "dot" and "gemm" on all.
            strided = any(v > 1 for v in cfg["s"])
            algorithms = ("auto", "dot", "gemm") if strided else ("auto", "phase", "dot", "gemm")

            def run(x, k, ct, algorithms=algorithms, cfg=cfg):
                outs = []
                for algorithm in algorithms:
                    y, vjp = jax.vjp(_op(cfg, algorithm), x, k)
                    outs.append((y, *vjp(ct)))
                return outs

            results = jax.jit(run).lower(x, k, ct).compile(FAST_COMPILE)(x, k, ct)
            # dx[e] = <ct, f(e, k)> and dK[e] = <ct, f(x, e)>: the reference on basis directions.
            picks_x = rng.choice(x.size, size=min(3, x.size), replace=False)
            picks_k = rng.choice(k.size, size=min(3, k.size), replace=False)
            f = lambda x, k, c=cfg: scatter_conv_transpose(x, k, c["s"], c["d"], c["crops"], c["groups"])
            want_x = [np.sum(ct * f(_basis(x.shape, i), k)) for i in picks_x]
            want_k = [np.sum(ct * f(x, _basis(k.shape, i))) for i in picks_k]
            for algorithm, (y, dx, dk) in zip(algorithms, results):
                np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-12, atol=1e-12, err_msg=algorithm)
                np.testing.assert_allclose(np.asarray(dx).reshape(-1)[picks_x], want_x, rtol=0, atol=1e-10)
                np.testing.assert_allclose(np.asarray(dk).reshape(-1)[picks_k], want_k, rtol=0, atol=1e-10)
            checked += 1


_CHILD = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    jax.config.update("jax_enable_x64", True)
    import jaxconvt
    from tests._keras_worker import FAST_COMPILE
    cases = json.loads(sys.stdin.read())
    worst = 0.0
    refused = 0
    for c in cases:
        rng = np.random.default_rng(c["seed"])
        x = rng.standard_normal(c["x"]); k = rng.standard_normal(c["k"])
        op = lambda algorithm: lambda x, k: jaxconvt.conv_transpose(
            x, k, c["s"], c["padding"], c["op"], None, c["d"], groups=c["groups"], algorithm=algorithm)
        ct = rng.standard_normal(jax.eval_shape(op("phase"), x, k).shape)

        def run(x, k, ct):
            outs = []
            for algorithm in (c["algorithm"], "phase"):
                y, vjp = jax.vjp(op(algorithm), x, k)
                outs.append((y, *vjp(ct)))
            return outs

        try:
            compiled = jax.jit(run).lower(x, k, ct).compile(FAST_COMPILE)
        except ValueError as err:
            assert "larger than the input" in str(err), err
            refused += 1
            continue
        got, ref = compiled(x, k, ct)
        worst = max([worst] + [float(np.abs(a - b).max(initial=0)) for a, b in zip(got, ref)])
    print("RESULT " + json.dumps({"worst": worst, "refused": refused, "count": len(cases)}))
    """
)


def test_dilate_and_pad_match_phase_in_child_process():
    rng = np.random.default_rng(7)
    cases = []
    while len(cases) < 32:
        cfg = _random_config(rng, min_size=4)
        dilated = [(k - 1) * d + 1 for k, d in zip(cfg["ks"], cfg["d"])]
        risky = any(v > 1 for v in cfg["s"]) and any(e > i for e, i in zip(dilated, cfg["sp"]))
        if not _valid(cfg) or risky:  # risky ones are refused: test_risky_overrides_are_refused
            continue
        for algorithm in ("dilate", "pad"):
            cases.append(
                dict(
                    seed=len(cases),
                    x=[2, *cfg["sp"], 2 * cfg["groups"]],
                    k=[*cfg["ks"], 3, 2 * cfg["groups"]],
                    s=list(cfg["s"]),
                    d=list(cfg["d"]),
                    op=None if cfg["op"] is None else list(cfg["op"]),
                    padding=cfg["padding"] if isinstance(cfg["padding"], str) else [list(p) for p in cfg["padding"]],
                    groups=cfg["groups"],
                    algorithm=algorithm,
                )
            )
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD], input=json.dumps(cases), capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert result["count"] == len(cases)
    assert result["refused"] == 0
    assert result["worst"] < 1e-10


@pytest.mark.parametrize("slot", ["y", "x", "k"])
def test_grouped_lowering_split_and_unsplit_agree(slot, x64):
    """The CPU lowering splits groups; GPU/TPU keep one grouped convolution: both exact."""
    rng = np.random.default_rng(3)
    spec, out = make_spec((2, 5, 4, 6), (3, 2, 2, 6), (2, 1), "same", None, None, (1, 2), groups=3)
    x, k, y = rng.standard_normal((2, 5, 4, 6)), rng.standard_normal((3, 2, 2, 6)), rng.standard_normal(out)
    a, b = {"y": (x, k), "x": (y, k), "k": (x, y)}[slot]
    kw = dict(spec=spec, slot=slot, out_dtype=np.dtype(np.float64))
    split = jax.jit(lambda a, b: _primitive._impl(a, b, platform="cpu", **kw))(a, b)
    whole = jax.jit(lambda a, b: _primitive._impl(a, b, platform=None, **kw))(a, b)
    np.testing.assert_allclose(np.asarray(split), np.asarray(whole), rtol=1e-12, atol=1e-12)
    # the per-tap product form with groups kept whole (batched products), as off CPU
    dot = dataclasses.replace(spec, algorithm="dot")
    kw["spec"] = dot
    batched = jax.jit(lambda a, b: _primitive._impl(a, b, platform=None, **kw))(a, b)
    np.testing.assert_allclose(np.asarray(batched), np.asarray(whole), rtol=1e-12, atol=1e-12)


def test_gemm_selection_on_cpu():
    """The measured CPU rules of ``rules.py``, on the bench's workload shapes: which slot "auto"
    gives the one-product forms and the tap loops on CPU, and never off CPU or for narrow
    channels."""

    def names(x_shape, k_shape, *args, platform="cpu", dtype=np.float32, **kwargs):
        spec, out = make_spec(x_shape, k_shape, *args, **kwargs)
        x_in = (out[0], *spec.input_spatial(out[1:-1]), k_shape[-1])
        return (
            _lowering.choose("y", x_shape, k_shape, dtype, spec, platform).name,
            _lowering.choose("x", out, k_shape, dtype, spec, platform).name,
            _lowering.choose("k", x_in, out, dtype, spec, platform).name,
        )

    # hifigan1d: 1-D forward as col2im, kernel gradient as im2col (columns 2x the cotangent)
    assert names((4, 256, 512), (16, 256, 512), 8, "same") == ("gemm", "direct", "gemm")
    # unet2d, k2 s2: no overlap, every slot a pure rearrangement plus one product
    assert names((2, 32, 32, 256), (2, 2, 128, 256), 2) == ("gemm", "gemm", "gemm")
    # dcgan2d, k4 s2: the im2col would hold 4x the cotangent (memory): every slot a tap loop
    # (2-D, overlapping, ungrouped, wide)
    assert names((16, 16, 16, 256), (4, 4, 128, 256), 2, "same") == ("scatter", "scatter", "scatter")
    assert names((16, 16, 16, 32), (4, 4, 128, 32), 2, "same") == ("phase", "direct", "phase")  # 32 channels
    assert names((16, 16, 16, 256), (3, 3, 128, 256), 1, "same") == ("pad", "direct", "direct")  # stride 1
    # grouped: the split per group keeps the convolutions
    assert names((8, 16, 16, 128), (3, 3, 16, 128), 2, 1, 1, groups=8) == ("phase", "direct", "direct")
    # bfloat16 "dot" (vae2d_bf16): forward and input gradient as tap loops, the kernel
    # gradient's products in phase form; an explicit "dot" keeps its per-class products
    bf16 = lambda *a, **kw: names(*a, **kw, dtype=jnp.bfloat16)
    assert bf16((1, 128, 128, 512), (3, 3, 256, 512), 2, 1, 1) == ("scatter", "scatter", "phase")
    assert bf16((1, 128, 128, 512), (3, 3, 256, 512), 2, 1, 1, algorithm="dot") == ("dot", "dot", "phase")
    assert bf16((1, 128, 128, 512), (2, 2, 256, 512), 2) == ("dot", "dot", "phase")  # no overlap
    # extreme, 32x32 kernel: few positions, many phase channels; the huge kernel's input gradient
    assert names((1, 8, 8, 128), (32, 32, 32, 128), 16)[:2] == ("gemm", "gemm")
    # 3-D keeps the convolutions but for float32's input gradient (vae3d_k3), narrow ones all
    assert names((1, 16, 16, 16, 32), (3, 3, 3, 32, 32), 2, 1, 1) == ("phase", "scatter", "phase")
    assert bf16((1, 16, 16, 16, 32), (3, 3, 3, 32, 32), 2, 1, 1)[1] == "dot"
    assert names((1, 16, 16, 16, 16), (3, 3, 3, 32, 16), 2, 1, 1)[1] == "direct"
    assert names((16, 400, 129), (256, 1, 129), 64)[0] == "phase"  # istft: one output channel
    # off CPU: never
    assert "gemm" not in names((2, 32, 32, 256), (2, 2, 128, 256), 2, platform=None)
    assert "gemm" not in names((4, 256, 512), (16, 256, 512), 8, "same", platform="gpu")


@pytest.mark.parametrize(
    "lhs_shape, rhs_shape, dims",
    [
        # one group as a size-1 batch axis, free and contracted axes each adjacent (col2im forward)
        ((2, 5, 1, 8), (3, 4, 1, 8), (((3,), (3,)), ((2,), (2,)))),
        # several groups: the batch stays
        ((2, 5, 3, 8), (3, 4, 3, 8), (((3,), (3,)), ((2,), (2,)))),
        # two contracted axes adjacent on both sides (im2col input gradient)
        ((2, 5, 3, 4, 1, 6), (3, 4, 6, 1, 7), (((2, 3, 5), (0, 1, 2)), ((4,), (3,)))),
        # contracted axes not adjacent on the right: only the free axes merge
        ((2, 5, 3, 4), (3, 7, 4), (((2, 3), (0, 2)), ((), ()))),
        # contracted axes listed in another order than they lie
        ((2, 5, 3, 4), (4, 3, 7), (((2, 3), (1, 0)), ((), ()))),
        # the left operand contracted over its leading axes (kernel gradient): left to XLA
        ((2, 5, 1, 8), (2, 5, 3, 1, 4), (((0, 1), (0, 1)), ((2,), (3,)))),
        # a size-1 batch axis beside a kept one, and batch axes that do not lead
        ((2, 1, 3, 8), (3, 1, 3, 8), (((3,), (3,)), ((1, 2), (1, 2)))),
        ((5, 3, 1, 8), (1, 3, 4, 8), (((3,), (3,)), ((2, 1), (0, 1)))),
        # zero-size free axes
        ((0, 5, 1, 8), (3, 0, 1, 8), (((3,), (3,)), ((2,), (2,)))),
    ],
)
@pytest.mark.parametrize("plain", [False, True])
def test_dot_is_dot_general(lhs_shape, rhs_shape, dims, plain):
    """``_ops.dot`` reshapes the operands into the plainest product; the values, shape and
    axis order are exactly ``lax.dot_general``'s."""
    from jaxconvt._lowering import _ops

    rng = np.random.default_rng(0)
    lhs = jnp.asarray(rng.standard_normal(lhs_shape), jnp.float32)
    rhs = jnp.asarray(rng.standard_normal(rhs_shape), jnp.float32)
    spec, _ = make_spec((1, 4, 1), (2, 1, 1), 1)
    spec = dataclasses.replace(spec, precision=jax.lax.Precision.HIGHEST)
    got = _ops.dot(lhs, rhs, dims, spec, jnp.float32, plain=plain)
    want = jax.lax.dot_general(lhs, rhs, dims, precision=jax.lax.Precision.HIGHEST)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_one_group_products_reach_xla_unbatched():
    """A one-group GEMM forward (the col2im of a 1-D upsampler) reaches XLA as one product of
    two matrices, the kernel read as it lies: a batched product with a size-1 group axis made
    XLA:CPU copy the whole kernel first (audio_vae: 145 vs 60 ms)."""
    x = jnp.ones((2, 8, 64), jnp.float32)
    kernel = jnp.ones((4, 16, 64), jnp.float32)
    jaxpr = jax.make_jaxpr(lambda x, k: _lowering.lower("y", x, k, make_spec(x.shape, k.shape, 2)[0], x.dtype, "cpu"))(
        x, kernel
    )
    dots = [e for e in jaxpr.eqns if e.primitive.name == "dot_general"]
    assert len(dots) == 1
    (_, _), (lb, rb) = dots[0].params["dimension_numbers"]
    assert lb == rb == ()
    assert [v.aval.shape for v in dots[0].invars] == [(16, 64), (64, 64)]


@pytest.mark.parametrize(
    "x_shape, k_shape, strides, groups",
    [
        ((1, 3, 8), (4, 2, 8), 2, 1),  # few rows, wide channels: the columns transposed times the input
        ((1, 1, 2, 8), (3, 2, 2, 8), (2, 1), 2),  # the same, grouped
        ((4, 8, 2), (4, 3, 2), 2, 1),  # many rows: the input transposed times the columns
        ((2, 3, 4, 4), (2, 3, 2, 4), 2, 2),
    ],
)
def test_kernel_gradient_gemm_orders(x_shape, k_shape, strides, groups):
    """Both product orders of the one-product kernel gradient (``gemm.k_im2col``) against the
    numpy reference: ``dK[e] = <ct, f(x, e)>`` on every kernel basis direction."""
    from jaxconvt._lowering import gemm

    rng = np.random.default_rng(7)
    spec, out = make_spec(x_shape, k_shape, strides, "same", groups=groups)
    n = len(x_shape) - 2
    x, ct = rng.standard_normal(x_shape), rng.standard_normal(out)
    with jax.enable_x64(True):
        got = np.asarray(_fast(gemm.k_im2col, x, ct, spec, jnp.float64))
    crops = tuple(keras_crop("same", k, s, 1, None) for k, s in zip(k_shape[:n], spec.strides))
    f = lambda e: scatter_conv_transpose(x, e, spec.strides, (1,) * n, crops, groups)
    want = [np.sum(ct * f(_basis(k_shape, i))) for i in range(math.prod(k_shape))]
    np.testing.assert_allclose(got.reshape(-1), want, rtol=0, atol=1e-10)


def test_phase_slab_is_a_block_of_space_to_depth():
    """``phase.phase_slab`` (one phase per dimension read straight from the cotangent, the
    exact kernel gradient's operand) equals that block of the whole space-to-depth array,
    over random geometries: crops and zero-extensions, phases with no rows inside, and runs
    of several phases."""
    rng = np.random.default_rng(11)
    checked = 0
    while checked < 16:
        cfg = _random_config(rng, max_dims=2)
        if not _valid(cfg):
            continue
        spec, out = _spec_of(cfg)
        plan = phase.phase_plan(spec, cfg["sp"])
        v = phase.phase_rows(plan)
        y = jnp.asarray(rng.standard_normal(out), jnp.float32)
        og = out[-1] // spec.groups
        whole = phase.space_to_depth(y, plan, v).reshape(out[0], *v, spec.groups, *spec.strides, og)
        for r in itertools.product(*(range(st) for st in spec.strides)):
            got = phase.phase_slab(y, plan, v, [(ra, ra + 1) for ra in r])
            want = whole[(slice(None),) * (spec.ndim + 2) + tuple(slice(ra, ra + 1) for ra in r)]
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
        # a run of several phases per dimension (the other branch)
        runs = [(0, st) if st > 1 else (0, 1) for st in spec.strides]
        want = whole[(slice(None),) * (spec.ndim + 2) + tuple(slice(r0, r1) for r0, r1 in runs)]
        np.testing.assert_array_equal(np.asarray(phase.phase_slab(y, plan, v, runs)), np.asarray(want))
        checked += 1


@pytest.mark.parametrize(
    "x_shape, k_shape, padding, output_padding, dtype, names",
    [
        # float32 dcgan2d-like k4 s2: every slot a tap loop
        ((2, 5, 6, 64), (4, 4, 16, 64), 1, None, np.float64, ("scatter", "scatter", "scatter")),
        # bfloat16 vae2d-like k3 s2 ("dot"): forward and input gradient as tap loops
        ((2, 16, 16, 64), (3, 3, 16, 64), 1, 1, jnp.bfloat16, ("scatter", "scatter", "phase")),
    ],
)
def test_tap_loops_chosen_on_cpu_match_reference(x_shape, k_shape, padding, output_padding, dtype, names):
    """Where "auto" picks the tap loops on CPU (``rules.*_tap_loop``), the op and both
    gradients against the numpy reference: the values, and the gradients through
    ``dx[e] = <ct, f(e, K)>`` and ``dK[e] = <ct, f(x, e)>`` on basis directions."""
    spec, out = make_spec(x_shape, k_shape, 2, padding, output_padding)
    x_in = (out[0], *spec.input_spatial(out[1:-1]), k_shape[-1])
    got = tuple(
        _lowering.choose(slot, a, b, dtype, spec, "cpu").name
        for slot, a, b in (("y", x_shape, k_shape), ("x", out, k_shape), ("k", x_in, out))
    )
    assert got == names
    rng = np.random.default_rng(11)
    x, k, ct = rng.standard_normal(x_shape), rng.standard_normal(k_shape) / 8, rng.standard_normal(out)
    if dtype == jnp.bfloat16:  # the reference sees the rounded operands
        x, k, ct = (np.asarray(jnp.asarray(a, dtype), np.float64) for a in (x, k, ct))
    crops = tuple(spec.crops)
    f = lambda x, k: scatter_conv_transpose(x, k, spec.strides, spec.dilation, crops)
    op = lambda x, k: jaxconvt.conv_transpose(x, k, 2, padding, output_padding)
    with jax.enable_x64(dtype == np.float64):
        y, vjp = jax.vjp(op, *(jnp.asarray(a, dtype) for a in (x, k)))
        dx, dk = vjp(jnp.asarray(ct, dtype))
    tol = dict(rtol=2e-2, atol=5e-2) if dtype == jnp.bfloat16 else dict(rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(np.asarray(y, np.float64), f(x, k), **tol)
    for grad, wrt, direction in ((dx, x, lambda e: f(e, k)), (dk, k, lambda e: f(x, e))):
        picks = rng.choice(wrt.size, size=4, replace=False)
        want = [np.sum(ct * direction(_basis(wrt.shape, i))) for i in picks]
        scale = tol["atol"] * 20 if dtype == jnp.bfloat16 else tol["atol"]
        np.testing.assert_allclose(np.asarray(grad, np.float64).reshape(-1)[picks], want, rtol=tol["rtol"], atol=scale)
