"""``jaxconvt.keras``: the layers against Keras's own (JAX backend), ``from_torch`` against torch,
and the opt-in against Keras's ``conv_transpose`` and Keras's own tests.

* Constructor arguments, configs and weights (names, shapes, dtypes, initialisers) equal Keras's.
* A seeded grid of 1-D to 3-D layers (strides, dilation, paddings, output padding, both data
  formats, activation, with and without bias): outputs and gradients with respect to the input,
  the kernel and the bias equal Keras's to float32 rounding; mixed precision to bfloat16 rounding.
  Every input is at least as large as the dilated kernel: Keras's ``lhs_dilation`` convolution
  can abort XLA:CPU when its window is larger than its input (SEMANTICS.md).
* What Keras's layers lack, against independent oracles: ``groups`` against Keras layers run per
  group, ``strides`` with ``dilation_rate`` and ``output_padding < dilation`` against
  ``keras.ops.conv_transpose``, explicit padding and groups against torch (``from_torch``).
* Checkpoints: ``set_weights``, ``.weights.h5`` both ways, ``get_config`` / ``from_config``, a
  ``.keras`` model file; ``fit`` gives Keras's losses; the training step holds only jaxconvt's
  primitive.
* The opt-in: exact restoration, version check, values and gradients against Keras's own
  implementation, and Keras's own ``conv_transpose`` tests run under it (a child pytest).

Layers of the grid are built with ``zeros`` initialisers and get seeded numpy weights: the first
compile of ``jax.random`` per shape takes seconds on jax 0.10.2 (``jax_threefry_partitionable``),
so the tests that need Keras's random initialisers switch that option off around them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "jax":  # pragma: no cover - another test imported keras first
    pytest.skip("Keras runs another backend than JAX in this process", allow_module_level=True)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import jaxconvt.keras as jk  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
from tests._keras_worker import FAST_COMPILE  # noqa: E402

CLASSES = {1: (jk.Conv1DTranspose, keras.layers.Conv1DTranspose), 2: (jk.Conv2DTranspose, keras.layers.Conv2DTranspose),
           3: (jk.Conv3DTranspose, keras.layers.Conv3DTranspose)}  # fmt: skip
ZEROS = dict(kernel_initializer="zeros", bias_initializer="zeros")


def _close(a, b, what, tol=2e-5):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    scale = max(1.0, float(np.abs(b).max(initial=0.0)))
    np.testing.assert_allclose(a, b, rtol=0, atol=tol * scale, err_msg=what)


def _input_shape(n, spatial, channels, data_format):
    return (2, *spatial, channels) if data_format == "channels_last" else (2, channels, *spatial)


def _random_weights(layer, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(w.shape).astype(np.float32) for w in layer.get_weights()]


def _value_and_grads(layers, xs, cots):
    """Per layer (built): output and the gradients of <output, cot> for the input and every trainable variable."""

    def one(layer, params, x, cot):
        def loss(params, x):
            y, _ = layer.stateless_call(params, [], x)
            return jnp.sum(y * cot), y

        (_, y), (g_params, g_x) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)
        return [y, g_x, *g_params]

    params = [[v.value for v in layer.trainable_variables] for layer in layers]
    fn = jax.jit(lambda params, xs, cots: [one(*a) for a in zip(layers, params, xs, cots)])
    return fn.lower(params, xs, cots).compile(FAST_COMPILE)(params, xs, cots)


# --------------------------------------------------------------------------- drop-in surface


@pytest.mark.parametrize("n", [1, 2, 3])
def test_arguments_config_and_weights_are_keras_s(n):
    ours, theirs = CLASSES[n]
    assert issubclass(ours, theirs)
    import inspect

    mine = [p for p in inspect.signature(ours.__init__).parameters.values() if p.name != "groups"]  # keyword-only
    ref = list(inspect.signature(theirs.__init__).parameters.values())
    assert [(p.name, p.kind, p.default) for p in mine] == [(p.name, p.kind, p.default) for p in ref]
    assert inspect.signature(ours.__init__).parameters["groups"].kind is inspect.Parameter.KEYWORD_ONLY
    # Keras's defaults and ours give the same layer; weights with the same seed are the same.
    shape = _input_shape(n, (4,) * n, 3, "channels_last")
    with jax.threefry_partitionable(False):
        keras.utils.set_random_seed(0)
        a = ours(5, 3, bias_initializer="random_normal", name="t")
        a.build(shape)
        keras.utils.set_random_seed(0)
        b = theirs(5, 3, bias_initializer="random_normal", name="t")
        b.build(shape)
    config = a.get_config()
    assert config.pop("groups") == 1 and config == b.get_config()
    assert [(w.path, w.shape, w.dtype, w.trainable) for w in a.weights] == [
        (w.path, w.shape, w.dtype, w.trainable) for w in b.weights
    ]
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert a.compute_output_shape(shape) == b.compute_output_shape(shape)
    assert ours(5, 3).compute_output_shape((None, *([None] * n), 3)) == [None, *([None] * n), 5]


def _grid_config(rng, index):
    n = int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25]))
    k = [int(v) for v in rng.integers(1, 5 if n < 3 else 4, n)]
    s = [int(v) for v in rng.integers(1, 4, n)]
    d = [1] * n
    if rng.random() < 0.3:  # Keras's layers refuse strides > 1 together with dilation > 1
        s, d = [1] * n, [int(v) for v in rng.integers(1, 4, n)]
    op = None if rng.random() < 0.5 else [int(rng.integers(0, v)) for v in s]
    data_format = ("channels_last", "channels_first")[index % 2]
    kwargs = dict(
        filters=int(rng.integers(1, 4)),
        kernel_size=k,
        strides=s if rng.random() < 0.7 else (s if len(set(s)) > 1 else s[0]),
        padding=("valid", "same", "SAME")[index % 3],
        output_padding=op,
        data_format=data_format,
        dilation_rate=d,
        activation=(None, "relu", "tanh")[int(rng.integers(3))],
        use_bias=bool(rng.random() < 0.8),
        **ZEROS,
    )
    spatial = [int(rng.integers(e, e + 3)) for e in ((kk - 1) * dd + 1 for kk, dd in zip(k, d))]
    return n, kwargs, _input_shape(n, spatial, int(rng.integers(1, 4)), data_format)


GRID = [_grid_config(np.random.default_rng(2000 + i), i) for i in range(18)]


def test_grid_values_and_gradients_equal_keras_s():
    ours, refs, xs = [], [], []
    for index, (n, kwargs, shape) in enumerate(GRID):
        mine, ref = CLASSES[n][0](**kwargs), CLASSES[n][1](**kwargs)
        mine.build(shape)
        ref.build(shape)
        weights = _random_weights(ref, index)
        ref.set_weights(weights)
        mine.set_weights(weights)
        ours.append(mine)
        refs.append(ref)
        xs.append(np.random.default_rng(700 + index).standard_normal(shape).astype(np.float32))
    cots = [
        np.random.default_rng(i).standard_normal(r.compute_output_shape(x.shape))
        for i, (r, x) in enumerate(zip(refs, xs))
    ]
    cots = [c.astype(np.float32) for c in cots]
    mine, ref = _value_and_grads(ours, xs, cots), _value_and_grads(refs, xs, cots)
    for (_, kwargs, shape), a, b in zip(GRID, mine, ref):
        assert len(a) == len(b) == 2 + 1 + kwargs["use_bias"]
        for what, va, vb in zip(("output", "d/dx", "d/dkernel", "d/dbias"), a, b):
            _close(va, vb, f"{what} for {kwargs} on input {shape}")


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "float64"])
def test_dtype_policies(policy):
    kwargs = dict(filters=4, kernel_size=3, strides=2, padding="same", dtype=policy, **ZEROS)
    mine, ref = jk.Conv2DTranspose(**kwargs), keras.layers.Conv2DTranspose(**kwargs)
    x = np.random.default_rng(0).standard_normal((2, 5, 5, 3)).astype(np.float32)
    with jax.enable_x64(policy == "float64"):
        mine.build(x.shape)
        ref.build(x.shape)
        weights = _random_weights(ref, 1)
        ref.set_weights(weights)
        mine.set_weights(weights)
        a, b = mine(x), ref(x)
        assert a.dtype == b.dtype and [w.dtype for w in mine.weights] == [w.dtype for w in ref.weights]
        _close(a, b, policy, tol=2e-2 if policy == "mixed_bfloat16" else 1e-12)


# --------------------------------------------------------------------------- what Keras lacks


def test_groups_equal_keras_layers_per_group():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 5, 6)).astype(np.float32)  # 6 input channels, 3 groups
    layer = jk.Conv2DTranspose(9, (3, 2), strides=(2, 1), padding="same", output_padding=(1, 0), groups=3, **ZEROS)
    layer.build(x.shape)
    kernel, bias = _random_weights(layer, 4)
    assert kernel.shape == (3, 2, 3, 6)
    layer.set_weights([kernel, bias])
    parts = []
    for g in range(3):
        part = keras.layers.Conv2DTranspose(3, (3, 2), strides=(2, 1), padding="same", output_padding=(1, 0))
        part.build((2, 6, 5, 2))
        part.set_weights([kernel[..., 2 * g : 2 * g + 2], bias[3 * g : 3 * g + 3]])
        parts.append(part(x[..., 2 * g : 2 * g + 2]))
    _close(layer(x), np.concatenate(parts, axis=-1), "groups=3")
    with pytest.raises(ValueError, match=r"`groups` must divide `filters`; got groups=3, filters=4"):
        jk.Conv2DTranspose(4, 3, groups=3)
    with pytest.raises(ValueError, match=r"`groups` must divide the input channels; got groups=3 and 4 input"):
        jk.Conv2DTranspose(6, 3, groups=3).build((1, 5, 5, 4))
    with pytest.raises(ValueError, match=r"`groups` must be >= 1; got groups=0"):
        jk.Conv2DTranspose(6, 3, groups=0)
    with pytest.raises(TypeError, match=r"`groups` must be a positive int; got 2.0"):
        jk.Conv2DTranspose(6, 3, groups=2.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(strides=2, dilation_rate=2, padding="same"),
        dict(strides=(2, 1), dilation_rate=(1, 3), padding="valid", output_padding=(1, 2)),
        dict(strides=1, dilation_rate=2, padding="same", output_padding=1),
    ],
)
def test_wider_ranges_equal_keras_ops(kwargs):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 6, 7, 2)).astype(np.float32)
    with pytest.raises(ValueError):
        keras.layers.Conv2DTranspose(3, 3, **kwargs)  # what Keras's layer refuses
    layer = jk.Conv2DTranspose(3, 3, **kwargs, **ZEROS)
    layer.build(x.shape)
    kernel, bias = _random_weights(layer, 6)
    layer.set_weights([kernel, bias])
    ref = keras.ops.conv_transpose(x, kernel, **kwargs) + bias
    _close(layer(x), ref, str(kwargs))
    assert tuple(layer.compute_output_shape(x.shape)) == ref.shape


def test_errors():
    with pytest.raises(ValueError, match=r"`output_padding` must be smaller than `strides` or `dilation_rate`"):
        jk.Conv2DTranspose(2, 3, strides=2, output_padding=2)
    with pytest.raises(ValueError, match=r"`padding` must be 'valid', 'same'.* got negative padding -1"):
        jk.Conv1DTranspose(2, 3, padding=-1)
    with pytest.raises(ValueError, match=r"The `padding` argument must be a list/tuple or one of"):
        jk.Conv1DTranspose(2, 3, padding="full")  # Keras's own check and message
    with pytest.raises(ValueError, match=r"Invalid value for argument `filters`"):
        jk.Conv1DTranspose(0, 3)


def test_another_backend_is_refused(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with pytest.raises(RuntimeError, match=r"Conv2DTranspose needs Keras's JAX backend .* got backend 'torch'"):
        jk.Conv2DTranspose(2, 3)
    with pytest.raises(RuntimeError, match=r"jaxconvt.keras.enable\(\) needs Keras's JAX backend"):
        jk.enable()


# --------------------------------------------------------------------------- checkpoints and training


def _model(cls, **kwargs):
    return keras.Sequential([keras.Input((6, 6, 4)), cls(4, 3, strides=2, padding="same", **ZEROS, **kwargs)])


def test_checkpoints(tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 4)).astype(np.float32)
    ref, mine = _model(keras.layers.Conv2DTranspose), _model(jk.Conv2DTranspose)
    ref.set_weights(_random_weights(ref, 1))
    ref.save_weights(tmp_path / "keras.weights.h5")
    mine.load_weights(tmp_path / "keras.weights.h5")
    _close(mine(x), ref(x), "Keras .weights.h5 -> jaxconvt layer")
    mine.set_weights(_random_weights(mine, 2))
    mine.save_weights(tmp_path / "jaxconvt.weights.h5")
    ref.load_weights(tmp_path / "jaxconvt.weights.h5")
    _close(ref(x), mine(x), "jaxconvt .weights.h5 -> Keras layer")
    # configs: Keras's loads into ours; ours (with groups and explicit padding) round-trips
    layer = ref.layers[0]
    revived = jk.Conv2DTranspose.from_config(layer.get_config())
    assert revived.get_config() == {**layer.get_config(), "groups": 1}
    wide = jk.Conv2DTranspose(4, 3, strides=2, padding=((1, 0), (2, 1)), output_padding=1, groups=2)
    config = json.loads(json.dumps(wide.get_config()))
    assert config["padding"] == [[1, 0], [2, 1]] and config["groups"] == 2
    again = jk.Conv2DTranspose.from_config(config)
    assert again.padding == ((1, 0), (2, 1)) and again.groups == 2 and again.output_padding == (1, 1)
    # a whole model file
    grouped = _model(jk.Conv2DTranspose, groups=2)
    grouped.set_weights(_random_weights(grouped, 3))
    grouped.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert type(loaded.layers[0]) is jk.Conv2DTranspose and loaded.layers[0].groups == 2
    _close(loaded(x), grouped(x), ".keras round trip")


def test_fit_gives_keras_s_losses_through_jaxconvt_only():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 6, 6, 4)).astype(np.float32)
    y = rng.standard_normal((8, 12, 12, 4)).astype(np.float32)
    histories = []
    for cls in (keras.layers.Conv2DTranspose, jk.Conv2DTranspose):
        model = _model(cls)
        model.set_weights(_random_weights(model, 4))
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
        histories.append(model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history["loss"])
    np.testing.assert_allclose(histories[1], histories[0], rtol=1e-5)
    assert histories[1][1] < histories[1][0]
    # the training step: jaxconvt's primitive for the forward and both gradients, no lax convolution
    model = _model(jk.Conv2DTranspose)
    params = [v.value for v in model.trainable_variables]
    loss = lambda p, x: jnp.sum(model.stateless_call(p, [], x)[0] ** 2)
    jaxpr = str(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(params, x))
    assert jaxpr.count("jaxconvt_conv_transpose") == 3 and "conv_general_dilated" not in jaxpr


# --------------------------------------------------------------------------- from_torch

torch = pytest.importorskip("torch")


def test_from_torch_equals_torch():
    import warnings

    torch.manual_seed(0)
    nn, pwn = torch.nn, torch.nn.utils.parametrizations.weight_norm
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.nn.utils.weight_norm is deprecated
        old = torch.nn.utils.weight_norm(nn.ConvTranspose1d(4, 2, 16, 8, padding=4))
    cases = [
        (old, "channels_last"),
        (pwn(nn.ConvTranspose1d(3, 6, 4, 2, padding=1, output_padding=1, groups=3)), "channels_first"),
        (nn.ConvTranspose2d(4, 6, 3, 2, padding=1, output_padding=1, groups=2, bias=False), "channels_last"),
        (pwn(nn.ConvTranspose2d(2, 4, (3, 2), (2, 1), (2, 0), (1, 0), dilation=(2, 1))), "channels_first"),
        (nn.ConvTranspose3d(2, 3, (2, 3, 1), (1, 2, 3), padding=(0, 1, 0), dilation=(2, 1, 1)), "channels_last"),
    ]
    for module, data_format in cases:
        n = module.weight.ndim - 2
        layer = CLASSES[n][0].from_torch(module, data_format=data_format, name="ported")
        assert layer.built and layer.name == "ported" and layer.groups == module.groups
        assert layer.get_config()["kernel_initializer"]["class_name"] == "GlorotUniform"  # Keras's default kept
        x = torch.randn(2, module.in_channels, *([5] * n))
        ref = module(x).detach().numpy()
        if data_format == "channels_last":
            y = np.moveaxis(np.asarray(layer(np.moveaxis(x.numpy(), 1, -1))), -1, 1)
        else:
            y = layer(x.numpy())
        _close(y, ref, f"{module} ({data_format})")
    with pytest.raises(TypeError, match=r"ConvTranspose1d, ConvTranspose2d or ConvTranspose3d module; got torch"):
        jk.Conv2DTranspose.from_torch(torch.nn.Conv2d(2, 2, 3))
    with pytest.raises(TypeError, match=r"must be a torch.nn.ConvTranspose2d .* got a 1-D ConvTranspose1d"):
        jk.Conv2DTranspose.from_torch(torch.nn.ConvTranspose1d(2, 2, 3))
    with pytest.raises(TypeError, match=r"takes `strides` from the torch module"):
        jk.Conv1DTranspose.from_torch(torch.nn.ConvTranspose1d(2, 2, 3), strides=2)
    module = torch.nn.ConvTranspose1d(2, 2, 3)
    module.padding_mode = "circular"
    with pytest.raises(ValueError, match=r"`padding_mode` 'circular' of the torch module is not supported"):
        jk.Conv1DTranspose.from_torch(module)


# --------------------------------------------------------------------------- the opt-in


def _backend_conv_transpose():
    from keras.src.backend.jax import nn

    return nn.conv_transpose


def test_enable_disable_restore_exactly():
    original = _backend_conv_transpose()
    assert not jk.is_enabled()
    jk.enable()
    jk.enable()  # idempotent
    assert jk.is_enabled() and _backend_conv_transpose() is not original
    jk.disable()
    assert _backend_conv_transpose() is original and not jk.is_enabled()
    jk.disable()  # nothing to undo
    with pytest.raises(ZeroDivisionError):
        with jk.enabled():
            assert jk.is_enabled()
            with jk.enabled():
                pass
            assert jk.is_enabled()  # the inner block leaves the outer state
            raise ZeroDivisionError
    assert _backend_conv_transpose() is original


def test_enable_checks_the_keras_version(monkeypatch):
    monkeypatch.setattr(keras, "version", lambda: "3.99.0")
    with pytest.raises(RuntimeError, match=r"tested with Keras 3.15; got Keras 3.99.0. Pass allow_untested_keras=True"):
        jk.enable()
    assert not jk.is_enabled()
    with jk.enabled(allow_untested_keras=True):
        assert jk.is_enabled()
    assert not jk.is_enabled()


OPT_IN_CASES = [
    ((2, 5, 3), (4, 2, 3), dict(strides=2, padding="same")),
    ((1, 4, 5, 2), (3, 2, 3, 2), dict(strides=(2, 1), padding="valid", output_padding=(1, 0))),
    ((1, 2, 5, 6), (3, 3, 2, 2), dict(strides=2, padding="same", data_format="channels_first", dilation_rate=1)),
    ((1, 5, 4, 4, 1), (2, 3, 2, 2, 1), dict(strides=1, padding="same", dilation_rate=(2, 1, 1))),
    ((1, 4, 2), (3, 1, 2), dict(strides=2, padding="valid", output_padding=3)),  # Keras's zero-extension
]


def test_opt_in_values_and_gradients_equal_keras_s():
    rng = np.random.default_rng(9)
    args = [
        (rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ks).astype(np.float32))
        for xs, ks, _ in OPT_IN_CASES
    ]

    def loss(x, k, kw):
        return jnp.sum(jnp.sin(keras.ops.conv_transpose(x, k, **kw)))

    def run(x_and_k):
        return [jax.value_and_grad(loss, argnums=(0, 1))(x, k, kw) for (x, k), (_, _, kw) in zip(x_and_k, OPT_IN_CASES)]

    # (new function objects each time: JAX reuses the trace of a function it has traced before)
    ref = jax.jit(lambda a: run(a)).lower(args).compile(FAST_COMPILE)(args)
    with jk.enabled():
        jaxpr = str(jax.make_jaxpr(lambda a: run(a))(args))
        mine = jax.jit(lambda a: run(a)).lower(args).compile(FAST_COMPILE)(args)
    # the first four go through jaxconvt (forward, input and kernel gradients); the last is Keras's
    assert jaxpr.count("jaxconvt_conv_transpose") == 3 * 4 and jaxpr.count("conv_general_dilated") == 3
    for (_, _, kw), (va, ga), (vb, gb) in zip(OPT_IN_CASES, mine, ref):
        _close(va, vb, f"value {kw}")
        for a, b in zip(ga, gb):
            _close(a, b, f"gradient {kw}")


# Keras's own tests of conv_transpose, in the keras wheel: all of ops/nn_test.py's; of the layer
# tests the correctness tests of Conv{1,2,3}DTranspose (values against Keras's numpy reference:
# strides, dilation, paddings, output padding, data formats) with the 1-D "consistency" cases,
# the basic layer tests (build, call, fit, serialisation) and the argument tests. Left out:
# the shape-inference tests, which never compute a convolution.
KERAS_TESTS = ("layers/convolutional/conv_transpose_test.py", "ops/nn_test.py")
KERAS_SELECTION = (
    "(ConvTransposeCorrectnessTest and not shape_inference) or test_conv_transpose "
    "or basic or test_output_padding_serialization or test_bad_init_args"
)


def test_keras_s_own_conv_transpose_tests_pass_under_the_opt_in(tmp_path):
    src = os.path.join(os.path.dirname(keras.__file__), "src")
    paths = [os.path.join(src, p) for p in KERAS_TESTS]
    if not all(os.path.exists(p) for p in paths):
        pytest.skip("this keras install does not ship its tests")
    counts = tmp_path / "counts.json"
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAXCONVT_OPTIN_COUNTS": str(counts),
        "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
    }
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests._keras_layers_optin_plugin",
           "-W", "ignore", "-k", KERAS_SELECTION, *paths]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    tail = proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    summary = proc.stdout.strip().splitlines()[-1]
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 100 and "failed" not in summary, tail
    routed = json.loads(counts.read_text())
    assert routed["jaxconvt"] >= 100 and routed["enabled_at_end"], routed


def test_missing_keras_names_the_extra():
    code = (
        "import sys\nsys.modules['keras'] = None\n"
        "try:\n    import jaxconvt.keras\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "jaxconvt.keras needs `keras`" in out.stdout and "pip install 'jaxconvt[keras]'" in out.stdout
