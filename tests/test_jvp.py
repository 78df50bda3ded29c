"""Forward mode and higher orders (``jvp``, ``linearize``, ``jacfwd``, ``jacrev``, ``hessian``).

Oracles: the dense matrices of the numpy reference (``y = Mx x = Mk K``, see test_grad.py),
so ``jvp(tx, tK) = Mx tx + Mk tK``, Jacobians are ``Mx`` and ``Mk``, and the Hessian of
``f = |y|^2 / 2`` has blocks ``Mx^T Mx``, ``Mk^T Mk`` and ``Mx^T Mk + <y, T(e_a, e_b)>``;
plus JAX's own forward mode and Hessian of the plain lax formulation (child process).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.test_grad import (
    ALL,
    GRID,
    PRIMITIVE,
    RANDOM,
    dense_k,
    dense_x,
    op,
    operands,
    primitive_counts,
    reference,
    run_lax_oracle,
)


def _tangents(cfg, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(cfg.x_shape()), rng.standard_normal(cfg.k_shape())


@pytest.mark.parametrize("cfg", ALL, ids=str)
def test_jvp_is_the_dense_matvec(cfg, x64):
    x, k, _ = operands(cfg)
    tx, tk = _tangents(cfg, 1)
    mx, mk = dense_x(k, cfg), dense_k(x, cfg)
    y, ty = jax.jvp(op(cfg), (x, k), (tx, tk))
    np.testing.assert_allclose(y, reference(x, k, cfg), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.ravel(ty), mx @ tx.ravel() + mk @ tk.ravel(), rtol=1e-12, atol=1e-12)
    _, ty_x = jax.jvp(lambda x: op(cfg)(x, k), (x,), (tx,))
    _, ty_k = jax.jvp(lambda k: op(cfg)(x, k), (k,), (tk,))
    np.testing.assert_allclose(np.ravel(ty_x), mx @ tx.ravel(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.ravel(ty_k), mk @ tk.ravel(), rtol=1e-12, atol=1e-12)


def _hessian_blocks(x, k, cfg):
    """Exact Hessian blocks of ``f(x, K) = |T(x, K)|^2 / 2`` from the dense reference matrices."""
    mx, mk = dense_x(k, cfg), dense_k(x, cfg)
    y = mx @ x.ravel()
    eye = np.eye(k.size).reshape(k.size, *k.shape)
    # d^2 f / dx_a dK_b = (Mx^T Mk)_ab + <y, T(e_a, e_b)>, and T(., e_b) is dense_x(e_b).
    cross = mx.T @ mk + np.stack([dense_x(e, cfg).T @ y for e in eye], axis=1)
    return mx.T @ mx, cross, mk.T @ mk


HESSIAN_CFGS = [GRID[0], GRID[4], GRID[7], RANDOM[0]]


@pytest.mark.parametrize("cfg", HESSIAN_CFGS, ids=str)
def test_hessian_is_exact(cfg, x64):
    x, k, _ = operands(cfg, seed=2)
    loss = lambda x, k: 0.5 * jnp.sum(op(cfg)(x, k) ** 2)
    (hxx, hxk), (hkx, hkk) = jax.jit(jax.hessian(loss, argnums=(0, 1)))(x, k)
    exx, exk, ekk = _hessian_blocks(x, k, cfg)
    np.testing.assert_allclose(np.reshape(hxx, exx.shape), exx, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(np.reshape(hkk, ekk.shape), ekk, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(np.reshape(hxk, exk.shape), exk, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(np.reshape(hkx, exk.T.shape), exk.T, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("cfg", [GRID[1], GRID[5], GRID[9], RANDOM[2]], ids=str)
def test_jacfwd_and_jacrev_are_the_dense_matrices(cfg, x64):
    x, k, _ = operands(cfg, seed=3)
    mx, mk = dense_x(k, cfg), dense_k(x, cfg)
    for jac in (jax.jacfwd, jax.jacrev):
        jx, jk = jax.jit(jac(op(cfg), argnums=(0, 1)))(x, k)
        np.testing.assert_allclose(np.reshape(jx, mx.shape), mx, rtol=1e-12, atol=1e-12, err_msg=jac.__name__)
        np.testing.assert_allclose(np.reshape(jk, mk.shape), mk, rtol=1e-12, atol=1e-12, err_msg=jac.__name__)


def test_linearize_and_forward_over_reverse(x64):
    cfg = GRID[3]
    x, k, _ = operands(cfg, seed=4)
    tx, tk = _tangents(cfg, 5)
    mx, mk = dense_x(k, cfg), dense_k(x, cfg)
    y, lin = jax.linearize(op(cfg), x, k)
    np.testing.assert_allclose(np.ravel(lin(tx, tk)), mx @ tx.ravel() + mk @ tk.ravel(), rtol=1e-12, atol=1e-12)
    # Hessian-vector product, forward over reverse: d/dt grad_x f(x + t v) = Mx^T Mx v.
    loss = lambda x: 0.5 * jnp.sum(op(cfg)(x, k) ** 2)
    _, hvp = jax.jvp(jax.grad(loss), (x,), (tx,))
    np.testing.assert_allclose(np.ravel(hvp), mx.T @ (mx @ tx.ravel()), rtol=1e-11, atol=1e-11)
    # Reverse over forward agrees too.
    rof = jax.grad(lambda x: jnp.vdot(jax.jvp(loss, (x,), (tx,))[1], 1.0))(x)
    np.testing.assert_allclose(rof, hvp, rtol=1e-11, atol=1e-11)


def test_jvp_and_hessian_equal_lax_autodiff(tmp_path, x64):
    cfgs = [cfg for cfg in ALL if cfg.kernel_fits()][:6]
    cases = []
    for i, cfg in enumerate(cfgs):
        x, k, ct = operands(cfg, seed=10 + i)
        tx, tk = _tangents(cfg, 20 + i)
        values = dict(x=x, k=k, ct=ct, tx=tx, tk=tk)
        if i < 3:
            values["hess"] = np.ones(())
        cases.append((cfg, values))
    lax_out = run_lax_oracle(tmp_path, cases)
    for i, (cfg, v) in enumerate(cases):
        _, ty = jax.jvp(op(cfg), (v["x"], v["k"]), (v["tx"], v["tk"]))
        np.testing.assert_allclose(ty, lax_out[f"jvp{i}"], rtol=1e-12, atol=1e-12, err_msg=str(cfg))
        if "hess" in v:
            loss = lambda x, k, cfg=cfg: 0.5 * jnp.sum(op(cfg)(x, k) ** 2)
            hess = jax.jit(jax.hessian(loss, argnums=(0, 1)))(v["x"], v["k"])
            for a in range(2):
                for b in range(2):
                    np.testing.assert_allclose(hess[a][b], lax_out[f"h{a}{b}_{i}"], rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("cfg", [GRID[0], GRID[7]], ids=str)
def test_forward_mode_stays_in_the_primitive(cfg):
    x, k, _ = operands(cfg, dtype=np.float32)
    tx, tk = (t.astype(np.float32) for t in _tangents(cfg, 6))
    fns = [
        lambda x, k: jax.jvp(op(cfg), (x, k), (tx, tk)),
        jax.jacfwd(op(cfg), argnums=(0, 1)),
        jax.jacrev(op(cfg), argnums=(0, 1)),
        jax.jacfwd(jax.jacrev(lambda x, k: jnp.sum(op(cfg)(x, k) ** 2), argnums=(0, 1)), argnums=(0, 1)),
    ]
    for fn in fns:
        counts = primitive_counts(fn, x, k)
        assert counts[PRIMITIVE] >= 2, counts
        assert "conv_general_dilated" not in counts, counts


@pytest.mark.parametrize(
    "x_dtype, k_dtype, preferred, y_dtype",
    [
        (jnp.bfloat16, jnp.bfloat16, None, jnp.bfloat16),
        (jnp.float32, jnp.bfloat16, None, jnp.float32),
        (jnp.bfloat16, jnp.bfloat16, jnp.float32, jnp.float32),
    ],
)
def test_jvp_dtypes(x_dtype, k_dtype, preferred, y_dtype):
    cfg = GRID[3]
    x, k, _ = operands(cfg, seed=7)
    tx, tk = _tangents(cfg, 8)
    args = (jnp.asarray(x, x_dtype), jnp.asarray(k, k_dtype))
    tangents = (jnp.asarray(tx, x_dtype), jnp.asarray(tk, k_dtype))
    y, ty = jax.jvp(op(cfg, preferred_element_type=preferred), args, tangents)
    assert y.dtype == ty.dtype == y_dtype
    r = lambda a: np.asarray(a, np.float64)
    want = dense_x(r(args[1]), cfg) @ r(tangents[0]).ravel() + dense_k(r(args[0]), cfg) @ r(tangents[1]).ravel()
    np.testing.assert_allclose(r(ty).ravel(), want, atol=3e-2 * np.max(np.abs(want)), rtol=0)
