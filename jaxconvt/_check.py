"""``python -m jaxconvt check``: the op and its derivatives on the default device against the numpy reference.

Every case is a random valid configuration (1-D to 3-D, strides, dilation, padding strings and
explicit crops, ``output_padding``, groups, both data formats). In every case and dtype, one
jitted call computes the output ``y = T(x, K)``, the input and kernel gradients ``(dx, dK)``
of ``<T(x, K), g>`` for a random cotangent ``g``, and the forward-mode product along
``(tx, tK)``. They are compared with :func:`jaxconvt.reference.conv_transpose_reference`
(a float64 numpy scatter-add that shares no arithmetic with the op) on the same rounded
operands, with nothing but the op's bilinearity:

* ``fwd``: ``y`` against the reference, element by element;
* ``dx``, ``dK``: the adjoint identity ``<x, dx> = <K, dK> = <T(x, K), g>``, the right side
  from the reference; in the first :data:`EXACT_CASES` cases of each dtype and algorithm
  also element by element, from one-hot operands (``dx[i] = <T(e_i, K), g>``,
  ``dK[j] = <T(x, e_j), g>``);
* ``jvp``: ``T(tx, K) + T(x, tK)``, element by element.

Errors are relative: element-wise checks divide the largest absolute difference by the
largest absolute reference value (at least 1), the adjoint identity divides the difference
of the two pairings by the sum of the absolute values of all the products in it
(``<T(|x|, |K|), |g|>``), the size rounding errors are measured against.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxconvt._api import conv_transpose, conv_transpose_output_shape
from jaxconvt._spec import ALGORITHMS
from jaxconvt.reference import conv_transpose_reference

TOLERANCE = {"float32": 1e-5, "bfloat16": 2e-2, "float16": 4e-3, "float64": 1e-12}
"""Largest relative error accepted per dtype, for every check."""
CHECKS = ("fwd", "dx", "dK", "jvp")
"""What each case checks: the output, the input and kernel gradients, the forward-mode product."""
EXACT_CASES = 3
"""Cases per dtype and algorithm whose gradients are also checked element by element."""
ALL_ALGORITHMS = tuple(a for a in ALGORITHMS if a != "auto")
"""Every forward algorithm ``--algorithms all`` checks (``"auto"`` picks one of them)."""


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

    def kwargs(self) -> dict:
        """The keyword arguments of ``conv_transpose`` besides the operands."""
        return dict(
            strides=self.strides,
            padding=self.padding,
            output_padding=self.output_padding,
            data_format="channels_last" if self.channels_last else "channels_first",
            dilation_rate=self.dilation,
            groups=self.groups,
        )

    def shapes(self):
        """(input shape, kernel shape, output shape): batch 2, 2 input channels per group, 3 outputs per group."""
        cin, og = 2 * self.groups, 3
        xshape = (2, *self.input_spatial, cin) if self.channels_last else (2, cin, *self.input_spatial)
        kshape = (*self.kernel, og, cin)
        return xshape, kshape, conv_transpose_output_shape(xshape, kshape, **self.kwargs())


@dataclasses.dataclass
class Row:
    """The result of one dtype and algorithm.

    Attributes:
      dtype, algorithm: what ran.
      cases: cases checked (``refused`` ones excluded).
      failed: cases with any error above the tolerance.
      refused: cases ``algorithm="dilate"``/``"pad"`` refuse (XLA:CPU can abort on zero
        insertion there); not run.
      exact: cases whose gradients were also checked element by element.
      worst: the largest relative error of each check in :data:`CHECKS`.
      seconds: wall time.
    """

    dtype: str
    algorithm: str
    cases: int = 0
    failed: int = 0
    refused: int = 0
    exact: int = 0
    worst: dict[str, float] = dataclasses.field(default_factory=lambda: dict.fromkeys(CHECKS, 0.0))
    seconds: float = 0.0

    @property
    def tolerance(self) -> float:
        return TOLERANCE[self.dtype]


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
            case.shapes()
        except ValueError:
            continue  # e.g. explicit crops larger than the output
        cases.append(case)
    return cases


def _all_slots(algorithm: str, kwargs: dict):
    """One jitted function: output, (dx, dK) for cotangent ``g``, and the jvp along ``(tx, tk)``."""
    op = lambda x, k: conv_transpose(x, k, algorithm=algorithm, **kwargs)

    def slots(x, k, g, tx, tk):
        y, vjp = jax.vjp(op, x, k)
        dx, dk = vjp(g)
        return y, dx, dk, jax.jvp(op, (x, k), (tx, tk))[1]

    return jax.jit(slots)


def _max_rel(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max(max |want|, 1); infinite when the shapes differ."""
    if got.shape != want.shape:
        return float("inf")
    scale = max(float(np.abs(want).max(initial=0.0)), 1.0)
    return float(np.abs(got - want).max(initial=0.0)) / scale


def _one_hot(shape: tuple[int, ...]):
    """Every one-hot array of ``shape``, stacked: ``(prod(shape), *shape)``."""
    size = int(np.prod(shape))
    return np.eye(size).reshape(size, *shape)


def _exact_gradients(x, k, g, kwargs: dict):
    """``dx`` and ``dK`` of ``<T(x, K), g>`` element by element from the reference, by linearity.

    ``dx[n, i] = <T(e_i, K), g[n]>`` for every one-hot example ``e_i`` (all of them at once, as
    the reference's batch), ``dK[j] = <T(x, e_j), g>`` for every one-hot kernel ``e_j``.
    """
    basis = _one_hot(x.shape[1:])
    responses = conv_transpose_reference(basis, k, **kwargs)  # (prod(x.shape[1:]), *y.shape[1:])
    dx = (g.reshape(len(g), -1) @ responses.reshape(len(responses), -1).T).reshape(x.shape)
    dk = np.array([np.vdot(conv_transpose_reference(x, e, **kwargs), g) for e in _one_hot(k.shape)])
    return dx, dk.reshape(k.shape)


def check_case(case: Case, dtype: str, algorithm: str, rng: np.random.Generator, exact: bool) -> dict[str, float]:
    """The relative errors of one case (keys :data:`CHECKS`).

    Raises the op's ValueError when ``algorithm`` refuses the configuration.
    """
    xshape, kshape, yshape = case.shapes()
    kwargs = case.kwargs()
    draws = [rng.standard_normal(shape) for shape in (xshape, kshape, yshape, xshape, kshape)]
    on_device = [jnp.asarray(a, dtype) for a in draws]
    # The reference sees the same rounded operands, in float64.
    x, k, g, tx, tk = (np.asarray(a).astype(np.float64) for a in on_device)
    y, dx, dk, y_dot = (np.asarray(a).astype(np.float64) for a in _all_slots(algorithm, kwargs)(*on_device))
    ref = lambda a, b: conv_transpose_reference(a, b, **kwargs)
    pairing = float(np.vdot(ref(x, k), g))
    magnitude = max(float(np.vdot(ref(np.abs(x), np.abs(k)), np.abs(g))), np.finfo(np.float64).tiny)
    errors = {
        "fwd": _max_rel(y, ref(x, k)),
        "dx": abs(float(np.vdot(x, dx)) - pairing) / magnitude if dx.shape == x.shape else float("inf"),
        "dK": abs(float(np.vdot(k, dk)) - pairing) / magnitude if dk.shape == k.shape else float("inf"),
        "jvp": _max_rel(y_dot, ref(tx, k) + ref(x, tk)),
    }
    if exact:
        dx_ref, dk_ref = _exact_gradients(x, k, g, kwargs)
        errors["dx"] = max(errors["dx"], _max_rel(dx, dx_ref))
        errors["dK"] = max(errors["dK"], _max_rel(dk, dk_ref))
    return errors


def run_check(count: int = 60, dtypes=("float32", "bfloat16"), algorithms=("auto",), seed: int = 0, verbose=True):
    """Runs the grid in every dtype and algorithm; returns (rows, number of failed cases).

    Args:
      count: random configurations per dtype and algorithm (at least 1).
      dtypes: dtype names, keys of :data:`TOLERANCE` (float64 needs ``jax_enable_x64``).
      algorithms: forward algorithms (``"auto"`` or names in :data:`ALL_ALGORITHMS`).
      seed: seed of the configurations and the operands (at least 0).
      verbose: print the table and the summary.

    Returns:
      A list of :class:`Row`, one per dtype and algorithm, and the number of failed cases.
    """
    if count < 1 or seed < 0:
        raise ValueError(f"`count` must be at least 1 and `seed` at least 0; got count={count}, seed={seed}.")
    device = jax.devices()[0]
    if verbose:
        print(f"jaxconvt check on {device.platform}:{device.device_kind} (jax {jax.__version__}), seed {seed}")
    cases = random_cases(count, seed)
    rows = []
    for dtype in dtypes:
        for algorithm in algorithms:
            row, t0 = Row(dtype, algorithm), time.perf_counter()
            rng = np.random.default_rng([seed, 1])
            for case in cases:
                try:
                    errors = check_case(case, dtype, algorithm, rng, exact=row.cases < EXACT_CASES)
                except ValueError as err:
                    # "dilate"/"pad" are refused where XLA:CPU can abort on zero insertion.
                    if algorithm in ("dilate", "pad") and "is refused" in str(err):
                        row.refused += 1
                        continue
                    raise
                row.exact += row.cases < EXACT_CASES
                row.cases += 1
                row.failed += any(e > row.tolerance for e in errors.values())
                row.worst = {c: max(row.worst[c], errors[c]) for c in CHECKS}
            row.seconds = time.perf_counter() - t0
            rows.append(row)
    failures = sum(r.failed for r in rows)
    if verbose:
        print(report(rows))
    return rows, failures


def report(rows: list[Row]) -> str:
    """The table of rows, then what was checked and how, and the verdict (the last line)."""
    head = f"{'dtype':<10}{'algorithm':<10}{'cases':>6}{'failed':>7}{'refused':>8}"
    head += "".join(f"{c + ' err':>10}" for c in CHECKS) + f"{'tol':>8}{'time s':>8}"
    lines = [head]
    for r in rows:
        line = f"{r.dtype:<10}{r.algorithm:<10}{r.cases:>6}{r.failed:>7}{r.refused:>8}"
        line += "".join(f"{r.worst[c]:>10.1e}" for c in CHECKS) + f"{r.tolerance:>8.0e}{r.seconds:>8.1f}"
        lines.append(line)
    cases = sum(r.cases for r in rows)
    failed = sum(r.failed for r in rows)
    refused = sum(r.refused for r in rows)
    exact = sum(r.exact for r in rows)
    worst_row, worst_check = max(
        ((r, c) for r in rows for c in CHECKS), key=lambda rc: rc[0].worst[rc[1]] / rc[0].tolerance
    )
    lines += [
        "checked against the float64 numpy reference (jaxconvt.reference) on the same rounded operands:",
        "  fwd: the output, element by element;",
        "  dx, dK: the input and kernel gradients by the adjoint identity <x, dx> = <K, dK> = <T(x, K), g>,",
        f"    and element by element from one-hot operands (by linearity) in {exact} of the cases;",
        "  jvp: the forward-mode product against T(tx, K) + T(x, tK), element by element.",
        f"{'PASS' if failed == 0 else 'FAIL'}: {cases - failed} of {cases} cases passed all {len(CHECKS)} checks "
        f"({', '.join(CHECKS)}) in {len(rows)} dtype/algorithm run(s)"
        + (f", {refused} refused" if refused else "")
        + f"; worst error {worst_row.worst[worst_check]:.1e} ({worst_row.dtype} {worst_check}, "
        f"tolerance {worst_row.tolerance:.0e})",
    ]
    return "\n".join(lines)
