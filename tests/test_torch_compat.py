"""``jaxconvt.torch_compat`` against PyTorch 2.13 (CPU, float64).

* A seeded random grid of configurations (1-D..3-D, groups, dilation, asymmetric strides,
  padding, output_padding, bias, unbatched input, int / tuple / list / length-1 arguments,
  and perturbations torch refuses): values equal torch's where torch computes, and where torch
  refuses the adapter refuses too (torch TypeError -> TypeError, torch RuntimeError ->
  ValueError naming the argument).
* An explicit list of refused arguments (both refuse).
* ``kernel_from_torch`` / ``kernel_to_torch``: element by element, inverse of each other,
  independent of groups, and driving the core op like torch.
* Gradients (input, weight, bias) equal torch autograd's.
* ``output_size`` equals ``torch.nn.ConvTranspose{1,2,3}d.forward(input, output_size)``.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconvt
from jaxconvt import torch_compat
from tests._keras_worker import FAST_COMPILE

torch = pytest.importorskip("torch")
F = torch.nn.functional

TORCH_FN = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
JAX_FN = {1: torch_compat.conv_transpose1d, 2: torch_compat.conv_transpose2d, 3: torch_compat.conv_transpose3d}
TORCH_MODULE = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d, 3: torch.nn.ConvTranspose3d}
ARG_NAMES = ("stride", "padding", "output_padding", "groups", "dilation")

N_GRID = 520  # random configurations compared with torch (values or refusals)
N_GRAD = 28  # random configurations whose gradients are compared with torch autograd
N_OUTPUT_SIZE = 18  # random configurations for the output_size extra


def _form(rng, values):
    """One of torch's accepted spellings of a per-dimension argument."""
    r = rng.random()
    if len(set(values)) == 1 and r < 0.4:
        return values[0]
    if len(set(values)) == 1 and r < 0.55:
        return (values[0],)  # length 1: broadcast by torch
    return list(values) if r < 0.75 else tuple(values)


def random_config(seed: int) -> dict:
    """A random, mostly valid configuration; some draws perturb one argument beyond torch's rules."""
    rng = np.random.default_rng(seed)
    n = int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25]))
    groups = int(rng.choice([1, 1, 2, 3]))
    c_in = groups * int(rng.integers(1, 3))
    og = int(rng.integers(1, 3))
    kmax = 5 if n < 3 else 4
    kernel = [int(rng.integers(1, kmax)) for _ in range(n)]
    stride = [int(rng.integers(1, 4)) for _ in range(n)]
    dilation = [int(rng.choice([1, 1, 2, 3])) for _ in range(n)]
    spatial = [int(rng.integers(1, 7 if n < 3 else 5)) for _ in range(n)]
    padding = [int(rng.integers(0, 3)) for _ in range(n)]
    output_padding = [int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation)]
    per_dim = {"stride": stride, "padding": padding, "output_padding": output_padding, "dilation": dilation}
    perturbed = None
    r = rng.random()
    if r < 0.06:  # output_padding too large
        j = int(rng.integers(n))
        output_padding[j] = max(stride[j], dilation[j]) + int(rng.integers(0, 2))
        perturbed = "output_padding"
    elif r < 0.10:  # groups not dividing the input channels
        groups = c_in + 1
        perturbed = "groups"
    elif r < 0.14:  # negative padding / output_padding, non-positive stride / dilation
        perturbed = str(rng.choice(list(per_dim)))
        per_dim[perturbed][int(rng.integers(n))] = -1 if "padding" in perturbed else 0
    batch = () if rng.random() < 0.2 else (int(rng.integers(1, 3)),)
    args = {name: _form(rng, values) for name, values in per_dim.items()}
    args["groups"] = groups
    if 0.14 <= r < 0.17:  # a non-int argument (floats)
        perturbed = str(rng.choice(ARG_NAMES))
        args[perturbed] = float(groups) if perturbed == "groups" else [float(v) for v in per_dim[perturbed]]
    x = rng.standard_normal((*batch, c_in, *spatial))
    w = rng.standard_normal((c_in, og, *kernel))
    b = rng.standard_normal(groups * og) if rng.random() < 0.5 else None
    return {"n": n, "x": x, "w": w, "b": b, "args": args, "perturbed": perturbed}


def torch_call(n, x, w, b, **args):
    t = lambda a: None if a is None else torch.from_numpy(np.asarray(a))
    return TORCH_FN[n](t(x), t(w), t(b), **args).numpy()


def jax_call(n, x, w, b, **args):
    """The adapter under ``jax.jit`` (one compile per configuration, code generation only:
    ``FAST_COMPILE``)."""
    fn = jax.jit(functools.partial(JAX_FN[n], **args))
    return np.asarray(fn.lower(x, w, b).compile(FAST_COMPILE)(x, w, b))


def assert_close(actual, expected):
    assert actual.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12 * scale)


def test_grid_is_representative():
    """The grid covers what it claims (guards against a generator that drifts to trivial cases)."""
    cfgs = [random_config(seed) for seed in range(N_GRID)]
    assert {c["n"] for c in cfgs} == {1, 2, 3}
    assert sum(c["x"].ndim == c["n"] + 1 for c in cfgs) > 50  # unbatched
    assert sum(c["args"]["groups"] > 1 and c["perturbed"] is None for c in cfgs) > 100
    assert sum(c["b"] is not None for c in cfgs) > 150
    assert sum(c["perturbed"] is not None for c in cfgs) > 50
    asym = [c for c in cfgs if isinstance(c["args"]["stride"], (list, tuple)) and len(set(c["args"]["stride"])) > 1]
    assert len(asym) > 100


@pytest.mark.parametrize("seed", range(N_GRID))
def test_matches_torch(seed, x64):
    cfg = random_config(seed)
    n, x, w, b, args = cfg["n"], cfg["x"], cfg["w"], cfg["b"], cfg["args"]
    try:
        expected = torch_call(n, x, w, b, **args)
    except (RuntimeError, ValueError, TypeError) as err:
        kind = TypeError if isinstance(err, TypeError) else ValueError
        with pytest.raises(kind) as info:
            JAX_FN[n](x, w, b, **args)
        message = str(info.value)
        assert "`" in message and "got" in message, message  # names the argument and the value
        if cfg["perturbed"] is not None:
            assert f"`{cfg['perturbed']}`" in message or "`weight`" in message, message
        return
    assert cfg["perturbed"] is None, f"torch accepted a perturbed {cfg['perturbed']}: {args}"
    assert_close(jax_call(n, x, w, b, **args), expected)


REFUSED = [
    # (n, argument overrides, expected error, argument named in the message)
    (2, {"stride": 0}, ValueError, "stride"),
    (2, {"stride": (2, -1)}, ValueError, "stride"),
    (2, {"stride": (1, 2, 3)}, ValueError, "stride"),
    (2, {"stride": ()}, ValueError, "stride"),
    (2, {"stride": 2.0}, TypeError, "stride"),
    (2, {"stride": True}, TypeError, "stride"),
    (2, {"stride": "2"}, TypeError, "stride"),
    (2, {"stride": None}, TypeError, "stride"),
    (2, {"stride": [2.0, 1]}, TypeError, "stride"),
    (2, {"stride": np.array([2, 2])}, TypeError, "stride"),
    (1, {"padding": -1}, ValueError, "padding"),
    (2, {"padding": "same"}, TypeError, "padding"),
    (2, {"padding": ((1, 1), (1, 1))}, TypeError, "padding"),
    (2, {"padding": 3}, ValueError, "padding"),  # output size < 1
    (3, {"padding": (0, 4, 0)}, ValueError, "padding"),
    (2, {"output_padding": 1}, ValueError, "output_padding"),  # stride 1, dilation 1
    (2, {"output_padding": (2, 0), "stride": 2}, ValueError, "output_padding"),
    (2, {"output_padding": (1, 1), "stride": (2, 1), "dilation": (2, 1)}, ValueError, "output_padding"),
    (1, {"output_padding": -1}, ValueError, "output_padding"),
    (2, {"output_padding": None}, TypeError, "output_padding"),
    (2, {"dilation": 0}, ValueError, "dilation"),
    (2, {"dilation": None}, TypeError, "dilation"),
    (2, {"groups": 0}, ValueError, "groups"),
    (2, {"groups": -1}, ValueError, "groups"),
    (2, {"groups": 3}, ValueError, "groups"),  # 4 input channels
    (2, {"groups": 2.0}, TypeError, "groups"),
    (2, {"groups": (2,)}, TypeError, "groups"),
    # numpy 0-d arrays of a bool or a float, where an int or tuple is expected
    (2, {"stride": np.array(True)}, TypeError, "stride"),
    (2, {"dilation": np.array(2.0)}, TypeError, "dilation"),
    (2, {"groups": np.array(True)}, TypeError, "groups"),
    (2, {"output_padding": np.float64(1.0)}, TypeError, "output_padding"),
    # ints beyond int64 (torch: "Overflow when unpacking long long"), and sizes beyond it
    (2, {"stride": 2**63}, ValueError, "stride"),
    (2, {"padding": 2**64}, ValueError, "padding"),
    (2, {"groups": 2**64}, ValueError, "groups"),
    (1, {"stride": 2**62}, ValueError, "stride"),  # (3 - 1) * 2**62 + 3 > 2**63 - 1
    (2, {"dilation": (1, 2**62)}, ValueError, "dilation"),
    (3, {"stride": 2**22}, ValueError, "stride"),  # each size fits, the element count does not
]


def _base(n, c_in=4, og=3, spatial=3, k=3, batch=(1,)):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((*batch, c_in, *(spatial,) * n))
    w = rng.standard_normal((c_in, og, *(k,) * n))
    return x, w


@pytest.mark.parametrize("n, overrides, error, name", REFUSED)
def test_refused_like_torch(n, overrides, error, name):
    x, w = _base(n)
    with pytest.raises((RuntimeError, ValueError, TypeError)) as torch_info:
        torch_call(n, x, w, None, **overrides)
    assert isinstance(torch_info.value, TypeError) == (error is TypeError), torch_info.value
    with pytest.raises(error, match=f"`{name}`"):
        JAX_FN[n](x, w, None, **overrides)


BAD_SHAPES = [
    # (n, x shape, w shape, bias shape, argument named in the message)
    (2, (5, 5), (4, 3, 3, 3), None, "input"),  # rank too small
    (2, (1, 1, 4, 5, 5), (4, 3, 3, 3), None, "input"),  # rank too large
    (2, (1, 4, 5, 5), (4, 3, 3), None, "weight"),  # weight rank
    (2, (1, 4, 5, 5), (5, 3, 3, 3), None, "input"),  # channel mismatch
    (2, (1, 4, 0, 5), (4, 3, 3, 3), None, "input"),  # empty spatial dimension
    (2, (1, 4, 5, 5), (4, 0, 3, 3), None, "weight"),  # empty weight
    (2, (1, 4, 5, 5), (4, 3, 0, 3), None, "weight"),  # empty kernel
    (2, (1, 4, 5, 5), (4, 3, 3, 3), (5,), "bias"),
    (2, (1, 4, 5, 5), (4, 3, 3, 3), (3, 1), "bias"),
    (1, (1, 2, 1), (2, 1, 1), None, "padding"),  # torch: output size 0 with padding=1 below
]


@pytest.mark.parametrize("n, x_shape, w_shape, b_shape, name", BAD_SHAPES)
def test_bad_shapes_refused_like_torch(n, x_shape, w_shape, b_shape, name):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = None if b_shape is None else rng.standard_normal(b_shape)
    args = {"padding": 1} if name == "padding" else {}
    with pytest.raises(RuntimeError):
        torch_call(n, x, w, b, **args)
    with pytest.raises(ValueError, match=f"`{name}`"):
        JAX_FN[n](x, w, b, **args)


def test_zero_batch_like_torch(x64):
    x, w = _base(2, batch=(0,))
    expected = torch_call(2, x, w, None, stride=2)
    assert expected.shape == (0, 3, 7, 7)
    assert JAX_FN[2](x, w, None, stride=2).shape == expected.shape


# ----------------------------------------------------------------------------------------
# Weight layout
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("groups, kernel", [(1, (3,)), (2, (2, 3)), (3, (2, 1, 3))])
def test_kernel_layout_elementwise(groups, kernel, x64):
    rng = np.random.default_rng(groups)
    w = rng.standard_normal((3 * groups, 2, *kernel))
    k = np.asarray(torch_compat.kernel_from_torch(w, groups))
    assert k.shape == (*kernel, 2, 3 * groups)
    for c in range(w.shape[0]):
        for o in range(w.shape[1]):
            for j in np.ndindex(*kernel):
                assert k[(*j, o, c)] == w[(c, o, *j)]
    np.testing.assert_array_equal(torch_compat.kernel_to_torch(k, groups), w)
    # The mapping does not depend on groups.
    np.testing.assert_array_equal(torch_compat.kernel_from_torch(w, 1), k)


def test_kernel_from_torch_accepts_tensors_and_traces():
    layer = torch.nn.ConvTranspose2d(4, 6, (3, 2), groups=2).double()  # weight requires grad
    k = torch_compat.kernel_from_torch(layer.weight, groups=2)
    np.testing.assert_array_equal(k, np.transpose(layer.weight.detach().numpy(), (2, 3, 1, 0)))
    w = jnp.asarray(np.random.default_rng(1).standard_normal((4, 3, 2, 5)))
    grad = jax.grad(lambda w: jnp.sum(torch_compat.kernel_from_torch(w) * jnp.arange(120.0).reshape(2, 5, 3, 4)))(w)
    np.testing.assert_array_equal(grad, np.transpose(np.arange(120.0).reshape(2, 5, 3, 4), (3, 2, 0, 1)))


@pytest.mark.parametrize(
    "fn, args, error",
    [
        (torch_compat.kernel_from_torch, ((6, 2, 3), 4), ValueError),  # 6 channels, 4 groups
        (torch_compat.kernel_from_torch, ((6, 2), 1), ValueError),  # rank 2
        (torch_compat.kernel_from_torch, ((6, 2, 3), 0), ValueError),
        (torch_compat.kernel_from_torch, ((6, 2, 3), 1.5), TypeError),
        (torch_compat.kernel_to_torch, ((3, 2, 6), 4), ValueError),
        (torch_compat.kernel_to_torch, ((3, 6), 1), ValueError),
    ],
)
def test_kernel_converters_refuse(fn, args, error):
    shape, groups = args
    with pytest.raises(error, match="`"):
        fn(np.zeros(shape), groups)


@pytest.mark.parametrize("n, groups", [(1, 3), (2, 2), (3, 2)])
def test_kernel_from_torch_drives_core_like_torch(n, groups, x64):
    """The converted kernel in the core op (channels_last, Keras layout) reproduces torch with groups."""
    rng = np.random.default_rng(10 * n + groups)
    x = rng.standard_normal((2, 2 * groups, *(4,) * n))
    w = rng.standard_normal((2 * groups, 3, *(3,) * n))
    expected = torch_call(n, x, w, None, stride=2, padding=1, output_padding=1, groups=groups)
    y = jaxconvt.conv_transpose(
        np.moveaxis(x, 1, -1),
        torch_compat.kernel_from_torch(w, groups),
        strides=2,
        padding=1,
        output_padding=1,
        groups=groups,
    )
    assert_close(np.moveaxis(np.asarray(y), -1, 1), expected)


# ----------------------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------------------


def _valid_config(seed, **overrides):
    """The first unperturbed configuration torch accepts (with ``overrides``), from ``seed`` on."""
    while True:
        cfg = random_config(seed)
        cfg["args"].update(overrides)
        if cfg["perturbed"] is None:
            try:
                torch_call(cfg["n"], cfg["x"], cfg["w"], cfg["b"], **cfg["args"])
                return cfg
            except RuntimeError:
                pass
        seed += 1


@pytest.mark.parametrize("seed", range(N_GRAD))
def test_gradients_match_torch(seed, x64):
    cfg = _valid_config(10_000 + 37 * seed)
    n, x, w, args = cfg["n"], cfg["x"], cfg["w"], cfg["args"]
    b = cfg["b"] if cfg["b"] is not None else np.random.default_rng(seed).standard_normal(w.shape[1] * args["groups"])
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = TORCH_FN[n](xt, wt, bt, **args)
    cotangent = np.random.default_rng(seed).standard_normal(tuple(yt.shape))
    (yt * torch.from_numpy(cotangent)).sum().backward()

    def loss(x, w, b):
        return jnp.sum(JAX_FN[n](x, w, b, **args) * cotangent)

    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(x, w, b)
    for got, t in zip(grads, (xt, wt, bt)):
        assert_close(np.asarray(got), t.grad.numpy())


# ----------------------------------------------------------------------------------------
# output_size (the ConvTranspose modules' forward argument)
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(N_OUTPUT_SIZE))
def test_output_size_matches_torch_modules(seed, x64):
    rng = np.random.default_rng(20_000 + seed)
    cfg = _valid_config(20_000 + 41 * seed, output_padding=0)
    n, x, w, args = cfg["n"], cfg["x"], cfg["w"], cfg["args"]
    # Full-length tuples: the modules (unlike the functionals) do not broadcast length-1 tuples.
    for name in ("stride", "padding", "dilation"):
        args[name] = torch_compat._int_tuple(args[name], n, name, 0)
    layer = TORCH_MODULE[n](
        w.shape[0], w.shape[1] * args["groups"], w.shape[2:], bias=False, dtype=torch.float64, **args
    )
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w))
    smallest = [int(v) for v in torch_call(n, x, w, None, **args).shape[-n:]]
    # Sometimes one size beyond the reachable range: both must refuse.
    wanted = [lo + int(rng.integers(0, s + (rng.random() < 0.15))) for lo, s in zip(smallest, args["stride"])]
    if rng.random() < 0.3:  # with the leading (batch,) channel sizes, as torch allows
        wanted = [*x.shape[: x.ndim - n - 1], w.shape[1] * args["groups"], *wanted]
    try:
        expected = layer(torch.from_numpy(x), output_size=wanted).detach().numpy()
    except ValueError:
        with pytest.raises(ValueError, match="`output_size`"):
            JAX_FN[n](x, w, None, **args, output_size=wanted)
        return
    got = jax.jit(functools.partial(JAX_FN[n], **args, output_size=wanted))(x, w, None)
    assert_close(np.asarray(got), expected)


def test_output_size_with_output_padding_refused():
    x, w = _base(2)
    with pytest.raises(ValueError, match="`output_padding`"):
        JAX_FN[2](x, w, None, stride=2, output_padding=1, output_size=(8, 8))


# ----------------------------------------------------------------------------------------
# Transformations (the adapters are plain compositions of the core primitive)
# ----------------------------------------------------------------------------------------


def test_vmap_jvp_and_jit_agree_with_torch(x64):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 2, 4, 5, 5))  # vmapped axis of 3 batches of 2
    w = rng.standard_normal((4, 3, 3, 2))
    b = rng.standard_normal(6)
    args = {"stride": (2, 1), "padding": 1, "output_padding": (1, 0), "groups": 2, "dilation": (1, 2)}
    fn = functools.partial(torch_compat.conv_transpose2d, **args)
    expected = np.stack([torch_call(2, xi, w, b, **args) for xi in x])
    assert_close(np.asarray(jax.jit(jax.vmap(fn, in_axes=(0, None, None)))(x, w, b)), expected)
    # jvp is linear in the tangent: jvp with (dx, 0, 0) is the op on dx without bias.
    dx = rng.standard_normal(x.shape[1:])
    _, tangent = jax.jvp(lambda x: fn(x, w, b), (x[0],), (dx,))
    assert_close(np.asarray(tangent), torch_call(2, dx, w, None, **args))


# ----------------------------------------------------------------------------------------
# Dtypes: torch's rule (one dtype for input, weight and bias; it never promotes them)
# ----------------------------------------------------------------------------------------

DTYPES = ["float16", "bfloat16", "float32", "float64", "complex64", "complex128", "int64", "int32", "bool"]
# |jax - exact| <= RTOL * (the result on |input|, |weight|): a few roundings of the output dtype.
DTYPE_RTOL = {"float16": 2**-9, "bfloat16": 2**-6, "float32": 1e-5, "float64": 1e-12}
DTYPE_RTOL.update(complex64=1e-5, complex128=1e-12)


def _tensor(shape, dtype, seed):
    """A seeded torch tensor of ``dtype`` (small integers for the integer and bool dtypes)."""
    gen = torch.Generator().manual_seed(seed)
    if dtype in ("int64", "int32", "bool"):
        return torch.randint(0, 2 if dtype == "bool" else 5, shape, generator=gen).to(getattr(torch, dtype))
    value = torch.randn(shape, generator=gen, dtype=torch.float64)
    if dtype.startswith("complex"):
        value = torch.complex(value, torch.randn(shape, generator=gen, dtype=torch.float64))
    return value.to(getattr(torch, dtype))


def _torch_outcome(n, x, w, b):
    try:
        return TORCH_FN[n](x, w, b, stride=2, padding=1)
    except (RuntimeError, NotImplementedError, TypeError) as err:
        return type(err)


def _operands_for(n, x_dtype, w_dtype, b_dtype=None):
    x = _tensor((2, 2, *(4,) * n), x_dtype, 1)
    w = _tensor((2, 3, *(3,) * n), w_dtype, 2)
    b = None if b_dtype is None else _tensor((3,), b_dtype, 3)
    return x, w, b


@pytest.mark.parametrize("n", [1, 2, 3])
def test_input_and_weight_dtypes_like_torch(n, x64):
    """Every pair of dtypes, as torch tensors: computed exactly where torch computes (int64 aside, refused by
    name), with torch's output dtype and values; refused with a TypeError naming the operand where torch refuses.
    Values in 1-D (one compile per dtype); 2-D and 3-D check acceptance and dtype by abstract evaluation."""
    for x_dtype, w_dtype in itertools.product(DTYPES, DTYPES):
        x, w, b = _operands_for(n, x_dtype, w_dtype, x_dtype if x_dtype == w_dtype else None)
        expected = _torch_outcome(n, x, w, b)
        fn = functools.partial(JAX_FN[n], stride=2, padding=1)
        if isinstance(expected, type) or x_dtype == "int64":
            assert isinstance(expected, type) == (x_dtype != "int64" or w_dtype != "int64"), (x_dtype, w_dtype)
            if x_dtype not in DTYPE_RTOL:
                match = rf"^`input` must have a floating-point or complex dtype .*; got dtype {x_dtype}\b"
            elif w_dtype not in DTYPE_RTOL:
                match = rf"^`weight` must have a floating-point or complex dtype .*; got dtype {w_dtype}\b"
            else:
                match = rf"^`input` and `weight` must have the same dtype .*{x_dtype}.*{w_dtype}"
            with pytest.raises(TypeError, match=match):
                fn(x, w, b)
            continue
        assert x_dtype == w_dtype
        if n > 1:
            out = jax.eval_shape(functools.partial(fn, x, w, b))
            assert (out.shape, out.dtype.name) == (tuple(expected.shape), x_dtype)
            continue
        y = jax.jit(functools.partial(fn, x, w, b))()  # one compile per dtype (eager would be several)
        assert y.dtype.name == x_dtype and y.shape == tuple(expected.shape)
        wide = torch.complex128 if x_dtype.startswith("complex") else torch.float64
        exact = TORCH_FN[n](x.to(wide), w.to(wide), b.to(wide), stride=2, padding=1).numpy()
        bound = TORCH_FN[n](x.to(wide).abs(), w.to(wide).abs(), b.to(wide).abs(), stride=2, padding=1).numpy()
        err = np.abs(np.asarray(y).astype(exact.dtype) - exact)
        assert np.all(err <= DTYPE_RTOL[x_dtype] * bound), (x_dtype, float(np.max(err - DTYPE_RTOL[x_dtype] * bound)))
        torch_err = np.abs(expected.to(wide).numpy() - exact)
        assert np.all(torch_err <= DTYPE_RTOL[x_dtype] * bound)  # the same accuracy as torch's own


@pytest.mark.parametrize("n", [1, 2, 3])
def test_bias_dtypes_like_torch(n, x64):
    """A bias of the output's dtype is added; any other is refused naming `bias`. torch refuses a mismatched
    bias in 3-D and for complex outputs, but casts a real one in some 1-D/2-D configurations: the documented
    deviation, the only one besides int64."""
    for out_dtype, b_dtype in itertools.product(DTYPES[:6], DTYPES):
        x, w, b = _operands_for(n, out_dtype, out_dtype, b_dtype)
        expected = _torch_outcome(n, x, w, b)
        fn = functools.partial(JAX_FN[n], stride=2, padding=1)
        if b_dtype == out_dtype:
            assert not isinstance(expected, type)
            out = jax.eval_shape(functools.partial(fn, x, w, b))
            assert (out.shape, out.dtype.name) == (tuple(expected.shape), out_dtype)
            continue
        with pytest.raises(TypeError, match=r"^`input`, `weight` and `bias` must have the same dtype|^`bias` must"):
            fn(x, w, b)
        if not isinstance(expected, type):  # torch computed it: a deviation, only where documented
            assert n in (1, 2) and not out_dtype.startswith("complex") and not b_dtype.startswith("complex")


@pytest.mark.skipif(jax.config.jax_enable_x64, reason="checks the x64-off behaviour")
def test_float64_operands_without_x64():
    """Dtypes are judged as given: float64 numpy operands run in float32 (JAX's rule) and agree with torch;
    float32 with float64 is refused as torch refuses it, naming float64 although JAX would hold float32."""
    x, w, b = (t.numpy() for t in _operands_for(2, "float64", "float64", "float64"))
    y = jax.jit(functools.partial(torch_compat.conv_transpose2d, x, w, b, stride=2, padding=1))()
    expected = torch_call(2, x, w, b, stride=2, padding=1)
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    for args in ((jnp.asarray(x), w, None), (x, w, jnp.asarray(b)), (x.astype(np.float32), w, b)):
        with pytest.raises(TypeError, match=r"must have the same dtype .*float32.*float64|float64.*float32"):
            torch_compat.conv_transpose2d(*args, stride=2, padding=1)


@pytest.mark.parametrize("dtype", DTYPES[:6])
def test_kernel_from_torch_converts_every_float_tensor(dtype, x64):
    """bfloat16 (which ``Tensor.numpy`` refuses) included, and tensors that need grad, are conjugate views or
    are not contiguous: the values are bit for bit the tensor's."""
    w = _tensor((4, 3, 2, 5), dtype, 4)
    variants = [w, w.clone().requires_grad_(True), w.permute(1, 0, 2, 3).contiguous().permute(1, 0, 2, 3)]
    if dtype.startswith("complex"):
        variants.append(w.conj().conj())  # a conjugate view of a conjugate view
        variants.append(w.conj())
    for t in variants:
        k = torch_compat.kernel_from_torch(t, groups=2)
        assert k.dtype.name == dtype and k.shape == (2, 5, 3, 4)
        wide = torch.complex128 if dtype.startswith("complex") else torch.float64
        want = t.detach().resolve_conj().to(wide).numpy().transpose(2, 3, 1, 0)
        np.testing.assert_array_equal(np.asarray(k).astype(want.dtype), want)


@pytest.mark.parametrize("dtype", ["float8_e4m3fn", "complex32", "uint16", "int64", "int32", "bool"])
def test_unsupported_torch_dtypes_are_refused_naming_the_operand(dtype):
    t = torch.zeros((2, 1, 3), dtype=getattr(torch, dtype))
    shown = {"complex32": "complex32", "float8_e4m3fn": "float8_e4m3fn"}.get(dtype, dtype)
    with pytest.raises(
        TypeError, match=rf"^`weight` must have a floating-point or complex dtype .*got (torch )?dtype {shown}"
    ):
        torch_compat.kernel_from_torch(t)
    with pytest.raises(TypeError, match=rf"^`input` must have .*got (torch )?dtype {shown}"):
        torch_compat.conv_transpose1d(t, np.ones((2, 1, 3), np.float32))


def test_zero_dim_integer_arrays_count_as_ints():
    """Like Python ints (torch 2.13 accepts them for ``groups`` and fails with an internal assertion for the
    tuple arguments); the output shapes are torch's for the Python ints."""
    x, w = _base(2)
    ints = {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2, "dilation": 2}
    want = torch_call(2, x, w, None, **ints).shape
    forms = [{name: wrap(v) for name, v in ints.items()} for wrap in (np.array, np.int64)]
    forms.append({name: np.array(v) if name == "groups" else [np.array(v)] * 2 for name, v in ints.items()})
    for args in forms:
        assert jax.eval_shape(functools.partial(JAX_FN[2], x, w, None, **args)).shape == want
