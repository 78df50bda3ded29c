"""The suite: every workload and dtype timed for every implementation, into one JSON report."""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxconvt._lowering import choose_algorithm
from jaxconvt.bench import layers, roof
from jaxconvt.bench.jax_impls import prepare_jax
from jaxconvt.bench.machine import load_average, load_warning, machine_info
from jaxconvt.bench.problem import make_problem
from jaxconvt.bench.progress import Progress
from jaxconvt.bench.settings import SCHEMA, STAGE_LABELS, STAGES, Settings
from jaxconvt.bench.timing import time_in_turns
from jaxconvt.bench.torch_impl import import_torch, prepare_torch
from jaxconvt.bench.workloads import Workload


def empty_result() -> dict:
    return {
        "ms": {s: None for s in STAGES},
        "min_ms": {s: None for s in STAGES},
        "runs": {s: None for s in STAGES},
        "compile_s": {s: None for s in STAGES},
        "peak_mb": {s: None for s in STAGES},
        "gflops": {s: None for s in STAGES},
        "max_rel_diff": {s: None for s in STAGES if s != "fwdbwd"},
        "efficiency": {s: None for s in STAGES},
        "errors": {},
        "skipped": {},
    }


def _rel_diff(got: np.ndarray, ref: np.ndarray) -> float | None:
    """max |got - ref| / max |ref|; None when the shapes differ."""
    if got.shape != ref.shape:
        return None
    scale = max(float(np.abs(ref).max(initial=0.0)), 1e-30)
    return float(np.abs(got.astype(np.float64) - ref.astype(np.float64)).max(initial=0.0)) / scale


def _impls(settings: Settings) -> list[str]:
    impls = ["jaxconvt"]
    if settings.lax:
        impls.append("lax")
    if settings.torch and import_torch() is not None:
        impls.append("torch")
    return impls


def _dtypes_for(workload: Workload, settings: Settings) -> tuple[str, ...]:
    if settings.dtypes is not None:
        return settings.dtypes
    return workload.gpu_dtypes if settings.sizes == "gpu" else (workload.dtype,)


def run_workload(
    workload: Workload, dtype: str, settings: Settings, progress=None, roof_cache: dict | None = None
) -> dict:
    """Times one workload in one dtype; returns its JSON record.

    With ``settings.roof``, each stage's roof products (``jaxconvt.bench.roof.roof_candidates``)
    take their turns with the implementations of that stage, unless ``roof_cache`` has them
    from earlier in the run; the record's ``roof`` holds their shapes, times and GF/s
    (``jaxconvt.bench.roof.roof_record``), and every implementation's ``efficiency`` per
    stage is ``roof time / its time``. Without, ``roof`` and the efficiencies are None.
    """
    progress = progress or Progress(0, enabled=False)
    problem = make_problem(workload, settings.sizes, dtype, settings.seed, settings.algorithm)
    platform_name = jax.default_backend()
    size = problem.size
    flops = workload.useful_flops(size)
    record = {
        "workload": workload.name,
        "note": workload.note,
        "dtype": dtype,
        "sizes": settings.sizes,
        "ndim": workload.ndim,
        "batch": size.batch,
        "input_spatial": list(size.spatial),
        "c_in": size.c_in,
        "c_out": size.c_out,
        "kernel": list(workload.kernel),
        "strides": list(workload.strides),
        "padding": workload.padding if isinstance(workload.padding, (str, int)) else list(workload.padding),
        "output_padding": workload.output_padding,
        "groups": workload.groups,
        "dilation": list(problem.spec.dilation),
        "per_example": workload.per_example,
        "input_shape": list(problem.x_shape),
        "kernel_shape": list(problem.k_shape),
        "output_shape": list(problem.y_shape),
        "algorithm_requested": settings.algorithm,
        "algorithm": choose_algorithm(
            problem.spec,
            jnp.dtype(dtype),
            jax.default_backend(),
            problem.x_shape[1:] if workload.per_example else problem.x_shape,
        ),
        "useful_flops": flops,
        "roof": None,
        "impls": {},
        "speedup": {},
    }
    impls = _impls(settings)
    results = {impl: empty_result() for impl in impls}
    prepared = {}
    for impl in impls:
        progress.step(f"{workload.name} {dtype}: {'set up' if impl == 'torch' else 'compile'} {impl}")
        if impl == "lax" and workload.lax_cpu_skip and platform_name == "cpu":
            results[impl]["skipped"] = {stage: f"skipped on CPU: {workload.lax_cpu_skip}" for stage in STAGES}
            prepared[impl] = {}
        elif impl == "torch":
            prepared[impl] = prepare_torch(problem)
        else:
            prepared[impl] = prepare_jax(problem, impl, settings, results[impl])
    outputs = {impl: {} for impl in impls}
    roof_cache = {} if roof_cache is None else roof_cache
    candidates = roof.roof_candidates(workload, size) if settings.roof else {}
    for stage in STAGES:
        progress.step(f"{workload.name} {dtype}: time {STAGE_LABELS[stage]}")
        runners = {
            impl: prepared[impl][stage]
            for impl in impls
            if stage in prepared[impl] and stage not in results[impl]["skipped"]
        }
        # The stage's roof products (not timed before in this run) take their turns with it.
        roof_runners = roof.prepare_missing(candidates.get(stage, ()), dtype, settings, roof_cache)
        time_in_turns(runners | {f"roof {i}": r for i, r in enumerate(roof_runners.values())}, settings)
        roof.record_timings(roof_runners, roof_cache)
        del roof_runners
        for impl, runner in runners.items():
            result = results[impl]
            if runner.error is not None:
                result["errors"][stage] = runner.error
                continue
            result["ms"][stage] = statistics.median(runner.times) * 1e3
            result["min_ms"][stage] = min(runner.times) * 1e3
            result["runs"][stage] = 0 if runner.too_slow else len(runner.times)
            if runner.too_slow:
                reason = (
                    f"skipped: its {STAGE_LABELS[stage]} call took {runner.times[0]:.0f} s "
                    f"(more than max_call_s = {settings.max_call_s:g} s)"
                )
                for later in STAGES[STAGES.index(stage) + 1 :]:
                    result["skipped"].setdefault(later, reason)
            result["gflops"][stage] = (3 if stage == "fwdbwd" else 1) * flops / statistics.median(runner.times) / 1e9
            if runner.convert is not None:
                outputs[impl][stage] = runner.convert(runner.out)
            runner.out = None
    del prepared
    if settings.roof:
        record["roof"] = roof.roof_record(candidates, dtype, roof_cache)
        for result in results.values():
            result["efficiency"] = roof.stage_efficiencies(result["ms"], record["roof"])
    record["impls"] = results
    mine = record["impls"]["jaxconvt"]
    for impl, result in record["impls"].items():
        for stage, out in outputs[impl].items():
            ref = outputs["jaxconvt"].get(stage)
            if ref is not None:
                result["max_rel_diff"][stage] = _rel_diff(out, ref)
                if result["max_rel_diff"][stage] is None:
                    result["errors"][stage] = f"output shape {out.shape} differs from jaxconvt's {ref.shape}"
        if impl != "jaxconvt":
            record["speedup"][impl] = {
                stage: (result["ms"][stage] / mine["ms"][stage]) if result["ms"][stage] and mine["ms"][stage] else None
                for stage in STAGES
            }
    return record


def run_suite(workloads: Sequence[Workload], settings: Settings, progress: bool = True, command: str = "") -> dict:
    """Runs every workload in every dtype, then the layers section; returns the whole JSON report.

    The report's ``layers`` is :func:`run_layers`'s section for the
    ``layers`` workloads among ``workloads`` with ``settings.layers``, else None.
    """
    impls = _impls(settings)
    jobs = [(w, d) for w in workloads for d in _dtypes_for(w, settings)]
    steps = len(jobs) * (len(impls) + len(STAGES))
    if settings.layers:
        steps += layers.layer_steps(workloads)
    bar = Progress(steps, enabled=progress)
    machine = machine_info()
    warnings = [w for w in [load_warning(machine)] if w]
    for warning in warnings:
        print(f"bench: WARNING: {warning}", file=sys.stderr)
    t0 = time.perf_counter()
    roof_cache: dict = {}
    results = [run_workload(w, d, settings, bar, roof_cache) for w, d in jobs]
    layer_section = layers.run_layers(workloads, settings, bar) if settings.layers else None
    bar.close()
    machine["load_avg_end"] = load_average()
    return {
        "schema": SCHEMA,
        "command": command,
        "machine": machine,
        "warnings": warnings,
        "settings": dataclasses.asdict(settings) | {"impls": impls},
        "wall_s": time.perf_counter() - t0,
        "results": results,
        "layers": layer_section,
    }
