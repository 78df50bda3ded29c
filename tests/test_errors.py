"""Bad arguments: one test per class of mistake, checking the exception type and message.

Every case runs eagerly, under ``jax.jit`` (arrays as jit arguments, the configuration static
through a closure) and, for shape-level mistakes, through ``conv_transpose_output_shape``.
``pytest.raises`` with a ``match=`` makes sure the error is jaxconvt's own message at trace
time, never an AssertionError or an XLA error.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconvt
from jaxconvt import onnx_compat, torch_compat

X = np.ones((1, 4, 2), np.float32)  # 1-D, batch 1, length 4, 2 channels (channels_last)
K = np.ones((3, 1, 2), np.float32)  # kernel 3, 1 output channel, 2 input channels

PADDING_RULE = re.escape(
    "`padding` must be 'valid', 'same', a non-negative int, a sequence of 1 non-negative ints, "
    "or a sequence of 1 (low, high) pairs of non-negative ints; got "
)

SHAPE_RULE = "`output_shape` must be a sequence of 1 spatial sizes (or 3 including batch and channels); got "


def _jax_arg(value):
    return isinstance(value, (np.ndarray, jax.Array)) and np.dtype(value.dtype).kind in "biufc"


def assert_raises(exc, match, x=X, k=K, *, shape_fn=True, **kwargs):
    """``conv_transpose(x, k, **kwargs)`` raises ``exc`` matching ``match`` eagerly and under jit."""
    with pytest.raises(exc, match=match):
        jaxconvt.conv_transpose(x, k, **kwargs)
    # Under jit: arrays are traced arguments, anything else (strings, objects) is closed over.
    args = [v for v in (x, k) if _jax_arg(v)]

    def traced(*traced_args):
        it = iter(traced_args)
        return jaxconvt.conv_transpose(*(next(it) if _jax_arg(v) else v for v in (x, k)), **kwargs)

    with pytest.raises(exc, match=match):
        jax.jit(traced)(*args)
    if shape_fn:
        with pytest.raises(exc, match=match):
            jaxconvt.conv_transpose_output_shape(np.shape(x), np.shape(k), **kwargs)


def test_inputs_rank_too_low():
    for x in (np.ones((2, 3), np.float32), np.ones((3,), np.float32)):
        rule = r"`inputs` must have rank >= 3 \(batch, spatial dimensions\.\.\., channels"
        assert_raises(ValueError, rf"{rule}.*got shape {re.escape(str(x.shape))} of rank {x.ndim}\.", x, K)


def test_kernel_rank_not_matching():
    for k in (np.ones((3, 3, 1, 2), np.float32), np.ones((1, 2), np.float32)):
        match = (
            rf"`kernel` must have rank 3 \(.*\) to match `inputs` of rank 3; got kernel shape {re.escape(str(k.shape))}"
        )
        assert_raises(ValueError, match, X, k)


def test_channel_mismatch_names_both_counts_and_the_data_format():
    assert_raises(
        ValueError,
        r"`kernel` input channels \(its last axis, 3\) must equal the input channels \(2, axis -1 of `inputs` "
        r"for data_format='channels_last'\); got inputs shape \(1, 4, 2\) and kernel shape \(3, 1, 3\)\.",
        X,
        np.ones((3, 1, 3), np.float32),
    )
    # A channels-first array with the default data_format: the message says what was assumed.
    assert_raises(
        ValueError,
        r"\(its last axis, 2\) must equal the input channels "
        r"\(5, axis -1 of `inputs` for data_format='channels_last'\)",
        np.ones((1, 2, 5), np.float32),
        K,
    )
    assert_raises(
        ValueError,
        r"\(its last axis, 4\) must equal the input channels "
        r"\(2, axis 1 of `inputs` for data_format='channels_first'\)",
        np.ones((1, 2, 4), np.float32),
        np.ones((3, 1, 4), np.float32),
        data_format="channels_first",
    )


@pytest.mark.parametrize("padding", ["full", "causal", "", "valid "])
def test_unknown_padding_string(padding):
    rule = re.escape("`padding` must be 'valid' or 'same' (any case), or explicit integer crops; got ")
    match = rule + re.escape(repr(padding)) + r"\."
    assert_raises(ValueError, match, padding=padding)


@pytest.mark.parametrize(
    ("padding", "exc", "tail"),
    [
        (1.5, TypeError, "1.5 (type float)."),
        (None, TypeError, "None (type NoneType)."),
        (True, TypeError, "True (type bool)."),
        ({}, TypeError, "{} (type dict)."),
        ([1.5], TypeError, "[1.5]."),
        ([(1, 2, 3)], TypeError, "[(1, 2, 3)]."),
        ([[True, 1]], TypeError, "[[True, 1]]."),
        ([1, 2], ValueError, "[1, 2] of length 2."),
        ([(0, 1), (1, 0)], ValueError, "[(0, 1), (1, 0)] of length 2."),
        (-1, ValueError, "negative padding -1."),
        ([-2], ValueError, "negative padding [-2]."),
        ([(0, -1)], ValueError, "negative padding [(0, -1)]."),
    ],
)
def test_padding_of_wrong_type_length_or_sign(padding, exc, tail):
    assert_raises(exc, PADDING_RULE + re.escape(tail), padding=padding)


def test_padding_cropping_more_than_the_output():
    match = (
        r"`padding` crops more than the full output holds: the output would have spatial shape \(-4,\); got "
        r"padding=5 for inputs spatial shape \(4,\), kernel spatial shape \(3,\), "
        r"strides=\(1,\), dilation_rate=\(1,\)\."
    )
    assert_raises(ValueError, match, padding=5)


@pytest.mark.parametrize("name", ["strides", "dilation_rate"])
@pytest.mark.parametrize(
    ("value", "exc", "tail"),
    [
        (0, ValueError, "must be >= 1 in every spatial dimension; got {name}=0."),
        (-2, ValueError, "must be >= 1 in every spatial dimension; got {name}=-2."),
        ([0], ValueError, "must be >= 1 in every spatial dimension; got {name}=[0]."),
        (1.5, TypeError, "must be an int or a sequence of 1 ints; got 1.5 (type float)."),
        (2.0, TypeError, "must be an int or a sequence of 1 ints; got 2.0 (type float)."),
        ([2.0], TypeError, "must be an int or a sequence of 1 ints; got [2.0] (type list)."),
        (True, TypeError, "must be an int or a sequence of 1 ints; got True (type bool)."),
        ("2", TypeError, "must be an int or a sequence of 1 ints; got '2' (type str)."),
        (None, TypeError, "must be an int or a sequence of 1 ints; got None (type NoneType)."),
        (
            (1, 2),
            ValueError,
            "must be an int or a sequence of 1 ints (one per spatial dimension); got (1, 2) of length 2.",
        ),
        ([], ValueError, "must be an int or a sequence of 1 ints (one per spatial dimension); got [] of length 0."),
    ],
)
def test_strides_and_dilation_zero_negative_float_bool_or_wrong_length(name, value, exc, tail):
    assert_raises(exc, re.escape(f"`{name}` " + tail.format(name=name)), **{name: value})


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (
            {"strides": 2, "output_padding": -1},
            ValueError,
            "`output_padding` must be >= 0 in every spatial dimension; got output_padding=-1.",
        ),
        ({"strides": 2, "output_padding": [0, 0]}, ValueError, "(one per spatial dimension); got [0, 0] of length 2."),
        (
            {"strides": 2, "output_padding": 0.5},
            TypeError,
            "`output_padding` must be an int or a sequence of 1 ints; got 0.5 (type float).",
        ),
        (
            {"strides": 2, "output_padding": True},
            TypeError,
            "`output_padding` must be an int or a sequence of 1 ints; got True (type bool).",
        ),
    ],
)
def test_output_padding_negative_wrong_length_or_type(kwargs, exc, match):
    assert_raises(exc, re.escape(match), **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "shown"),
    [
        ({"output_padding": 1}, "output_padding=(1,), strides=(1,), dilation_rate=(1,)."),
        ({"strides": 2, "output_padding": 2}, "output_padding=(2,), strides=(2,), dilation_rate=(1,)."),
        (
            {"strides": 2, "dilation_rate": 3, "output_padding": 3},
            "output_padding=(3,), strides=(2,), dilation_rate=(3,).",
        ),
        (
            {"strides": 3, "padding": "same", "output_padding": [5]},
            "output_padding=(5,), strides=(3,), dilation_rate=(1,).",
        ),
        ({"strides": 2, "padding": 1, "output_padding": 2}, "output_padding=(2,), strides=(2,), dilation_rate=(1,)."),
    ],
)
def test_output_padding_not_smaller_than_stride_or_dilation(kwargs, shown):
    rule = "`output_padding` must be smaller than `strides` or `dilation_rate` in every spatial dimension; got "
    assert_raises(ValueError, re.escape(rule + shown), **kwargs)


def test_output_padding_smaller_than_dilation_is_accepted():
    """The boundary of the rule above: ``op < s or op < d`` (PyTorch's rule), checked for acceptance."""
    y = jaxconvt.conv_transpose(X, K, strides=1, dilation_rate=3, output_padding=2)
    assert y.shape == (1, 4 - 1 + 7 + 2, 1)


def test_groups_not_dividing_the_input_channels():
    x, k = np.ones((1, 4, 3), np.float32), np.ones((3, 1, 3), np.float32)
    match = re.escape("`groups` must divide the input channels; got groups=2 and 3 input channels.")
    assert_raises(ValueError, match, x, k, groups=2)
    assert_raises(ValueError, match.replace("2", "4"), x, k, groups=4)


@pytest.mark.parametrize(
    ("groups", "exc", "match"),
    [
        (0, ValueError, "`groups` must be >= 1; got groups=0."),
        (-1, ValueError, "`groups` must be >= 1; got groups=-1."),
        (1.0, TypeError, "`groups` must be a positive int; got 1.0 (type float)."),
        (True, TypeError, "`groups` must be a positive int; got True (type bool)."),
        ("1", TypeError, "`groups` must be a positive int; got '1' (type str)."),
        (None, TypeError, "`groups` must be a positive int; got None (type NoneType)."),
    ],
)
def test_groups_below_one_or_not_an_int(groups, exc, match):
    assert_raises(exc, re.escape(match), groups=groups)


@pytest.mark.parametrize(
    ("kwargs", "shown"),
    [
        (
            {"strides": 2, "output_shape": (20,)},
            "`output_shape` (20,) is not reachable: spatial dimension 0 can have any size from 9 to 10",
        ),
        (
            {"strides": 2, "output_shape": [8]},
            "`output_shape` (8,) is not reachable: spatial dimension 0 can have any size from 9 to 10",
        ),
        ({"strides": 2, "padding": "same", "output_shape": (9,)}, "spatial dimension 0 can have any size from 7 to 8"),
        (
            {"output_shape": (7,)},
            "`output_shape` (7,) is not reachable: spatial dimension 0 can have any size from 6 to 6",
        ),
    ],
)
def test_output_shape_unreachable_names_the_reachable_range(kwargs, shown):
    assert_raises(
        ValueError, re.escape(shown) + r" with these inputs, strides, padding and dilation; got \d+\.", **kwargs
    )


@pytest.mark.parametrize(
    ("output_shape", "exc", "match"),
    [
        (
            (6, 6),
            ValueError,
            SHAPE_RULE + "(6, 6) of length 2.",
        ),
        ((-1,), ValueError, "`output_shape` sizes must be >= 0; got (-1,)."),
        (
            (2, 6, 1),
            ValueError,
            "`output_shape` (2, 6, 1) disagrees with the batch size 1 and output channels 1 the op produces.",
        ),
        (
            (6.0,),
            TypeError,
            SHAPE_RULE + "(6.0,).",
        ),
        (
            "6",
            TypeError,
            SHAPE_RULE + "'6' (type str).",
        ),
    ],
)
def test_output_shape_of_wrong_form(output_shape, exc, match):
    assert_raises(exc, re.escape(match), output_shape=output_shape)


def test_output_shape_together_with_output_padding():
    match = "Give at most one of `output_padding` and `output_shape`; got output_padding=1 and output_shape=(10,)."
    assert_raises(ValueError, re.escape(match), strides=2, output_padding=1, output_shape=(10,))
    match = "Give at most one of `output_padding` and `output_shape`; got output_padding=0 and output_shape=[9]."
    assert_raises(ValueError, re.escape(match), strides=2, output_padding=0, output_shape=[9])


@pytest.mark.parametrize(
    ("x", "k"),
    [
        (X, np.ones((0, 1, 2), np.float32)),
        (np.ones((1, 4, 4, 2), np.float32), np.ones((2, 0, 1, 2), np.float32)),
    ],
)
def test_kernel_with_a_zero_size_spatial_dimension(x, k):
    match = rf"`kernel` spatial dimensions must all be >= 1; got kernel shape {re.escape(str(k.shape))}\."
    assert_raises(ValueError, match, x, k)


@pytest.mark.parametrize(
    ("x", "k", "match"),
    [
        ("abc", K, r"`inputs` must be an array of floating-point or complex numbers; got 'abc'\."),
        ([[["a"]]], K, r"`inputs` must be an array of floating-point or complex numbers; got \[\[\['a'\]\]\]\."),
        (None, K, r"`inputs` must be an array of floating-point or complex numbers; got None\."),
        (X, "abc", r"`kernel` must be an array of floating-point or complex numbers; got 'abc'\."),
        (
            np.array([[[object()]]], dtype=object),
            K,
            r"`inputs` must have a floating-point or complex dtype .*; got dtype object\.",
        ),
        (np.array([[["a", "b"]]]), K, r"`inputs` must have a floating-point or complex dtype .*; got dtype str32\."),
        (
            X,
            np.full((3, 1, 2), None, dtype=object),
            r"`kernel` must have a floating-point or complex dtype .*; got dtype object\.",
        ),
    ],
)
@pytest.mark.filterwarnings("ignore:Data type alias:DeprecationWarning")  # jax reads "a" as a dtype name first
def test_non_numeric_inputs(x, k, match):
    assert_raises(TypeError, match, x, k, shape_fn=False)


@pytest.mark.parametrize("dtype", ["bool", "int8", "int32", "uint8", "int64"])
@pytest.mark.parametrize("which", ["inputs", "kernel"])
def test_bool_and_integer_dtypes_are_rejected_naming_the_dtype(dtype, which):
    x, k = (X.astype(dtype), K) if which == "inputs" else (X, K.astype(dtype))
    name = np.dtype(dtype).name if dtype != "int64" else "int(32|64)"  # jit may truncate without x64
    match = (
        rf"`{which}` must have a floating-point or complex dtype \(float16, bfloat16, float32, float64, complex64, "
        rf"complex128\); got dtype {name}\. Cast it first, e\.g\. `{which}\.astype\(jnp\.float32\)`\."
    )
    assert_raises(TypeError, match, x, k, shape_fn=False)


@pytest.mark.parametrize(
    ("data_format", "exc", "match"),
    [
        ("NHWC", ValueError, "`data_format` must be None, 'channels_last' or 'channels_first'; got 'NHWC'."),
        (
            "channels_middle",
            ValueError,
            "`data_format` must be None, 'channels_last' or 'channels_first'; got 'channels_middle'.",
        ),
        (1, TypeError, "`data_format` must be None, 'channels_last' or 'channels_first'; got 1 (type int)."),
        (True, TypeError, "`data_format` must be None, 'channels_last' or 'channels_first'; got True (type bool)."),
    ],
)
def test_bad_data_format(data_format, exc, match):
    assert_raises(exc, re.escape(match), data_format=data_format)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (
            {"preferred_element_type": jnp.int32},
            TypeError,
            "`preferred_element_type` must be None or a floating-point or complex dtype (float16, bfloat16, float32, "
            "float64, complex64, complex128); got int32.",
        ),
        (
            {"preferred_element_type": "nope"},
            TypeError,
            "`preferred_element_type` must be None or a dtype; got 'nope'.",
        ),
        (
            {"algorithm": "fft"},
            ValueError,
            "`algorithm` must be one of ('auto', 'dilate', 'pad', 'phase', 'dot', 'gemm'); got 'fft'.",
        ),
        (
            {"precision": {}},
            TypeError,
            "`precision` must be None, a lax.Precision, one of its names (e.g. 'highest'), or a pair of them; "
            "got {} (type dict).",
        ),
        (
            {"precision": "bogus"},
            ValueError,
            "`precision` must be None, a lax.Precision, one of its names (e.g. 'highest'), or a pair of them; "
            "got 'bogus' (known names: ['default', 'high', 'highest']).",
        ),
    ],
)
def test_bad_dtype_algorithm_or_precision_options(kwargs, exc, match):
    assert_raises(exc, re.escape(match), shape_fn=False, **kwargs)


def test_preferred_element_type_must_keep_the_kind():
    """A real preferred_element_type for complex operands would silently drop the imaginary part."""
    x = (np.ones((1, 3, 1)) * (1 + 2j)).astype(np.complex64)
    k = np.ones((2, 1, 1), np.float32)
    for fn in (jaxconvt.conv_transpose, lambda *a, **kw: jax.jit(lambda x, k: jaxconvt.conv_transpose(x, k, **kw))(*a)):
        with pytest.raises(TypeError, match=r"must be complex exactly when the operands are.*got float32 .*complex64"):
            fn(x, k, preferred_element_type=jnp.float32)
        with pytest.raises(TypeError, match=r"got complex64 for operands of dtype float32"):
            fn(k.reshape(1, 2, 1), k, preferred_element_type=jnp.complex64)


def test_numpy_array_padding_is_accepted():
    x, k = jnp.ones((1, 3, 1)), jnp.ones((2, 1, 1))
    assert jaxconvt.conv_transpose(x, k, 2, padding=np.array([1])).shape == (1, 4, 1)
    assert jaxconvt.conv_transpose(x, k, 2, padding=np.array([[1, 0]])).shape == (1, 5, 1)


# ----------------------------------------------------------------------------------------
# Classes of hostile input: numpy scalars and 0-d arrays, int64 limits, shapes, dtypes
# ----------------------------------------------------------------------------------------

X2 = np.ones((1, 4, 4, 2), np.float32)  # 2-D, 2 channels
K2 = np.ones((3, 3, 1, 2), np.float32)

# name -> (a valid Python int for it, the other arguments it needs)
INT_ARGUMENTS = {
    "strides": (2, {}),
    "dilation_rate": (2, {}),
    "output_padding": (1, {"strides": 2}),
    "padding": (1, {}),
    "groups": (2, {}),
    "output_shape": (9, {"strides": 2}),  # an int only in 1-D; 2-D needs a sequence
}

WRAPPERS = {
    "0-d array": np.array,
    "numpy scalar": lambda v: np.asarray(v)[()],
    "list of 0-d arrays": None,  # one per spatial dimension, set per rank below
}


def _outcome(fn):
    """``fn()``'s result, or the type of the exception it raised."""
    try:
        return fn()
    except (TypeError, ValueError) as err:
        return type(err)


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("wrapper", list(WRAPPERS))
@pytest.mark.parametrize("kind", ["int", "bool", "float"])
@pytest.mark.parametrize("name", list(INT_ARGUMENTS))
def test_numpy_scalars_and_0d_arrays_act_like_the_python_scalar(name, kind, wrapper, n):
    """An integer one is the int, a bool or float one is refused naming the argument, eagerly and under jit."""
    x, k = (X, K) if n == 1 else (X2, K2)
    value, extra = INT_ARGUMENTS[name]
    python = {"int": value, "bool": True, "float": float(value)}[kind]
    if wrapper == "list of 0-d arrays":
        wrapped, python = [np.array(python)] * n, [python] * n
    else:
        wrapped = WRAPPERS[wrapper](python)
    assert np.asarray(wrapped).dtype.kind == {"int": "i", "bool": "b", "float": "f"}[kind]
    shape_fn = jaxconvt.conv_transpose_output_shape
    want = _outcome(lambda: shape_fn(x.shape, k.shape, **extra, **{name: python}))
    # Python ints are accepted except where the argument needs a sequence (or, for groups, an int).
    needs_other_form = (name == "output_shape" and n == 2 and wrapper != "list of 0-d arrays") or (
        name == "groups" and wrapper == "list of 0-d arrays"
    )
    assert isinstance(want, tuple) == (kind == "int" and not needs_other_form), want
    if isinstance(want, tuple):
        assert shape_fn(x.shape, k.shape, **extra, **{name: wrapped}) == want
        if wrapper == "0-d array" and n == 1:  # the op itself, once per argument
            assert jax.jit(lambda x, k: jaxconvt.conv_transpose(x, k, **extra, **{name: wrapped}))(x, k).shape == want
    else:
        assert_raises(want, rf"^`{name}` ", x, k, **extra, **{name: wrapped})


@pytest.mark.parametrize("value", [2**63, 2**64 + 3, 2**70, np.uint64(2**63)])
@pytest.mark.parametrize("name", list(INT_ARGUMENTS))
def test_integer_arguments_beyond_int64_are_refused_naming_the_argument(name, value):
    """XLA's sizes are int64: a larger stride, padding, size or group count is a clear ValueError at trace time."""
    _, extra = INT_ARGUMENTS[name]
    value = [value] if name == "output_shape" else value
    assert_raises(
        ValueError,
        rf"^`{name}`( sizes)? must be at most 2\*\*63 - 1 \(XLA's sizes are int64\)",
        **extra,
        **{name: value},
    )
    if name not in ("groups", "output_shape"):  # also inside a sequence, in one of two dimensions
        assert_raises(ValueError, rf"^`{name}` must be at most 2\*\*63 - 1", X2, K2, **extra, **{name: [1, value]})


OVERFLOWS = [
    # (input spatial shape, kernel spatial shape, kwargs): every argument fits int64, the sizes they make do not
    ((5,), (3,), {"strides": 2**62}),  # (i - 1) * s + ke > 2**63 - 1
    ((2,), (3,), {"strides": 2**63 - 1}),
    ((2,), (2,), {"dilation_rate": 2**63 - 1}),  # the dilated kernel alone
    ((1,), (3,), {"dilation_rate": 2**62}),
    ((2,), (1,), {"strides": 2**63 - 2, "output_padding": 2**62}),  # output_padding past the full size
    ((2, 2), (1, 1), {"strides": (1, 2**62), "padding": "same"}),
    ((5, 5), (3, 3), {"strides": 2**32}),  # each size fits; the element count does not
    ((3, 3, 3), (1, 1, 1), {"strides": 2**19}),
    ((1,), (2,), {"dilation_rate": 2**56}),  # one size of 2**56 + 1 (one element past the limit)
]


@pytest.mark.parametrize(("spatial", "ksize", "kwargs"), OVERFLOWS)
def test_sizes_beyond_int64_are_refused_at_trace_time(spatial, ksize, kwargs):
    """Sizes are exact Python ints, checked before anything reaches XLA, in O(1) for any stride."""
    x = np.ones((1, *spatial, 1), np.float32)
    k = np.ones((*ksize, 1, 1), np.float32)
    match = r"^`strides` and `dilation_rate` must keep (every size|the op's arrays at most 2\*\*56 elements)"
    assert_raises(ValueError, match, x, k, **kwargs)
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(lambda x, k: jaxconvt.conv_transpose(x, k, **kwargs), x, k)


def test_the_element_limit_is_inclusive():
    """2**56 elements are accepted (by the shape function and abstract evaluation, which allocate nothing)."""
    x, k = jax.ShapeDtypeStruct((1, 1, 1), jnp.float32), jax.ShapeDtypeStruct((2, 1, 1), jnp.float32)
    kwargs = {"dilation_rate": 2**56 - 1}  # ke = 2**56
    assert jaxconvt.conv_transpose_output_shape(x.shape, k.shape, **kwargs) == (1, 2**56, 1)
    assert jax.eval_shape(lambda x, k: jaxconvt.conv_transpose(x, k, **kwargs), x, k).shape == (1, 2**56, 1)
    # A huge stride with a single input element is harmless: the stride never multiplies anything.
    assert jaxconvt.conv_transpose_output_shape((1, 1, 1), (3, 1, 1), strides=2**63 - 1, padding=0) == (1, 3, 1)


def _program_size(fn, *args):
    """Equations (with those of every sub-jaxpr) and constant elements of ``fn``'s jaxpr."""
    closed = jax.make_jaxpr(fn)(*args)
    eqns, stack = 0, [closed.jaxpr]
    while stack:
        jaxpr = stack.pop()
        eqns += len(jaxpr.eqns)
        for eqn in jaxpr.eqns:
            for value in eqn.params.values():
                for sub in value if isinstance(value, (tuple, list)) else [value]:
                    inner = getattr(sub, "jaxpr", None)
                    if inner is not None:
                        stack.append(getattr(inner, "jaxpr", inner))
    return eqns, sum(np.size(c) for c in closed.consts)


@pytest.mark.parametrize("kwargs", [{"padding": 0}, {"padding": "same", "dilation_rate": 2}])
def test_the_traced_program_does_not_grow_with_the_stride(kwargs):
    """Tracing work is independent of the stride (a stride of 10**7 once took 7 s to trace 3 outputs,
    2**32 over a minute): the forward and both gradients trace to the same program for strides
    10**3 and 10**12, with no constant growing with it."""
    sizes = []
    for stride in (10**3, 10**12):
        for spatial in ((1,), (2,)):
            x, k = jnp.ones((1, *spatial, 2)), jnp.ones((3, 2, 2))
            f = lambda x, k, stride=stride: jaxconvt.conv_transpose(x, k, strides=stride, **kwargs)
            loss = lambda x, k, f=f: jnp.sum(f(x, k) ** 2)
            sizes.append((spatial, _program_size(f, x, k), _program_size(jax.grad(loss, argnums=(0, 1)), x, k)))
    small, large = sizes[:2], sizes[2:]
    assert small == large
    assert all(fwd[1] < 1000 and grad[1] < 1000 for _, fwd, grad in sizes)


@pytest.mark.parametrize(
    ("shape", "exc", "tail"),
    [
        ((1, 4.7, 4, 2), TypeError, "must be a sequence of ints; got (1, 4.7, 4, 2) (type tuple)."),
        ((1, 4, 4, "2"), TypeError, "must be a sequence of ints; got (1, 4, 4, '2') (type tuple)."),
        ((1, 4, True, 2), TypeError, "must be a sequence of ints; got (1, 4, True, 2) (type tuple)."),
        ((1, 4, np.float32(4), 2), TypeError, "must be a sequence of ints; got"),
        (np.array([1.0, 4, 4, 2]), TypeError, "must be a sequence of ints; got array([1., 4., 4., 2.]) (a numpy"),
        (None, TypeError, "must be a sequence of ints; got None (type NoneType)."),
        (4, TypeError, "must be a sequence of ints; got 4 (type int)."),
        ("1442", TypeError, "must be a sequence of ints; got '1442' (type str)."),
        ((-1, 4, 4, 2), ValueError, "sizes must be >= 0; got {name}=(-1, 4, 4, 2)."),
        ((1, 4, 4, -2), ValueError, "sizes must be >= 0; got {name}=(1, 4, 4, -2)."),
        ((1, 2**63, 4, 2), ValueError, "sizes must be at most 2**63 - 1 (XLA's sizes are int64); got"),
    ],
)
@pytest.mark.parametrize("name", ["input_shape", "kernel_shape"])
def test_output_shape_function_validates_shapes(name, shape, exc, tail):
    """``conv_transpose_output_shape`` refuses what no array can have, naming the shape."""
    shapes = {"input_shape": (1, 4, 4, 2), "kernel_shape": (3, 3, 2, 2)}
    shapes[name] = shape
    with pytest.raises(exc, match=re.escape(f"`{name}` " + tail.format(name=name))):
        jaxconvt.conv_transpose_output_shape(**shapes)


@pytest.mark.parametrize(
    "shape", [(1, 4, 4, 2), [1, 4, 4, 2], np.array([1, 4, 4, 2]), (np.int64(1), np.array(4), np.uint8(4), 2)]
)
def test_output_shape_function_accepts_integer_sequences(shape):
    assert jaxconvt.conv_transpose_output_shape(shape, np.array((3, 3, 2, 2))) == (1, 6, 6, 2)
    assert jaxconvt.conv_transpose_output_shape(shape, jnp.ones((3, 3, 2, 2)).shape) == (1, 6, 6, 2)


def _core(inputs, kernel, bias):
    return jaxconvt.conv_transpose(inputs, kernel)


ENTRY_POINTS = {
    # entry point -> (function of three operands, their names, valid operands)
    "conv_transpose": (_core, ("inputs", "kernel"), (X, K, None)),
    "torch_compat": (
        torch_compat.conv_transpose1d,
        ("input", "weight", "bias"),
        (np.ones((1, 2, 4), np.float32), np.ones((2, 1, 3), np.float32), np.ones((1,), np.float32)),
    ),
    "onnx_compat": (
        onnx_compat.conv_transpose,
        ("X", "W", "B"),
        (np.ones((1, 2, 4), np.float32), np.ones((2, 1, 3), np.float32), np.ones((1,), np.float32)),
    ),
}

LONGDOUBLE_IS_WIDER = np.dtype(np.longdouble).itemsize > 8
BAD_OPERANDS = {
    # label -> (make a bad operand from a valid one, the dtype named in the message or None)
    "None": (lambda a: None, None),
    "a string": (lambda a: "abc", None),
    "bool": (lambda a: a.astype(bool), "bool"),
    "int32": (lambda a: a.astype(np.int32), "int32"),
    "int64": (lambda a: a.astype(np.int64), "int64"),
    "uint8": (lambda a: a.astype(np.uint8), "uint8"),
    "float8_e4m3fn": (lambda a: a.astype(jnp.float8_e4m3fn), "float8_e4m3fn"),
    "float8_e8m0fnu": (lambda a: a.astype(jnp.float8_e8m0fnu), "float8_e8m0fnu"),  # no zero: NaN sums
    "longdouble": (lambda a: a.astype(np.longdouble), np.dtype(np.longdouble).name),
    "clongdouble": (lambda a: a.astype(np.clongdouble), np.dtype(np.clongdouble).name),
    "object": (lambda a: a.astype(object), "object"),
}


def _jax_can_take(value) -> bool:
    """Whether ``value`` can be a ``jax.jit`` argument (else the jit check closes over it)."""
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biufc":
        return False
    return value.dtype not in {np.dtype(np.longdouble), np.dtype(np.clongdouble)} - {
        np.dtype(np.float64),
        np.dtype(np.complex128),
    }


@pytest.mark.parametrize("bad", list(BAD_OPERANDS))
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_bad_operands_are_named_by_each_functions_own_argument(entry, bad):
    """Every operand of every entry point, eagerly and under jit: a TypeError naming that operand and its dtype."""
    fn, names, valid = ENTRY_POINTS[entry]
    make, dtype = BAD_OPERANDS[bad]
    if bad in ("longdouble", "clongdouble") and not LONGDOUBLE_IS_WIDER:
        pytest.skip("long double is float64 on this platform")
    for i, name in enumerate(names):
        if bad == "None" and name in ("bias", "B"):
            continue  # no bias
        operands = list(valid)
        operands[i] = make(valid[i])
        shown = "" if dtype is None else rf".*got dtype {dtype}\b"
        match = rf"^`{name}` must (be an array|have a floating-point or complex dtype){shown}"
        with pytest.raises(TypeError, match=match):
            fn(*operands)
        traced = [j for j, v in enumerate(operands) if _jax_can_take(v)]

        def under_jit(*args, operands=operands, traced=traced):
            full = list(operands)
            for j, a in zip(traced, args):
                full[j] = a
            return fn(*full)

        # Under jit an int64 argument arrives as JAX's int32 unless x64 is on: the name still says which.
        jit_match = match.replace("int64", "int(32|64)")
        with pytest.raises(TypeError, match=jit_match):
            jax.jit(under_jit)(*(operands[j] for j in traced))
