"""The layers section: a training step of each framework's layer against jaxconvt's drop-in.

For every workload marked ``layers`` (dcgan2d, hifigan1d, unet3d) and every framework pair
of :data:`PAIRS` whose framework and jaxconvt module import, the framework's own transposed
convolution layer and jaxconvt's drop-in are built with identical parameters (the
framework's own initialisation, copied into the drop-in), and one jitted step each is
compiled ahead of time: the value of ``sum(y * ct)`` (a fixed random cotangent ``ct``) and
its gradients with respect to the input and every parameter. The two steps are timed in
turns (``jaxconvt.bench.timing.time_in_turns``), with ``max_call_s`` lowered to
``Settings.layers_max_call_s``: a step slower than that is timed once, by its warm-up call
(the frameworks' layers differentiate through JAX's generic convolution transpose rule, and
some take seconds per step). Their values and gradients are compared (largest relative
difference over the loss, the input gradient and each parameter gradient), so the section
never times two different computations. Layers run in float32.

A pair registers only when both its framework and its jaxconvt module import; the reason
is recorded otherwise. Keras runs with its JAX backend (``KERAS_BACKEND=jax`` is set when
Keras is not imported yet), its layers as ``stateless_call`` inside the jitted step.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxconvt._spec import make_spec
from jaxconvt.bench.problem import Problem, make_problem
from jaxconvt.bench.settings import Settings
from jaxconvt.bench.timing import Runner, time_in_turns
from jaxconvt.bench.workloads import Workload

__all__ = ["PAIRS", "LayerPair", "LayerStep", "NotApplicable", "available_pairs", "run_layers"]

DTYPE = "float32"
"""The dtype of the layers section's operands and parameters."""
SIDES = ("framework", "jaxconvt")


class NotApplicable(Exception):
    """The framework's layer cannot express the workload (e.g. groups, a padding it lacks)."""


@dataclasses.dataclass
class LayerStep:
    """One layer's jitted training step and its arguments.

    ``step(params, x, ct)`` returns ``(loss, (dx, dparams))``: the value of ``sum(y * ct)`` and
    its gradients with respect to the input and the parameters (a pytree like ``params``).
    ``layer`` is the constructor call as text, for the record.
    """

    step: Callable
    params: Any
    x: Any
    ct: Any
    layer: str


@dataclasses.dataclass(frozen=True)
class LayerPair:
    """A framework's layer and jaxconvt's drop-in for it.

    Attributes:
      name: the framework, as the tables name it (``"flax.nnx"``).
      modules: what must import for the pair to run: the framework's module and jaxconvt's.
      extra: the jaxconvt extra that installs the framework (for the reason when it is missing).
      build: ``build(problem, seed) -> (framework step, jaxconvt step)`` with identical
        parameters; raises ``NotApplicable`` when the framework's layer cannot express
        the problem.
    """

    name: str
    modules: tuple[str, ...]
    extra: str
    build: Callable[[Problem, int], tuple[LayerStep, LayerStep]]


# --------------------------------------------------------------------------- helpers


def _call_text(name: str, *args, **kwargs) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


def _step(apply: Callable) -> Callable:
    """The training step of ``apply(params, x) -> y``: value and gradients of ``sum(y * ct)``."""

    def step(params, x, ct):
        loss = lambda p, x_: jnp.sum((apply(p, x_) * ct).astype(jnp.float32))
        value, (dx, dparams) = jax.value_and_grad(loss, argnums=(1, 0))(params, x)
        return value, (dx, dparams)

    return step


def _geometry(problem: Problem) -> dict:
    spec, size, w = problem.spec, problem.size, problem.workload
    if w.per_example:
        raise NotApplicable("per-example kernels are not a layer")
    return dict(
        n=spec.ndim,
        c_in=size.c_in,
        c_out=size.c_out,
        kernel=tuple(w.kernel),
        strides=tuple(spec.strides),
        dilation=tuple(spec.dilation),
        crops=tuple(tuple(c) for c in spec.crops),
        groups=spec.groups,
    )


def _no_groups(g: dict, framework: str) -> None:
    if g["groups"] != 1:
        raise NotApplicable(f"{framework} has no groups")


def _channels_first(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(a, -1, 1))


# --------------------------------------------------------------------------- Flax


def _flax_padding(g: dict):
    """Flax's padding of the stride-dilated input giving the problem's crops ('SAME'/'VALID' when they do)."""
    from jaxconvt._layers import flax_crops

    for name in ("SAME", "VALID"):
        if flax_crops(name, g["kernel"], g["strides"], g["dilation"]) == g["crops"]:
            return name
    pads = []
    for (lo, hi), k, d in zip(g["crops"], g["kernel"], g["dilation"]):
        ke = (k - 1) * d + 1
        pads.append((ke - 1 - lo, ke - 1 - hi))
    return tuple(pads)


def _build_nnx(problem: Problem, seed: int) -> tuple[LayerStep, LayerStep]:
    from flax import nnx

    import jaxconvt.nnx

    g = _geometry(problem)
    _no_groups(g, "flax.nnx.ConvTranspose")
    args = (g["c_in"], g["c_out"], g["kernel"], g["strides"])
    kwargs = dict(padding=_flax_padding(g), kernel_dilation=g["dilation"])
    theirs = nnx.ConvTranspose(*args, **kwargs, rngs=nnx.Rngs(seed))
    mine = jaxconvt.nnx.ConvTranspose(*args, **kwargs, rngs=nnx.Rngs(seed + 1))
    nnx.update(mine, nnx.state(theirs))  # identical parameters
    steps = []
    for name, layer in (("flax.nnx.ConvTranspose", theirs), ("jaxconvt.nnx.ConvTranspose", mine)):
        graphdef, state = nnx.split(layer)
        apply = functools.partial(lambda gd, p, x: nnx.merge(gd, p)(x), graphdef)
        steps.append(LayerStep(_step(apply), state, problem.x, problem.ct, _call_text(name, *args, **kwargs)))
    return steps[0], steps[1]


def _build_linen(problem: Problem, seed: int) -> tuple[LayerStep, LayerStep]:
    import flax.linen as nn

    import jaxconvt.linen

    g = _geometry(problem)
    _no_groups(g, "flax.linen.ConvTranspose")
    args = (g["c_out"], g["kernel"], g["strides"])
    kwargs = dict(padding=_flax_padding(g), kernel_dilation=g["dilation"])
    theirs = nn.ConvTranspose(*args, **kwargs)
    mine = jaxconvt.linen.ConvTranspose(*args, **kwargs)
    params = theirs.init(jax.random.key(seed), problem.x[:1])["params"]
    steps = []
    for name, module in (("flax.linen.ConvTranspose", theirs), ("jaxconvt.linen.ConvTranspose", mine)):
        apply = functools.partial(lambda m, p, x: m.apply({"params": p}, x), module)
        steps.append(LayerStep(_step(apply), params, problem.x, problem.ct, _call_text(name, *args, **kwargs)))
    return steps[0], steps[1]


# --------------------------------------------------------------------------- Equinox


def _build_equinox(problem: Problem, seed: int) -> tuple[LayerStep, LayerStep]:
    import equinox as eqx

    import jaxconvt.equinox

    g = _geometry(problem)
    padding, output_padding = [], []
    for (lo, hi), s in zip(g["crops"], g["strides"]):
        op = max(-hi, 0)  # Equinox crops (low, high - output_padding), output_padding < stride
        if lo < 0 or op >= s:
            raise NotApplicable(f"equinox.nn.ConvTranspose cannot crop {g['crops']}")
        padding.append((lo, hi + op))
        output_padding.append(op)
    args = (g["n"], g["c_in"], g["c_out"], g["kernel"], g["strides"])
    kwargs = dict(padding=tuple(padding), output_padding=tuple(output_padding), dilation=g["dilation"])
    kwargs["groups"] = g["groups"]
    theirs = eqx.nn.ConvTranspose(*args, **kwargs, key=jax.random.key(seed))
    mine = jaxconvt.equinox.ConvTranspose(*args, **kwargs, key=jax.random.key(seed + 1))
    mine = eqx.tree_at(lambda m: (m.weight, m.bias), mine, (theirs.weight, theirs.bias))  # identical parameters
    x, ct = _channels_first(problem.x), _channels_first(problem.ct)
    steps = []
    for name, layer in (("equinox.nn.ConvTranspose", theirs), ("jaxconvt.equinox.ConvTranspose", mine)):
        params, static = eqx.partition(layer, eqx.is_array)
        apply = functools.partial(lambda st, p, x_: jax.vmap(eqx.combine(p, st))(x_), static)
        steps.append(LayerStep(_step(apply), params, x, ct, _call_text(name, *args, **kwargs)))
    return steps[0], steps[1]


# --------------------------------------------------------------------------- Keras


def _keras_padding(problem: Problem, g: dict) -> tuple[str, tuple[int, ...] | None]:
    """Keras's ``padding`` string and ``output_padding`` giving the problem's crops."""
    x_shape = (1, *problem.size.spatial, g["c_in"])
    k_shape = (*g["kernel"], g["c_out"], g["c_in"])
    choices = [None, *itertools.islice(itertools.product(*(range(s) for s in g["strides"])), 64)]
    for padding, op in itertools.product(("same", "valid"), choices):
        try:
            spec, _ = make_spec(x_shape, k_shape, g["strides"], padding, op, None, g["dilation"])
        except (TypeError, ValueError):
            continue
        if tuple(tuple(c) for c in spec.crops) == g["crops"]:
            return padding, op
    raise NotApplicable(f"no Keras padding ('same', 'valid' with an output_padding) crops {g['crops']}")


def _build_keras(problem: Problem, seed: int) -> tuple[LayerStep, LayerStep]:
    import keras

    import jaxconvt.keras

    g = _geometry(problem)
    _no_groups(g, f"keras.layers.Conv{g['n']}DTranspose")
    padding, output_padding = _keras_padding(problem, g)
    name = f"Conv{g['n']}DTranspose"
    kwargs = dict(
        filters=g["c_out"],
        kernel_size=g["kernel"],
        strides=g["strides"],
        padding=padding,
        output_padding=output_padding,
        dilation_rate=g["dilation"],
    )
    try:
        theirs = getattr(keras.layers, name)(**kwargs, kernel_initializer=keras.initializers.GlorotUniform(seed))
    except ValueError as err:  # e.g. strides > 1 with dilation_rate > 1
        raise NotApplicable(f"keras.layers.{name} refuses it: {err}") from err
    mine = getattr(jaxconvt.keras, name)(**kwargs)
    for layer in (theirs, mine):
        layer.build(problem.x.shape)
    mine.set_weights(theirs.get_weights())  # identical parameters
    steps = []
    for text, layer in ((f"keras.layers.{name}", theirs), (f"jaxconvt.keras.{name}", mine)):
        frozen = [v.value for v in layer.non_trainable_variables]
        apply = functools.partial(lambda lay, nt, p, x: lay.stateless_call(p, nt, x)[0], layer, frozen)
        params = [v.value for v in layer.trainable_variables]
        steps.append(LayerStep(_step(apply), params, problem.x, problem.ct, _call_text(text, **kwargs)))
    return steps[0], steps[1]


PAIRS: tuple[LayerPair, ...] = (
    LayerPair("flax.nnx", ("flax.nnx", "jaxconvt.nnx"), "flax", _build_nnx),
    LayerPair("flax.linen", ("flax.linen", "jaxconvt.linen"), "flax", _build_linen),
    LayerPair("equinox", ("equinox", "jaxconvt.equinox"), "equinox", _build_equinox),
    LayerPair("keras", ("keras", "jaxconvt.keras"), "keras", _build_keras),
)
"""Every framework pair, in the order of the tables."""


def _framework_version(pair: LayerPair) -> str | None:
    top = sys.modules.get(pair.modules[0].split(".")[0]) if pair.modules else None
    return getattr(top, "__version__", None)


def available_pairs(pairs: Sequence[LayerPair] = PAIRS) -> tuple[list[LayerPair], dict[str, str]]:
    """The pairs whose modules import, and why each other one does not."""
    ok, missing = [], {}
    for pair in pairs:
        if "keras" in pair.modules and "keras" not in sys.modules:
            os.environ.setdefault("KERAS_BACKEND", "jax")  # read when Keras is first imported
        reason = None
        for module in pair.modules:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as err:
                if err.name != module:
                    reason = f"importing {module} failed: {err}"
                elif module.startswith("jaxconvt."):
                    reason = f"this jaxconvt has no {module}"
                else:
                    reason = f"{module} is not installed (pip install 'jaxconvt[{pair.extra}]')"
            except ImportError as err:
                reason = f"importing {module} failed: {err}"
            if reason is not None:
                break
        if reason is not None:
            missing[pair.name] = reason[:300]
            continue
        if "keras" in pair.modules:
            backend = sys.modules["keras"].backend.backend()
            if backend != "jax":
                missing[pair.name] = f"Keras runs its {backend!r} backend; set KERAS_BACKEND=jax"
                continue
        ok.append(pair)
    return ok, missing


# --------------------------------------------------------------------------- running


def _max_rel_diff(ref, got) -> float | None:
    """Largest ``max|got - ref| / max|ref|`` over the leaves (None when the structures differ)."""
    ref_leaves, got_leaves = jax.tree.leaves(ref), jax.tree.leaves(got)
    if len(ref_leaves) != len(got_leaves):
        return None
    worst = 0.0
    for a, b in zip(ref_leaves, got_leaves):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a.shape != b.shape:
            return None
        scale = max(float(np.abs(a).max(initial=0.0)), 1e-30)
        worst = max(worst, float(np.abs(a - b).max(initial=0.0)) / scale)
    return worst


def empty_layer_result(workload: Workload, pair: LayerPair) -> dict:
    return {
        "workload": workload.name,
        "framework": pair.name,
        "dtype": DTYPE,
        "layers": {s: None for s in SIDES},
        "input_shape": {s: None for s in SIDES},
        "ms": {s: None for s in SIDES},
        "min_ms": {s: None for s in SIDES},
        "runs": {s: None for s in SIDES},
        "compile_s": {s: None for s in SIDES},
        "speedup": None,
        "max_rel_diff": None,
        "errors": {},
        "skipped": None,
    }


def run_pair(problem: Problem, pair: LayerPair, settings: Settings) -> dict:
    """Builds, compiles, times and compares one pair on one problem; returns its record."""
    result = empty_layer_result(problem.workload, pair)
    try:
        built = pair.build(problem, settings.seed)
    except NotApplicable as why:
        result["skipped"] = str(why)
        return result
    except Exception as err:  # noqa: BLE001 - recorded, the section goes on
        result["errors"]["build"] = f"{type(err).__name__}: {err}"[:500]
        return result
    runners = {}
    for side, layer_step in zip(SIDES, built):
        result["layers"][side] = layer_step.layer
        result["input_shape"][side] = list(np.shape(layer_step.x))
        device = jax.devices()[0]
        args = [jax.device_put(a, device) for a in (layer_step.params, layer_step.x, layer_step.ct)]
        try:
            t0 = time.perf_counter()
            compiled = jax.jit(layer_step.step).lower(*args).compile()
        except Exception as err:  # noqa: BLE001 - recorded
            result["errors"][side] = f"{type(err).__name__}: {err}"[:500]
            continue
        result["compile_s"][side] = time.perf_counter() - t0
        runners[side] = Runner(functools.partial(compiled, *args), jax.block_until_ready)
    time_in_turns(runners, dataclasses.replace(settings, max_call_s=settings.layers_max_call_s))
    for side, runner in runners.items():
        if runner.error is not None:
            result["errors"][side] = runner.error
            continue
        result["ms"][side] = statistics.median(runner.times) * 1e3
        result["min_ms"][side] = min(runner.times) * 1e3
        result["runs"][side] = 0 if runner.too_slow else len(runner.times)
    if all(side in runners and runners[side].error is None for side in SIDES):
        result["max_rel_diff"] = _max_rel_diff(runners["framework"].out, runners["jaxconvt"].out)
        if result["max_rel_diff"] is None:
            result["errors"]["compare"] = "the two steps' outputs have different structures or shapes"
        result["speedup"] = result["ms"]["framework"] / result["ms"]["jaxconvt"]
    for runner in runners.values():
        runner.out = None
    return result


def layer_workloads(workloads: Sequence[Workload]) -> list[Workload]:
    """The workloads of the layers section among ``workloads``."""
    return [w for w in workloads if w.layers]


def run_layers(
    workloads: Sequence[Workload], settings: Settings, progress=None, pairs: Sequence[LayerPair] = PAIRS
) -> dict:
    """The layers section (the report's ``layers``) for the ``layers`` workloads among ``workloads``."""
    t0 = time.perf_counter()
    chosen = layer_workloads(workloads)
    ok, missing = available_pairs(pairs)
    frameworks = {
        pair.name: {"available": True, "version": _framework_version(pair), "dropin": (pair.modules or (None,))[-1]}
        for pair in ok
    }
    frameworks.update({name: {"available": False, "reason": reason} for name, reason in missing.items()})
    results = []
    for workload in chosen:
        problem = make_problem(workload, settings.sizes, DTYPE, settings.seed, settings.algorithm)
        for pair in ok:
            if progress is not None:
                progress.step(f"layers {workload.name}: {pair.name}")
            results.append(run_pair(problem, pair, settings))
    return {
        "workloads": [w.name for w in chosen],
        "dtype": DTYPE,
        "max_call_s": settings.layers_max_call_s,
        "frameworks": {p.name: frameworks[p.name] for p in pairs},
        "results": results,
        "wall_s": time.perf_counter() - t0,
    }


def layer_steps(workloads: Sequence[Workload], pairs: Sequence[LayerPair] = PAIRS) -> int:
    """How many progress steps :func:`run_layers` takes (for the progress bar)."""
    return len(layer_workloads(workloads)) * len(available_pairs(pairs)[0])
