"""``jaxconvt.onnx_compat.conv_transpose`` against onnx's ``ReferenceEvaluator`` and ONNX's own test cases.

Oracles (onnx 1.23, float64):

* ``ReferenceEvaluator`` on a node built with ``onnx.helper.make_node`` for a seeded random grid
  of attribute combinations (1-D..3-D, auto_pad, pads, strides, dilations, output_padding,
  output_shape, kernel_shape, bias, group).
* Every case is also run through the evaluator with the explicit (possibly negative) pads that
  ``conv_transpose_crops`` derives, which checks the crop arithmetic separately.
* Where the evaluator departs from the operator specification (see the module docstring of
  ``jaxconvt.onnx_compat``), an evaluator call the specification makes equivalent: for
  ``group > 1`` the evaluator runs per group (its own grouped path raises unless each group has
  one input and one output channel); for ``output_shape`` with auto_pad NOTSET / VALID it runs
  with SAME_LOWER (the specification's "else" branch); for ``stride <= output_padding <
  dilation``, which it cannot compute, the numpy ``jaxconvt.reference.scatter`` on the crops is
  the oracle instead.
* Every case of ``onnx/backend/test/case/node/convtranspose.py`` from the installed package,
  collected by running its ``export*`` functions with ``expect`` intercepted.
* Gradients: the op is linear in each of ``X`` and ``W``, so ``<grad_X, dX> = <ct, Y(dX, W)>``
  and ``<grad_W, dW> = <ct, Y(X, dW)>`` with ``Y`` from the evaluator.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconvt import onnx_compat
from jaxconvt.reference import scatter
from tests._keras_worker import FAST_COMPILE

onnx = pytest.importorskip("onnx")
from onnx import helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

N_GRID = 150
N_GRAD = 10
ATTRIBUTES = ("auto_pad", "dilations", "group", "kernel_shape", "output_padding", "output_shape", "pads", "strides")


def reference(X, W, B=None, **attrs):
    """One ``ConvTranspose`` node through ``onnx.reference.ReferenceEvaluator``."""
    attrs = {k: v for k, v in attrs.items() if v is not None}
    names = ["X", "W"] + (["B"] if B is not None else [])
    node = helper.make_node("ConvTranspose", names, ["Y"], **attrs)
    feeds = dict(zip(names, (X, W, B)))
    return ReferenceEvaluator(node).run(None, feeds)[0]


def reference_grouped(X, W, B=None, *, group=1, **attrs):
    """The evaluator per group (its grouped path raises unless C/group = M/group = 1)."""
    cg, og = X.shape[1] // group, W.shape[1]
    parts = [
        reference(
            X[:, g * cg : (g + 1) * cg],
            W[g * cg : (g + 1) * cg],
            None if B is None else B[g * og : (g + 1) * og],
            **attrs,
        )
        for g in range(group)
    ]
    return np.concatenate(parts, axis=1)


def scatter_reference(X, W, B, attrs):
    """``jaxconvt.reference.scatter`` (numpy) on the crops ``conv_transpose_crops`` derives."""
    n = X.ndim - 2
    keys = {k: attrs.get(k) for k in ATTRIBUTES if k not in ("group", "kernel_shape")}
    crops = onnx_compat.conv_transpose_crops(X.shape[2:], W.shape[2:], **keys)
    strides, dilations = attrs.get("strides") or [1] * n, attrs.get("dilations") or [1] * n
    kernel = np.transpose(W, (*range(2, n + 2), 1, 0))
    y = scatter(np.moveaxis(X, 1, -1), kernel, strides, dilations, crops, attrs.get("group") or 1)
    y = np.moveaxis(y, -1, 1)
    return y if B is None else y + B.reshape(-1, *(1,) * n)


def oracles(X, W, B, attrs):
    """Every evaluator-based result the specification says must equal ``conv_transpose(X, W, B, **attrs)``."""
    attrs = {k: v for k, v in attrs.items() if v is not None}
    group = attrs.pop("group", 1)
    run = functools.partial(reference_grouped, group=group)
    strides = attrs.get("strides") or [1] * (X.ndim - 2)
    if any(o >= s for o, s in zip(attrs.get("output_padding") or [], strides)):
        # The evaluator's col2im cannot produce output_padding >= stride (allowed when < dilation).
        return {"scatter": scatter_reference(X, W, B, {**attrs, "group": group})}
    results = {}
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if attrs.get("output_shape") is not None and auto_pad in ("NOTSET", "VALID"):
        # Spec: pads come from output_shape with the "else" split, the one SAME_LOWER uses.
        results["as SAME_LOWER"] = run(X, W, B, **{**attrs, "auto_pad": "SAME_LOWER", "pads": None})
    else:
        results["evaluator"] = run(X, W, B, **attrs)
    # The same through explicit (possibly negative) pads derived by conv_transpose_crops.
    crops = onnx_compat.conv_transpose_crops(
        X.shape[2:], W.shape[2:], **{k: attrs.get(k) for k in ATTRIBUTES if k not in ("group", "kernel_shape")}
    )
    op = attrs.get("output_padding") or [0] * len(crops)
    pads = [lo for lo, _ in crops] + [hi + o for (_, hi), o in zip(crops, op)]
    explicit = {**attrs, "auto_pad": "NOTSET", "output_shape": None, "pads": pads}
    results["explicit pads"] = run(X, W, B, **explicit)
    return results


def random_case(seed: int):
    """Random inputs and attributes (``None`` = attribute absent)."""
    rng = np.random.default_rng(seed)
    n = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
    group = int(rng.choice([1, 1, 2, 3]))
    c = group * int(rng.integers(1, 3))
    og = int(rng.integers(1, 3))
    kernel = [int(rng.integers(1, 4)) for _ in range(n)]
    spatial = [int(rng.integers(1, 5 if n < 3 else 4)) for _ in range(n)]
    strides = [int(rng.integers(1, 5)) for _ in range(n)] if rng.random() < 0.9 else None
    dilations = [int(rng.choice([1, 1, 2, 3])) for _ in range(n)] if rng.random() < 0.8 else None
    s_eff, d_eff = strides or [1] * n, dilations or [1] * n
    # output_padding < stride mostly; sometimes stride <= output_padding < dilation (allowed too).
    limit = [max(s, d) if rng.random() < 0.4 else s for s, d in zip(s_eff, d_eff)]
    output_padding = [int(rng.integers(0, m)) for m in limit] if rng.random() < 0.6 else None
    op_eff = output_padding or [0] * n
    auto_pad = str(rng.choice(["NOTSET", "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"]))
    attrs = {
        "auto_pad": None if auto_pad == "NOTSET" and rng.random() < 0.3 else auto_pad,
        "strides": strides,
        "dilations": dilations,
        "output_padding": output_padding,
        "kernel_shape": kernel if rng.random() < 0.3 else None,
        "group": group,
        "pads": None,
        "output_shape": None,
    }
    full = [s * (i - 1) + (k - 1) * d + 1 + o for i, k, s, d, o in zip(spatial, kernel, s_eff, d_eff, op_eff)]
    if auto_pad == "NOTSET" and rng.random() < 0.7:
        pads = [int(rng.integers(0, 3)) for _ in range(2 * n)]
        # Keep the output non-empty: reduce the crops where they take everything.
        for j in range(n):
            while pads[j] + pads[j + n] >= full[j] and pads[j] + pads[j + n] > 0:
                pads[j if pads[j] else j + n] -= 1
        attrs["pads"] = pads
    if rng.random() < 0.35:  # overrides (and ignores) pads
        attrs["output_shape"] = [max(1, f + int(rng.integers(-3, 5))) for f in full]
    X = rng.standard_normal((int(rng.integers(1, 3)), c, *spatial))
    W = rng.standard_normal((c, og, *kernel))
    B = rng.standard_normal(og * group) if rng.random() < 0.5 else None
    return X, W, B, attrs


def assert_close(actual, expected):
    actual = np.asarray(actual)
    assert actual.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12 * scale)


def call(X, W, B, attrs):
    """``onnx_compat.conv_transpose`` under ``jax.jit`` (one compile per case)."""
    attrs = {k: v for k, v in attrs.items() if v is not None}
    fn = jax.jit(functools.partial(onnx_compat.conv_transpose, **attrs))
    return fn.lower(X, W, B).compile(FAST_COMPILE)(X, W, B)


def test_grid_is_representative():
    cases = [random_case(seed)[3] for seed in range(N_GRID)]
    for mode in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        assert sum(c.get("auto_pad") == mode for c in cases) > 15, mode
    assert sum(c.get("output_shape") is not None for c in cases) > 40
    assert sum(c.get("pads") is not None for c in cases) > 30
    assert sum(c["group"] > 1 for c in cases) > 50
    negative = 0
    for seed in range(N_GRID):
        X, W, _, attrs = random_case(seed)
        negative += any(v < 0 for pair in _crops(X, W, attrs) for v in pair)
    assert negative > 30  # zero extension (negative crops) is exercised
    beyond_stride = 0
    for c in cases:
        strides = c["strides"] or [1] * 3
        beyond_stride += any(o >= s for o, s in zip(c["output_padding"] or [], strides))
    assert beyond_stride >= 5  # stride <= output_padding < dilation


@pytest.mark.parametrize("seed", range(N_GRID))
def test_matches_reference_evaluator(seed, x64):
    X, W, B, attrs = random_case(seed)
    got = call(X, W, B, attrs)
    results = oracles(X, W, B, attrs)
    for name, expected in results.items():
        assert np.asarray(got).shape == expected.shape, name
        assert_close(got, expected)


def test_evaluator_deviations_are_real(x64):
    """The places where the oracle does not call the evaluator verbatim, shown to be necessary."""
    rng = np.random.default_rng(0)
    # NOTSET + output_shape: the evaluator zero-extends only at the end; the specification splits.
    X, W = rng.standard_normal((1, 1, 4)), rng.standard_normal((1, 1, 3))
    attrs = {"strides": [3], "output_shape": [14]}  # full 12, total -2: spec pads (-1, -1)
    assert onnx_compat.conv_transpose_crops((4,), (3,), **attrs) == ((-1, -1),)
    ours = np.asarray(call(X, W, None, attrs))
    assert ours[0, 0, 0] == 0 and ours[0, 0, -1] == 0
    assert reference(X, W, **attrs)[0, 0, 0] != 0  # evaluator: (0, -2)
    assert_close(ours, reference(X, W, auto_pad="SAME_LOWER", **attrs))
    # group > 1 with several channels per group: the evaluator's own grouped path fails.
    X, W = rng.standard_normal((1, 4, 3)), rng.standard_normal((4, 3, 2))
    with pytest.raises(ValueError):
        reference(X, W, group=2)
    assert_close(call(X, W, None, {"group": 2}), reference_grouped(X, W, group=2))
    # stride <= output_padding < dilation: allowed, but beyond the evaluator's col2im.
    X, W = rng.standard_normal((1, 1, 3)), rng.standard_normal((1, 1, 2))
    attrs = {"strides": [1], "dilations": [2], "output_padding": [1]}
    with pytest.raises(ValueError):
        reference(X, W, **attrs)
    assert_close(call(X, W, None, attrs), scatter_reference(X, W, None, attrs))


# ----------------------------------------------------------------------------------------
# ONNX's own backend test cases
# ----------------------------------------------------------------------------------------


def onnx_backend_cases():
    """(name, node, inputs, outputs) of every case in onnx/backend/test/case/node/convtranspose.py."""
    from onnx.backend.test.case.node import convtranspose

    collected = []

    def expect(node, inputs, outputs, name, **kwargs):
        collected.append((name, node, inputs, outputs))

    original = convtranspose.expect
    convtranspose.expect = expect
    try:
        cls = convtranspose.ConvTranspose
        for attr in sorted(vars(cls)):
            if attr.startswith("export"):
                getattr(cls, attr)()
    finally:
        convtranspose.expect = original
    return collected


BACKEND_CASES = onnx_backend_cases()


def test_backend_cases_collected():
    names = {name for name, *_ in BACKEND_CASES}
    assert len(names) == len(BACKEND_CASES) >= 11
    assert {"test_convtranspose_output_shape", "test_convtranspose_autopad_same", "test_convtranspose_pads"} <= names


@pytest.mark.parametrize("name, node, inputs, outputs", BACKEND_CASES, ids=[c[0] for c in BACKEND_CASES])
def test_onnx_backend_case(name, node, inputs, outputs):
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    got = onnx_compat.conv_transpose(*inputs, **attrs)
    (expected,) = outputs
    assert got.dtype == expected.dtype
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6, atol=0)


# ----------------------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------------------


def _crops(X, W, attrs):
    keys = {k: attrs.get(k) for k in ATTRIBUTES if k not in ("group", "kernel_shape")}
    return onnx_compat.conv_transpose_crops(X.shape[2:], W.shape[2:], **keys)


def _gradient_seeds():
    """Seeds from 1000 on: half with zero extension (a negative crop), two with output_padding >= stride."""
    picked = {"negative": [], "beyond_stride": [], "other": []}
    quota = {"negative": N_GRAD // 2, "beyond_stride": 2, "other": N_GRAD - N_GRAD // 2 - 2}
    seed = 1000
    while sum(map(len, picked.values())) < N_GRAD:
        X, W, _, attrs = random_case(seed)
        strides = attrs["strides"] or [1] * (X.ndim - 2)
        if any(o >= s for o, s in zip(attrs["output_padding"] or [], strides)):
            kind = "beyond_stride"
        elif any(v < 0 for pair in _crops(X, W, attrs) for v in pair):
            kind = "negative"
        else:
            kind = "other"
        if len(picked[kind]) < quota[kind]:
            picked[kind].append(seed)
        seed += 1
    return sorted(sum(picked.values(), []))


@pytest.mark.parametrize("seed", _gradient_seeds())
def test_gradients_are_adjoints(seed, x64):
    X, W, B, attrs = random_case(seed)
    if B is None:
        B = np.random.default_rng(seed).standard_normal(W.shape[1] * attrs["group"])
    attrs = {k: v for k, v in attrs.items() if v is not None}
    f = functools.partial(onnx_compat.conv_transpose, **attrs)
    rng = np.random.default_rng(seed)
    Y = np.asarray(f(X, W, B))
    ct = rng.standard_normal(Y.shape)
    gx, gw, gb = jax.jit(jax.grad(lambda *a: jnp.sum(f(*a) * ct), argnums=(0, 1, 2)))(X, W, B)
    dX, dW = rng.standard_normal(X.shape), rng.standard_normal(W.shape)

    def oracle(X, W):  # the first oracle (the evaluator, or the scatter where it cannot compute)
        return next(iter(oracles(X, W, None, attrs).values()))

    np.testing.assert_allclose(np.vdot(gx, dX), np.vdot(ct, oracle(dX, W)), rtol=1e-10)
    np.testing.assert_allclose(np.vdot(gw, dW), np.vdot(ct, oracle(X, dW)), rtol=1e-10)
    assert_close(gb, ct.sum(axis=(0, *range(2, ct.ndim))))


# ----------------------------------------------------------------------------------------
# Refusals
# ----------------------------------------------------------------------------------------

X2 = np.zeros((1, 4, 3, 3))
W2 = np.zeros((4, 2, 3, 3))

REFUSED = [
    ({"auto_pad": "SAME_UPPER", "pads": [0, 0, 0, 0]}, ValueError, "pads"),
    ({"auto_pad": "VALID", "pads": [1, 1, 1, 1]}, ValueError, "pads"),
    ({"auto_pad": "same_upper"}, ValueError, "auto_pad"),
    ({"auto_pad": 1}, TypeError, "auto_pad"),
    ({"pads": [1, 1]}, ValueError, "pads"),
    ({"pads": [-1, 0, 0, 0]}, ValueError, "pads"),
    ({"pads": [3, 0, 3, 0]}, ValueError, "pads"),  # crops more than the 5 the output has
    ({"pads": 1}, TypeError, "pads"),
    ({"strides": [0, 1]}, ValueError, "strides"),
    ({"strides": [2]}, ValueError, "strides"),
    ({"strides": [2.0, 2.0]}, TypeError, "strides"),
    ({"dilations": [1, 0]}, ValueError, "dilations"),
    ({"output_padding": [1, 0]}, ValueError, "output_padding"),  # stride 1, dilation 1
    ({"output_padding": [2, 0], "strides": [2, 2]}, ValueError, "output_padding"),
    ({"output_padding": [-1, 0], "strides": [2, 2]}, ValueError, "output_padding"),
    ({"output_shape": [5]}, ValueError, "output_shape"),
    ({"output_shape": [5, -1]}, ValueError, "output_shape"),
    ({"kernel_shape": [3, 2]}, ValueError, "kernel_shape"),
    ({"group": 3}, ValueError, "group"),
    ({"group": 0}, ValueError, "group"),
    ({"group": 2.0}, TypeError, "group"),
    ({"auto_pad": b"\xff"}, ValueError, "auto_pad"),  # bytes that are not UTF-8
    ({"strides": [np.array(True), 1]}, TypeError, "strides"),  # 0-d arrays count as their scalar
    ({"dilations": [np.array(2.0), 1]}, TypeError, "dilations"),
    ({"group": np.array(True)}, TypeError, "group"),
    # ONNX ints are int64: larger ones, and sizes they make beyond int64
    ({"strides": [2**63, 1]}, ValueError, "strides"),
    ({"dilations": [1, 2**64]}, ValueError, "dilations"),
    ({"pads": [0, 0, 2**63, 0]}, ValueError, "pads"),
    ({"output_shape": [2**63, 5]}, ValueError, "output_shape"),
    ({"group": 2**63}, ValueError, "group"),
    ({"strides": [2**62, 1]}, ValueError, "strides"),  # (3 - 1) * 2**62 + 3
    ({"dilations": [1, 2**62]}, ValueError, "dilations"),
    ({"strides": [2**30, 2**30]}, ValueError, "strides"),  # each size fits, the element count does not
]


@pytest.mark.parametrize("attrs, error, name", REFUSED)
def test_refused(attrs, error, name):
    with pytest.raises(error, match=f"`{name}`"):
        onnx_compat.conv_transpose(X2, W2, **attrs)


@pytest.mark.parametrize(
    "X, W, B, name",
    [
        (np.zeros((4, 3)), W2, None, "X"),  # rank 2
        (X2, np.zeros((4, 2, 3)), None, "W"),
        (X2, np.zeros((3, 2, 3, 3)), None, "W"),  # channel mismatch
        (X2, W2, np.zeros(3), "B"),
    ],
)
def test_bad_shapes_refused(X, W, B, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        onnx_compat.conv_transpose(X, W, B)


def test_integer_attributes_as_numpy_values(x64):
    """numpy ints, 0-d integer arrays and integer arrays are ints, as ``helper.get_attribute_value`` may give."""
    rng = np.random.default_rng(1)
    X, W = rng.standard_normal((1, 2, 3, 3)), rng.standard_normal((2, 1, 2, 2))
    want = reference(X, W, strides=[2, 2], pads=[1, 0, 0, 1], group=1)
    for strides, pads in (([np.int64(2), np.array(2)], np.array([1, 0, 0, 1])), (np.array([2, 2]), [1, 0, 0, 1])):
        assert_close(onnx_compat.conv_transpose(X, W, strides=strides, pads=pads, group=np.array(1)), want)


def test_bytes_attributes_and_empty_output(x64):
    """String attributes as ``helper.get_attribute_value`` returns them; an empty output is allowed."""
    rng = np.random.default_rng(0)
    X, W = rng.standard_normal((1, 2, 3)), rng.standard_normal((2, 1, 2))
    assert_close(
        onnx_compat.conv_transpose(X, W, auto_pad=b"SAME_LOWER", strides=[2]),
        reference(X, W, auto_pad="SAME_LOWER", strides=[2]),
    )
    assert onnx_compat.conv_transpose(X, W, pads=[2, 2]).shape == (1, 1, 0)
