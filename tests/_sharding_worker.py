"""Child process for test_sharding.py: runs on 8 fake CPU devices and reports every check.

Usage: ``python tests/_sharding_worker.py OUT.json``. XLA_FLAGS must be set before jax is
imported, hence a separate process. Each check records ``{"ok": bool, "detail": str}``;
the parent turns every entry into one test. An exception inside a check is a failed check,
not a crashed worker. Importing this module (pytest's doctest collection does) runs nothing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
    os.environ["JAX_PLATFORMS"] = "cpu"
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import json  # noqa: E402
import re  # noqa: E402
import traceback  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import jaxconvt  # noqa: E402
from tests.reference import conv_transpose_ref  # noqa: E402

try:  # jax >= 0.6
    from jax import shard_map as _shard_map

    _CHECK_KW = "check_vma"
except ImportError:  # pragma: no cover - older jax
    from jax.experimental.shard_map import shard_map as _shard_map

    _CHECK_KW = "check_rep"

COLLECTIVES = re.compile(r"\b(all-reduce|all-gather|collective-permute|all-to-all|reduce-scatter)(?:-start)?\(")
CHECKS: list = []  # (name, fn returning (ok, detail)), run by main()
TOL = dict(rtol=2e-5, atol=2e-5)
DATA = DATA_MODEL = None  # meshes, built by main() on the 8 devices

# (name, kwargs, x shape, kernel shape): batch 16 over 8 devices; groups=1.
CONFIGS = [
    ("1d_s2_same", dict(strides=2, padding="same"), (16, 7, 4), (3, 4, 4)),
    (
        "2d_s2_p1_op1_cf",
        dict(strides=2, padding=1, output_padding=1, data_format="channels_first"),
        (16, 4, 5, 6),
        (3, 3, 2, 4),
    ),
    ("3d_s1_d2_valid", dict(strides=1, padding="valid", dilation_rate=2), (16, 3, 4, 3, 2), (2, 2, 2, 3, 2)),
    ("2d_s3_same", dict(strides=(3, 2), padding="same"), (16, 3, 4, 2), (4, 3, 2, 2)),
]


def check(name):
    def register(fn):
        CHECKS.append((name, fn))
        return fn

    return register


SCALAR_ALL_REDUCE = re.compile(r"= (?:f16|bf16|f32|f64|c64|c128|pred)\[\] all-reduce(?:-start)?\(")


def collectives(compiled_text: str) -> list[str]:
    """Collectives that move data. A scalar all-reduce is left out: it is the finiteness test
    of the lowering's non-finite guard (``jaxconvt._lowering.lower``), one number per call,
    needed when an operand it tests is sharded."""
    lines = [line for line in compiled_text.splitlines() if not SCALAR_ALL_REDUCE.search(line)]
    return sorted(set(COLLECTIVES.findall("\n".join(lines))))


def operands(x_shape, k_shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(x_shape).astype(np.float32), rng.standard_normal(k_shape).astype(np.float32)


def same_sharding(array, mesh, spec) -> bool:
    return array.sharding.is_equivalent_to(NamedSharding(mesh, spec), array.ndim)


def close(a, b) -> bool:
    return np.allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), **TOL)


for name, kwargs, x_shape, k_shape in CONFIGS:

    @check(f"forward_batch_sharded_no_collectives[{name}]")
    def _(kwargs=kwargs, x_shape=x_shape, k_shape=k_shape):
        x, k = operands(x_shape, k_shape)
        f = jax.jit(lambda x, k: jaxconvt.conv_transpose(x, k, **kwargs))
        xs = jax.device_put(x, NamedSharding(DATA, P("data")))
        ks = jax.device_put(k, NamedSharding(DATA, P()))
        found = collectives(f.lower(xs, ks).compile().as_text())
        y = f(xs, ks)
        ok_values = close(y, conv_transpose_ref(x, k, **kwargs)) and close(y, jaxconvt.conv_transpose(x, k, **kwargs))
        ok_sharding = same_sharding(y, DATA, P("data"))
        return (
            not found and ok_values and ok_sharding
        ), f"collectives={found} values={ok_values} sharding={y.sharding}"

    @check(f"backward_data_parallel_all_reduce[{name}]")
    def _(kwargs=kwargs, x_shape=x_shape, k_shape=k_shape):
        x, k = operands(x_shape, k_shape, 1)
        loss = lambda x, k: jnp.sum(jnp.tanh(jaxconvt.conv_transpose(x, k, **kwargs)))
        g = jax.jit(jax.grad(loss, argnums=(0, 1)))
        xs = jax.device_put(x, NamedSharding(DATA, P("data")))
        ks = jax.device_put(k, NamedSharding(DATA, P()))
        found = collectives(g.lower(xs, ks).compile().as_text())
        dx, dk = g(xs, ks)
        ex, ek = jax.grad(loss, argnums=(0, 1))(x, k)  # single device
        ok = (
            "all-reduce" in found
            and close(dx, ex)
            and close(dk, ek)
            and same_sharding(dx, DATA, P("data"))
            and same_sharding(dk, DATA, P())
        )
        return ok, f"collectives={found} dx={dx.sharding} dk={dk.sharding}"


@check("forward_grouped_batch_sharded_values")
def _():
    x, k = operands((16, 5, 6, 4), (3, 4, 3, 4))
    f = jax.jit(lambda x, k: jaxconvt.conv_transpose(x, k, 2, "same", groups=2))
    y = f(jax.device_put(x, NamedSharding(DATA, P("data"))), k)
    ref = conv_transpose_ref(x, k, 2, "same", groups=2)
    return close(y, ref) and same_sharding(y, DATA, P("data")), str(y.sharding)


@check("forward_grouped_batch_sharded_no_collectives")
def _():
    x, k = operands((16, 5, 6, 4), (3, 4, 3, 4))
    f = jax.jit(lambda x, k: jaxconvt.conv_transpose(x, k, 2, "same", groups=2))
    found = collectives(f.lower(jax.device_put(x, NamedSharding(DATA, P("data"))), k).compile().as_text())
    return not found, f"collectives={found}"


@check("per_example_kernels_batch_sharded_values")
def _():
    x, k = operands((16, 1, 5, 6, 4), (16, 3, 4, 3, 4))
    f = lambda x, k: jaxconvt.conv_transpose(x, k, 2, "same")
    xs = jax.device_put(x, NamedSharding(DATA, P("data")))
    ks = jax.device_put(k, NamedSharding(DATA, P("data")))
    y = jax.jit(jax.vmap(f))(xs, ks)
    found = collectives(jax.jit(jax.vmap(f)).lower(xs, ks).compile().as_text())
    ok = close(y, jax.vmap(f)(x, k)) and same_sharding(y, DATA, P("data"))
    return ok, f"sharding={y.sharding} collectives={found}"


@check("model_sharded_kernel")
def _():
    """Kernel sharded over its output channels ('model'), data over the batch ('data')."""
    results = []
    for kwargs, k_shape in (
        (dict(strides=2, padding="same"), (3, 4, 4, 4)),
        (dict(strides=1, padding=1), (3, 3, 4, 4)),
    ):
        x, k = operands((16, 5, 6, 4), k_shape, 2)
        f = lambda x, k, kwargs=kwargs: jaxconvt.conv_transpose(x, k, **kwargs)
        loss = lambda x, k, f=f: jnp.sum(f(x, k) ** 2)
        xs = jax.device_put(x, NamedSharding(DATA_MODEL, P("data")))
        ks = jax.device_put(k, NamedSharding(DATA_MODEL, P(None, None, "model", None)))
        out_sharding = NamedSharding(DATA_MODEL, P("data", None, None, "model"))
        fwd = jax.jit(f, out_shardings=out_sharding)
        y = fwd(xs, ks)
        grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
        dx, dk = grad(xs, ks)
        ex, ek = jax.grad(loss, argnums=(0, 1))(x, k)
        ok = (
            close(y, f(x, k))
            and same_sharding(y, DATA_MODEL, P("data", None, None, "model"))
            and close(dx, ex)
            and close(dk, ek)
        )
        fwd_coll = collectives(fwd.lower(xs, ks).compile().as_text())
        bwd_coll = collectives(grad.lower(xs, ks).compile().as_text())
        results.append((ok, f"strides={kwargs['strides']}: fwd collectives={fwd_coll} bwd collectives={bwd_coll}"))
    return all(ok for ok, _ in results), "; ".join(d for _, d in results)


@check("explicit_axes_mesh")
def _():
    """A mesh with Explicit axis types (sharding in the types): forward and gradients."""
    if not hasattr(jax.sharding, "AxisType") or not hasattr(jax, "set_mesh"):
        return True, "skipped: this jax has no explicit-axes meshes"
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
    x, k = operands((16, 7, 4), (3, 4, 4), 7)
    f = lambda x, k: jaxconvt.conv_transpose(x, k, 2, "same")
    loss = lambda x, k: jnp.sum(jnp.tanh(f(x, k)))
    with jax.set_mesh(mesh):
        xs, ks = jax.device_put(x, P("data")), jax.device_put(k, P())
        y = jax.jit(f)(xs, ks)
        dx, dk = jax.jit(jax.grad(loss, argnums=(0, 1)))(xs, ks)
    ex, ek = jax.grad(loss, argnums=(0, 1))(x, k)
    ok = close(y, f(x, k)) and close(dx, ex) and close(dk, ek) and same_sharding(y, mesh, P("data"))
    return ok, f"y={y.sharding.spec} dx={dx.sharding.spec} dk={dk.sharding.spec}"


def shard_map(f, in_specs, out_specs, check=True):
    return _shard_map(f, mesh=DATA, in_specs=in_specs, out_specs=out_specs, **{_CHECK_KW: check})


@check("shard_map_forward")
def _():
    x, k = operands((16, 7, 4), (3, 4, 4), 3)
    f = lambda x, k: jaxconvt.conv_transpose(x, k, 2, "same")
    y = jax.jit(shard_map(f, (P("data"), P()), P("data")))(x, k)
    return close(y, f(x, k)), f"shape={y.shape}"


@check("shard_map_grad_unchecked_psum")
def _():
    x, k = operands((16, 7, 4), (3, 4, 4), 4)
    loss = lambda x, k: jnp.sum(jnp.tanh(jaxconvt.conv_transpose(x, k, 2, "same")))

    def step(x, k):
        dx, dk = jax.grad(loss, argnums=(0, 1))(x, k)
        return dx, jax.lax.psum(dk, "data")

    dx, dk = jax.jit(shard_map(step, (P("data"), P()), (P("data"), P()), check=False))(x, k)
    ex, ek = jax.grad(loss, argnums=(0, 1))(x, k)
    return close(dx, ex) and close(dk, ek), "check_vma=False, explicit psum"


@check("shard_map_grad_checked")
def _():
    """Default shard_map (check_vma=True): the kernel cotangent is psum'd by JAX itself."""
    x, k = operands((16, 7, 4), (3, 4, 4), 5)
    loss = lambda x, k: jnp.sum(jnp.tanh(jaxconvt.conv_transpose(x, k, 2, "same")))
    step = lambda x, k: jax.grad(loss, argnums=(0, 1))(x, k)
    dx, dk = jax.jit(shard_map(step, (P("data"), P()), (P("data"), P())))(x, k)
    ex, ek = jax.grad(loss, argnums=(0, 1))(x, k)
    return close(dx, ex) and close(dk, ek), "check_vma=True"


@check("shard_map_rejects_unreplicated_out_specs")
def _():
    """A device-varying result declared replicated (out_specs=P()) must be refused, as lax's conv is."""
    x, k = operands((16, 7, 4), (3, 4, 4), 6)
    f = lambda x, k: jaxconvt.conv_transpose(x, k, 2, "same")
    try:
        y = shard_map(f, (P("data"), P()), P())(x, k)
    except ValueError as err:
        return True, str(err).splitlines()[0][:200]
    return False, f"accepted; returned one device's shard of shape {y.shape} instead of refusing"


def main(out_path: str) -> None:
    global DATA, DATA_MODEL
    DATA = Mesh(np.array(jax.devices()), ("data",))
    DATA_MODEL = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))
    results = {}
    for name, fn in CHECKS:
        try:
            ok, detail = fn()
        except Exception:  # a failed check, reported to the parent with its traceback
            ok, detail = False, traceback.format_exc()[-3000:]
        results[name] = {"ok": bool(ok), "detail": detail}
    Path(out_path).write_text(json.dumps({"devices": len(jax.devices()), "checks": results}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
