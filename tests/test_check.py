"""The main job, ``python -m jaxconvt check``: the op against the numpy reference on this device."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from jaxconvt import _check

ROOT = Path(__file__).resolve().parents[1]


def test_run_check_every_algorithm():
    rows, failures = _check.run_check(count=12, dtypes=("float32",), algorithms=_check.ALL_ALGORITHMS, verbose=False)
    assert failures == 0
    assert [r[1] for r in rows] == list(_check.ALL_ALGORITHMS)
    assert "dot" in _check.ALL_ALGORITHMS
    for _, algorithm, ran, failed, refused, worst, _ in rows:
        assert failed == 0
        assert ran + refused == 12 and ran > 0
        assert worst < _check.TOLERANCE["float32"]
        if algorithm not in ("dilate", "pad"):
            assert refused == 0


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "jaxconvt", "check", *args], capture_output=True, text=True, cwd=ROOT, timeout=600
    )


def test_check_command_exit_codes():
    ok = _cli("--cases", "4", "--algorithms", "all")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "PASS" in ok.stdout and "refused" in ok.stdout
    bad = _cli("--cases", "1", "--algorithms", "fft")
    assert bad.returncode == 2 and "unknown algorithm" in bad.stderr
