"""Staging transformations: ``jit`` (no retracing or recompiling for repeated same-shape
calls), ``jax.checkpoint``, ``lax.scan``, ``jax.eval_shape``, AOT lowering and ``jax.export``
(serialise, deserialise, call; shape-polymorphic batch)."""

from __future__ import annotations

import contextlib
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxconvt
from tests.test_grad import GRID, PRIMITIVE, jaxpr_equations, op, operands, reference

TOL = dict(rtol=2e-5, atol=2e-5)
BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
TRACE = "/jax/core/compile/jaxpr_trace_duration"


@contextlib.contextmanager
def compile_events():
    """Records the names of JAX's compile-pipeline events (traces, backend compiles)."""
    events = []
    listener = lambda name, *args, **kwargs: events.append(name)
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield events
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def _inputs(cfg, count, seed=0):
    """``count`` distinct float32 (x, k) pairs of the same shapes, already on device."""
    rng = np.random.default_rng(seed)
    return [
        (
            jnp.asarray(rng.standard_normal(cfg.x_shape()), jnp.float32),
            jnp.asarray(rng.standard_normal(cfg.k_shape()), jnp.float32),
        )
        for _ in range(count)
    ]


def test_jit_traces_and_compiles_once_for_repeated_shapes():
    cfg = GRID[4]
    traces = []

    def f(x, k):
        traces.append(1)
        return op(cfg)(x, k)

    jitted = jax.jit(f)
    pairs = _inputs(cfg, 4)
    jitted(*pairs[0]).block_until_ready()
    with compile_events() as events:
        outs = [jitted(x, k) for x, k in pairs[1:]]
        jax.block_until_ready(outs)
    assert len(traces) == 1
    assert events.count(BACKEND_COMPILE) == 0 and events.count(TRACE) == 0, events
    assert jitted._cache_size() == 1
    for (x, k), y in zip(pairs[1:], outs):
        np.testing.assert_allclose(y, reference(x, k, cfg), **TOL)
    # A new shape is a new trace; the old one stays cached.
    other = dataclasses.replace(cfg, batch=3)
    jitted(*_inputs(other, 1)[0])
    assert len(traces) == 2 and jitted._cache_size() == 2


def test_jitted_gradients_and_hessian_compile_once():
    cfg = GRID[7]
    loss = lambda x, k: jnp.sum(op(cfg)(x, k) ** 2)
    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    hvp = jax.jit(lambda x, k, v: jax.jvp(jax.grad(loss), (x, k), (v, jnp.zeros_like(k)))[1])
    pairs = _inputs(cfg, 3)
    jax.block_until_ready((grad(*pairs[0]), hvp(*pairs[0], pairs[1][0])))
    with compile_events() as events:
        jax.block_until_ready([(grad(x, k), hvp(x, k, x)) for x, k in pairs[1:]])
    assert events.count(BACKEND_COMPILE) == 0, events


def test_eager_calls_are_cached():
    """Eager use goes through the primitive's jitted impl: repeated shapes compile nothing."""
    cfg = GRID[4]  # channels_first: the eager axis moves are cached too
    pairs = _inputs(cfg, 3)
    loss = lambda x, k: jnp.sum(op(cfg)(x, k))
    jax.block_until_ready((op(cfg)(*pairs[0]), jax.grad(loss, argnums=(0, 1))(*pairs[0])))
    with compile_events() as events:
        jax.block_until_ready([(op(cfg)(x, k), jax.grad(loss, argnums=(0, 1))(x, k)) for x, k in pairs[1:]])
    assert events.count(BACKEND_COMPILE) == 0, events


def test_aot_lower_and_compile():
    cfg = GRID[3]
    (x, k), (x2, k2) = _inputs(cfg, 2)
    compiled = jax.jit(op(cfg)).lower(x, k).compile()
    np.testing.assert_allclose(compiled(x2, k2), reference(x2, k2, cfg), **TOL)
    text = jax.jit(op(cfg)).lower(x, k).as_text()
    assert "stablehlo.convolution" in text and "custom_call" not in text


@pytest.mark.parametrize("policy", [None, "nothing_saveable", "everything_saveable"])
def test_checkpoint(policy):
    cfg = GRID[7]
    x, k = _inputs(cfg, 1)[0]
    loss = lambda x, k: jnp.sum(jnp.tanh(op(cfg)(x, k)) ** 2)
    kwargs = {} if policy is None else {"policy": getattr(jax.checkpoint_policies, policy)}
    remat = jax.checkpoint(loss, **kwargs)
    expected = jax.grad(loss, argnums=(0, 1))(x, k)
    for fn in (jax.grad(remat, argnums=(0, 1)), jax.jit(jax.grad(remat, argnums=(0, 1)))):
        for a, b in zip(fn(x, k), expected):
            np.testing.assert_allclose(a, b, **TOL)
    eqns = list(jaxpr_equations(jax.make_jaxpr(jax.grad(remat, argnums=(0, 1)))(x, k)))
    slots = sorted(e.params["slot"] for e in eqns if e.primitive.name == PRIMITIVE)
    assert {"checkpoint", "remat2"} & {e.primitive.name for e in eqns}  # the name differs across jax versions
    # Recomputed forward unless the policy saves everything.
    assert slots == (["k", "x", "y"] if policy == "everything_saveable" else ["k", "x", "y", "y"])


def test_checkpoint_name_saves_the_output():
    cfg = GRID[0]
    x, k = _inputs(cfg, 1)[0]
    from jax.ad_checkpoint import checkpoint_name

    loss = lambda x, k: jnp.sum(jnp.sin(checkpoint_name(op(cfg)(x, k), "deconv")))
    remat = jax.checkpoint(loss, policy=jax.checkpoint_policies.save_only_these_names("deconv"))
    eqns = jaxpr_equations(jax.make_jaxpr(jax.grad(remat, argnums=(0, 1)))(x, k))
    assert sorted(e.params["slot"] for e in eqns if e.primitive.name == PRIMITIVE) == ["k", "x", "y"]
    for a, b in zip(jax.grad(remat, argnums=(0, 1))(x, k), jax.grad(loss, argnums=(0, 1))(x, k)):
        np.testing.assert_allclose(a, b, **TOL)


def test_scan_of_layers_and_its_gradient():
    """A stride-1 "same" recurrence c <- tanh(T(c, K_t)) over per-step kernels, under lax.scan."""
    steps, rng = 4, np.random.default_rng(3)
    c0 = jnp.asarray(rng.standard_normal((2, 6, 5, 3)), jnp.float32)
    ks = jnp.asarray(0.3 * rng.standard_normal((steps, 3, 2, 3, 3)), jnp.float32)
    layer = lambda c, k: jnp.tanh(jaxconvt.conv_transpose(c, k, 1, "same", dilation_rate=(2, 1)))

    def scanned(c0, ks):
        c, outs = lax.scan(lambda c, k: (layer(c, k), jnp.sum(c**2)), c0, ks)
        return jnp.sum(c) + jnp.sum(outs)

    def unrolled(c0, ks):
        c, total = c0, 0.0
        for t in range(steps):
            total, c = total + jnp.sum(c**2), layer(c, ks[t])
        return jnp.sum(c) + total

    np.testing.assert_allclose(scanned(c0, ks), unrolled(c0, ks), rtol=1e-5)
    got = jax.jit(jax.grad(scanned, argnums=(0, 1)))(c0, ks)
    for a, b in zip(got, jax.grad(unrolled, argnums=(0, 1))(c0, ks)):
        np.testing.assert_allclose(a, b, **TOL)
    names = {e.primitive.name for e in jaxpr_equations(jax.make_jaxpr(jax.grad(scanned, argnums=(0, 1)))(c0, ks))}
    assert {"scan", PRIMITIVE} <= names and "conv_general_dilated" not in names


@pytest.mark.parametrize(
    "x_dtype, k_dtype, preferred, out_dtype",
    [
        (jnp.float32, jnp.float32, None, jnp.float32),
        (jnp.bfloat16, jnp.bfloat16, None, jnp.bfloat16),
        (jnp.bfloat16, jnp.bfloat16, jnp.float32, jnp.float32),
        (jnp.float32, jnp.bfloat16, None, jnp.float32),
        (jnp.complex64, jnp.float32, None, jnp.complex64),
    ],
)
@pytest.mark.parametrize("cfg", [GRID[0], GRID[4], GRID[9]], ids=str)
def test_eval_shape(cfg, x_dtype, k_dtype, preferred, out_dtype):
    xs, ks = jax.ShapeDtypeStruct(cfg.x_shape(), x_dtype), jax.ShapeDtypeStruct(cfg.k_shape(), k_dtype)
    f = op(cfg, preferred_element_type=preferred)
    out = jax.eval_shape(f, xs, ks)
    assert out.shape == jaxconvt.conv_transpose_output_shape(cfg.x_shape(), cfg.k_shape(), **cfg.kwargs())
    assert out.dtype == out_dtype
    grads = jax.eval_shape(jax.grad(lambda x, k: jnp.sum(jnp.abs(f(x, k))), argnums=(0, 1)), xs, ks)
    assert [(g.shape, g.dtype) for g in grads] == [(xs.shape, xs.dtype), (ks.shape, ks.dtype)]


def test_export_round_trip():
    pytest.importorskip("flatbuffers")  # jax.export serialisation needs it (test extra)
    from jax import export

    cfg = GRID[4]
    (x, k), (x2, k2) = _inputs(cfg, 2)
    loss = lambda x, k: jnp.sum(op(cfg)(x, k) ** 2)
    for fn in (op(cfg), jax.grad(loss, argnums=(0, 1))):
        exported = export.export(jax.jit(fn))(x, k)
        assert "custom_call" not in exported.mlir_module()
        restored = export.deserialize(exported.serialize())
        for a, b in zip(jax.tree.leaves(restored.call(x2, k2)), jax.tree.leaves(fn(x2, k2))):
            np.testing.assert_allclose(a, b, **TOL)


def test_export_with_a_symbolic_batch():
    pytest.importorskip("flatbuffers")
    from jax import export

    cfg = GRID[7]
    (batch,) = export.symbolic_shape("b")
    xs = jax.ShapeDtypeStruct((batch, *cfg.x_shape()[1:]), jnp.float32)
    ks = jax.ShapeDtypeStruct(cfg.k_shape(), jnp.float32)
    loss = lambda x, k: jnp.sum(op(cfg)(x, k) ** 2)
    rng = np.random.default_rng(5)
    for fn in (op(cfg), jax.grad(loss, argnums=(0, 1))):
        restored = export.deserialize(export.export(jax.jit(fn))(xs, ks).serialize())
        for n in (1, 3):
            x = jnp.asarray(rng.standard_normal((n, *cfg.x_shape()[1:])), jnp.float32)
            k = jnp.asarray(rng.standard_normal(cfg.k_shape()), jnp.float32)
            for a, b in zip(jax.tree.leaves(restored.call(x, k)), jax.tree.leaves(fn(x, k))):
                np.testing.assert_allclose(a, b, **TOL)


def test_operands_as_python_scalars_and_numpy_under_jit():
    """Static configuration closed over, array operands traced: no ConcretizationTypeError."""
    cfg = GRID[1]
    x, k, _ = operands(cfg, dtype=np.float32)
    np.testing.assert_allclose(jax.jit(op(cfg))(x, k), reference(x, k, cfg), **TOL)
    g = jax.jit(lambda x, k, s: jax.grad(lambda x: s * jnp.sum(op(cfg)(x, k)))(x))(x, k, 2.0)
    np.testing.assert_allclose(g, 2 * jax.grad(lambda x: jnp.sum(op(cfg)(x, k)))(x), **TOL)
