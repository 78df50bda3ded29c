"""Sharding on 8 fake CPU devices (a child process: XLA_FLAGS must precede the jax import).

``tests/_sharding_worker.py`` runs every check once; each check becomes one test here:

* batch-sharded inputs give batch-sharded outputs with no collective in the compiled
  forward pass (1-D to 3-D, strides, explicit padding, channels_first, dilation);
* data-parallel kernel gradients reduce with an all-reduce and equal single-device ones;
* an output-channel ("model") sharded kernel on a 4x2 mesh gives single-device results;
* per-example kernels sharded with the batch; ``shard_map`` forward and gradients.

The expected failure is a known gap, strict so that a fix shows up as XPASS. The two
shard_map checks with ``check_vma=True`` are regression tests for a fixed core bug (the
primitive's type once dropped the varying manual axes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import _sharding_worker

ROOT = Path(__file__).resolve().parents[1]

# Checks known to fail, by name, with the reason (a strict xfail: fixing one fails the test
# until its entry goes). Empty since the CPU lowering guards split groups with one conditional
# over all of them: per-example kernels sharded with the batch keep the batch sharding.
KNOWN_GAPS: dict[str, str] = {}
CHECK_NAMES = [name for name, _ in _sharding_worker.CHECKS]


@pytest.fixture(scope="module")
def worker_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharding") / "results.json"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "_sharding_worker.py"), str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"sharding worker failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    return json.loads(out.read_text())


def test_worker_sees_eight_devices_and_runs_every_check(worker_results):
    assert worker_results["devices"] == 8
    assert sorted(worker_results["checks"]) == sorted(CHECK_NAMES)
    assert len(CHECK_NAMES) >= 14


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[name]))
        if name in KNOWN_GAPS
        else name
        for name in CHECK_NAMES
    ],
)
def test_sharding_check(worker_results, name):
    result = worker_results["checks"][name]
    assert result["ok"], result["detail"]
