"""One workload at one size and dtype: its spec, shapes and seeded operands."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from jaxconvt._spec import ConvSpec, make_spec
from jaxconvt.bench.workloads import Size, Workload


@dataclasses.dataclass
class Problem:
    """One workload at one size and dtype, with its float32 numpy operands (JAX layout)."""

    workload: Workload
    size: Size
    dtype: str
    spec: ConvSpec
    x_shape: tuple[int, ...]
    k_shape: tuple[int, ...]
    y_shape: tuple[int, ...]
    x: np.ndarray
    k: np.ndarray
    ct: np.ndarray

    @property
    def per_example(self) -> bool:
        return self.workload.per_example


def make_problem(workload: Workload, sizes: str, dtype: str, seed: int = 0, algorithm: str = "auto") -> Problem:
    """Shapes, spec and seeded operands. Per-example workloads get a leading vmap axis."""
    size = workload.size(sizes)
    og = size.c_out // workload.groups
    x_one = (1 if workload.per_example else size.batch, *size.spatial, size.c_in)
    k_one = (*workload.kernel, og, size.c_in)
    spec, y_one = make_spec(x_one, k_one, **workload.conv_kwargs(), algorithm=algorithm)
    lead = (size.batch,) if workload.per_example else ()
    rng = np.random.default_rng(seed)
    fan_in = size.c_in // workload.groups * math.prod(workload.kernel) / math.prod(workload.strides)
    x = rng.standard_normal(lead + x_one, dtype=np.float32)
    k = rng.standard_normal(lead + k_one, dtype=np.float32) / np.float32(math.sqrt(max(fan_in, 1.0)))
    ct = rng.standard_normal(lead + tuple(y_one), dtype=np.float32)
    return Problem(workload, size, dtype, spec, lead + x_one, lead + k_one, lead + tuple(y_one), x, k, ct)
