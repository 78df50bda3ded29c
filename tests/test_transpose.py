"""``jax.linear_transpose`` of ``conv_transpose`` in either operand, and of its derivatives.

The oracle is the exact dense matrix of the numpy reference (test_grad.py): the transpose of
``x -> T(x, K)`` is ``Mx^T`` and of ``K -> T(x, K)`` is ``Mk^T``. Each slot's transpose is
another slot of the same primitive, so transposing twice returns to the op itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.test_grad import ALL, GRID, PRIMITIVE, dense_k, dense_x, jaxpr_equations, op, operands

TIGHT = dict(rtol=1e-12, atol=1e-12)


def _slots(fn, *args):
    return [e.params["slot"] for e in jaxpr_equations(jax.make_jaxpr(fn)(*args)) if e.primitive.name == PRIMITIVE]


def _no_lax_convolution(fn, *args):
    names = {e.primitive.name for e in jaxpr_equations(jax.make_jaxpr(fn)(*args))}
    return "conv_general_dilated" not in names


@pytest.mark.parametrize("cfg", ALL, ids=str)
def test_linear_transpose_is_the_dense_transpose(cfg, x64):
    x, k, ct = operands(cfg)
    tx = jax.linear_transpose(lambda x: op(cfg)(x, k), x)
    tk = jax.linear_transpose(lambda k: op(cfg)(x, k), k)
    (dx,), (dk,) = tx(ct), tk(ct)
    assert dx.shape == x.shape and dk.shape == k.shape
    np.testing.assert_allclose(np.ravel(dx), dense_x(k, cfg).T @ ct.ravel(), **TIGHT)
    np.testing.assert_allclose(np.ravel(dk), dense_k(x, cfg).T @ ct.ravel(), **TIGHT)


@pytest.mark.parametrize("cfg", [GRID[0], GRID[4], GRID[7]], ids=str)
def test_transposing_twice_gives_back_the_op(cfg, x64):
    x, k, ct = operands(cfg)
    f_x = lambda x: op(cfg)(x, k)
    t_x = jax.linear_transpose(f_x, x)
    tt_x = jax.linear_transpose(lambda c: t_x(c)[0], ct)
    np.testing.assert_allclose(tt_x(x)[0], f_x(x), **TIGHT)
    assert _slots(lambda c: t_x(c)[0], ct) == ["x"]
    assert _slots(lambda v: tt_x(v)[0], x) == ["y"]

    f_k = lambda k: op(cfg)(x, k)
    t_k = jax.linear_transpose(f_k, k)
    tt_k = jax.linear_transpose(lambda c: t_k(c)[0], ct)
    np.testing.assert_allclose(tt_k(k)[0], f_k(k), **TIGHT)
    assert _slots(lambda c: t_k(c)[0], ct) == ["k"]
    assert _slots(lambda v: tt_k(v)[0], k) == ["y"]


@pytest.mark.parametrize("cfg", [GRID[1], GRID[3], GRID[8]], ids=str)
def test_transposes_of_the_derivative_slots(cfg, x64):
    """The input gradient ``ct -> dx`` and kernel gradient ``ct -> dK`` are linear too; their
    transposes are the op in ``x`` and in ``K``; the kernel gradient is also linear in ``x``."""
    x, k, ct = operands(cfg)
    mx, mk = dense_x(k, cfg), dense_k(x, cfg)
    grad_x = lambda c: jax.vjp(lambda x: op(cfg)(x, k), x)[1](c)[0]
    grad_k = lambda c: jax.vjp(lambda k: op(cfg)(x, k), k)[1](c)[0]
    (back_x,) = jax.linear_transpose(grad_x, ct)(x)
    (back_k,) = jax.linear_transpose(grad_k, ct)(k)
    np.testing.assert_allclose(np.ravel(back_x), mx @ x.ravel(), **TIGHT)
    np.testing.assert_allclose(np.ravel(back_k), mk @ k.ravel(), **TIGHT)
    # dK(x) for a fixed cotangent, transposed in x: K -> (Mk-column sums), i.e. <dK(x), K> = <ct, Mx(K) x>.
    dk_of_x = lambda x: jax.vjp(lambda k: op(cfg)(x, k), k)[1](ct)[0]
    (w,) = jax.linear_transpose(dk_of_x, x)(k)
    np.testing.assert_allclose(np.ravel(w), mx.T @ ct.ravel(), **TIGHT)
    for fn, arg in ((grad_x, ct), (grad_k, ct), (dk_of_x, x)):
        assert _no_lax_convolution(lambda a, fn=fn, arg=arg: jax.linear_transpose(fn, arg)(a), fn(arg))


def test_linear_transpose_under_jit_and_vmap(x64):
    cfg = GRID[4]
    x, k, ct = operands(cfg)
    t = jax.linear_transpose(lambda x: op(cfg)(x, k), x)
    cts = np.stack([ct, 2 * ct, -ct])
    batched = jax.vmap(lambda c: t(c)[0])(cts)
    jitted = jax.jit(lambda c: t(c)[0])(ct)
    expected = (dense_x(k, cfg).T @ ct.ravel()).reshape(x.shape)
    np.testing.assert_allclose(jitted, expected, **TIGHT)
    np.testing.assert_allclose(batched, np.stack([expected, 2 * expected, -expected]), **TIGHT)


def test_linear_transpose_complex_and_low_precision(x64):
    cfg = GRID[3]
    rng = np.random.default_rng(7)
    x, k, ct = (a + 1j * rng.standard_normal(a.shape) for a in operands(cfg))
    (dx,) = jax.linear_transpose(lambda x: op(cfg)(x, k), x)(ct)
    assert dx.dtype == jnp.complex128
    np.testing.assert_allclose(np.ravel(dx), dense_x(k, cfg).T @ ct.ravel(), **TIGHT)  # no conjugation

    x16, k16 = jnp.asarray(x.real, jnp.bfloat16), jnp.asarray(k.real, jnp.bfloat16)
    ct16 = jnp.asarray(ct.real, jnp.bfloat16)
    (dk,) = jax.linear_transpose(lambda k: op(cfg)(x16, k), k16)(ct16)
    assert dk.dtype == jnp.bfloat16
    want = dense_k(np.asarray(x16, np.float64), cfg).T @ np.asarray(ct16, np.float64).ravel()
    np.testing.assert_allclose(np.asarray(dk, np.float64).ravel(), want, atol=3e-2 * np.abs(want).max(), rtol=0)
