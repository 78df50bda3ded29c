"""Dtypes: every floating and complex dtype against the reference, promotion, output dtype,
``preferred_element_type``, and empty arrays (empty batch, empty outputs, zero channels).

Values are compared with the reference evaluated in float64 / complex128 on the same
(rounded) operands, elementwise within ``rtol * ref_abs`` where ``ref_abs`` is the
reference on ``|x|, |k|`` (the sum of magnitudes of the terms). float64 and complex128 run
inside ``jax.enable_x64`` only (the ``x64`` fixture), never flipping x64 globally.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconvt
from tests._keras_worker import conv_kwargs, random_config
from tests.reference import conv_transpose_ref

# rtol relative to the sum of |terms|, by the dtype the result is rounded to.
RTOL = {
    "float16": 2**-10,
    "bfloat16": 2**-7,
    "float32": 1e-5,
    "complex64": 1e-5,
    "float64": 1e-12,
    "complex128": 1e-12,
}
WIDE = ("float64", "complex128")


def _configs(seed, count=8):
    rng = np.random.default_rng(seed)
    return [random_config(rng, ranks=(1, 2, 3), rank_weights=(1, 1, 1)) for _ in range(count)]


def _operands(cfg, x_dtype, k_dtype):
    """Seeded operands rounded to the requested dtypes (complex ones get an imaginary part)."""
    rng = np.random.default_rng(cfg["seed"])

    def draw(shape, dtype):
        value = rng.standard_normal(shape)
        if np.dtype(dtype).kind == "c":
            value = value + 1j * rng.standard_normal(shape)
        return value.astype(dtype)

    return draw(cfg["x_shape"], jnp.dtype(x_dtype)), draw(cfg["k_shape"], jnp.dtype(k_dtype))


def assert_matches_reference(cfg, x, k, y, rtol):
    kw = conv_kwargs(cfg)
    wide = np.complex128 if np.iscomplexobj(x) or np.iscomplexobj(k) else np.float64
    xw, kw_ = np.asarray(x).astype(wide), np.asarray(k).astype(wide)
    ref = conv_transpose_ref(xw, kw_, **kw)
    assert y.shape == ref.shape == jaxconvt.conv_transpose_output_shape(x.shape, k.shape, **kw), cfg
    bound = rtol * conv_transpose_ref(np.abs(xw), np.abs(kw_), **kw)
    err = np.abs(np.asarray(y).astype(wide) - ref)
    assert np.all(err <= bound), f"{cfg}: max excess {np.max(err - bound):.3g}"


def _run_all(cfgs, pairs, **options):
    """All configs in one jit: ``pairs`` are (x, k) operands per config."""

    def fn(args):
        return [jaxconvt.conv_transpose(x, k, **conv_kwargs(c), **options) for c, (x, k) in zip(cfgs, args)]

    return jax.jit(fn)(list(pairs))


def _check_dtype(name, seed):
    cfgs = _configs(seed)
    pairs = [_operands(cfg, name, name) for cfg in cfgs]
    outs = _run_all(cfgs, pairs)
    for cfg, (x, k), y in zip(cfgs, pairs, outs):
        assert y.dtype == jnp.dtype(name)
        assert_matches_reference(cfg, x, k, y, RTOL[name])
    # One configuration eagerly too.
    x, k = pairs[0]
    y = jaxconvt.conv_transpose(x, k, **conv_kwargs(cfgs[0]))
    assert y.dtype == jnp.dtype(name)
    assert_matches_reference(cfgs[0], x, k, y, RTOL[name])


@pytest.mark.parametrize("name", ["float16", "bfloat16", "float32", "complex64"])
def test_dtype_against_reference(name):
    _check_dtype(name, seed=[1, len(name)])


@pytest.mark.parametrize("name", WIDE)
def test_wide_dtype_against_reference(name, x64):
    _check_dtype(name, seed=[2, len(name)])


@pytest.mark.parametrize(
    ("x_dtype", "k_dtype"),
    [
        ("float32", "float16"),
        ("float16", "float32"),
        ("bfloat16", "float16"),
        ("bfloat16", "float32"),
        ("float32", "complex64"),
        ("complex64", "bfloat16"),
    ],
)
def test_mixed_dtypes_follow_result_type(x_dtype, k_dtype):
    cfgs = _configs([3, len(x_dtype), len(k_dtype)], count=3)
    pairs = [_operands(cfg, x_dtype, k_dtype) for cfg in cfgs]
    want = jnp.result_type(jnp.dtype(x_dtype), jnp.dtype(k_dtype))
    for cfg, (x, k), y in zip(cfgs, pairs, _run_all(cfgs, pairs)):
        assert y.dtype == want
        assert_matches_reference(cfg, x, k, y, RTOL[want.name])


@pytest.mark.parametrize(("x_dtype", "k_dtype"), [("float64", "float32"), ("complex64", "float64")])
def test_mixed_wide_dtypes_follow_result_type(x_dtype, k_dtype, x64):
    cfgs = _configs([4, len(x_dtype)], count=3)
    pairs = [_operands(cfg, x_dtype, k_dtype) for cfg in cfgs]
    want = jnp.result_type(jnp.dtype(x_dtype), jnp.dtype(k_dtype))
    assert want.name in WIDE
    for cfg, (x, k), y in zip(cfgs, pairs, _run_all(cfgs, pairs)):
        assert y.dtype == want
        assert_matches_reference(cfg, x, k, y, RTOL[want.name])


@pytest.mark.parametrize(
    ("operand", "preferred"),
    [
        ("bfloat16", "float32"),
        ("float16", "float32"),
        ("float32", "bfloat16"),
        ("float32", "float16"),
        ("bfloat16", "bfloat16"),
    ],
)
def test_preferred_element_type_is_the_output_dtype(operand, preferred):
    cfgs = _configs([5, len(operand), len(preferred)], count=4)
    pairs = [_operands(cfg, operand, operand) for cfg in cfgs]
    outs = _run_all(cfgs, pairs, preferred_element_type=jnp.dtype(preferred))
    for cfg, (x, k), y in zip(cfgs, pairs, outs):
        assert y.dtype == jnp.dtype(preferred)
        # Low-precision operands accumulated into float32 are as accurate as float32.
        assert_matches_reference(cfg, x, k, y, RTOL[preferred])


@pytest.mark.parametrize(
    ("operand", "preferred", "rtol"),
    [
        ("float32", "float64", RTOL["float64"]),
        # lax.conv_general_dilated itself keeps complex64 accuracy here (XLA:CPU, jax 0.10.2).
        ("complex64", "complex128", RTOL["complex64"]),
    ],
)
def test_wide_preferred_element_type(operand, preferred, rtol, x64):
    """float32 operands with a float64 result: the products and sums are float64-accurate."""
    cfgs = _configs([6, len(operand)], count=4)
    pairs = [_operands(cfg, operand, operand) for cfg in cfgs]
    for cfg, (x, k), y in zip(cfgs, pairs, _run_all(cfgs, pairs, preferred_element_type=preferred)):
        assert y.dtype == jnp.dtype(preferred)
        assert_matches_reference(cfg, x, k, y, rtol)


EMPTY_CASES = {
    # name: (x shape, kernel shape, kwargs, expected output shape)
    "empty batch": ((0, 4, 3), (3, 2, 3), {"strides": 2}, (0, 9, 2)),
    "empty batch 2-D channels_first": (
        (0, 2, 3, 3),
        (2, 2, 1, 2),
        {"strides": 2, "data_format": "channels_first"},
        (0, 1, 6, 6),
    ),
    "i=1 same even kernel op=0": ((2, 1, 3), (2, 2, 3), {"padding": "same", "output_padding": 0}, (2, 0, 2)),
    "i=1 same even kernel op=0, 2-D": (
        (1, 1, 4, 2),
        (2, 3, 1, 2),
        {"padding": "SAME", "output_padding": 0},
        (1, 0, 4, 1),
    ),
    "cropped to nothing": ((1, 2, 1), (2, 1, 1), {"padding": [(2, 1)]}, (1, 0, 1)),
    "output_shape 0": ((1, 1, 2), (2, 1, 2), {"padding": "same", "output_shape": (0,)}, (1, 0, 1)),
    "zero input channels": ((2, 3, 0), (2, 2, 0), {"strides": 2}, (2, 6, 2)),
    "zero input channels, groups": ((1, 3, 0), (2, 1, 0), {"strides": 2, "groups": 2}, (1, 6, 2)),
    "zero output channels": ((2, 3, 2), (2, 0, 2), {"strides": 2}, (2, 6, 0)),
}


@pytest.mark.parametrize("name", list(EMPTY_CASES))
def test_empty_arrays_have_the_right_shape(name):
    x_shape, k_shape, kwargs, want = EMPTY_CASES[name]
    rng = np.random.default_rng(7)
    x = rng.standard_normal(x_shape).astype(np.float32)
    k = rng.standard_normal(k_shape).astype(np.float32)
    assert jaxconvt.conv_transpose_output_shape(x_shape, k_shape, **kwargs) == want
    eager = jaxconvt.conv_transpose(x, k, **kwargs)
    jitted = jax.jit(lambda x, k: jaxconvt.conv_transpose(x, k, **kwargs))(x, k)
    channels_first = kwargs.get("data_format") == "channels_first"
    xr = np.moveaxis(x, 1, -1) if channels_first else x
    ref = conv_transpose_ref(xr, k, **{key: v for key, v in kwargs.items() if key != "data_format"})
    ref = np.moveaxis(ref, -1, 1) if channels_first else ref
    for y in (eager, jitted):
        assert y.shape == want and y.dtype == np.float32
        np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-5, atol=1e-5)
    # Gradients of an empty result are well-formed zeros of the operands' shapes.
    gx, gk = jax.grad(lambda x, k: jnp.sum(jaxconvt.conv_transpose(x, k, **kwargs)), argnums=(0, 1))(x, k)
    assert gx.shape == x.shape and gk.shape == k.shape


def test_python_lists_are_accepted_as_float32():
    cfg = _configs(8, count=1)[0]
    x, k = _operands(cfg, "float32", "float32")
    y = jaxconvt.conv_transpose(x.tolist(), k.tolist(), **conv_kwargs(cfg))
    assert y.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(y), np.asarray(jaxconvt.conv_transpose(x, k, **conv_kwargs(cfg))))


# One small geometry for the checks below, so each dtype compiles once.
SMALL = {
    "seed": 9,
    "x_shape": (2, 5, 3),
    "k_shape": (3, 2, 3),
    "strides": 2,
    "padding": "same",
    "output_padding": None,
    "data_format": None,
    "dilation_rate": 1,
    "groups": 1,
    "output_shape": None,
}

# 64-bit requests with x64 off: canonicalised as jnp does (a UserWarning, except for the Python types).
WIDE_REQUESTS = {
    "jnp.float64": (jnp.float64, "float32", True),
    "'float64'": ("float64", "float32", True),
    "np.float64": (np.float64, "float32", True),
    "np.dtype('float64')": (np.dtype("float64"), "float32", True),
    "float": (float, "float32", False),
    "jnp.complex128": (jnp.complex128, "complex64", True),
    "'complex128'": ("complex128", "complex64", True),
    "complex": (complex, "complex64", False),
}


@pytest.mark.skipif(jax.config.jax_enable_x64, reason="checks the x64-off canonicalisation")
@pytest.mark.parametrize("label", list(WIDE_REQUESTS))
def test_64_bit_preferred_element_type_without_x64_is_canonicalised(label):
    """Eager, jit, grad and eval_shape agree with each other and with jnp's rule (the bug: an MLIR verifier error)."""
    requested, want, warns = WIDE_REQUESTS[label]
    x, k = _operands(SMALL, want, want)
    kw = conv_kwargs(SMALL)

    def op(x, k):
        return jaxconvt.conv_transpose(x, k, **kw, preferred_element_type=requested)

    def loss(x, k):
        return jnp.sum(op(x, k) ** 2)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outs = {
            "eager": op(x, k),
            "jit": jax.jit(op).lower(x, k).out_info,  # lowering is where the verifier failed; no compile
            "eval_shape": jax.eval_shape(op, x, k),
        }
        if want == "float32":  # the reported grad failure (complex grads take the same path)
            grads = jax.grad(loss, argnums=(0, 1))(x, k)
            assert [g.dtype for g in grads] == [x.dtype, k.dtype]
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    wide = "float64" if want == "float32" else "complex128"
    expected = f"Explicitly requested dtype {wide} requested in conv_transpose is not available, and will be truncated"
    assert all(m.startswith(f"{expected} to dtype {want}") for m in messages), messages
    assert bool(messages) == warns, messages  # once per trace (jit and eval_shape may share one)
    for y in outs.values():
        assert y.dtype == jnp.dtype(want) and y.shape == jaxconvt.conv_transpose_output_shape(x.shape, k.shape, **kw)
    default = jaxconvt.conv_transpose(x, k, **kw)
    np.testing.assert_array_equal(np.asarray(outs["eager"]), np.asarray(default))
    assert_matches_reference(SMALL, x, k, default, RTOL[want])


@pytest.mark.skipif(jax.config.jax_enable_x64, reason="checks the x64-off canonicalisation")
@pytest.mark.parametrize("mode", ["error", "allow"])
def test_64_bit_preferred_element_type_follows_jax_explicit_x64_dtypes(mode):
    """``jax_explicit_x64_dtypes='error'`` refuses (naming the argument), ``'allow'`` keeps float64, as in jnp."""
    x, k = _operands(SMALL, "float32", "float32")
    op = functools.partial(jaxconvt.conv_transpose, **conv_kwargs(SMALL), preferred_element_type="float64")
    previous = jax.config.jax_explicit_x64_dtypes
    jax.config.update("jax_explicit_x64_dtypes", mode)
    try:
        if mode == "error":
            for fn in (op, jax.jit(op), functools.partial(jax.eval_shape, op)):
                with pytest.raises(ValueError, match=r"^`preferred_element_type` float64 is not available"):
                    fn(x, k)
        else:
            for y in (op(x, k), jax.jit(op)(x, k), jax.eval_shape(op, x, k)):
                assert y.dtype == np.float64
            assert_matches_reference(SMALL, x, k, op(x, k), RTOL["float64"])
    finally:
        jax.config.update("jax_explicit_x64_dtypes", previous.name.lower())


@pytest.mark.parametrize(
    "requested", [jnp.float8_e4m3fn, jnp.float8_e5m2, np.longdouble, np.clongdouble, "int8", bool, object, "nope"]
)
def test_preferred_element_type_outside_the_six_dtypes_is_refused(requested):
    x, k = np.ones((1, 3, 1), np.float32), np.ones((2, 1, 1), np.float32)
    for fn in (jaxconvt.conv_transpose, jax.jit(jaxconvt.conv_transpose, static_argnames="preferred_element_type")):
        with pytest.raises(TypeError, match=r"^`preferred_element_type` must be None or a"):
            fn(x, k, preferred_element_type=requested)
