"""The main job, ``python -m jaxconvt check``: the op and its derivatives against the numpy reference.

* the grid passes for every algorithm, and each check (fwd, dx, dK, jvp) catches a wrong slot;
* the element-by-element gradients from one-hot operands agree with JAX's;
* the command's last lines say what was checked, with counts, the worst error and the tolerance;
* every numeric option of both subcommands refuses bad numbers as a usage error (exit status 2),
  and every option has a help text that states its default.
"""

from __future__ import annotations

import argparse
import functools
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconvt import _check
from jaxconvt.__main__ import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def test_run_check_every_algorithm():
    rows, failures = _check.run_check(count=4, dtypes=("float32",), algorithms=_check.ALL_ALGORITHMS, verbose=False)
    assert failures == 0
    assert [r.algorithm for r in rows] == list(_check.ALL_ALGORITHMS)
    assert "dot" in _check.ALL_ALGORITHMS
    for r in rows:
        assert r.failed == 0
        assert r.cases + r.refused == 4 and r.cases > 0
        assert r.exact == min(r.cases, _check.EXACT_CASES)
        assert set(r.worst) == set(_check.CHECKS)
        assert all(0 <= e < _check.TOLERANCE["float32"] for e in r.worst.values()), r.worst
        if r.algorithm not in ("dilate", "pad"):
            assert r.refused == 0


def _off_by_a_little(slot: str):
    """``conv_transpose`` with a 0.1% error in one place: the output, or the input or kernel tangent.

    Reverse mode is the transpose of the jvp rule, so a wrong input tangent makes ``dx`` and the
    jvp wrong, a wrong kernel tangent ``dK`` and the jvp.
    """
    real = _check.conv_transpose
    scale = {name: 1.001 if name == slot else 1.0 for name in ("fwd", "dx", "dK")}

    def op(x, k, kwargs):
        return real(x, k, **kwargs)

    wrong = jax.custom_jvp(lambda x, k, kwargs: op(x, k, kwargs) * scale["fwd"], nondiff_argnums=(2,))

    @wrong.defjvp
    def _(kwargs, primals, tangents):
        (x, k), (tx, tk) = primals, tangents
        return wrong(x, k, kwargs), scale["dx"] * op(tx, k, kwargs) + scale["dK"] * op(x, tk, kwargs)

    return lambda x, k, **kwargs: wrong(x, k, kwargs)


@pytest.mark.parametrize("slot,fails", [("fwd", {"fwd"}), ("dx", {"dx", "jvp"}), ("dK", {"dK", "jvp"})])
@pytest.mark.parametrize("exact", [False, True])
def test_each_check_catches_a_wrong_slot(slot, fails, exact, monkeypatch):
    """A 0.1% error fails exactly the checks that see it (float32), with or without the one-hot check."""
    monkeypatch.setattr(_check, "conv_transpose", _off_by_a_little(slot))
    case = next(c for c in _check.random_cases(20, seed=3) if min(c.shapes()[2]) > 0 and c.ndim == 2)
    errors = _check.check_case(case, "float32", "auto", np.random.default_rng(0), exact=exact)
    tol = _check.TOLERANCE["float32"]
    assert {c for c, e in errors.items() if e > tol} == fails, errors


def test_exact_gradients_match_jax():
    """dx and dK from one-hot operands (by linearity) equal JAX's vjp, in float64 numpy."""
    for case in _check.random_cases(6, seed=5):
        xshape, kshape, yshape = case.shapes()
        rng = np.random.default_rng(0)
        x, k, g = (rng.standard_normal(s) for s in (xshape, kshape, yshape))
        dx_ref, dk_ref = _check._exact_gradients(x, k, g, case.kwargs())
        op = functools.partial(_check.conv_transpose, **case.kwargs())
        dx, dk = jax.vjp(op, jnp.asarray(x, jnp.float32), jnp.asarray(k, jnp.float32))[1](jnp.asarray(g, jnp.float32))
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(dk, dk_ref, rtol=1e-4, atol=1e-4)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "jaxconvt", *args], capture_output=True, text=True, cwd=ROOT, timeout=600
    )


def test_check_command_reports_what_it_checked():
    ok = _cli("check", "--cases", "2", "--algorithms", "phase,dot")
    assert ok.returncode == 0, ok.stderr[-2000:]
    lines = ok.stdout.strip().splitlines()
    assert lines[1].split()[:5] == ["dtype", "algorithm", "cases", "failed", "refused"]
    assert [line.split()[:2] for line in lines[2:6]] == [
        ["float32", "phase"],
        ["float32", "dot"],
        ["bfloat16", "phase"],
        ["bfloat16", "dot"],
    ]
    assert "adjoint identity" in ok.stdout and "one-hot" in ok.stdout and "T(tx, K) + T(x, tK)" in ok.stdout
    verdict = lines[-1]
    assert verdict.startswith("PASS: 8 of 8 cases passed all 4 checks (fwd, dx, dK, jvp)"), verdict
    assert "worst error" in verdict and "tolerance" in verdict


def test_check_command_bad_names_are_usage_errors(capsys):
    for args, message in ((["--algorithms", "fft"], "unknown algorithm"), (["--dtypes", "int8"], "unknown dtype")):
        with pytest.raises(SystemExit) as exit_info:
            main(["check", "--cases", "1", *args])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert message in err and "jaxconvt check" in err


def _options():
    """(subcommand, action) for every option of both subcommands, help excluded."""
    parser = build_parser()
    for name, sub in parser.subcommands.items():
        for action in sub._actions:
            if not isinstance(action, argparse._HelpAction):
                yield name, action


NUMERIC = [(name, a) for name, a in _options() if a.type is not None or isinstance(a.default, (int, float))]


def test_every_numeric_option_is_found():
    found = {(name, a.option_strings[0]) for name, a in NUMERIC if not isinstance(a.default, bool)}
    assert {("check", "--cases"), ("check", "--seed"), ("bench", "--repeats"), ("bench", "--seed")} <= found


@pytest.mark.parametrize(
    "command,action", [p for p in NUMERIC if not isinstance(p[1].default, bool)], ids=lambda v: getattr(v, "dest", v)
)
def test_bad_numbers_are_usage_errors(command, action, capsys):
    """Below the minimum, negative, not an integer: exit status 2 naming the option; the minimum is accepted."""
    flag = action.option_strings[0]
    low = getattr(action.type, "minimum", None)
    assert low is not None, f"{command} {flag} takes a number without a checked minimum"
    parser = build_parser()
    for bad in (str(low - 1), "-5", "1.5", "x", ""):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([command, flag, bad])
        assert exit_info.value.code == 2, (flag, bad)
        assert flag in capsys.readouterr().err
    assert getattr(parser.parse_args([command, flag, str(low)]), action.dest) == low


@pytest.mark.parametrize("command,action", list(_options()), ids=lambda v: getattr(v, "dest", v))
def test_every_option_has_help_with_its_default(command, action):
    assert action.help and "``" not in action.help, (command, action.option_strings)
    if action.default not in (None, False) and not action.choices:
        assert f"default {action.default}" in action.help, (command, action.option_strings, action.help)


def test_help_texts_are_plain(capsys):
    out = ""
    for args in (["--help"], ["check", "--help"], ["bench", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 0
        out += capsys.readouterr().out
    assert "``" not in out and ":func:" not in out
    assert "check" in out and "bench" in out and "default 40" in out and "dot" in out
