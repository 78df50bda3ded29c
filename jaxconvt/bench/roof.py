"""The roof: XLA's rate for one bare matrix product with a stage's useful multiply-adds.

For each stage of a workload, the useful multiply-adds of a transposed convolution are those
of one matrix product (batched over the groups) in a natural shape, with ``T = prod(kernel)``,
``P = prod(input spatial)``, ``G`` groups and ``N`` the batch (1 per example for per-example
workloads, whose ``B`` vmapped examples multiply the groups: ``B * G`` products):

* ``fwd``: rows ``N * P``, contraction ``T * C_in / G``, columns ``C_out / G``;
* ``dx``: rows ``N * P``, contraction ``T * C_out / G``, columns ``C_in / G``;
* ``dk``: rows ``T * C_in / G``, contraction ``N * P``, columns ``C_out / G``, timed in two
  layouts: "rows-contracted", a kernel gradient's own (both operands ``(N * P, features)``,
  contracting their first axis), and "rows" (the first operand stored transposed, as for
  the other stages); the faster is the roof. On XLA:CPU the rows-contracted product is up to
  several times slower when the result is small (``(4096, 512)^T (4096, 32)``: 15 against
  89 GF/s), and a lowering is free to transpose its operand, so only the faster layout
  bounds what XLA can do.

Each has exactly the stage's useful flops (``2 * batch * rows * contraction * columns`` =
``Workload.useful_flops``), so ``efficiency = stage GF/s / roof GF/s = roof time / stage
time`` says how far a lowering is from what XLA does with the same arithmetic as one product,
independent of the machine. ``fwdbwd``'s roof time is the sum of the three. Operands are in
the run's dtype; bfloat16 and float16 accumulate in float32 (``preferred_element_type``).

An efficiency above 1 means the stage beat the product of its shape: this happens where the
product's first operand (``T`` times the input, an im2col) is much larger than the stage's
data and the product is bound by memory, e.g. a learned inverse STFT with one output channel.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import statistics

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconvt.bench.settings import STAGES, Settings
from jaxconvt.bench.timing import Runner, time_in_turns
from jaxconvt.bench.workloads import Size, Workload

PRODUCT_STAGES = ("fwd", "dx", "dk")
"""The stages with a product of their own; ``fwdbwd``'s roof is their sum."""


@dataclasses.dataclass(frozen=True)
class Product:
    """``batch`` independent products of a ``(rows, contraction)`` and a ``(contraction, cols)`` matrix.

    ``rows_contracted``: the operands are stored ``(contraction, rows)`` and ``(contraction,
    cols)`` and the product contracts their first axis (a kernel gradient's layout).
    """

    batch: int
    rows: int
    contraction: int
    cols: int
    rows_contracted: bool = False

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(batch, rows, contraction, cols)``."""
        return (self.batch, self.rows, self.contraction, self.cols)

    @property
    def flops(self) -> int:
        return 2 * self.batch * self.rows * self.contraction * self.cols

    def operand_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        lead = (self.batch,) if self.batch > 1 else ()
        first = (self.contraction, self.rows) if self.rows_contracted else (self.rows, self.contraction)
        return lead + first, lead + (self.contraction, self.cols)

    def as_json(self) -> dict:
        return {
            "batch": self.batch,
            "rows": self.rows,
            "contraction": self.contraction,
            "cols": self.cols,
            "layout": "rows-contracted" if self.rows_contracted else "rows",
        }


def roof_products(workload: Workload, size: Size) -> dict[str, Product]:
    """The natural product of the ``fwd``, ``dx`` and ``dk`` stages of ``workload`` at ``size``.

    ``dk``'s is in its rows-contracted layout; ``roof_candidates`` adds the other one.
    """
    g = workload.groups
    batch = g * (size.batch if workload.per_example else 1)
    rows = (1 if workload.per_example else size.batch) * math.prod(size.spatial)
    taps = math.prod(workload.kernel)
    cin_g, cout_g = size.c_in // g, size.c_out // g
    return {
        "fwd": Product(batch, rows, taps * cin_g, cout_g),
        "dx": Product(batch, rows, taps * cout_g, cin_g),
        "dk": Product(batch, taps * cin_g, rows, cout_g, rows_contracted=True),
    }


def roof_candidates(workload: Workload, size: Size) -> dict[str, tuple[Product, ...]]:
    """The products timed per stage (the faster is the roof): :func:`roof_products`, ``dk`` in both layouts."""
    products = roof_products(workload, size)
    out = {stage: (p,) for stage, p in products.items()}
    out["dk"] = (products["dk"], dataclasses.replace(products["dk"], rows_contracted=False))
    return out


def efficiency(stage_ms: float | None, roof_ms: float | None) -> float | None:
    """``stage GF/s / roof GF/s`` = ``roof time / stage time`` (None when either is missing)."""
    if not stage_ms or not roof_ms:
        return None
    return roof_ms / stage_ms


def _accumulation(dtype: str):
    return None if jnp.dtype(dtype) in (jnp.float32, jnp.float64) else jnp.float32


def _memory_limit_bytes() -> int | None:
    """A quarter of the device's memory (of the host's RAM on CPU), if known."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001 - not every backend has memory stats
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"]) // 4
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):
        return None


def product_bytes(product: Product, dtype: str) -> int:
    """Bytes of both operands and the (float32 when accumulating) result."""
    a, b = product.operand_shapes()
    out_item = 4 if _accumulation(dtype) is not None else jnp.dtype(dtype).itemsize
    out = product.batch * product.rows * product.cols * out_item
    return (math.prod(a) + math.prod(b)) * jnp.dtype(dtype).itemsize + out


_HOST_ELEMENTS = 1 << 24
"""Operands up to this many elements are drawn on the host (no kernel to compile), larger ones on the device."""


def _operand(shape: tuple[int, ...], dtype, seed: int) -> jax.Array:
    """A seeded operand with values in [-0.5, 0.5): a numpy draw, or an integer hash of the index for large ones.

    The rate of a matrix product does not depend on its values; a hash on the device keeps
    the gigabyte operands of the GPU sizes off the host.
    """
    if math.prod(shape) <= _HOST_ELEMENTS:
        values = np.random.default_rng(seed).random(shape, dtype=np.float32) - np.float32(0.5)
        return jax.device_put(jnp.asarray(values, dtype), jax.devices()[0])

    def make():
        index = jnp.zeros(shape, jnp.uint32)  # the flat index, modulo 2**32
        for axis in range(len(shape)):
            stride = math.prod(shape[axis + 1 :]) % 2**32
            index = index + lax.broadcasted_iota(jnp.uint32, shape, axis) * jnp.uint32(stride)
        bits = (index * jnp.uint32(2654435761) + jnp.uint32(seed * 40503 % 2**32)) >> jnp.uint32(16)
        return ((bits & jnp.uint32(1023)).astype(jnp.float32) / 1024 - 0.5).astype(dtype)

    return jax.jit(make)()  # on the default device, as the products


def prepare_product(product: Product, dtype: str, seed: int = 0) -> Runner:
    """The compiled ``lax.dot_general`` of ``product`` on seeded random operands, on the default device."""
    batched = product.batch > 1
    b = (0,) if batched else ()
    contract = (1 if batched else 0) if product.rows_contracted else (2 if batched else 1)
    numbers = (((contract,), (1 if batched else 0,)), (b, b))
    acc = _accumulation(dtype)
    x, y = (_operand(shape, jnp.dtype(dtype), seed + i) for i, shape in enumerate(product.operand_shapes()))
    compiled = jax.jit(lambda p, q: lax.dot_general(p, q, numbers, preferred_element_type=acc)).lower(x, y).compile()
    return Runner(functools.partial(compiled, x, y), jax.block_until_ready)


def empty_roof(candidates: dict[str, tuple[Product, ...]], dtype: str) -> dict:
    return {
        "dtype": dtype,
        "accumulation": None if _accumulation(dtype) is None else "float32",
        "products": {stage: [p.as_json() for p in ps] for stage, ps in candidates.items()},
        "layout": {stage: None for stage in PRODUCT_STAGES},
        "ms": {s: None for s in STAGES},
        "min_ms": {s: None for s in STAGES},
        "runs": {s: None for s in STAGES},
        "gflops": {s: None for s in STAGES},
        "errors": {},
    }


def prepare_missing(products, dtype: str, settings: Settings, cache: dict) -> dict[tuple, Runner]:
    """Runners for the ``products`` not yet in ``cache`` (keyed ``(Product, dtype)``).

    A product whose operands would take more than a quarter of the memory, or that fails to
    compile, goes into ``cache`` as the reason instead.
    """
    limit = _memory_limit_bytes()
    runners = {}
    for product in dict.fromkeys(products):
        key = (product, dtype)
        if key in cache:
            continue
        need = product_bytes(product, dtype)
        if limit is not None and need > limit:
            cache[key] = f"skipped: its operands need {need / 1e6:.0f} MB, over a quarter of the memory"
            continue
        try:
            runners[key] = prepare_product(product, dtype, settings.seed)
        except Exception as err:  # noqa: BLE001 - recorded, the suite goes on
            cache[key] = f"{type(err).__name__}: {err}"[:500]
    return runners


def record_timings(runners: dict[tuple, Runner], cache: dict) -> None:
    """Puts the timed ``runners``' ``(median s, min s, runs)`` (or their error) into ``cache``."""
    for key, runner in runners.items():
        if runner.error is not None:
            cache[key] = runner.error
        else:
            runs = 0 if runner.too_slow else len(runner.times)
            cache[key] = (statistics.median(runner.times), min(runner.times), runs)
        runner.out = None


def measure_roof(workload: Workload, size: Size, dtype: str, settings: Settings, cache: dict | None = None) -> dict:
    """Times the stages' products alone, in turns (those not in ``cache``); returns the ``roof`` record.

    The suite instead times each stage's products in turns with the implementations of that
    stage (``jaxconvt.bench.suite.run_workload``), so that they share the machine's drifts.
    ``cache`` maps ``(Product, dtype)`` to ``(median s, min s, runs)`` or an error string,
    shared by the workloads of one run so that each distinct product is timed once.
    """
    cache = {} if cache is None else cache
    candidates = roof_candidates(workload, size)
    runners = prepare_missing([p for ps in candidates.values() for p in ps], dtype, settings, cache)
    time_in_turns(runners, settings)
    record_timings(runners, cache)
    return roof_record(candidates, dtype, cache)


def roof_record(candidates: dict[str, tuple[Product, ...]], dtype: str, timings: dict) -> dict:
    """The ``roof`` record from the products' ``timings`` (``measure_roof``'s ``cache``).

    Each entry of the record's ``products`` gets its own ``ms``, ``min_ms``, ``runs`` and
    ``gflops`` (or ``error``). Per stage the fastest candidate (by median) is the roof:
    ``layout`` names it, and its numbers are the stage's ``ms``, ``min_ms``, ``runs`` and
    ``gflops``. ``fwdbwd``'s times are the sums of the three stages', its GF/s the three
    passes' flops over that sum.
    """
    record = empty_roof(candidates, dtype)
    for stage, products in candidates.items():
        best = None
        for product, entry_json in zip(products, record["products"][stage]):
            entry = timings[(product, dtype)]
            if isinstance(entry, str):
                entry_json["error"] = entry
                continue
            median, minimum, runs = entry
            entry_json.update(ms=median * 1e3, min_ms=minimum * 1e3, runs=runs, gflops=product.flops / median / 1e9)
            if best is None or entry_json["ms"] < best["ms"]:
                best = entry_json
        if best is None:
            record["errors"][stage] = "; ".join(e["error"] for e in record["products"][stage])
            continue
        record["layout"][stage] = best["layout"]
        for field in ("ms", "min_ms", "runs", "gflops"):
            record[field][stage] = best[field]
    if all(record["ms"][s] is not None for s in PRODUCT_STAGES):
        record["ms"]["fwdbwd"] = sum(record["ms"][s] for s in PRODUCT_STAGES)
        record["min_ms"]["fwdbwd"] = sum(record["min_ms"][s] for s in PRODUCT_STAGES)
        record["runs"]["fwdbwd"] = min(record["runs"][s] for s in PRODUCT_STAGES)
        flops = sum(candidates[s][0].flops for s in PRODUCT_STAGES)
        record["gflops"]["fwdbwd"] = flops / record["ms"]["fwdbwd"] * 1e3 / 1e9
    return record


def stage_efficiencies(stage_ms: dict, roof: dict | None) -> dict:
    """``efficiency`` per stage of an implementation's median times against a ``roof`` record."""
    return {s: efficiency(stage_ms.get(s), (roof or {}).get("ms", {}).get(s)) for s in STAGES}
