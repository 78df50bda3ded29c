"""Non-finite values stay where the definition sends them, in the forward and both gradients.

The op is ``full[n, a*s + j*d] += x[n, a] * K[j]`` followed by a crop. An ``inf`` or ``nan``
in the input, the kernel or the output cotangent must make non-finite exactly the entries of
the output / input gradient / kernel gradient that have a term with it, and no others: no
padding zero or structural zero of a fast form may be multiplied with it (``0 * inf = nan``).

The oracle here is the definition written with elementwise IEEE products and sums (numpy
broadcasting, no BLAS, which may skip zero operands): every term ``a * b`` that the definition
has, and nothing else. Patterns are compared exactly (``nan``, ``+inf``, ``-inf`` per
entry), finite entries to rounding.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconvt
from jaxconvt import _lowering
from jaxconvt._spec import make_spec
from tests._keras_worker import FAST_COMPILE

ALGORITHMS = ("auto", "phase", "dot", "gemm")


def _geometry(x_shape, k_shape, spec):
    n = spec.ndim
    spatial, ksize = x_shape[1 : n + 1], k_shape[:n]
    full = [(spatial[a] - 1) * spec.strides[a] + (ksize[a] - 1) * spec.dilation[a] + 1 for a in range(n)]
    length = [full[a] - spec.crops[a][0] - spec.crops[a][1] for a in range(n)]
    return spatial, ksize, length


def _terms(x_shape, k_shape, spec):
    """For every (input position a, tap j): the output position it reaches, or None if cropped away."""
    spatial, ksize, length = _geometry(x_shape, k_shape, spec)
    n = spec.ndim
    for a in itertools.product(*(range(v) for v in spatial)):
        for j in itertools.product(*(range(v) for v in ksize)):
            p = tuple(a[d] * spec.strides[d] + j[d] * spec.dilation[d] - spec.crops[d][0] for d in range(n))
            yield a, j, (p if all(0 <= p[d] < length[d] for d in range(n)) else None)


def ieee_forward(x, k, spec):
    n, g = spec.ndim, spec.groups
    batch, c_in, og = x.shape[0], x.shape[-1], k.shape[n]
    cg = c_in // g
    _, _, length = _geometry(x.shape, k.shape, spec)
    out = np.zeros((batch, *length, g * og))
    for a, j, p in _terms(x.shape, k.shape, spec):
        if p is None:
            continue
        for gi in range(g):
            xs = x[(slice(None), *a, slice(gi * cg, (gi + 1) * cg))]  # (N, Cg)
            ks = k[(*j, slice(None), slice(gi * cg, (gi + 1) * cg))]  # (Og, Cg)
            out[(slice(None), *p, slice(gi * og, (gi + 1) * og))] += (xs[:, None, :] * ks[None, :, :]).sum(-1)
    return out


def ieee_input_grad(ct, k, spec, x_shape):
    n, g = spec.ndim, spec.groups
    c_in, og = x_shape[-1], k.shape[n]
    cg = c_in // g
    dx = np.zeros(x_shape)
    for a, j, p in _terms(x_shape, k.shape, spec):
        if p is None:
            continue
        for gi in range(g):
            cs = ct[(slice(None), *p, slice(gi * og, (gi + 1) * og))]  # (N, Og)
            ks = k[(*j, slice(None), slice(gi * cg, (gi + 1) * cg))]  # (Og, Cg)
            dx[(slice(None), *a, slice(gi * cg, (gi + 1) * cg))] += (cs[:, :, None] * ks[None, :, :]).sum(1)
    return dx


def ieee_kernel_grad(x, ct, spec, k_shape):
    n, g = spec.ndim, spec.groups
    c_in, og = x.shape[-1], k_shape[n]
    cg = c_in // g
    dk = np.zeros(k_shape)
    for a, j, p in _terms(x.shape, k_shape, spec):
        if p is None:
            continue
        for gi in range(g):
            xs = x[(slice(None), *a, slice(gi * cg, (gi + 1) * cg))]  # (N, Cg)
            cs = ct[(slice(None), *p, slice(gi * og, (gi + 1) * og))]  # (N, Og)
            dk[(*j, slice(None), slice(gi * cg, (gi + 1) * cg))] += (cs[:, :, None] * xs[:, None, :]).sum(0)
    return dk


def assert_same_pattern(got, want, what):
    got = np.asarray(got, np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    for name, test in (("nan", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        bad = np.argwhere(test(got) != test(want))
        assert bad.size == 0, f"{what}: {name} pattern differs at {bad[:5].tolist()} ({len(bad)} entries)"
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-9, atol=1e-9, err_msg=what)


def _plant(rng, arr, count):
    """Puts ``count`` non-finite values (inf, -inf, nan) at random positions, borders likely."""
    arr = arr.copy()
    flat = arr.reshape(-1)
    for _ in range(count):
        idx = list(np.unravel_index(rng.integers(flat.size), arr.shape))
        for d in range(1, arr.ndim - 1):  # favour the borders of each spatial axis
            if rng.random() < 0.5:
                idx[d] = int(rng.choice([0, arr.shape[d] - 1]))
        arr[tuple(idx)] = rng.choice([np.inf, -np.inf, np.nan])
    return arr


def _kernel_plant(rng, k, count):
    k = k.copy()
    for _ in range(count):
        idx = tuple(int(rng.integers(v)) for v in k.shape)
        k[idx] = rng.choice([np.inf, -np.inf, np.nan])
    return k


def _configs():
    """Kernel/stride/dilation/padding/groups combinations, 1-D to 3-D: k multiple of s and not,
    dilation sharing a factor with the stride (holes), output padding, explicit crops."""
    rng = np.random.default_rng(7)
    fixed = [
        dict(sp=(3,), k=(3,), s=(2,), d=(1,), padding="valid", op=None, groups=1),  # the issue's reproducers
        dict(sp=(3,), k=(3,), s=(1,), d=(1,), padding="valid", op=None, groups=1),
        dict(sp=(4, 5), k=(3, 3), s=(2, 2), d=(1, 1), padding="same", op=None, groups=1),
        dict(sp=(4, 4), k=(4, 4), s=(2, 2), d=(1, 1), padding=((1, 1), (1, 1)), op=None, groups=1),
        dict(sp=(5,), k=(3,), s=(2,), d=(3,), padding="same", op=None, groups=2),  # holes in the phase classes
        dict(sp=(3, 3), k=(2, 3), s=(2, 3), d=(2, 1), padding="valid", op=(1, 0), groups=1),
        dict(sp=(2, 3, 2), k=(3, 2, 2), s=(2, 2, 1), d=(1, 1, 2), padding="same", op=None, groups=1),
        dict(sp=(4,), k=(11,), s=(5,), d=(1,), padding=((3, 2),), op=None, groups=1),  # k not a multiple of s, wide
        dict(sp=(3,), k=(2,), s=(9,), d=(1,), padding="valid", op=None, groups=1),  # stride >> kernel: scatter form
    ]
    out = list(fixed)
    while len(out) < 14:
        n = int(rng.integers(1, 3))
        cfg = dict(
            sp=tuple(int(v) for v in rng.integers(1, 5, n)),
            k=tuple(int(v) for v in rng.integers(1, 5, n)),
            s=tuple(int(v) for v in rng.integers(1, 4, n)),
            d=tuple(int(v) for v in rng.integers(1, 3, n)),
            padding=str(rng.choice(["valid", "same"]))
            if rng.random() < 0.6
            else tuple((int(rng.integers(0, 3)), int(rng.integers(0, 3))) for _ in range(n)),
            op=None,
            groups=int(rng.choice([1, 2])),
        )
        try:
            make_spec(
                (1, *cfg["sp"], 2 * cfg["groups"]),
                (*cfg["k"], 2, 2 * cfg["groups"]),
                cfg["s"],
                cfg["padding"],
                None,
                None,
                cfg["d"],
                groups=cfg["groups"],
            )
        except ValueError:
            continue
        out.append(cfg)
    return out


CONFIGS = _configs()


def _cases(index):
    """Operands of one configuration: non-finite values in the input and the cotangent with a
    finite kernel (the forward and input gradient must stay exact on their fast paths), and
    a non-finite kernel tap."""
    cfg = CONFIGS[index]
    rng = np.random.default_rng(100 + index)
    g = cfg["groups"]
    x_shape, k_shape = (3, *cfg["sp"], 2 * g), (*cfg["k"], 2, 2 * g)
    spec, out_shape = make_spec(x_shape, k_shape, cfg["s"], cfg["padding"], cfg["op"], None, cfg["d"], groups=g)
    x0, k0, c0 = rng.standard_normal(x_shape), rng.standard_normal(k_shape), rng.standard_normal(out_shape)
    cases = [
        (_plant(rng, x0, 2), k0, _plant(rng, c0, 2)),  # finite kernel: every fast path, both gradients
        (_plant(rng, x0, 1), _kernel_plant(rng, k0, 1), c0),  # a non-finite kernel tap: forward, input gradient
    ]
    return cfg, spec, cases


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_nonfinite_pattern_matches_definition(algorithm, x64):
    """Forward, input gradient and kernel gradient of every configuration and case in one
    compiled function per algorithm."""
    work = [_cases(index) for index in range(len(CONFIGS))]

    def step(cfg, x, k, ct):
        args = dict(strides=cfg["s"], padding=cfg["padding"], output_padding=cfg["op"], dilation_rate=cfg["d"])
        f = lambda x, k: jaxconvt.conv_transpose(x, k, groups=cfg["groups"], algorithm=algorithm, **args)
        y, vjp = jax.vjp(f, x, k)
        return (y, *vjp(ct))

    def run(operands):
        return [step(cfg, *ops) for (cfg, _, cases), case_ops in zip(work, operands) for ops in case_ops]

    operands = [[tuple(jnp.asarray(a) for a in case) for case in cases] for _, _, cases in work]
    results = iter(jax.jit(run).lower(operands).compile(FAST_COMPILE)(operands))
    with np.errstate(invalid="ignore"):
        for cfg, spec, cases in work:
            for case, (x, k, ct) in enumerate(cases):
                y, dx, dk = next(results)
                where = f"config {cfg}, algorithm {algorithm}, case {case}"
                assert_same_pattern(y, ieee_forward(x, k, spec), f"forward, {where}")
                assert_same_pattern(dx, ieee_input_grad(ct, k, spec, x.shape), f"input gradient, {where}")
                assert_same_pattern(dk, ieee_kernel_grad(x, ct, spec, k.shape), f"kernel gradient, {where}")


def test_issue_reproducers():
    x = jnp.array([1.0, jnp.inf, 1.0]).reshape(1, 3, 1)
    out = jaxconvt.conv_transpose(x, jnp.ones((3, 1, 1)), strides=2)[0, :, 0]
    np.testing.assert_array_equal(np.asarray(out), [1, 1, np.inf, np.inf, np.inf, 1, 1])
    k = jnp.array([jnp.nan, 1.0, 1.0]).reshape(3, 1, 1)
    out = jaxconvt.conv_transpose(jnp.ones((1, 3, 1)), k, strides=2)[0, :, 0]
    np.testing.assert_array_equal(np.asarray(out), [np.nan, 1, np.nan, 1, np.nan, 1, 1])
    for algorithm in ("phase", "dot"):
        out = jaxconvt.conv_transpose(jnp.ones((1, 3, 1)), k, strides=2, algorithm=algorithm)[0, :, 0]
        np.testing.assert_array_equal(np.asarray(out), [np.nan, 1, np.nan, 1, np.nan, 1, 1])


@pytest.mark.parametrize(
    "x_shape, k_shape, strides, padding, slot, hazards",
    [
        # k a multiple of s: no structural zero; the input's borders meet the kernel
        ((2, 8, 8, 4), (4, 4, 3, 4), 2, "same", "y", (False, True)),
        # k3 s2 with the common window: structural zeros meet the input too
        ((2, 8, 8, 4), (3, 3, 3, 4), 2, "same", "y", (True, True)),
        # "valid" crops nothing: the strided input gradient and the direct kernel gradient pad nothing
        ((2, 8, 8, 4), (3, 3, 3, 4), 2, "valid", "x", (False, False)),
        ((2, 8, 8, 4), (3, 3, 3, 4), 2, "valid", "k", (False, False)),
        # PyTorch padding 1 crops: the cotangent's padding meets the kernel (dx) and the input (direct dK)
        ((2, 8, 8, 4), (3, 3, 3, 4), 2, 1, "x", (False, True)),
        ((2, 8, 8, 4), (3, 3, 3, 4), 2, 1, "k", (True, False)),
    ],
)
def test_hazards_are_static_and_minimal(x_shape, k_shape, strides, padding, slot, hazards):
    """Only the operands that can meet a padding or structural zero are tested for finiteness."""
    spec, out_shape = make_spec(x_shape, k_shape, strides, padding)
    a, b = {"y": (x_shape, k_shape), "x": (out_shape, k_shape), "k": (x_shape, out_shape)}[slot]
    choice = _lowering.choose(slot, a, b, np.float32, spec, None)
    assert choice.hazards == hazards, choice


def test_finite_guard_only_where_a_form_has_hazards():
    """Each slot with hazards lowers to exactly one conditional; a slot without none."""
    x, k = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 3, 4))

    def conds(padding, grad):
        f = lambda x, k: jaxconvt.conv_transpose(x, k, 2, padding).sum()
        f = jax.value_and_grad(f, (0, 1)) if grad else f
        return jax.jit(f).lower(x, k).as_text().count("stablehlo.case")

    assert conds("valid", grad=False) == 1  # the phase form's borders meet the kernel
    assert conds("valid", grad=True) == 1  # "valid" crops nothing: dx and dK pad nothing
    assert conds(1, grad=True) == 3  # PyTorch padding 1: dx and dK read a padded cotangent
