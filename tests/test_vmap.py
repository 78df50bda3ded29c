"""``jax.vmap`` of ``conv_transpose`` and of its derivatives, against Python loops.

The batching rule folds a vmapped axis into the batch (shared kernel) or into the channel
groups (per-example kernels, StyleGAN2-style modulated convolutions): either way ONE
primitive call, never a loop. The jaxpr checks below pin that down.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconvt
from tests.test_grad import GRID, PRIMITIVE, jaxpr_equations, op, reference

B = 3
CFGS = [GRID[0], GRID[4], GRID[7]]  # 1-D; 2-D groups=2 channels_first; 3-D channels_first
TOL = dict(rtol=2e-5, atol=2e-5)


def _stacked(shape, axis, seed, size=B):
    """Random float32 array of ``shape`` with a batch axis of ``size`` inserted at ``axis``."""
    if axis is None:
        return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    full = list(shape)
    full.insert(axis % (len(shape) + 1), size)
    return np.random.default_rng(seed).standard_normal(full).astype(np.float32)


def _slice(arr, axis, i):
    return arr if axis is None else np.take(arr, i, axis=axis)


def _loop(fn, args, in_axes, out_axes=0, size=B):
    outs = [fn(*(_slice(a, ax, i) for a, ax in zip(args, in_axes))) for i in range(size)]
    return jax.tree.map(lambda *o: np.stack([np.asarray(v) for v in o], axis=out_axes), *outs)


def _primitive_eqns(fn, *args):
    return [e for e in jaxpr_equations(jax.make_jaxpr(fn)(*args)) if e.primitive.name == PRIMITIVE]


IN_AXES = [(0, None), (1, None), (-1, None), (None, 0), (None, -1), (0, 0), (1, 2), (-1, -1), (2, 0)]


@pytest.mark.parametrize("cfg", CFGS, ids=str)
@pytest.mark.parametrize("in_axes", IN_AXES, ids=str)
def test_vmap_matches_loop(cfg, in_axes):
    x = _stacked(cfg.x_shape(), in_axes[0], 0)
    k = _stacked(cfg.k_shape(), in_axes[1], 1)
    f = op(cfg)
    got = jax.vmap(f, in_axes=in_axes)(x, k)
    np.testing.assert_allclose(got, _loop(f, (x, k), in_axes), **TOL)
    eqns = _primitive_eqns(jax.vmap(f, in_axes=in_axes), x, k)
    assert len(eqns) == 1, "vmap must become one primitive call, not a loop"
    expected_groups = cfg.groups if in_axes[1] is None else B * cfg.groups
    assert eqns[0].params["spec"].groups == expected_groups


@pytest.mark.parametrize("out_axes", [0, 1, -1, 3])
def test_vmap_out_axes(out_axes):
    cfg = GRID[4]
    x, k = _stacked(cfg.x_shape(), 0, 2), _stacked(cfg.k_shape(), 0, 3)
    got = jax.vmap(op(cfg), out_axes=out_axes)(x, k)
    np.testing.assert_allclose(got, _loop(op(cfg), (x, k), (0, 0), out_axes), **TOL)


def test_per_example_kernels_are_one_grouped_call():
    """StyleGAN2-style modulated convolution: per-example kernels -> groups = batch * groups."""
    cfg = GRID[4]  # groups=2
    size = 5
    x, k = _stacked(cfg.x_shape(), 0, 4, size), _stacked(cfg.k_shape(), 0, 5, size)
    styles = np.random.default_rng(6).standard_normal((size, k.shape[-1])).astype(np.float32)

    def modulated(x, k, s):
        w = k * s  # modulate input channels per example
        w = w * jax.lax.rsqrt(jnp.sum(w**2, axis=tuple(range(cfg.ndim)) + (w.ndim - 1,), keepdims=True) + 1e-8)
        return op(cfg)(x, w)

    fn = jax.vmap(modulated)
    eqns = _primitive_eqns(fn, x, k, styles)
    assert len(eqns) == 1
    assert eqns[0].params["slot"] == "y" and eqns[0].params["spec"].groups == size * cfg.groups
    np.testing.assert_allclose(fn(x, k, styles), _loop(modulated, (x, k, styles), (0, 0, 0), size=size), **TOL)


def test_per_example_kernels_equal_the_reference():
    cfg = GRID[7]  # 3-D, channels_first
    x, k = _stacked(cfg.x_shape(), 0, 7), _stacked(cfg.k_shape(), 0, 8)
    got = jax.vmap(op(cfg))(x, k)
    for i in range(B):
        np.testing.assert_allclose(got[i], reference(x[i], k[i], cfg), **TOL)


def test_nested_vmap():
    cfg = GRID[0]
    b1, b2 = 2, 3
    rng = np.random.default_rng(9)
    x = rng.standard_normal((b1, b2, *cfg.x_shape())).astype(np.float32)
    k = rng.standard_normal((b1, b2, *cfg.k_shape())).astype(np.float32)
    k_outer = k[:, 0]
    f = op(cfg)
    # Per-example kernels at both levels: groups = b1 * b2 * G, still one call.
    both = jax.vmap(jax.vmap(f))
    expected = np.stack([np.stack([f(x[i, j], k[i, j]) for j in range(b2)]) for i in range(b1)])
    np.testing.assert_allclose(both(x, k), expected, **TOL)
    (eqn,) = _primitive_eqns(both, x, k)
    assert eqn.params["spec"].groups == b1 * b2 * cfg.groups
    # Inner shares the outer example's kernel; outer maps the kernel.
    mixed = jax.vmap(jax.vmap(f, in_axes=(0, None)), in_axes=(0, 0))
    expected = np.stack([np.stack([f(x[i, j], k_outer[i]) for j in range(b2)]) for i in range(b1)])
    np.testing.assert_allclose(mixed(x, k_outer), expected, **TOL)
    (eqn,) = _primitive_eqns(mixed, x, k_outer)
    assert eqn.params["spec"].groups == b1 * cfg.groups
    # Inner maps the data axis 1 with a shared kernel, outer maps nothing of the kernel.
    shared = jax.vmap(jax.vmap(f, in_axes=(1, None)), in_axes=(0, None))
    xs = np.swapaxes(x, 1, 2).copy()  # (b1, N, b2, ...) with the inner axis at 1
    expected = np.stack([np.stack([f(x[i, j], k[0, 0]) for j in range(b2)]) for i in range(b1)])
    np.testing.assert_allclose(shared(xs, k[0, 0]), expected, **TOL)
    (eqn,) = _primitive_eqns(shared, xs, k[0, 0])
    assert eqn.params["spec"].groups == cfg.groups


def _loss(cfg):
    return lambda x, k: jnp.sum(jnp.tanh(op(cfg)(x, k)))


@pytest.mark.parametrize("cfg", CFGS, ids=str)
@pytest.mark.parametrize("in_axes", [(0, None), (0, 0), (None, 0)], ids=str)
def test_vmap_of_grad(cfg, in_axes):
    """Per-example gradients (e.g. for DP-SGD) in one call per slot."""
    x = _stacked(cfg.x_shape(), in_axes[0], 10)
    k = _stacked(cfg.k_shape(), in_axes[1], 11)
    grad = jax.grad(_loss(cfg), argnums=(0, 1))
    got = jax.vmap(grad, in_axes=in_axes)(x, k)
    expected = _loop(grad, (x, k), in_axes)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, **TOL)
    eqns = _primitive_eqns(jax.vmap(grad, in_axes=in_axes), x, k)
    assert sorted(e.params["slot"] for e in eqns) == ["k", "x", "y"]
    # The per-example kernel gradient is always one grouped call.
    (k_eqn,) = [e for e in eqns if e.params["slot"] == "k"]
    assert k_eqn.params["spec"].groups == B * cfg.groups


@pytest.mark.parametrize("cfg", CFGS, ids=str)
def test_grad_of_vmap(cfg):
    x, k = _stacked(cfg.x_shape(), 0, 12), _stacked(cfg.k_shape(), 0, 13)
    total = lambda x, k: jnp.sum(jax.vmap(_loss(cfg))(x, k))
    gx, gk = jax.grad(total, argnums=(0, 1))(x, k)
    ex, ek = _loop(jax.grad(_loss(cfg), argnums=(0, 1)), (x, k), (0, 0))
    np.testing.assert_allclose(gx, ex, **TOL)
    np.testing.assert_allclose(gk, ek, **TOL)
    # Shared kernel: its gradient sums over the vmapped examples.
    gk_shared = jax.grad(lambda k: jnp.sum(jax.vmap(_loss(cfg), in_axes=(0, None))(x, k)))(k[0])
    expected = sum(jax.grad(_loss(cfg), argnums=1)(x[i], k[0]) for i in range(B))
    np.testing.assert_allclose(gk_shared, expected, **TOL)


@pytest.mark.parametrize("cfg", CFGS, ids=str)
def test_vmap_of_jvp(cfg):
    x, k = _stacked(cfg.x_shape(), None, 14), _stacked(cfg.k_shape(), None, 15)
    tx, tk = _stacked(cfg.x_shape(), 0, 16), _stacked(cfg.k_shape(), 0, 17)
    jvp = lambda tx, tk: jax.jvp(op(cfg), (x, k), (tx, tk))[1]
    np.testing.assert_allclose(jax.vmap(jvp)(tx, tk), _loop(jvp, (tx, tk), (0, 0)), **TOL)
    # Primals and tangents all batched.
    xb, kb = _stacked(cfg.x_shape(), 0, 18), _stacked(cfg.k_shape(), 0, 19)
    jvp_all = lambda x, k, tx, tk: jax.jvp(op(cfg), (x, k), (tx, tk))
    got = jax.vmap(jvp_all)(xb, kb, tx, tk)
    expected = _loop(jvp_all, (xb, kb, tx, tk), (0, 0, 0, 0))
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, **TOL)


def test_vmap_of_vjp_over_cotangents():
    """Only the cotangent is batched: the x slot folds into the batch, the k slot into groups."""
    cfg = GRID[4]
    x, k = _stacked(cfg.x_shape(), None, 20), _stacked(cfg.k_shape(), None, 21)
    y, vjp = jax.vjp(op(cfg), x, k)
    cts = _stacked(y.shape, 0, 22)
    got = jax.vmap(vjp)(cts)
    expected = _loop(vjp, (cts,), (0,))
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, **TOL)
    eqns = {e.params["slot"]: e for e in _primitive_eqns(jax.vmap(vjp), cts)}
    assert eqns["x"].params["spec"].groups == cfg.groups
    assert eqns["k"].params["spec"].groups == B * cfg.groups


def test_vmap_under_jit_and_of_jit():
    cfg = GRID[7]
    x, k = _stacked(cfg.x_shape(), 0, 23), _stacked(cfg.k_shape(), 0, 24)
    expected = _loop(op(cfg), (x, k), (0, 0))
    np.testing.assert_allclose(jax.jit(jax.vmap(op(cfg)))(x, k), expected, **TOL)
    np.testing.assert_allclose(jax.vmap(jax.jit(op(cfg)))(x, k), expected, **TOL)


def test_vmap_with_empty_inner_batch():
    x, k = jnp.ones((B, 0, 4, 2)), jnp.ones((B, 3, 2, 2))
    f = lambda x, k: jaxconvt.conv_transpose(x, k, 2, "same")
    assert jax.vmap(f)(x, k).shape == (B, 0, 8, 2)
    assert jax.vmap(f, in_axes=(0, None))(x, k[0]).shape == (B, 0, 8, 2)


@pytest.mark.parametrize("in_axes", [(0, None), (0, 0)], ids=str)
def test_vmap_over_an_empty_axis(in_axes):
    """Regression: the batching rule once divided by the vmapped size (ZeroDivisionError)."""
    x = jnp.ones((0, 2, 4, 2))
    k = jnp.ones((0, 3, 2, 2)) if in_axes[1] == 0 else jnp.ones((3, 2, 2))
    f = lambda x, k: jaxconvt.conv_transpose(x, k, 2, "same")
    assert jax.vmap(f, in_axes=in_axes)(x, k).shape == (0, 2, 8, 2)
    grads = jax.vmap(jax.grad(lambda x, k: jnp.sum(f(x, k) ** 2), argnums=(0, 1)), in_axes=in_axes)(x, k)
    assert [g.shape for g in grads] == [x.shape, (0, *k.shape[-3:])]
