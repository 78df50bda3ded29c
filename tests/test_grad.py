"""Reverse-mode derivatives of ``conv_transpose`` against independent oracles.

Oracles, none of which uses jaxconvt's derivative rules:

* the exact adjoint: the op is linear in ``x`` for a fixed kernel and linear in the kernel
  for a fixed ``x``, so applying the numpy scatter reference (``tests/reference.py``) to
  basis vectors gives dense matrices ``Mx``, ``Mk`` with ``y = Mx x = Mk K``; then
  ``vjp_x(ct) = Mx^T ct`` and ``vjp_K(ct) = Mk^T ct``;
* ``jax.vjp`` of a plain ``lax.conv_general_dilated`` formulation (``lhs_dilation``, flipped
  I/O-swapped kernel, ``feature_group_count``), differentiated by JAX's generic rules. XLA:CPU
  can abort the process on ``lhs_dilation`` convolutions (SEMANTICS.md), so this oracle runs
  in a child process, on configurations whose dilated kernel fits in the input;
* ``jax.test_util.check_grads`` (finite differences, orders 1 and 2, both modes) in float64.

The helpers (``Cfg``, ``dense_x``, ``dense_k``, ``lax_conv_transpose``, ``run_lax_oracle``)
are shared with test_jvp.py and test_transpose.py.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.test_util import check_grads

import jaxconvt
from jaxconvt._spec import _precision
from tests.reference import explicit_crop, keras_crop, scatter_conv_transpose

ROOT = Path(__file__).resolve().parents[1]
PRIMITIVE = "jaxconvt_conv_transpose"


# ----------------------------------------------------------------------------------------
# Configurations
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Cfg:
    """One small transposed convolution: shapes plus every keyword of ``conv_transpose``."""

    spatial: tuple
    kernel: tuple
    strides: tuple
    dilation: tuple
    padding: object  # "valid" / "same" / int / tuple of (lo, hi) pairs
    output_padding: object = None
    groups: int = 1
    cg: int = 1  # input channels per group
    og: int = 1  # output channels per group
    channels_first: bool = False
    batch: int = 2

    @property
    def ndim(self) -> int:
        return len(self.spatial)

    def kwargs(self) -> dict:
        return dict(
            strides=self.strides,
            padding=self.padding,
            output_padding=self.output_padding,
            data_format="channels_first" if self.channels_first else "channels_last",
            dilation_rate=self.dilation,
            groups=self.groups,
        )

    def x_shape(self) -> tuple:
        c = self.groups * self.cg
        return (self.batch, c, *self.spatial) if self.channels_first else (self.batch, *self.spatial, c)

    def k_shape(self) -> tuple:
        return (*self.kernel, self.og, self.groups * self.cg)

    def crops(self) -> tuple:
        """Per-dimension (lo, hi) crops from tests/reference.py's SEMANTICS.md helpers."""
        out = []
        for a in range(self.ndim):
            op = None if self.output_padding is None else self.output_padding[a]
            if isinstance(self.padding, str):
                out.append(keras_crop(self.padding, self.kernel[a], self.strides[a], self.dilation[a], op))
            else:
                pad = self.padding if not isinstance(self.padding, int) else [(self.padding,) * 2] * self.ndim
                out.append(explicit_crop(pad[a][0], pad[a][1], op))
        return tuple(out)

    def out_spatial(self) -> tuple:
        return tuple(
            (i - 1) * s + (k - 1) * d + 1 - lo - hi
            for i, k, s, d, (lo, hi) in zip(self.spatial, self.kernel, self.strides, self.dilation, self.crops())
        )

    def kernel_fits(self) -> bool:
        """Dilated kernel no larger than the input in every dimension (safe for lax's lhs_dilation)."""
        return all((k - 1) * d + 1 <= i for i, k, d in zip(self.spatial, self.kernel, self.dilation))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Cfg:
        def tup(v):
            return tuple(tup(u) for u in v) if isinstance(v, list) else v

        return cls(**{key: tup(v) for key, v in json.loads(text).items()})

    def __str__(self) -> str:  # short pytest ids
        fmt = "cf" if self.channels_first else "cl"
        return (
            f"{self.ndim}d-i{self.spatial}-k{self.kernel}-s{self.strides}-d{self.dilation}-p{self.padding}"
            f"-op{self.output_padding}-g{self.groups}-{fmt}"
        ).replace(" ", "")


# Hand-picked: every feature at least once, 1-D to 3-D.
GRID = [
    Cfg((5,), (3,), (2,), (1,), "same", None, 1, 2, 2),
    Cfg((4,), (4,), (3,), (1,), "valid", (2,), 2, 1, 1, channels_first=True),
    Cfg((4,), (2,), (1,), (2,), ((1, 0),), None, 1, 1, 3),
    Cfg((3, 4), (3, 2), (2, 1), (1, 2), "same", None, 1, 2, 1),
    Cfg((3, 3), (2, 3), (2, 3), (1, 1), ((1, 1), (0, 2)), (1, 2), 2, 1, 2, channels_first=True),
    Cfg((2, 3), (4, 4), (2, 2), (1, 1), "valid", None, 3, 1, 1),  # kernel larger than the input
    Cfg((5, 2), (2, 4), (2, 3), (1, 1), "same", (0, 2), 1, 1, 1),  # aborts XLA via lhs_dilation
    Cfg((2, 3, 2), (2, 2, 3), (2, 1, 2), (1, 1, 2), "same", (1, 0, 1), 1, 1, 2, channels_first=True),
    Cfg((2, 2, 2), (1, 2, 3), (1, 2, 1), (1, 1, 1), 1, None, 2, 1, 1),
    Cfg((2, 2, 3), (2, 1, 2), (3, 1, 2), (1, 2, 1), "valid", (1, 1, 0), 1, 1, 1),
]


def random_configs(seed: int, count: int) -> list[Cfg]:
    """Seeded small configurations cycling through 1-D, 2-D and 3-D; non-empty outputs only."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        nd = 1 + len(out) % 3
        size = {1: 5, 2: 4, 3: 3}[nd]
        strides = tuple(int(v) for v in rng.integers(1, 4, nd))
        dilation = tuple(int(v) for v in rng.choice([1, 1, 2], nd))
        mode = str(rng.choice(["valid", "same", "explicit"]))
        padding = tuple((int(a), int(b)) for a, b in rng.integers(0, 3, (nd, 2))) if mode == "explicit" else mode
        op = None
        if rng.random() < 0.5:
            op = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(strides, dilation))
        cfg = Cfg(
            tuple(int(v) for v in rng.integers(1, size + 1, nd)),
            tuple(int(v) for v in rng.integers(1, 4, nd)),
            strides,
            dilation,
            padding,
            op,
            int(rng.choice([1, 1, 2, 3])),
            int(rng.integers(1, 3)),
            int(rng.integers(1, 3)),
            bool(rng.random() < 0.4),
        )
        if all(o >= 1 for o in cfg.out_spatial()):
            out.append(cfg)
    return out


RANDOM = random_configs(20251124, 8)


def operands(cfg: Cfg, seed: int = 0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(cfg.x_shape()).astype(dtype)
    k = rng.standard_normal(cfg.k_shape()).astype(dtype)
    ct = rng.standard_normal((cfg.batch, *cfg.out_spatial(), cfg.groups * cfg.og)).astype(dtype)
    if cfg.channels_first:
        ct = np.moveaxis(ct, -1, 1)
    return x, k, ct


def op(cfg: Cfg, **extra):
    return lambda x, k: jaxconvt.conv_transpose(x, k, **cfg.kwargs(), **extra)


# ----------------------------------------------------------------------------------------
# Oracle 1: dense matrices of the numpy reference
# ----------------------------------------------------------------------------------------


def reference(x, k, cfg: Cfg) -> np.ndarray:
    """The numpy scatter reference in the configuration's data format (float64/complex128)."""
    x = np.asarray(x)
    if cfg.channels_first:
        x = np.moveaxis(x, 1, -1)
    y = scatter_conv_transpose(x, np.asarray(k), cfg.strides, cfg.dilation, cfg.crops(), cfg.groups)
    return np.moveaxis(y, -1, 1) if cfg.channels_first else y


def dense_x(k, cfg: Cfg) -> np.ndarray:
    """``Mx`` with ``reference(x, k).ravel() == Mx @ x.ravel()`` (one batched reference call)."""
    shape = cfg.x_shape()
    size = int(np.prod(shape))
    basis = np.eye(size, dtype=np.result_type(np.asarray(k).dtype, np.float64)).reshape(size * shape[0], *shape[1:])
    return reference(basis, k, cfg).reshape(size, -1).T


def dense_k(x, cfg: Cfg) -> np.ndarray:
    """``Mk`` with ``reference(x, k).ravel() == Mk @ k.ravel()``."""
    shape = cfg.k_shape()
    size = int(np.prod(shape))
    eye = np.eye(size, dtype=np.result_type(np.asarray(x).dtype, np.float64))
    return np.stack([reference(x, e.reshape(shape), cfg).ravel() for e in eye], axis=1)


# ----------------------------------------------------------------------------------------
# Oracle 2: the plain lax formulation, differentiated by JAX (child process only)
# ----------------------------------------------------------------------------------------

_DIMENSION_NUMBERS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


def lax_conv_transpose(x, k, cfg: Cfg):
    """SEMANTICS.md "Equivalent lax call": lhs_dilation = strides, flipped I/O-swapped kernel."""
    n = cfg.ndim
    if cfg.channels_first:
        x = jnp.moveaxis(x, 1, -1)
    # Keras (*k, Og, G*Cg) -> HWIO (*k, Cg, G*Og), output channels group-major; flip space.
    w = k.reshape(*cfg.kernel, cfg.og, cfg.groups, cfg.cg)
    w = jnp.transpose(w, (*range(n), n + 2, n + 1, n)).reshape(*cfg.kernel, cfg.cg, cfg.groups * cfg.og)
    w = jnp.flip(w, tuple(range(n)))
    pads = [((kk - 1) * d - lo, (kk - 1) * d - hi) for kk, d, (lo, hi) in zip(cfg.kernel, cfg.dilation, cfg.crops())]
    y = lax.conv_general_dilated(
        x,
        w,
        (1,) * n,
        pads,
        lhs_dilation=cfg.strides,
        rhs_dilation=cfg.dilation,
        dimension_numbers=_DIMENSION_NUMBERS[n],
        feature_group_count=cfg.groups,
        precision=lax.Precision.HIGHEST,
    )
    return jnp.moveaxis(y, -1, 1) if cfg.channels_first else y


def _lax_oracle_child(in_path: str, out_path: str) -> None:
    """Child-process entry: for every case, the lax formulation's y, vjp, jvp (and hessian)."""
    jax.config.update("jax_enable_x64", True)
    data = np.load(in_path)
    cfgs = json.loads(str(data["cfgs"]))
    results = {}
    for i, text in enumerate(cfgs):
        cfg = Cfg.from_json(text)
        x, k = data[f"x{i}"], data[f"k{i}"]
        f = lambda x, k, cfg=cfg: lax_conv_transpose(x, k, cfg)
        vjp = jax.jit(lambda x, k, ct, f=f: (f(x, k), *jax.vjp(f, x, k)[1](ct)))
        results[f"y{i}"], results[f"dx{i}"], results[f"dk{i}"] = vjp(x, k, data[f"ct{i}"])
        jvp = jax.jit(lambda x, k, tx, tk, f=f: jax.jvp(f, (x, k), (tx, tk))[1])
        results[f"jvp{i}"] = jvp(x, k, data[f"tx{i}"], data[f"tk{i}"])
        if f"hess{i}" in data:
            loss = lambda x, k, f=f: 0.5 * jnp.sum(f(x, k) ** 2)
            hess = jax.jit(jax.hessian(loss, argnums=(0, 1)))(x, k)
            for a in range(2):
                for b in range(2):
                    results[f"h{a}{b}_{i}"] = hess[a][b]
    np.savez(out_path, **results)


def run_lax_oracle(tmp_path: Path, cases: list[tuple[Cfg, dict]]) -> dict:
    """Runs ``_lax_oracle_child`` on ``cases`` (cfg, {x, k, ct, tx, tk[, hess]}) in a fresh process.

    XLA:CPU aborts are what the child protects against; one abort is retried once (the
    oracle is plain lax, not the code under test), a second one fails the test.
    """
    assert all(cfg.kernel_fits() for cfg, _ in cases), "the lax oracle only runs where the kernel fits the input"
    arrays = {"cfgs": json.dumps([cfg.to_json() for cfg, _ in cases])}
    for i, (_, values) in enumerate(cases):
        arrays.update({f"{name}{i}": np.asarray(v) for name, v in values.items()})
    in_path, out_path = tmp_path / "lax_in.npz", tmp_path / "lax_out.npz"
    np.savez(in_path, **arrays)
    code = f"from tests.test_grad import _lax_oracle_child; _lax_oracle_child({str(in_path)!r}, {str(out_path)!r})"
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
        if proc.returncode >= 0:
            break
    assert proc.returncode == 0, f"lax oracle child failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    with np.load(out_path) as out:
        return dict(out)


# ----------------------------------------------------------------------------------------
# Jaxpr inspection
# ----------------------------------------------------------------------------------------


def _sub_jaxprs(value):
    if hasattr(value, "eqns"):
        yield value
    elif hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
        yield value.jaxpr
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _sub_jaxprs(v)


def jaxpr_equations(jaxpr):
    """Every equation of a (closed) jaxpr, recursing into sub-jaxprs (pjit, scan, remat, ...)."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in _sub_jaxprs(value):
                yield from jaxpr_equations(sub)


def primitive_counts(fn, *args) -> collections.Counter:
    return collections.Counter(eqn.primitive.name for eqn in jaxpr_equations(jax.make_jaxpr(fn)(*args)))


# ----------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------

ALL = GRID + RANDOM


@pytest.mark.parametrize("cfg", ALL, ids=str)
def test_vjp_is_the_exact_adjoint(cfg, x64):
    x, k, ct = operands(cfg)
    y, vjp = jax.vjp(op(cfg), x, k)
    dx, dk = vjp(ct)
    mx, mk = dense_x(k, cfg), dense_k(x, cfg)
    np.testing.assert_allclose(np.ravel(y), mx @ x.ravel(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.ravel(y), mk @ k.ravel(), rtol=1e-12, atol=1e-12)
    assert dx.shape == x.shape and dk.shape == k.shape
    assert dx.dtype == jnp.float64 and dk.dtype == jnp.float64
    np.testing.assert_allclose(np.ravel(dx), mx.T @ ct.ravel(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.ravel(dk), mk.T @ ct.ravel(), rtol=1e-12, atol=1e-12)


def test_vjp_equals_lax_autodiff(tmp_path, x64):
    cfgs = [cfg for cfg in ALL if cfg.kernel_fits()]
    assert len(cfgs) >= 6, "the grid must give the lax oracle enough configurations"
    cases = []
    for i, cfg in enumerate(cfgs):
        x, k, ct = operands(cfg, seed=i)
        cases.append((cfg, dict(x=x, k=k, ct=ct, tx=x, tk=k)))
    lax_out = run_lax_oracle(tmp_path, cases)
    for i, (cfg, v) in enumerate(cases):
        y, vjp = jax.vjp(op(cfg), v["x"], v["k"])
        dx, dk = vjp(v["ct"])
        np.testing.assert_allclose(y, lax_out[f"y{i}"], rtol=1e-12, atol=1e-12, err_msg=str(cfg))
        np.testing.assert_allclose(dx, lax_out[f"dx{i}"], rtol=1e-12, atol=1e-12, err_msg=str(cfg))
        np.testing.assert_allclose(dk, lax_out[f"dk{i}"], rtol=1e-12, atol=1e-12, err_msg=str(cfg))


@pytest.mark.parametrize("cfg", GRID + RANDOM[:4], ids=str)
def test_check_grads_second_order(cfg, x64):
    x, k, _ = operands(cfg, seed=1)
    check_grads(op(cfg), (x, k), order=2, modes=("fwd", "rev"))


def test_grad_of_grad_is_exact(x64):
    """``f = |T(x, K)|^2 / 2``; ``d/dx <grad_x f, v> = Mx^T Mx v`` and
    ``d/dK <grad_x f, v> = Mk(x)^T T(v, K) + Mk(v)^T T(x, K)`` (product rule on the bilinear form)."""
    cfg = GRID[4]
    x, k, _ = operands(cfg, seed=2)
    v = np.random.default_rng(3).standard_normal(x.shape)
    f = lambda x, k: 0.5 * jnp.sum(op(cfg)(x, k) ** 2)
    g = lambda x, k: jnp.vdot(jax.grad(f)(x, k), v)
    gx, gk = jax.grad(g, argnums=(0, 1))(x, k)
    mx = dense_x(k, cfg)
    np.testing.assert_allclose(np.ravel(gx), mx.T @ (mx @ v.ravel()), rtol=1e-11, atol=1e-11)
    expected_k = dense_k(x, cfg).T @ (mx @ v.ravel()) + dense_k(v, cfg).T @ (mx @ x.ravel())
    np.testing.assert_allclose(np.ravel(gk), expected_k, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("cfg", [GRID[0], GRID[4], GRID[7]], ids=str)
def test_second_order_stays_in_the_primitive(cfg):
    """grad-of-grad and hessian: only jaxconvt's primitive, never lax's generic convolution."""
    x, k, _ = operands(cfg, dtype=np.float32)
    loss = lambda x, k: jnp.sum(op(cfg)(x, k) ** 2)
    gg = jax.grad(lambda x, k: jnp.sum(jax.grad(loss, argnums=(0, 1))(x, k)[1] ** 2), argnums=(0, 1))
    for fn in (gg, jax.hessian(loss, argnums=(0, 1)), jax.jit(jax.hessian(loss))):
        counts = primitive_counts(fn, x, k)
        assert counts[PRIMITIVE] >= 4, counts
        assert "conv_general_dilated" not in counts, counts


def test_third_order(x64):
    """Third derivatives of a nonlinear loss: finite differences, and still only the primitive."""
    cfg = GRID[0]
    x, k, _ = operands(cfg, seed=1)
    loss = lambda x, k: jnp.sum(jnp.sin(op(cfg)(x, k)))
    check_grads(loss, (x, k), order=3, modes=("fwd", "rev"))
    counts = primitive_counts(jax.jacfwd(jax.hessian(loss)), x, k)
    assert counts[PRIMITIVE] >= 4 and "conv_general_dilated" not in counts, counts


def test_grad_under_jit_equals_eager(x64):
    cfg = GRID[3]
    x, k, _ = operands(cfg)
    loss = lambda x, k: jnp.sum(jnp.sin(op(cfg)(x, k)))
    eager = jax.grad(loss, argnums=(0, 1))(x, k)
    jitted = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, k)
    for a, b in zip(eager, jitted):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


def test_grad_with_respect_to_one_operand(x64):
    cfg = GRID[1]
    x, k, ct = operands(cfg)
    dx = jax.grad(lambda x: jnp.vdot(op(cfg)(x, k), ct))(x)
    dk = jax.grad(lambda k: jnp.vdot(op(cfg)(x, k), ct))(k)
    np.testing.assert_allclose(np.ravel(dx), dense_x(k, cfg).T @ ct.ravel(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.ravel(dk), dense_k(x, cfg).T @ ct.ravel(), rtol=1e-12, atol=1e-12)


def test_complex_vjp_is_the_plain_transpose(x64):
    """JAX's vjp of a linear map is its transpose (no conjugation); complex128 end to end."""
    cfg = GRID[3]
    rng = np.random.default_rng(4)
    x, k, ct = (a + 1j * rng.standard_normal(a.shape) for a in operands(cfg))
    y, vjp = jax.vjp(op(cfg), x, k)
    dx, dk = vjp(ct)
    assert y.dtype == dx.dtype == dk.dtype == jnp.complex128
    np.testing.assert_allclose(np.ravel(dx), dense_x(k, cfg).T @ ct.ravel(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.ravel(dk), dense_k(x, cfg).T @ ct.ravel(), rtol=1e-12, atol=1e-12)


def test_mixed_real_and_complex_operands(x64):
    """Real input, complex kernel: dx is the real part of the complex transpose, as when the
    input is promoted to complex first (JAX's convention for real primals), with no
    complex-to-real cast warning (a regression test: it once used ``astype``)."""
    cfg = GRID[3]
    rng = np.random.default_rng(8)
    x, k, ct = operands(cfg)
    k, ct = k + 1j * rng.standard_normal(k.shape), ct + 1j * rng.standard_normal(ct.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        dx, dk = jax.vjp(op(cfg), x, k)[1](ct)
    assert dx.dtype == jnp.float64 and dk.dtype == jnp.complex128
    np.testing.assert_allclose(np.ravel(dx), (dense_x(k, cfg).T @ ct.ravel()).real, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.ravel(dk), dense_k(x, cfg).T @ ct.ravel(), rtol=1e-12, atol=1e-12)


def test_empty_output_and_empty_batch_give_zero_gradients():
    # i=1, "same", even kernel, output_padding=0: the output has length 0.
    x, k = jnp.ones((2, 1, 3)), jnp.ones((2, 4, 3))
    f = lambda x, k: jaxconvt.conv_transpose(x, k, 2, "same", output_padding=0)
    y, vjp = jax.vjp(f, x, k)
    assert y.shape == (2, 0, 4)
    dx, dk = vjp(jnp.zeros(y.shape))
    assert dx.shape == x.shape and dk.shape == k.shape
    assert not np.any(np.asarray(dx)) and not np.any(np.asarray(dk))
    x0 = jnp.ones((0, 3, 3))
    dx0, dk0 = jax.grad(lambda x, k: jnp.sum(f(x, k) ** 2), argnums=(0, 1))(x0, k)
    assert dx0.shape == x0.shape and dk0.shape == k.shape and not np.any(np.asarray(dk0))


# ----------------------------------------------------------------------------------------
# dtypes and precision in gradients
# ----------------------------------------------------------------------------------------

DT_CFG = GRID[3]


def _grads(cfg, x, k, ct, **extra):
    y, vjp = jax.vjp(op(cfg, **extra), x, k)
    return y, *vjp(ct.astype(y.dtype))


@pytest.mark.parametrize(
    "x_dtype, k_dtype, preferred, y_dtype, tol",
    [
        (jnp.bfloat16, jnp.bfloat16, None, jnp.bfloat16, 5e-2),
        (jnp.float16, jnp.float16, None, jnp.float16, 1e-2),
        (jnp.float32, jnp.bfloat16, None, jnp.float32, 2e-2),
        (jnp.bfloat16, jnp.float32, None, jnp.float32, 2e-2),
        (jnp.bfloat16, jnp.bfloat16, jnp.float32, jnp.float32, 5e-2),
        (jnp.float16, jnp.float16, jnp.float32, jnp.float32, 1e-2),
    ],
)
def test_gradients_keep_primal_dtypes(x_dtype, k_dtype, preferred, y_dtype, tol):
    x, k, ct = operands(DT_CFG, seed=5)
    xl, kl = jnp.asarray(x, x_dtype), jnp.asarray(k, k_dtype)
    y, dx, dk = _grads(DT_CFG, xl, kl, ct, preferred_element_type=preferred)
    assert (y.dtype, dx.dtype, dk.dtype) == (y_dtype, x_dtype, k_dtype)
    # The oracle sees the same rounded operands and cotangent.
    xr, kr = np.asarray(xl, np.float64), np.asarray(kl, np.float64)
    ctr = np.asarray(ct.astype(y.dtype), np.float64)
    scale = lambda a: np.max(np.abs(a))
    for got, want in (
        (y, reference(xr, kr, DT_CFG)),
        (dx, (dense_x(kr, DT_CFG).T @ ctr.ravel()).reshape(x.shape)),
        (dk, (dense_k(xr, DT_CFG).T @ ctr.ravel()).reshape(k.shape)),
    ):
        np.testing.assert_allclose(np.asarray(got, np.float64), want, atol=tol * scale(want), rtol=0)


@pytest.mark.parametrize(
    "precision",
    ["highest", jax.lax.Precision.HIGHEST, ("highest", "highest"), jax.lax.Precision.DEFAULT, None],
    ids=str,
)
def test_precision_passes_through_to_the_derivatives(precision):
    x, k, ct = operands(DT_CFG, seed=6, dtype=np.float32)
    fn = lambda x, k: jax.vjp(op(DT_CFG, precision=precision), x, k)[1](ct)
    eqns = [e for e in jaxpr_equations(jax.make_jaxpr(fn)(x, k)) if e.primitive.name == PRIMITIVE]
    assert {e.params["slot"] for e in eqns} >= {"x", "k"}
    canonical = _precision(precision)  # names become lax.Precision members
    assert all(e.params["spec"].precision == canonical for e in eqns)
    dx, dk = fn(x, k)
    xr, kr = x.astype(np.float64), k.astype(np.float64)
    tol = 1e-5 if precision is not None and "DEFAULT" not in str(precision) else 1e-2
    np.testing.assert_allclose(np.ravel(dx), dense_x(kr, DT_CFG).T @ ct.ravel(), rtol=tol, atol=tol)
    np.testing.assert_allclose(np.ravel(dk), dense_k(xr, DT_CFG).T @ ct.ravel(), rtol=tol, atol=tol)
