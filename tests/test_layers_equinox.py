"""``jaxconvt.equinox`` against ``equinox.nn.ConvTranspose*`` (its oracle) and torch (``from_torch``).

* Signatures, fields and default initialisation equal Equinox's (bitwise, same key).
* A seeded grid of 1-D to 3-D configurations (strides, dilation, every padding form, output
  padding, groups, ``padding_mode="CIRCULAR"``, vmapped batches): outputs and gradients with
  respect to the input, the weight and the bias equal Equinox's to float32 rounding. The grid
  keeps every input at least as large as the dilated kernel: XLA:CPU can abort the process on
  ``lhs_dilation`` convolutions whose window is larger than their input (SEMANTICS.md), and
  Equinox's layer is one. Each side of the grid is one ``jax.jit`` (compile time dominates).
* Checkpoints move both ways (``tree_serialise_leaves`` / ``tree_deserialise_leaves``, ``tree_at``).
* A training step under ``eqx.filter_jit`` goes through jaxconvt's primitive only.
* ``from_torch`` against torch modules: plain, both weight-norm forms, groups, dilation,
  output padding, no bias; and its errors. The layers' own errors.

Parameters of the grid come from numpy (set with ``eqx.tree_at`` on layers made by
``eqx.filter_eval_shape``): on jax 0.10.2 the first compile of ``jax.random.uniform`` per shape
takes seconds under the default ``jax_threefry_partitionable``, so the initialisation test uses
``jax.threefry_partitionable(False)`` (both libraries draw through the same calls either way).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import sys

import numpy as np
import pytest

eqx = pytest.importorskip("equinox")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxconvt import equinox as jeqx  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
from tests._keras_worker import FAST_COMPILE  # noqa: E402

PAIRS = [
    (jeqx.ConvTranspose, eqx.nn.ConvTranspose),
    (jeqx.ConvTranspose1d, eqx.nn.ConvTranspose1d),
    (jeqx.ConvTranspose2d, eqx.nn.ConvTranspose2d),
    (jeqx.ConvTranspose3d, eqx.nn.ConvTranspose3d),
]
KEY = jax.ShapeDtypeStruct((2,), jnp.uint32)  # for filter_eval_shape: no initialisation runs


def _close(a, b, what):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    scale = max(1.0, float(np.abs(b).max(initial=0.0)))
    np.testing.assert_allclose(a, b, rtol=0, atol=2e-5 * scale, err_msg=what)


def _with_params(layer, weight, bias):
    layer = eqx.tree_at(lambda m: m.weight, layer, jnp.asarray(weight))
    if bias is not None:
        layer = eqx.tree_at(lambda m: m.bias, layer, jnp.asarray(bias))
    return layer


def _pair(kwargs, seed):
    """(jaxconvt layer, equinox layer) with the same seeded numpy parameters."""
    ours = eqx.filter_eval_shape(jeqx.ConvTranspose, **kwargs, key=KEY)
    ref = eqx.filter_eval_shape(eqx.nn.ConvTranspose, **kwargs, key=KEY)
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal(ref.weight.shape).astype(np.float32)
    bias = None if ref.bias is None else rng.standard_normal(ref.bias.shape).astype(np.float32)
    return _with_params(ours, weight, bias), _with_params(ref, weight, bias)


# --------------------------------------------------------------------------- drop-in surface


@pytest.mark.parametrize("ours, theirs", PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_signatures_are_equinox_s(ours, theirs):
    mine, ref = inspect.signature(ours.__init__), inspect.signature(theirs.__init__)
    assert [(p.name, p.kind, p.default) for p in mine.parameters.values()] == [
        (p.name, p.kind, p.default) for p in ref.parameters.values()
    ]
    assert [f.name for f in dataclasses.fields(ours)] == [f.name for f in dataclasses.fields(theirs)]
    assert inspect.signature(ours.__call__).parameters.keys() == inspect.signature(theirs.__call__).parameters.keys()


@pytest.mark.parametrize(
    "cls_index, args, kwargs",
    [
        (2, (4, 6, 3), dict(stride=2, padding="same", groups=2)),
        (1, (3, 2, (5,)), dict(dilation=2, output_padding=0, use_bias=False)),
        (3, (2, 4, (2, 1, 3)), dict(stride=(1, 2, 1), padding=((0, 1), (1, 0), (2, 2)), dtype=jnp.complex64)),
    ],
)
def test_initialisation_and_fields_equal_equinox_s(cls_index, args, kwargs):
    ours, theirs = PAIRS[cls_index]
    with jax.threefry_partitionable(False):
        mine = ours(*args, **kwargs, key=jax.random.PRNGKey(3))
        ref = theirs(*args, **kwargs, key=jax.random.PRNGKey(3))
    for field in dataclasses.fields(ref):
        a, b = getattr(mine, field.name), getattr(ref, field.name)
        if isinstance(b, jax.Array):
            assert a.dtype == b.dtype and a.shape == b.shape and bool((a == b).all()), field.name
        else:
            assert a == b, (field.name, a, b)
    assert jax.tree_util.tree_structure(mine).num_leaves == jax.tree_util.tree_structure(ref).num_leaves


# --------------------------------------------------------------------------- the grid


def _grid_config(rng, form):
    n = int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25]))
    groups = int(rng.choice([1, 1, 2, 3]))
    k = [int(v) for v in rng.integers(1, 4 if n < 3 else 3, n)]
    s = [int(v) for v in rng.integers(1, 4, n)]
    d = [int(v) for v in rng.integers(1, 3, n)] if rng.random() < 0.5 else [1] * n
    op = [int(rng.integers(0, si)) for si in s] if rng.random() < 0.5 else [0] * n
    mode = "ZEROS"
    if form == 0:
        padding = "SAME"
    elif form == 1:
        padding = "same_lower"
    elif form == 2:
        padding = "VALID"
    elif form == 3:
        padding = int(rng.integers(0, 3))
    elif form == 4:
        padding = [int(v) for v in rng.integers(0, 3, n)]
    elif form == 5:
        padding = tuple((int(rng.integers(0, 3)), int(rng.integers(0, 3))) for _ in range(n))
    else:
        padding, mode, op = str(rng.choice(["SAME", "SAME_LOWER"])), "CIRCULAR", [0] * n
    ke = [(kk - 1) * dd + 1 for kk, dd in zip(k, d)]
    spatial = [int(rng.integers(e, e + 3)) for e in ke]  # input >= dilated kernel (see the module docstring)
    kwargs = dict(
        num_spatial_dims=n,
        in_channels=groups * int(rng.integers(1, 3)),
        out_channels=groups * int(rng.integers(1, 3)),
        kernel_size=k if rng.random() < 0.7 else k[0],
        stride=s,
        padding=padding,
        output_padding=op,
        dilation=d,
        groups=groups,
        use_bias=bool(rng.random() < 0.8),
        padding_mode=mode,
    )
    if not isinstance(kwargs["kernel_size"], list):
        kwargs["kernel_size"] = k = [k[0]] * n
        spatial = [max(v, (k[0] - 1) * dd + 1) for v, dd in zip(spatial, d)]
    return kwargs, spatial


def _grid(size, seed):
    """``size`` configurations on which Equinox's layer runs and gives a non-empty output."""
    rng, grid = np.random.default_rng(seed), []
    while len(grid) < size:
        kwargs, spatial = _grid_config(rng, form=len(grid) % 7)
        ref = eqx.filter_eval_shape(eqx.nn.ConvTranspose, **kwargs, key=KEY)
        try:
            x = jax.ShapeDtypeStruct((kwargs["in_channels"], *spatial), jnp.float32)
            shape = eqx.filter_eval_shape(lambda m, x: m(x), ref, x).shape
        except ValueError:  # lax refuses the crop
            continue
        if min(shape) > 0:
            grid.append((kwargs, spatial))
    return grid


GRID = _grid(21, seed=1000)  # three of each padding form


def _value_and_grads(layers, xs, cots):
    """Per layer: the vmapped output, and the gradients of <output, cot> for input, weight and bias."""

    def one(layer, x, cot):
        def loss(layer, x):
            y = jax.vmap(layer)(x)
            return jnp.sum(y * cot), y

        (_, y), grads = eqx.filter_value_and_grad(loss, has_aux=True)(layer, x)
        gx = jax.grad(lambda x: loss(layer, x)[0])(x)
        return y, gx, grads.weight, grads.bias

    return [one(layer, x, cot) for layer, x, cot in zip(layers, xs, cots)]


def test_grid_values_and_gradients_equal_equinox_s():
    ours, refs, xs = [], [], []
    for index, (kwargs, spatial) in enumerate(GRID):
        mine, ref = _pair(kwargs, seed=index)
        ours.append(mine)
        refs.append(ref)
        rng = np.random.default_rng(500 + index)
        xs.append(rng.standard_normal((2, kwargs["in_channels"], *spatial)).astype(np.float32))
    shapes = [jax.eval_shape(jax.vmap(ref), x).shape for ref, x in zip(refs, xs)]
    cots = [np.random.default_rng(900 + i).standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)]
    # One compiled program per library for the whole grid; the layers' static fields are
    # part of the program, their arrays its arguments.
    results = {}
    for name, layers in (("ours", ours), ("equinox", refs)):
        params, static = eqx.partition(layers, eqx.is_array)
        fn = jax.jit(lambda params, xs, cots, static=static: _value_and_grads(eqx.combine(params, static), xs, cots))
        results[name] = fn.lower(params, xs, cots).compile(FAST_COMPILE)(params, xs, cots)
    for (kwargs, _), mine, ref in zip(GRID, results["ours"], results["equinox"]):
        for what, a, b in zip(("output", "d/dx", "d/dweight", "d/dbias"), mine, ref):
            if b is None:
                assert a is None
            else:
                _close(a, b, f"{what} for {kwargs}")


def test_empty_output_like_equinox():
    # Crops larger than the scatter result leave nothing; Equinox (lax) returns an empty array.
    mine, ref = _pair(dict(num_spatial_dims=1, in_channels=1, out_channels=2, kernel_size=2, padding=2), 0)
    x = np.ones((1, 2), np.float32)
    assert mine(x).shape == ref(x).shape == (2, 0)


# --------------------------------------------------------------------------- checkpoints, speed


def test_checkpoints_move_both_ways(tmp_path):
    kwargs = dict(num_spatial_dims=2, in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, groups=2)
    mine, ref = _pair(kwargs, seed=7)
    x = np.random.default_rng(1).standard_normal((4, 5, 5)).astype(np.float32)
    blank_mine, blank_ref = _pair(kwargs, seed=8)  # other parameters, same structure
    eqx.tree_serialise_leaves(tmp_path / "equinox.eqx", ref)
    loaded = eqx.tree_deserialise_leaves(tmp_path / "equinox.eqx", blank_mine)
    assert type(loaded) is jeqx.ConvTranspose
    _close(loaded(x), ref(x), "equinox checkpoint -> jaxconvt layer")
    eqx.tree_serialise_leaves(tmp_path / "jaxconvt.eqx", mine)
    back = eqx.tree_deserialise_leaves(tmp_path / "jaxconvt.eqx", blank_ref)
    _close(back(x), mine(x), "jaxconvt checkpoint -> equinox layer")
    swapped = eqx.tree_at(lambda m: (m.weight, m.bias), blank_mine, (ref.weight, ref.bias))
    _close(swapped(x), ref(x), "eqx.tree_at with equinox's parameters")


def test_training_step_uses_only_jaxconvt():
    layer, _ = _pair(dict(num_spatial_dims=2, in_channels=8, out_channels=4, kernel_size=4, stride=2, padding=1), 0)
    x = np.ones((3, 8, 6, 6), np.float32)

    @eqx.filter_jit
    def step(layer, x):
        grads = eqx.filter_grad(lambda m: jnp.mean(jax.vmap(m)(x) ** 2))(layer)
        return jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, layer, grads)

    jaxpr = str(
        jax.make_jaxpr(lambda p: step(eqx.combine(p, eqx.filter(layer, eqx.is_array, inverse=True)), x))(
            eqx.filter(layer, eqx.is_array)
        )
    )
    assert jaxpr.count("jaxconvt_conv_transpose") == 2  # forward and kernel gradient; no input gradient needed
    assert "conv_general_dilated" not in jaxpr
    new = step(layer, x)
    assert new.weight.shape == layer.weight.shape and not bool((new.weight == layer.weight).all())


# --------------------------------------------------------------------------- from_torch

torch = pytest.importorskip("torch")


def _torch_modules():
    torch.manual_seed(0)
    nn, wn, pwn = torch.nn, torch.nn.utils.weight_norm, torch.nn.utils.parametrizations.weight_norm
    return [
        ("1d plain", nn.ConvTranspose1d(4, 6, 16, 8, padding=4, groups=2)),
        ("1d weight_norm", wn(nn.ConvTranspose1d(4, 2, 4, 2, padding=1, output_padding=1, dilation=2))),
        ("1d parametrized", pwn(nn.ConvTranspose1d(3, 3, 5, 3, padding=2, output_padding=2, groups=3))),
        ("2d parametrized no bias", pwn(nn.ConvTranspose2d(4, 6, 3, 2, 1, 1, groups=2, bias=False))),
        ("2d dilation > stride", nn.ConvTranspose2d(2, 4, (3, 2), (1, 2), (2, 0), (1, 0), dilation=(2, 1))),
        ("3d weight_norm", wn(nn.ConvTranspose3d(2, 3, (2, 3, 1), (1, 2, 3), padding=(0, 1, 0), dilation=(2, 1, 1)))),
    ]  # fmt: skip


def test_from_torch_equals_torch():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.nn.utils.weight_norm is deprecated
        modules = _torch_modules()
    layers, xs, refs = [], [], []
    for _, module in modules:
        n = module.weight.ndim - 2
        layer = [jeqx.ConvTranspose1d, jeqx.ConvTranspose2d, jeqx.ConvTranspose3d][n - 1].from_torch(module)
        assert type(layer).__name__ == f"ConvTranspose{n}d" and layer.num_spatial_dims == n
        assert layer.weight.dtype == jnp.float32 and layer.use_bias == (module.bias is not None)
        layers.append(layer)
        xs.append(torch.randn(2, module.in_channels, *([5] * n)))
        refs.append(module(xs[-1]).detach().numpy())
    generic = jeqx.ConvTranspose.from_torch(modules[4][1])
    assert type(generic) is jeqx.ConvTranspose
    layers.append(generic)
    xs.append(xs[4])
    refs.append(refs[4])
    outs = eqx.filter_jit(lambda layers, xs: [jax.vmap(m)(x) for m, x in zip(layers, xs)])(
        layers, [x.numpy() for x in xs]
    )
    for (name, _), out, ref in zip(modules + [("generic class", None)], outs, refs):
        _close(out, ref, name)
    # weight_norm's weight_v changed after the forward pass: the reader recomputes g * v / |v|
    name, module = modules[1]
    with torch.no_grad():
        module.weight_v.mul_(2.0).add_(0.1)
    x = torch.randn(1, module.in_channels, 7)
    _close(jax.vmap(jeqx.ConvTranspose1d.from_torch(module))(x.numpy()), module(x).detach().numpy(), "stale weight")


def test_from_torch_dtype():
    module = torch.nn.ConvTranspose1d(2, 2, 3).double()
    assert jeqx.ConvTranspose1d.from_torch(module).weight.dtype == jnp.float32  # canonicalised (no x64)
    layer = jeqx.ConvTranspose1d.from_torch(module, dtype=jnp.bfloat16)
    assert layer.weight.dtype == layer.bias.dtype == jnp.bfloat16


def test_from_torch_errors():
    with pytest.raises(TypeError, match=r"ConvTranspose1d, ConvTranspose2d or ConvTranspose3d module; got torch"):
        jeqx.ConvTranspose.from_torch(torch.nn.Conv2d(2, 2, 3))
    with pytest.raises(TypeError, match=r"must be a torch.nn.ConvTranspose2d .* got a 1-D ConvTranspose1d"):
        jeqx.ConvTranspose2d.from_torch(torch.nn.ConvTranspose1d(2, 2, 3))
    with pytest.raises(TypeError, match=r"takes `stride` from the torch module.*stride=2"):
        jeqx.ConvTranspose1d.from_torch(torch.nn.ConvTranspose1d(2, 2, 3), stride=2)
    with pytest.raises(TypeError, match=r"takes only `dtype` besides the module; got key"):
        jeqx.ConvTranspose1d.from_torch(torch.nn.ConvTranspose1d(2, 2, 3), key=KEY)
    module = torch.nn.ConvTranspose2d(2, 2, 3)
    module.padding_mode = "reflect"
    with pytest.raises(ValueError, match=r"`padding_mode` 'reflect' of the torch module is not supported"):
        jeqx.ConvTranspose2d.from_torch(module)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(padding_mode="REFLECT"), ValueError, r"`padding_mode` 'REFLECT' is not supported"),
        (dict(padding_mode="wrap"), ValueError, r"`padding_mode` must be one of"),
        (dict(padding_mode="circular", padding=1), ValueError, r"needs padding='SAME' or 'SAME_LOWER'"),
        (dict(padding_mode="CIRCULAR", padding="SAME", output_padding=1), ValueError, r"output_padding 0"),
        (dict(output_padding=2), ValueError, r"`output_padding` must be smaller than `stride` or `dilation`"),
        (dict(groups=3), ValueError, r"`groups` must divide `in_channels` and `out_channels`"),
        (dict(padding="full"), ValueError, r"`padding` must be 'SAME', 'SAME_LOWER' or 'VALID'"),
        (dict(padding=-1), ValueError, r"got negative padding -1"),
        (dict(padding=[1, (1, 2)]), ValueError, r"a sequence of 2 \(low, high\) pairs"),
        (dict(padding=1.5), TypeError, r"`padding` must be"),
        (dict(stride=0), ValueError, r"`stride` must be >= 1"),
        (dict(kernel_size=(3, 3, 3)), ValueError, r"`kernel_size` must be an int or a sequence of 2 ints"),
        (dict(in_channels=0), ValueError, r"`in_channels` must be >= 1"),
    ],
)
def test_constructor_errors(kwargs, error, match):
    base = dict(in_channels=4, out_channels=2, kernel_size=3, stride=2)
    with pytest.raises(error, match=match):
        jeqx.ConvTranspose2d(**{**base, **kwargs}, key=KEY)


def test_call_errors_and_output_padding_beyond_equinox():
    layer, _ = _pair(dict(num_spatial_dims=2, in_channels=4, out_channels=2, kernel_size=3), 0)
    with pytest.raises(
        ValueError, match=r"`x` must have shape \(in_channels=4, \*spatial\) .* got shape \(2, 4, 5, 5\)"
    ):
        layer(np.ones((2, 4, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"got shape \(3, 5, 5\)"):
        eqx.filter_jit(layer)(np.ones((3, 5, 5), np.float32))
    # PyTorch's rule output_padding < stride or < dilation (Equinox: < stride only): the output
    # is the dilation-1 layer's zero-extended by one at the end.
    wide = eqx.filter_eval_shape(jeqx.ConvTranspose1d, 1, 1, 2, dilation=2, output_padding=1, key=KEY)
    wide = _with_params(wide, np.ones((1, 1, 2), np.float32), np.zeros((1, 1), np.float32))
    assert np.asarray(wide(np.ones((1, 3), np.float32))).tolist() == [[1.0, 1.0, 2.0, 1.0, 1.0, 0.0]]


def test_core_import_does_not_import_equinox_and_missing_equinox_names_the_extra():
    import subprocess

    code = (
        "import sys; import jaxconvt; assert 'equinox' not in sys.modules and 'keras' not in sys.modules\n"
        "sys.modules['equinox'] = None\n"
        "try:\n    import jaxconvt.equinox\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "jaxconvt.equinox needs `equinox`" in out.stdout and "pip install 'jaxconvt[equinox]'" in out.stdout
