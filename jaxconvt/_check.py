"""``python -m jaxconvt check``: the op on the default device against the numpy reference."""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxconvt._api import conv_transpose
from jaxconvt._spec import ALGORITHMS
from jaxconvt.reference import conv_transpose_reference

# Relative error bound per dtype (max |err| / max |ref|).
TOLERANCE = {"float32": 1e-5, "bfloat16": 2e-2, "float16": 4e-3, "float64": 1e-12}


@dataclasses.dataclass
class Case:
    ndim: int
    input_spatial: tuple[int, ...]
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: object
    output_padding: object
    groups: int
    channels_last: bool


def random_cases(count: int, seed: int = 0) -> list[Case]:
    """A seeded grid of valid configurations covering 1-D..3-D and every option."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        n = int(rng.integers(1, 4))
        sp = tuple(int(v) for v in rng.integers(1, 6 if n < 3 else 4, n))
        k = tuple(int(v) for v in rng.integers(1, 5, n))
        s = tuple(int(v) for v in rng.integers(1, 4, n))
        d = tuple(int(v) for v in rng.integers(1, 3, n))
        kind = rng.choice(["valid", "same", "explicit"])
        op = tuple(int(rng.integers(0, max(a, b))) for a, b in zip(s, d)) if rng.random() < 0.4 else None
        if kind == "explicit":
            padding = tuple((int(rng.integers(0, 3)), int(rng.integers(0, 3))) for _ in range(n))
        else:
            padding = str(kind)
        case = Case(n, sp, k, s, d, padding, op, int(rng.choice([1, 1, 2])), bool(rng.random() < 0.7))
        try:
            _shapes(case)
        except ValueError:
            continue  # e.g. explicit crops larger than the output
        cases.append(case)
    return cases


def _shapes(case: Case):
    from jaxconvt import conv_transpose_output_shape

    cin, og = 2 * case.groups, 3
    xshape = (2, *case.input_spatial, cin) if case.channels_last else (2, cin, *case.input_spatial)
    kshape = (*case.kernel, og, cin)
    out = conv_transpose_output_shape(
        xshape,
        kshape,
        case.strides,
        case.padding,
        case.output_padding,
        "channels_last" if case.channels_last else "channels_first",
        case.dilation,
        groups=case.groups,
    )
    return xshape, kshape, out


def run_check(count: int = 60, dtypes=("float32", "bfloat16"), algorithms=("auto",), seed: int = 0, verbose=True):
    """Runs the grid; returns (rows, number of failures).

    Each row is ``(dtype, algorithm, cases run, failed, refused, worst relative error,
    seconds)``; "refused" counts the cases that ``algorithm="dilate"``/``"pad"`` refuse
    (XLA:CPU can abort on zero insertion there), which are not run.
    """
    rng = np.random.default_rng(seed + 1)
    rows, failures = [], 0
    device = jax.devices()[0]
    if verbose:
        print(f"jaxconvt check on {device.platform}:{device.device_kind} (jax {jax.__version__})")
    for dtype in dtypes:
        for algorithm in algorithms:
            worst, failed, refused, t0 = 0.0, 0, 0, time.perf_counter()
            for case in random_cases(count, seed):
                xshape, kshape, _ = _shapes(case)
                x = rng.standard_normal(xshape)
                k = rng.standard_normal(kshape)
                xd = jnp.asarray(x, dtype)
                kd = jnp.asarray(k, dtype)
                args = dict(
                    strides=case.strides,
                    padding=case.padding,
                    output_padding=case.output_padding,
                    data_format="channels_last" if case.channels_last else "channels_first",
                    dilation_rate=case.dilation,
                    groups=case.groups,
                )
                try:
                    got = np.asarray(conv_transpose(xd, kd, algorithm=algorithm, **args)).astype(np.float64)
                except ValueError as err:
                    # "dilate"/"pad" are refused where XLA:CPU can abort on zero insertion.
                    if algorithm in ("dilate", "pad") and "is refused" in str(err):
                        refused += 1
                        continue
                    raise
                # The reference sees the same rounded operands.
                ref = conv_transpose_reference(
                    np.asarray(xd).astype(np.float64), np.asarray(kd).astype(np.float64), **args
                )
                scale = max(float(np.abs(ref).max(initial=0.0)), 1.0)
                err = float(np.abs(got - ref).max(initial=0.0)) / scale if got.shape == ref.shape else float("inf")
                worst = max(worst, err)
                failed += err > TOLERANCE[dtype]
            failures += failed
            rows.append((dtype, algorithm, count - refused, failed, refused, worst, time.perf_counter() - t0))
    if verbose:
        header = f"{'dtype':<10}{'algorithm':<10}{'cases':>6}{'failed':>8}{'refused':>9}{'max rel err':>14}{'tol':>10}"
        print(f"{header}{'time s':>9}")
        for dtype, algorithm, n, failed, refused, worst, secs in rows:
            print(
                f"{dtype:<10}{algorithm:<10}{n:>6}{failed:>8}{refused:>9}{worst:>14.2e}{TOLERANCE[dtype]:>10.0e}"
                f"{secs:>9.1f}"
            )
        total = sum(r[2] for r in rows)
        print(f"{'PASS' if failures == 0 else 'FAIL'}: {total - failures} passed, {failures} failed")
    return rows, failures


ALL_ALGORITHMS = tuple(a for a in ALGORITHMS if a != "auto")
