"""``jaxconvt.nnx`` and ``jaxconvt.linen``: drop-ins for Flax's ``ConvTranspose`` layers.

* Drop-in: every constructor argument / field of Flax's layer with the same default; a subclass;
  the same parameter names, shapes, dtypes and initial values from the same seed.
* A seeded random grid (1-D..3-D, strides, kernel dilation, 'SAME' / 'VALID' / 'CIRCULAR' /
  int / per-dimension / signed pair paddings, both ``transpose_kernel``, bias on/off, masks,
  several and no batch dimensions, and jaxconvt's ``groups``, ``output_padding`` and
  ``torch_padding``): values and gradients w.r.t. the input, the kernel and the bias equal Flax's
  own layers' (evaluated in a child process, tests/_layers_flax_worker.py, which maps the
  additions onto plain Flax layers) to float32 rounding.
* ``torch_padding`` also against the numpy scatter reference; the default ``transpose_kernel``
  layout with groups against ``lax.conv_general_dilated(feature_group_count=...)``.
* ``from_torch``: torch ``ConvTranspose{1,2,3}d`` modules, plain and with both weight-norm forms,
  groups, dilation, output padding, bias on/off: outputs and gradients equal torch's.
* Checkpoints: ``nnx.state`` / ``nnx.update`` both ways, Linen variable dicts, msgpack bytes.
* A jitted training step equals Flax's and runs through jaxconvt's primitive.
* Errors: clear ``TypeError`` / ``ValueError`` naming the argument, also under ``nnx.jit``.
"""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

nnx = pytest.importorskip("flax.nnx")
nn = pytest.importorskip("flax.linen")
serialization = pytest.importorskip("flax.serialization")
torch = pytest.importorskip("torch")

import jaxconvt.linen  # noqa: E402
import jaxconvt.nnx  # noqa: E402
from tests import _layers_flax_worker as W  # noqa: E402
from tests.reference import scatter_conv_transpose  # noqa: E402

RTOL = 1e-5  # relative to the largest reference magnitude: float32 rounding
GRID = W.grid()


def seeded(seed):
    """A numpy-seeded initializer: unlike Flax's random ones it compiles nothing (keeps the file fast)."""

    def init(key, shape, dtype=jnp.float32):
        return jnp.asarray(np.random.default_rng(seed).standard_normal(shape) * 0.5, dtype)

    return init


FAST = dict(kernel_init=seeded(0), bias_init=seeded(1))  # nonzero bias, so that it is tested too
call = nnx.jit(lambda layer, x: layer(x))  # one compile per layer and shape instead of op by op


def assert_close(actual, expected, what, rtol=RTOL):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    if expected.size:
        scale = max(float(np.max(np.abs(expected.astype(np.float64)))), 1e-30)
        err = float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64)))) / scale
        assert err <= rtol, f"{what}: max error {err:.2e} of max |ref| {scale:.3g}"


# --------------------------------------------------------------------------- drop-in


def test_nnx_signature_is_flax_plus_keyword_only_additions():
    ours = inspect.signature(jaxconvt.nnx.ConvTranspose.__init__).parameters
    theirs = inspect.signature(nnx.ConvTranspose.__init__).parameters
    assert list(ours)[: len(theirs)] == list(theirs)
    for name, p in theirs.items():
        assert ours[name].kind == p.kind, name
        assert ours[name].default is p.default or ours[name].default == p.default, name
    added = [name for name in ours if name not in theirs]
    assert added == ["groups", "output_padding", "torch_padding"]
    assert all(ours[name].kind is inspect.Parameter.KEYWORD_ONLY for name in added)
    assert issubclass(jaxconvt.nnx.ConvTranspose, nnx.ConvTranspose)


def test_linen_fields_are_flax_plus_keyword_only_additions():
    ours = {f.name: f for f in dataclasses.fields(jaxconvt.linen.ConvTranspose)}
    theirs = {f.name: f for f in dataclasses.fields(nn.ConvTranspose)}
    for name, f in theirs.items():
        assert ours[name].default is f.default or ours[name].default == f.default, name
    added = [name for name in ours if name not in theirs]
    assert added == ["groups", "output_padding", "torch_padding"]
    assert all(ours[name].kw_only for name in added)
    assert jaxconvt.linen.ConvTranspose(4, (3,), (2,), "VALID").padding == "VALID"  # positional like Flax
    assert issubclass(jaxconvt.linen.ConvTranspose, nn.ConvTranspose)


INIT_CASES = [
    dict(in_features=3, out_features=4, kernel_size=(3, 3), strides=2),
    dict(in_features=2, out_features=3, kernel_size=(2, 3, 2), transpose_kernel=True, param_dtype=jnp.bfloat16),
]


@pytest.mark.parametrize("case", INIT_CASES)
def test_same_parameters_from_the_same_seed(case):
    mine = jaxconvt.nnx.ConvTranspose(**case, rngs=nnx.Rngs(7))
    flax_layer = nnx.ConvTranspose(**case, rngs=nnx.Rngs(7))
    a, b = nnx.to_pure_dict(nnx.state(mine, nnx.Param)), nnx.to_pure_dict(nnx.state(flax_layer, nnx.Param))
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(lambda u, v: np.testing.assert_array_equal(u, v) or None, a, b)
    assert jax.tree.map(lambda u: u.dtype, a) == jax.tree.map(lambda u: u.dtype, b)

    lcase = {k: v for k, v in case.items() if k not in ("in_features", "out_features")}
    lcase["strides"] = None if "strides" not in case else case["strides"]
    x = jnp.ones((1, *(4,) * len(np.atleast_1d(case["kernel_size"])), case["in_features"]))
    va = jaxconvt.linen.ConvTranspose(case["out_features"], **lcase).init(jax.random.key(3), x)
    vb = nn.ConvTranspose(case["out_features"], **lcase).init(jax.random.key(3), x)
    jax.tree.map(lambda u, v: np.testing.assert_array_equal(u, v) or None, va, vb)
    assert jax.tree.map(lambda u: (u.shape, u.dtype), va) == jax.tree.map(lambda u: (u.shape, u.dtype), vb)


# --------------------------------------------------------------------------- the grid against Flax


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    outputs, aborted = W.run_oracle(str(tmp_path_factory.mktemp("flax_oracle")), range(len(GRID)))
    return outputs, aborted


def _our_run(cfg):
    """``run(x, kernel, bias) -> y`` through jaxconvt's layer built from the config (nnx.split / merge)."""
    a = W.arrays(cfg)
    mask = None if a["mask"] is None else jnp.asarray(a["mask"])
    args = dict(
        kernel_size=cfg["kernel_size"],
        strides=cfg["strides"],
        padding=cfg["padding"],
        kernel_dilation=cfg["kernel_dilation"],
        use_bias=cfg["use_bias"],
        transpose_kernel=cfg["transpose_kernel"],
        mask=mask,
        groups=cfg["groups"],
        output_padding=cfg["output_padding"],
        torch_padding=cfg["torch_padding"],
    )
    if cfg["api"] == "nnx":
        layer = jaxconvt.nnx.ConvTranspose(cfg["in_features"], cfg["out_features"], **args, **FAST, rngs=nnx.Rngs(0))
        assert layer.kernel.shape == W.kernel_shape(cfg)
        graphdef, state = nnx.split(layer)

        def run(x, kernel, bias):
            values = jax.tree.map(lambda v: v, state)  # a fresh State holding this trace's arrays
            pure = nnx.to_pure_dict(values)
            pure["kernel"] = kernel
            if bias is not None:
                pure["bias"] = bias
            nnx.replace_by_pure_dict(values, pure)
            return nnx.merge(graphdef, values)(x)

        return run
    module = jaxconvt.linen.ConvTranspose(cfg["out_features"], **args)
    shapes = jax.eval_shape(module.init, jax.random.key(0), a["x"])
    assert shapes["params"]["kernel"].shape == W.kernel_shape(cfg)

    def run(x, kernel, bias):
        params = {"kernel": kernel} if bias is None else {"kernel": kernel, "bias": bias}
        return module.apply({"params": params}, x)

    return run


def test_grid_covers_the_modes(oracle):
    _, aborted = oracle
    assert len(aborted) <= 2, f"Flax aborted the process on {len(aborted)} grid configs: {aborted}"
    kinds = {str(c["padding"]) if isinstance(c["padding"], str) else type(c["padding"]).__name__ for c in GRID}
    assert {"SAME", "VALID", "CIRCULAR", "int", "list"} <= kinds
    assert {c["n"] for c in GRID} == {1, 2, 3} and {c["api"] for c in GRID} == {"nnx", "linen"}
    assert {c["transpose_kernel"] for c in GRID} == {False, True}
    assert sum(c["groups"] > 1 for c in GRID) >= 8 and sum(c["output_padding"] is not None for c in GRID) >= 8
    assert sum(c["torch_padding"] is not None for c in GRID) >= 4 and sum(c["mask"] for c in GRID) >= 4
    assert any(len(c["x_shape"]) == c["n"] + 1 for c in GRID) and any(len(c["x_shape"]) == c["n"] + 3 for c in GRID)


@pytest.mark.parametrize("index", range(len(GRID)))
def test_values_and_gradients_equal_flax(oracle, index):
    outputs, aborted = oracle
    if index in aborted:
        pytest.skip("Flax's layer aborted the process on this config (XLA:CPU fatal check)")
    cfg, ref = GRID[index], outputs[index]
    a = W.arrays(cfg)
    got = W.value_and_grads(_our_run(cfg), a["x"], a["kernel"], a["bias"])
    assert sorted(got) == sorted(ref)
    for key in ref:
        assert_close(got[key], ref[key], f"{key} of {cfg}")


# --------------------------------------------------------------------------- additions against other oracles


@pytest.mark.parametrize(
    "ksize, strides, dilation, torch_padding, output_padding, groups",
    [
        ((3,), (2,), (1,), [(0, 2)], (1,), 1),
        ((4, 3), (2, 3), (1, 2), [(1, 0), (2, 3)], (0, 2), 2),
        ((2, 3, 2), (1, 2, 2), (2, 1, 1), 1, (1, 0, 1), 3),
    ],
)
def test_torch_padding_matches_the_numpy_reference(ksize, strides, dilation, torch_padding, output_padding, groups):
    n = len(ksize)
    rng = np.random.default_rng(n)
    c_in, c_out = 2 * groups, 3 * groups
    x = rng.standard_normal((2, *(4,) * n, c_in)).astype(np.float32)
    layer = jaxconvt.nnx.ConvTranspose(
        c_in,
        c_out,
        ksize,
        strides,
        kernel_dilation=dilation,
        transpose_kernel=True,  # jaxconvt's own kernel layout: the reference takes the kernel as is
        use_bias=False,
        groups=groups,
        torch_padding=torch_padding,
        output_padding=output_padding,
        **FAST,
        rngs=nnx.Rngs(1),
    )
    pairs = [(torch_padding, torch_padding)] * n if isinstance(torch_padding, int) else torch_padding
    crops = [(lo, hi - op) for (lo, hi), op in zip(pairs, output_padding)]
    ref = scatter_conv_transpose(x, np.asarray(layer.kernel[...]), strides, dilation, crops, groups)
    assert_close(call(layer, x), ref.astype(np.float32), "torch_padding")


def test_groups_default_layout_is_lax_feature_groups():
    """transpose_kernel=False with groups: the correlation kernel of a grouped lhs-dilated convolution."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 4, 6)).astype(np.float32)
    layer = jaxconvt.nnx.ConvTranspose(
        6, 9, (3, 2), (2, 1), padding=[(1, 2), (0, 1)], kernel_dilation=(1, 2), groups=3, **FAST, rngs=nnx.Rngs(2)
    )
    assert layer.kernel.shape == (3, 2, 2, 9)
    ref = jax.lax.conv_general_dilated(
        x,
        layer.kernel[...],
        (1, 1),
        [(1, 2), (0, 1)],
        lhs_dilation=(2, 1),
        rhs_dilation=(1, 2),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=3,
    )
    assert_close(call(layer, x), ref + layer.bias[...], "groups")


def test_more_than_three_spatial_dimensions():
    """Flax's own layer stops at 3-D (lax has no default layout beyond); the drop-in does not."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 3, 2, 2, 2)).astype(np.float32)
    layer = jaxconvt.nnx.ConvTranspose(
        2, 3, (2, 1, 2, 2), 2, transpose_kernel=True, padding="VALID", **FAST, rngs=nnx.Rngs(0)
    )
    # 'VALID' keeps the whole scatter result and zero-extends to input * stride where the kernel is shorter.
    crops = [(0, -max(2 - k, 0)) for k in (2, 1, 2, 2)]
    ref = scatter_conv_transpose(x, np.asarray(layer.kernel[...]), (2,) * 4, (1,) * 4, crops)
    assert_close(call(layer, x), (ref + np.asarray(layer.bias[...])).astype(np.float32), "4-D")


def test_dtypes_follow_flax():
    x = np.random.default_rng(0).standard_normal((2, 6, 3)).astype(np.float32)
    for kwargs in (
        dict(param_dtype=jnp.bfloat16),
        dict(dtype=jnp.bfloat16),
        dict(dtype=jnp.float16, preferred_element_type=jnp.float32),
    ):
        mine = jaxconvt.nnx.ConvTranspose(3, 4, 3, 2, **FAST, rngs=nnx.Rngs(0), **kwargs)
        flax_layer = nnx.ConvTranspose(3, 4, 3, 2, **FAST, rngs=nnx.Rngs(0), **kwargs)
        assert mine.kernel.dtype == flax_layer.kernel.dtype
        y, ref = call(mine, x), call(flax_layer, x)
        assert y.dtype == ref.dtype, kwargs
        assert_close(y.astype(np.float32), ref.astype(np.float32), str(kwargs), rtol=1e-2)


# --------------------------------------------------------------------------- from_torch

TORCH_MODULES = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d, 3: torch.nn.ConvTranspose3d}


def _torch_case(seed):
    rng = np.random.default_rng(seed)
    n = [1, 2, 3][seed % 3]
    groups = int(rng.choice([1, 2, 3]))
    ksize = [int(v) for v in rng.integers(1, 4, n)]
    stride = [int(v) for v in rng.integers(1, 4, n)]
    dilation = [int(v) for v in rng.integers(1, 3, n)]
    padding = [int(rng.integers(0, (k - 1) * d + 1)) for k, d in zip(ksize, dilation)]
    output_padding = [int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation)]
    wrap = ["plain", "weight_norm", "parametrizations"][seed % 3 if seed < 9 else int(rng.integers(3))]
    return dict(
        n=n,
        in_channels=groups * int(rng.integers(1, 3)),
        out_channels=groups * int(rng.integers(1, 3)),
        kernel_size=tuple(ksize),
        stride=tuple(stride),
        padding=tuple(padding),
        output_padding=tuple(output_padding),
        dilation=tuple(dilation),
        groups=groups,
        bias=bool(rng.random() < 0.7),
        wrap=wrap,
        api=["nnx", "linen"][(seed // 3) % 2],
        transpose_kernel=bool(seed % 4 < 2),
        spatial=tuple(int(v) for v in rng.integers(1, 5, n)),
    )


def _torch_module(case, seed):
    torch.manual_seed(seed)
    args = {k: case[k] for k in ("in_channels", "out_channels", "kernel_size", "stride", "padding")}
    args.update({k: case[k] for k in ("output_padding", "groups", "bias", "dilation")})
    m = TORCH_MODULES[case["n"]](**args)
    if case["wrap"] == "weight_norm":
        m = torch.nn.utils.weight_norm(m)
        with torch.no_grad():  # move g away from ||v|| so that a stale weight would show
            m.weight_g.mul_(1.5)
    elif case["wrap"] == "parametrizations":
        m = torch.nn.utils.parametrizations.weight_norm(m, dim=1)
        with torch.no_grad():
            m.parametrizations.weight.original0.mul_(0.5)
    return m


@pytest.mark.parametrize("seed", range(14))
def test_from_torch_equals_torch(seed):
    case = _torch_case(seed)
    m = _torch_module(case, seed)
    x = np.random.default_rng(seed).standard_normal((2, case["in_channels"], *case["spatial"])).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = m(xt)
    w = W.cotangent(tuple(yt.shape))
    (yt * torch.from_numpy(w)).sum().backward()
    to_last = lambda a: np.moveaxis(np.asarray(a), 1, -1)  # noqa: E731

    if case["api"] == "nnx":
        layer = jaxconvt.nnx.ConvTranspose.from_torch(m, transpose_kernel=case["transpose_kernel"])
        assert isinstance(layer, jaxconvt.nnx.ConvTranspose) and layer.groups == case["groups"]
        graphdef, state = nnx.split(layer)

        def loss(state, x):
            y = nnx.merge(graphdef, state)(x)
            return (y * to_last(w)).sum(), y

        (gstate, gx), y = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))(state, to_last(x))
        grads = nnx.to_pure_dict(gstate)
    else:
        module, variables = jaxconvt.linen.ConvTranspose.from_torch(m, transpose_kernel=case["transpose_kernel"])

        def loss(variables, x):
            y = module.apply(variables, x)
            return (y * to_last(w)).sum(), y

        (gvars, gx), y = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))(variables, to_last(x))
        grads = gvars["params"]
    assert_close(y, to_last(yt.detach().numpy()), f"output {case}")
    assert_close(gx, to_last(xt.grad.numpy()), f"input gradient {case}")
    assert ("bias" in grads) == case["bias"]
    if case["bias"]:
        assert_close(grads["bias"], m.bias.grad.numpy(), f"bias gradient {case}")
    if case["wrap"] == "plain":
        kernel_t = np.transpose(m.weight.grad.numpy(), (*range(2, case["n"] + 2), 1, 0))
        expect = jaxconvt._layers.jaxconvt_kernel_to_flax(kernel_t, case["transpose_kernel"], case["groups"])
        assert_close(grads["kernel"], expect, f"kernel gradient {case}")


def test_from_torch_cases_cover_the_forms():
    cases = [_torch_case(s) for s in range(14)]
    assert {c["wrap"] for c in cases} == {"plain", "weight_norm", "parametrizations"}
    assert {c["n"] for c in cases} == {1, 2, 3} and {c["api"] for c in cases} == {"nnx", "linen"}
    assert any(c["groups"] > 1 for c in cases) and any(max(c["dilation"]) > 1 for c in cases)
    assert any(max(c["output_padding"]) > 0 for c in cases) and {c["bias"] for c in cases} == {False, True}


def test_from_torch_keeps_float64_and_takes_keywords():
    m = torch.nn.ConvTranspose1d(2, 3, 3, stride=2).double()
    with jax.enable_x64(True):
        layer = jaxconvt.nnx.ConvTranspose.from_torch(m, precision="highest")
        assert layer.kernel.dtype == jnp.float64 and layer.precision == "highest"
        x = np.random.default_rng(0).standard_normal((1, 2, 4))
        y = layer(np.moveaxis(x, 1, -1))
        np.testing.assert_allclose(np.moveaxis(y, -1, 1), m(torch.from_numpy(x)).detach().numpy(), rtol=1e-12)
    module, variables = jaxconvt.linen.ConvTranspose.from_torch(m, param_dtype=jnp.float32, name="up")
    assert module.name == "up" and variables["params"]["kernel"].dtype == jnp.float32


# --------------------------------------------------------------------------- checkpoints and training


def test_nnx_state_round_trips_with_flax():
    x = np.random.default_rng(0).standard_normal((2, 5, 5, 3)).astype(np.float32)
    kwargs = dict(kernel_size=(3, 3), strides=2, padding=[(2, 1), (0, 2)], kernel_dilation=(1, 2))
    flax_layer = nnx.ConvTranspose(3, 4, **kwargs, kernel_init=seeded(1), bias_init=seeded(2), rngs=nnx.Rngs(0))
    mine = jaxconvt.nnx.ConvTranspose(3, 4, **kwargs, kernel_init=seeded(3), bias_init=seeded(4), rngs=nnx.Rngs(0))
    nnx.update(mine, nnx.state(flax_layer))  # Flax's state into ours
    assert_close(call(mine, x), call(flax_layer, x), "flax -> jaxconvt")
    other = jaxconvt.nnx.ConvTranspose(3, 4, **kwargs, kernel_init=seeded(5), bias_init=seeded(6), rngs=nnx.Rngs(0))
    blob = serialization.to_bytes(nnx.to_pure_dict(nnx.state(other)))  # a msgpack checkpoint of ours
    restored = serialization.from_bytes(nnx.to_pure_dict(nnx.state(flax_layer)), blob)
    nnx.update(flax_layer, restored)  # into Flax's layer
    assert_close(call(flax_layer, x), call(other, x), "jaxconvt -> flax via msgpack")


def test_linen_variables_round_trip_with_flax():
    x = np.random.default_rng(0).standard_normal((2, 6, 3)).astype(np.float32)
    kwargs = dict(padding="CIRCULAR", transpose_kernel=True)
    mine = jaxconvt.linen.ConvTranspose(5, (4,), (2,), **kwargs, kernel_init=seeded(0), bias_init=seeded(1))
    theirs = nn.ConvTranspose(5, (4,), (2,), **kwargs, kernel_init=seeded(2), bias_init=seeded(3))
    variables = mine.init(jax.random.key(0), x)
    blob = serialization.msgpack_serialize(variables)
    restored = serialization.msgpack_restore(blob)
    mine_apply, theirs_apply = jax.jit(mine.apply), jax.jit(theirs.apply)
    assert_close(theirs_apply(restored, x), mine_apply(variables, x), "jaxconvt -> flax")
    flax_vars = theirs.init(jax.random.key(1), x)
    assert_close(mine_apply(flax_vars, x), theirs_apply(flax_vars, x), "flax -> jaxconvt")


def test_nnx_jit_training_step_equals_flax_and_uses_the_primitive():
    x = np.random.default_rng(0).standard_normal((2, 4, 4, 4, 3)).astype(np.float32)
    kwargs = dict(kernel_size=(3, 3, 3), strides=2, padding="SAME")

    @nnx.jit
    def step(layer, x):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean(m(x) ** 2))(layer)
        nnx.update(layer, jax.tree.map(lambda p, g: p - 0.1 * g, nnx.state(layer, nnx.Param), grads))
        return loss

    mine = jaxconvt.nnx.ConvTranspose(3, 4, **kwargs, **FAST, rngs=nnx.Rngs(0))
    theirs = nnx.ConvTranspose(3, 4, **kwargs, **FAST, rngs=nnx.Rngs(0))
    assert_close(step(mine, x), step(theirs, x), "loss")
    for name in ("kernel", "bias"):
        assert_close(getattr(mine, name)[...], getattr(theirs, name)[...], f"updated {name}")

    graphdef, state = nnx.split(mine)
    loss = lambda s, x: jnp.mean(nnx.merge(graphdef, s)(x) ** 2)  # noqa: E731
    jaxpr = str(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(state, x))
    assert "jaxconvt_conv_transpose" in jaxpr and "conv_general_dilated" not in jaxpr


@pytest.mark.parametrize("padding", ["same", "Valid", "SAME_LOWER", "same_lower", "circular", "Same"])
@pytest.mark.parametrize("strides", [1, (1, 2)])
def test_other_padding_strings_run_where_flax_runs_them(padding, strides):
    """Strings other than exactly 'SAME'/'VALID'/'CIRCULAR' reach lax.conv_general_dilated in Flax as
    forward-convolution padding, at stride 1 only: the same output there, a refusal where Flax fails."""
    kw = dict(in_features=2, out_features=3, kernel_size=(4, 3), strides=strides, padding=padding)
    kw["kernel_dilation"] = (1, 2)
    x = jnp.asarray(np.random.default_rng(5).standard_normal((2, 5, 6, 2)), jnp.float32)
    try:
        want = nnx.ConvTranspose(**kw, rngs=nnx.Rngs(0))(x)
    except (ValueError, RuntimeError):
        with pytest.raises(ValueError, match="`padding`"):
            jaxconvt.nnx.ConvTranspose(**kw, rngs=nnx.Rngs(0))(x)
        assert padding.upper() == "CIRCULAR" or strides != 1
        return
    got = jaxconvt.nnx.ConvTranspose(**kw, rngs=nnx.Rngs(0))(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-5, atol=2e-5)
    assert strides == 1 and padding.upper() != "CIRCULAR"


# --------------------------------------------------------------------------- errors


def _nnx(**kw):
    args = dict(in_features=4, out_features=6, kernel_size=(3,), strides=2, **FAST, rngs=nnx.Rngs(0))
    return jaxconvt.nnx.ConvTranspose(**{**args, **kw})


CONSTRUCTOR_ERRORS = [
    (dict(padding="CAUSAL"), ValueError, r"`padding` must be 'SAME', 'VALID', 'CIRCULAR'.*got padding='CAUSAL'"),
    (dict(padding=[(1, 2, 3)]), ValueError, r"`padding` must be .*got padding=[\[(]\(1, 2, 3\),?[\])]"),
    (dict(groups=4), ValueError, r"`groups` must divide the number of output channels; got groups=4 and 6"),
    (dict(groups=0), ValueError, r"`groups` must be >= 1; got groups=0"),
    (dict(groups=2.0), TypeError, r"`groups` must be an int; got 2.0"),
    (dict(output_padding=2), ValueError, r"`output_padding` must be smaller than `strides` or `kernel_dilation`"),
    (dict(torch_padding=-1), ValueError, r"`torch_padding` must be a non-negative int.*got torch_padding=-1"),
    (dict(strides=0), ValueError, r"`strides` must be >= 1 in every spatial dimension; got strides=0"),
    (dict(kernel_dilation=(1, 2)), ValueError, r"`kernel_dilation` must be an int or a sequence of 1 ints"),
]


@pytest.mark.parametrize("kwargs, error, match", CONSTRUCTOR_ERRORS)
def test_bad_arguments_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        _nnx(**kwargs)
    module = jaxconvt.linen.ConvTranspose(6, (3,), **{"strides": (2,), **kwargs})
    with pytest.raises(error, match=match):
        jax.jit(lambda x: module.init(jax.random.key(0), x))(jnp.ones((1, 5, 4)))


CALL_ERRORS = [
    (dict(padding="CIRCULAR", output_padding=1), r"`output_padding` must be zero with padding='CIRCULAR'"),
    (dict(padding="VALID", torch_padding=1), r"`torch_padding` replaces `padding`.*got padding='VALID'"),
    (dict(mask=jnp.ones((3, 6, 4))), r"`mask` must have the kernel's shape \(3, 4, 6\); got shape \(3, 6, 4\)"),
]


@pytest.mark.parametrize("kwargs, match", CALL_ERRORS)
def test_bad_combinations_raise_at_trace_time(kwargs, match):
    layer = _nnx(**kwargs)
    with pytest.raises(ValueError, match=match):
        nnx.jit(lambda m, x: m(x))(layer, jnp.ones((1, 5, 4)))
    module = jaxconvt.linen.ConvTranspose(6, (3,), (2,), **kwargs)
    with pytest.raises(ValueError, match=match):
        module.init(jax.random.key(0), jnp.ones((1, 5, 4)))


def test_wrong_input_channels_raise_under_jit():
    with pytest.raises(ValueError, match=r"`inputs` must have shape \(\*batch, \*spatial, 4\).*got shape \(1, 5, 3\)"):
        nnx.jit(lambda m, x: m(x))(_nnx(), jnp.ones((1, 5, 3)))


def test_from_torch_errors():
    with pytest.raises(
        TypeError, match=r"from_torch needs a torch.nn.ConvTranspose1d.*got torch.nn.modules.conv.Conv2d"
    ):
        jaxconvt.nnx.ConvTranspose.from_torch(torch.nn.Conv2d(2, 2, 2))
    with pytest.raises(TypeError, match=r"got numpy.ndarray"):
        jaxconvt.linen.ConvTranspose.from_torch(np.zeros(3))
    m = torch.nn.ConvTranspose2d(2, 2, 2)
    m.padding_mode = "reflect"  # torch refuses it in the constructor; a loaded module can carry it
    for cls in (jaxconvt.nnx.ConvTranspose, jaxconvt.linen.ConvTranspose):
        with pytest.raises(ValueError, match=r"`padding_mode` 'reflect' of the torch module is not supported"):
            cls.from_torch(m)
    with pytest.raises(TypeError, match=r"takes `strides`, `padding` from the torch module.*strides=2, padding=1"):
        jaxconvt.nnx.ConvTranspose.from_torch(torch.nn.ConvTranspose1d(2, 2, 2), strides=2, padding=1)
    with pytest.raises(ValueError, match=r"uninitialized lazy module"):
        jaxconvt.linen.ConvTranspose.from_torch(torch.nn.LazyConvTranspose1d(2, 2))


def test_core_import_does_not_import_flax_and_missing_flax_names_the_extra():
    code = (
        "import sys; import jaxconvt; assert 'flax' not in sys.modules and 'torch' not in sys.modules\n"
        "sys.modules['flax'] = None\n"
        "try:\n    import jaxconvt.nnx\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=W.ROOT)
    assert out.returncode == 0, out.stderr
    assert "jaxconvt.nnx needs `flax`" in out.stdout and "pip install 'jaxconvt[flax]'" in out.stdout
