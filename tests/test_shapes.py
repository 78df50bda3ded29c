"""Hypothesis properties of the shape arithmetic, through ``conv_transpose_output_shape``.

The expected sizes are the closed-form output lengths of SEMANTICS.md, written here
independently of jaxconvt's crop arithmetic (per spatial dimension, ``ke = (k-1)*d + 1``):

* "valid": ``i*s + max(ke - s, 0)`` (output_padding None) or ``(i-1)*s + ke + op``;
* "same": ``i*s`` (None) or ``(i-1)*s + (ke mod 2) + op``;
* explicit ``(lo, hi)``: ``(i-1)*s + ke - lo - hi + op`` (None means 0).

``output_shape`` may be any size from the ``op = 0`` size to that plus ``max(s, d) - 1``.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxconvt import conv_transpose_output_shape

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True)


def expected_size(i, k, s, d, padding, op):
    """One spatial dimension's output length, from SEMANTICS.md's formulas."""
    ke = (k - 1) * d + 1
    if padding == "valid":
        return i * s + max(ke - s, 0) if op is None else (i - 1) * s + ke + op
    if padding == "same":
        return i * s if op is None else (i - 1) * s + ke % 2 + op
    lo, hi = padding
    return (i - 1) * s + ke - lo - hi + (op or 0)


@st.composite
def geometries(draw, explicit=None):
    """A random geometry: shapes, strides, dilation, groups, data_format and a padding mode."""
    n = draw(st.integers(1, 4))
    dims = st.lists(
        st.tuples(st.integers(1, 8), st.integers(1, 6), st.integers(1, 5), st.integers(1, 4)), min_size=n, max_size=n
    )
    per_dim = draw(dims)
    groups = draw(st.integers(1, 3))
    c_in = groups * draw(st.integers(1, 3))
    og = draw(st.integers(1, 3))
    batch = draw(st.integers(0, 3))
    channels_first = draw(st.booleans())
    spatial = [p[0] for p in per_dim]
    ksize = [p[1] for p in per_dim]
    strides = [p[2] for p in per_dim]
    dilation = [p[3] for p in per_dim]
    use_explicit = draw(st.booleans()) if explicit is None else explicit
    if use_explicit:
        pairs = draw(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=n, max_size=n))
        padding_arg = [list(p) for p in pairs]
        modes = pairs
    else:
        word = draw(st.sampled_from(["valid", "same"]))
        padding_arg = "".join(c.upper() if draw(st.booleans()) else c for c in word)
        modes = [word] * n
    return {
        "n": n,
        "input_shape": (batch, c_in, *spatial) if channels_first else (batch, *spatial, c_in),
        "kernel_shape": (*ksize, og, c_in),
        "spatial": spatial,
        "ksize": ksize,
        "strides": strides,
        "dilation": dilation,
        "modes": modes,
        "c_out": groups * og,
        "batch": batch,
        "kwargs": {
            "strides": strides,
            "padding": padding_arg,
            "data_format": "channels_first" if channels_first else "channels_last",
            "dilation_rate": dilation,
            "groups": groups,
        },
    }


def full_shape(geo, spatial):
    if geo["kwargs"]["data_format"] == "channels_first":
        return (geo["batch"], geo["c_out"], *spatial)
    return (geo["batch"], *spatial, geo["c_out"])


def sizes(geo, ops):
    return [
        expected_size(i, k, s, d, mode, op)
        for i, k, s, d, mode, op in zip(
            geo["spatial"], geo["ksize"], geo["strides"], geo["dilation"], geo["modes"], ops
        )
    ]


def max_ops(geo):
    return [max(s, d) - 1 for s, d in zip(geo["strides"], geo["dilation"])]


def call(geo, **extra):
    return conv_transpose_output_shape(geo["input_shape"], geo["kernel_shape"], **geo["kwargs"], **extra)


@SETTINGS
@given(geometries(), st.data())
def test_output_shape_formula(geo, data):
    if data.draw(st.booleans()):
        ops = [None] * geo["n"]
        extra = {}
    else:
        ops = [data.draw(st.integers(0, m)) for m in max_ops(geo)]
        extra = {"output_padding": ops}
    want = sizes(geo, ops)
    if min(want) < 0:
        with pytest.raises(ValueError, match=r"`padding` crops more than the full output holds"):
            call(geo, **extra)
    else:
        assert call(geo, **extra) == full_shape(geo, want)


@SETTINGS
@given(geometries(explicit=True), st.data())
def test_output_padding_adds_at_the_end_for_explicit_padding(geo, data):
    ops = [data.draw(st.integers(0, m)) for m in max_ops(geo)]
    base = sizes(geo, [0] * geo["n"])
    if min(base) >= 0:
        assert call(geo, output_padding=ops) == full_shape(geo, [b + op for b, op in zip(base, ops)])
        assert call(geo) == full_shape(geo, base)


@SETTINGS
@given(geometries(), st.data())
def test_every_reachable_output_shape_round_trips(geo, data):
    base = sizes(geo, [0] * geo["n"])
    top = [b + m for b, m in zip(base, max_ops(geo))]
    if min(top) < 0:
        return
    target = [data.draw(st.integers(max(b, 0), t)) for b, t in zip(base, top)]
    assert call(geo, output_shape=target) == full_shape(geo, target)
    # Same thing as the derived output_padding, and as a full (batch, ..., channels) shape.
    assert call(geo, output_padding=[t - b for t, b in zip(target, base)]) == full_shape(geo, target)
    assert call(geo, output_shape=full_shape(geo, target)) == full_shape(geo, target)


@SETTINGS
@given(geometries(), st.data())
def test_unreachable_output_shape_names_the_reachable_range(geo, data):
    base = sizes(geo, [0] * geo["n"])
    top = [b + m for b, m in zip(base, max_ops(geo))]
    if min(top) < 0:
        return
    target = [data.draw(st.integers(max(b, 0), t)) for b, t in zip(base, top)]
    j = data.draw(st.integers(0, geo["n"] - 1))
    below = base[j] - 1
    target[j] = data.draw(st.sampled_from([top[j] + 1, top[j] + 7] + ([below] if below >= 0 else [])))
    message = (
        rf"`output_shape` {re.escape(str(tuple(target)))} is not reachable: spatial dimension {j} "
        rf"can have any size from {max(base[j], 0)} to {top[j]} .*got {target[j]}\."
    )
    with pytest.raises(ValueError, match=message):
        call(geo, output_shape=target)
