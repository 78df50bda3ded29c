"""What reaches XLA on GPU and TPU: the op and its derivatives exported for ``cuda`` and ``tpu``.

``jax.export`` with ``platforms=`` traces and lowers for a platform this machine does not
have (no compilation), so the StableHLO that a GPU or TPU would compile is checked here on any
machine. Off CPU the primitive's default lowering runs (``_lowering.lower`` with
``platform=None``): no per-group split and no ``"dot"`` form, which are CPU-only choices.

The fast forms run under a ``lax.cond`` on the finiteness of some operands, with the
tap-by-tap definition (``_lowering/scatter.py``: loops of ``dot_general``) as the exact
fallback. A guarded slot is a ``stablehlo.case`` whose branch 0 is the fallback (``lax.cond``
orders its branches false, true) and whose loop bodies are private functions called from
``stablehlo.while`` regions. ``_module_ops`` follows those regions and calls and tags every op
of the module as on the fast path or only in a fallback; the checks then look at every
convolution and pad in the whole module:

* no convolution with ``lhs_dilate`` other than 1 (JAX's zero insertion) anywhere;
* no ``stablehlo.pad`` with interior padding except the kernel dilated by ``d - 1`` zeros;
* every convolution of the data (batch on its batch axis) has a kernel-sized window: the
  kernel itself (``rhs_dilate = d``) or the phase window (stride 1, undilated);
* every other convolution is the kernel gradient, the direct form: its result is the kernel's
  taps, its window the input (``rhs_dilate = s``, ``window_strides = d``) over the cotangent
  padded to the full output, never the output-sized window of JAX's rule (``lhs_dilate = s``);
  else the kernel gradient is ``dot_general`` products;
* every convolution keeps the groups whole (``feature_group_count = G``), and the forward is
  one stride-1 convolution (none where the definition itself is the forward);
* the fallback holds no convolution and the fast path no loop, so the branches are told
  apart correctly.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxconvt
from jaxconvt._lowering import phase
from jaxconvt._spec import make_spec
from tests.test_algorithms import _conv_windows, _interior_pads

PLATFORMS = ("cuda", "tpu")

# ----------------------------------------------------------------------------------------
# Reading an exported module
# ----------------------------------------------------------------------------------------

_OP_NAME = re.compile(r'^(?:%[^=]*= )?"?([a-z_]+(?:\.[a-z_]+)*)"?')


@dataclasses.dataclass(frozen=True)
class Op:
    """One operation of a module: its name, its text line, whether the fast path runs it, and
    the function it is in."""

    name: str
    line: str
    fast: bool
    func: str


def _module_ops(text: str) -> list[Op]:
    """Every operation of a StableHLO module, tagged fast (reached outside every branch 0 of a
    ``stablehlo.case``) or fallback-only, through nested regions and calls of private functions."""
    stack: list[tuple] = []  # ("module",) | ("func", name) | ("region", op name, region index)
    found: list[tuple[str, str, str, bool]] = []  # (function, op name, line, inside a branch 0)
    calls: list[tuple[str, str, bool]] = []  # (caller, callee, inside a branch 0)
    func, last = None, None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#loc", "^", "//")):
            continue
        closes, opens = line.startswith("}"), line.endswith("{")
        if closes:
            frame = stack.pop()
            if opens:  # "}, {" or "} do {": the next region of the same op
                stack.append(("region", frame[1], frame[2] + 1))
            continue
        if line.startswith("module"):
            stack.append(("module",))
            continue
        if line.startswith("func.func"):
            func = re.search(r"@([\w.$-]+)", line).group(1)
            stack.append(("func", func))
            continue
        match = _OP_NAME.match(line)
        is_op = line.startswith("%") or (match is not None and "." in match.group(1))
        if opens and not is_op:  # "cond {", "reducer(...) {": a region of the op above
            stack.append(("region", last, 0))
            continue
        name = match.group(1) if match else line.split()[0]
        fallback = any(f[0] == "region" and f[1] == "stablehlo.case" and f[2] == 0 for f in stack)
        found.append((func, name, line, fallback))
        if name in ("call", "func.call"):
            calls.append((func, re.search(r"@([\w.$-]+)", line).group(1), fallback))
        last = name
        if opens:  # an op whose regions follow ('"stablehlo.case"(%5) ({')
            stack.append(("region", name, 0))
    assert not stack, f"unbalanced regions: {stack}"
    fast_funcs, grew = {"main"}, True
    while grew:
        grew = False
        for caller, callee, fallback in calls:
            if caller in fast_funcs and not fallback and callee not in fast_funcs:
                fast_funcs.add(callee)
                grew = True
    return [Op(name, line, f in fast_funcs and not fallback, f) for f, name, line, fallback in found]


def _dims(text: str) -> tuple[int | None, ...]:
    """``"2x?x5xf32"`` -> ``(2, None, 5)``: a tensor type's dimensions (None: symbolic)."""
    return tuple(None if d == "?" else int(d) for d in text.split("x")[:-1])


def _tensor_types(line: str) -> list[tuple[int | None, ...]]:
    return [_dims(t) for t in re.findall(r"tensor<([^>]*)>", line.split(" : ", 1)[-1])]


def _ints(pattern: str, line: str, default: tuple[int, ...]) -> tuple[int, ...]:
    m = re.search(pattern + r" = \[([\d, -]*)\]", line)
    return tuple(int(v) for v in m.group(1).split(",")) if m and m.group(1).strip() else default


@dataclasses.dataclass(frozen=True)
class Conv:
    """A ``stablehlo.convolution`` in logical order: ``lhs`` and ``out`` are (batch, feature,
    *spatial), ``rhs`` (out feature, in feature, *spatial); None for a symbolic size."""

    lhs: tuple
    rhs: tuple
    out: tuple
    stride: tuple[int, ...]
    lhs_dilate: tuple[int, ...]
    rhs_dilate: tuple[int, ...]
    groups: int
    batch_groups: int
    fast: bool


def _logical(shape, labels: list[str], first: str, second: str) -> tuple:
    spatial = sorted((lab for lab in labels if lab.isdigit()), key=int)
    return tuple(shape[labels.index(lab)] for lab in (first, second, *spatial))


def _conv(op: Op) -> Conv:
    lhs_l, rhs_l, out_l = (
        [v.strip() for v in part.split(",")]
        for part in re.search(r"dim_numbers = \[([^\]]*)\]x\[([^\]]*)\]->\[([^\]]*)\]", op.line).groups()
    )
    lhs, rhs, out = _tensor_types(op.line)[:3]
    n = len(lhs) - 2
    ((stride, lhs_dilate),) = _conv_windows(op.line)  # the shared parser (an omitted attribute: [])
    return Conv(
        lhs=_logical(lhs, lhs_l, "b", "f"),
        rhs=_logical(rhs, rhs_l, "o", "i"),
        out=_logical(out, out_l, "b", "f"),
        stride=tuple(stride) or (1,) * n,
        lhs_dilate=tuple(lhs_dilate) or (1,) * n,
        rhs_dilate=_ints("rhs_dilate", op.line, (1,) * n),
        groups=int(re.search(r"feature_group_count = (\d+)", op.line).group(1)),
        batch_groups=int(re.search(r"batch_group_count = (\d+)", op.line).group(1)),
        fast=op.fast,
    )


# ----------------------------------------------------------------------------------------
# The configurations and what they must lower to off CPU
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    """A configuration; ``forward`` is the form ``"auto"`` picks off CPU (``"scatter"``: the
    definition itself, loops of products; else one stride-1 convolution)."""

    name: str
    x: tuple[int, ...]  # (N, *spatial, C_in)
    kernel: tuple[int, ...]
    og: int  # C_out // groups
    strides: object = 1
    padding: object = "valid"
    output_padding: object = None
    dilation: object = 1
    groups: int = 1
    dtype: str = "float32"
    forward: str = "phase"

    @property
    def k_shape(self) -> tuple[int, ...]:
        return (*self.kernel, self.og, self.x[-1])

    def op(self, x, k, algorithm="auto"):
        return jaxconvt.conv_transpose(
            x,
            k,
            self.strides,
            self.padding,
            self.output_padding,
            dilation_rate=self.dilation,
            groups=self.groups,
            algorithm=algorithm,
        )

    def spec(self):
        return make_spec(
            self.x,
            self.k_shape,
            self.strides,
            self.padding,
            self.output_padding,
            None,
            self.dilation,
            groups=self.groups,
        )


# Batch 2 is no og (3 or 32): a convolution over the data (the batch on its batch axis) is told
# apart from the direct kernel gradient (og on its batch axis).
CASES = [
    Case("1d_k4s2_same", (2, 7, 2), (4,), 3, 2, "same"),
    Case("1d_k3s2_p1_op1_g2_bf16", (2, 7, 4), (3,), 3, 2, 1, 1, groups=2, dtype="bfloat16"),
    Case("1d_k16s8_p4_g2_bf16", (2, 7, 4), (16,), 3, 8, 4, groups=2, dtype="bfloat16"),
    Case("1d_k2s8_definition", (2, 7, 2), (2,), 3, 8, forward="scatter"),
    Case("2d_k3_s23_op10_d12_g2", (2, 6, 6, 4), (3, 3), 3, (2, 3), "valid", (1, 0), (1, 2), groups=2),
    Case("2d_k4s2_pads_lo_hi", (2, 6, 7, 2), (4, 4), 3, 2, ((2, 1), (0, 2))),
    Case("2d_k4s2_d31_g4", (2, 6, 6, 8), (4, 4), 3, 2, "valid", None, (3, 1), groups=4),
    Case("2d_k3s1_same_d2_bf16", (2, 6, 6, 2), (3, 3), 3, 1, "same", None, 2, dtype="bfloat16", forward="pad"),
    Case("2d_k3s2_wide_bf16", (4, 16, 16, 32), (3, 3), 32, 2, 1, 1, dtype="bfloat16"),  # "dot" on CPU
    Case("3d_k3s2_p1_op1", (2, 5, 6, 5, 2), (3, 3, 3), 3, 2, 1, 1),
    Case("3d_k2s2_g2_bf16", (2, 5, 5, 6, 4), (2, 2, 2), 3, 2, groups=2, dtype="bfloat16"),
]


def _functions(case: Case):
    """The forward, the input and kernel gradients and a second-order derivative."""
    _, out = case.spec()
    ct = jnp.asarray(np.random.default_rng(0).standard_normal((1, *out[1:])), case.dtype)  # any batch
    loss = lambda x, k: jnp.sum((case.op(x, k) * ct).astype(jnp.float32))
    # nonlinear in the output, so the second order differentiates every slot in both operands
    square = lambda x, k: jnp.sum((case.op(x, k) ** 2 * ct).astype(jnp.float32))
    grad_k = jax.grad(square, argnums=1)
    return {
        "forward": case.op,
        "grad_x": jax.grad(loss, argnums=0),
        "grad_k": jax.grad(loss, argnums=1),
        "second_order": jax.grad(lambda x, k: jnp.sum(grad_k(x, k).astype(jnp.float32) ** 2), argnums=(0, 1)),
    }


def _export(fn, case: Case, platform: str, batch=None) -> str:
    """The StableHLO text of ``fn(x, k)`` lowered for ``platform`` (``batch``: a symbolic name)."""
    x_shape = case.x if batch is None else (*jax.export.symbolic_shape(batch), *case.x[1:])
    x = jax.ShapeDtypeStruct(x_shape, case.dtype)
    k = jax.ShapeDtypeStruct(case.k_shape, case.dtype)
    return jax.export.export(jax.jit(fn), platforms=(platform,))(x, k).mlir_module()


def _problems(text: str, case: Case, what: str) -> list[str]:
    """What in an exported module breaks the rules of the module docstring (empty: none)."""
    spec, _ = case.spec()
    n, g, batch = spec.ndim, spec.groups, case.x[0]
    spatial = case.x[1 : n + 1]
    strides = tuple(1 if i == 1 else s for i, s in zip(spatial, spec.strides))  # _lowering.effective_spec
    full = tuple((i - 1) * s + (k - 1) * d + 1 for i, s, k, d in zip(spatial, strides, spec.kernel_size, spec.dilation))
    window = tuple(phase.phase_window(k, s, d) for k, s, d in zip(spec.kernel_size, strides, spec.dilation))
    ops = _module_ops(text)
    convs = [_conv(op) for op in ops if op.name == "stablehlo.convolution"]
    problems = []
    if len(convs) != len(_conv_windows(text)):
        problems.append(f"parsed {len(convs)} convolutions, the module has {len(_conv_windows(text))}")
    for _, lhs in _conv_windows(text):  # every convolution of the module, in every region and function
        if set(lhs) - {1}:
            problems.append(f"a convolution with lhs_dilate = {lhs}")
    for op in ops:
        if op.name == "stablehlo.pad" and set(interior := _interior_pads(op.line)[0]) - {0}:
            operand = _tensor_types(op.line)[0]
            kernel = operand[:n] == spec.kernel_size and tuple(interior[:n]) == tuple(d - 1 for d in spec.dilation)
            if not kernel or set(interior[n:]) - {0}:
                problems.append(f"interior padding {interior} of a {operand} operand (not the dilated kernel)")
    if any(c.groups != g or c.batch_groups != 1 for c in convs):
        problems.append(
            f"a convolution without feature_group_count = {g}: {[(c.groups, c.batch_groups) for c in convs]}"
        )
    fast = [c for c in convs if c.fast]
    for c in fast:
        if c.lhs[0] in (batch, None):  # over the data: the forward or the input gradient
            unit = set(c.stride) == {1}
            kernel = c.rhs[2:] == spec.kernel_size and c.rhs_dilate == spec.dilation and (unit or c.stride == strides)
            phase_window = all(r <= w for r, w in zip(c.rhs[2:], window)) and set(c.rhs_dilate) == {1} and unit
            if not (kernel or phase_window):
                problems.append(
                    f"a data convolution with window {c.rhs[2:]} (dilated {c.rhs_dilate}), stride {c.stride}"
                )
        elif not (
            c.out[2:] == spec.kernel_size
            and c.rhs[2:] == spatial
            and c.lhs[2:] == full
            and c.rhs_dilate == strides
            and c.stride == spec.dilation
        ):
            problems.append(
                f"a kernel-gradient convolution {c.lhs} x {c.rhs} -> {c.out} (rhs_dilate {c.rhs_dilate}, stride "
                f"{c.stride}): not the kernel's taps from the input as window over the full cotangent {full}"
            )
    if any(not c.fast for c in convs):
        problems.append("a convolution in the exact fallback (it is products of the definition only)")
    loops = [op for op in ops if op.name == "stablehlo.while"]
    if case.forward != "scatter" and any(op.fast for op in loops):
        problems.append("a loop on the fast path")
    if any(op.name == "stablehlo.case" for op in ops) and not any(not op.fast for op in loops):
        problems.append("a guard without the tap-by-tap fallback in its branch 0")
    dots = [op for op in ops if op.name == "stablehlo.dot_general" and op.fast]
    if what == "forward":
        expected = 0 if case.forward == "scatter" else 1
        if len(fast) != expected or any(set(c.stride) != {1} for c in fast):
            problems.append(f"the forward is {len(fast)} convolutions with strides {[c.stride for c in fast]}")
        if expected and dots:
            problems.append(f"the forward has {len(dots)} dot_general besides its convolution (the CPU 'dot' form?)")
    if (
        what == "grad_x"
        and not any(c.lhs[0] in (batch, None) and c.stride == strides for c in fast)
        and any(s > 1 for s in strides)
    ):
        problems.append("no strided convolution for the input gradient")
    if what == "grad_k" and not dots and not any(c.lhs[0] not in (batch, None) for c in fast):
        problems.append("no kernel gradient on the fast path")
    return problems


# ----------------------------------------------------------------------------------------
# The tests
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_what_reaches_xla(case, platform):
    """The forward, both gradients and a second-order derivative, exported for ``platform``."""
    for what, fn in _functions(case).items():
        text = _export(fn, case, platform)
        assert "stablehlo.convolution" in text or "stablehlo.dot_general" in text, what
        assert not _problems(text, case, what), (what, _problems(text, case, what))


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("case", CASES[1::2], ids=lambda c: c.name)
def test_symbolic_batch(case, platform):
    """A symbolic batch exports for both platforms and lowers to the same kinds of operations."""
    for what in ("forward", "second_order"):
        text = _export(_functions(case)[what], case, platform, batch="b")
        assert "tensor<?x" in text
        assert not _problems(text, case, what), (what, _problems(text, case, what))


def _count(text: str, name: str, fast_only: bool = True) -> int:
    return sum(op.name == name and (op.fast or not fast_only) for op in _module_ops(text))


@pytest.mark.parametrize("platform", PLATFORMS)
def test_no_cpu_only_choices(platform):
    """Off CPU: bfloat16 stays on convolutions ("dot" is CPU-only) and groups stay one grouped
    convolution (the per-group split is CPU-only). The same exports for ``cpu`` show both CPU
    choices, so the checks can tell them apart."""
    wide = next(c for c in CASES if c.name == "2d_k3s2_wide_bf16")
    for what in ("forward", "grad_x"):
        fn = _functions(wide)[what]
        off, cpu = _export(fn, wide, platform), _export(fn, wide, "cpu")
        assert _count(off, "stablehlo.convolution") == 1 and _count(off, "stablehlo.dot_general") == 0, what
        assert _count(cpu, "stablehlo.convolution", fast_only=False) == 0, what  # the CPU's "dot": products only
        assert _count(cpu, "stablehlo.dot_general") == math.prod(wide.kernel), what
    grouped = next(c for c in CASES if c.name == "2d_k4s2_d31_g4")
    for what in ("forward", "grad_x", "grad_k"):
        fn = _functions(grouped)[what]
        off = [_conv(op) for op in _module_ops(_export(fn, grouped, platform)) if op.name == "stablehlo.convolution"]
        cpu = [_conv(op) for op in _module_ops(_export(fn, grouped, "cpu")) if op.name == "stablehlo.convolution"]
        assert {c.groups for c in off} == {grouped.groups}, what
        assert {c.groups for c in cpu} == {1} and len(cpu) == grouped.groups * len(off), what


def test_checks_see_zero_insertion():
    """The forced zero-inserting forms break the rules: the checks read what the export prints
    (it omits default window attributes)."""
    case = next(c for c in CASES if c.name == "2d_k4s2_pads_lo_hi")
    for algorithm, expected in (("dilate", "lhs_dilate = [2, 2]"), ("pad", "interior padding [0, 1, 1, 0]")):
        fn = functools.partial(case.op, algorithm=algorithm)
        for platform in PLATFORMS:
            problems = _problems(_export(fn, case, platform), case, "forward")
            assert any(expected in p for p in problems), (algorithm, problems)


def test_checks_see_jax_autodiff_of_zero_insertion():
    """JAX's own kernel gradient of the ``lhs_dilation`` forward (what ``lax.conv_transpose`` and
    ``keras.ops.conv_transpose`` run) breaks the rules: zero insertion and an output-sized window."""
    case = Case("lax", (2, 6, 7, 5), (4, 4), 3, 2, "valid")
    _, out = case.spec()
    ct = jnp.ones((1, *out[1:]))
    dn = ("NHWC", "HWIO", "NHWC")
    op = lambda x, k: lax.conv_transpose(x, jnp.swapaxes(k, -1, -2), (2, 2), "VALID", dimension_numbers=dn)
    assert op(jnp.ones(case.x), jnp.ones(case.k_shape)).shape == out
    grad_k = jax.grad(lambda x, k: jnp.sum(op(x, k) * ct), argnums=1)
    for platform in PLATFORMS:
        problems = _problems(_export(grad_k, case, platform), case, "grad_k")
        assert any("lhs_dilate = [2, 2]" in p for p in problems), problems
        assert any("x (3, 2, 14, 16) -> (5, 3, 4, 4)" in p for p in problems), problems  # the cotangent as window


def test_module_walk_follows_regions_and_calls():
    """A guarded slot: the fast convolution outside branch 0, the fallback's products inside the
    loop body, a private function that only branch 0 calls."""
    case = next(c for c in CASES if c.name == "2d_k4s2_pads_lo_hi")
    text = _export(case.op, case, "cuda")
    ops = _module_ops(text)
    names = lambda fast: {op.name for op in ops if op.fast == fast}
    assert _count(text, "stablehlo.case", fast_only=False) == 1
    assert {"stablehlo.convolution", "stablehlo.case"} <= names(True) and "stablehlo.while" not in names(True)
    assert {"stablehlo.while", "stablehlo.dot_general", "stablehlo.dynamic_update_slice"} <= names(False)
    assert "stablehlo.convolution" not in names(False)
    assert any(op.name == "stablehlo.dot_general" and op.func != "main" for op in ops)  # in the loop's body
    # the kernel gradient over a symbolic batch: the direct convolution, its features symbolic
    text = _export(_functions(case)["grad_k"], case, "tpu", batch="b")
    convs = [_conv(op) for op in _module_ops(text) if op.name == "stablehlo.convolution"]
    assert any(c.out[2:] == case.kernel and c.lhs[1] is None for c in convs if c.fast)


@pytest.mark.parametrize(
    "x_shape, kernel, strides",
    [
        ((2, 16, 64), (4,), 2),  # 1-D: the forward as one product plus overlap-add, the kernel gradient input first
        ((2, 1, 1024), (8,), 4),  # one position, wide channels: the kernel gradient columns first
    ],
)
def test_cpu_gemm_forms_with_a_symbolic_batch(x_shape, kernel, strides):
    """The CPU's one-product forms (their size rules assume a symbolic batch is large) export
    with a symbolic batch, and the exported module computes what the jitted op does: the
    forward against the numpy reference, the gradients against the concrete-batch program."""
    from tests.reference import scatter_conv_transpose

    rng = np.random.default_rng(3)
    k_shape = (*kernel, 32, x_shape[-1])
    x, k = rng.standard_normal(x_shape).astype(np.float32), rng.standard_normal(k_shape).astype(np.float32)
    op = lambda x, k: jaxconvt.conv_transpose(x, k, strides, "same")
    loss = lambda x, k: jnp.sum(op(x, k) ** 2)
    fn = lambda x, k: (op(x, k), jax.grad(loss, argnums=(0, 1))(x, k))
    sym = jax.ShapeDtypeStruct((*jax.export.symbolic_shape("b"), *x_shape[1:]), np.float32)
    exported = jax.export.export(jax.jit(fn), platforms=("cpu",))(sym, jax.ShapeDtypeStruct(k_shape, np.float32))
    assert "tensor<?x" in exported.mlir_module() and "stablehlo.dot_general" in exported.mlir_module()
    y, (dx, dk) = exported.call(x, k)
    spec, _ = make_spec(x_shape, k_shape, strides, "same")
    ref = scatter_conv_transpose(x.astype(np.float64), k.astype(np.float64), spec.strides, (1,), spec.crops, 1)
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    _, (want_dx, want_dk) = jax.jit(fn)(x, k)
    np.testing.assert_allclose(np.asarray(dx), np.asarray(want_dx), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(np.asarray(dk), np.asarray(want_dk), rtol=1e-4, atol=1e-3)
