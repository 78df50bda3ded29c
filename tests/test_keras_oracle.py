"""jaxconvt against ``keras.ops.conv_transpose`` (the seed's API) on a seeded random grid.

Keras (``KERAS_BACKEND=jax``) runs in a child process (``tests/_keras_worker.py``) because
XLA:CPU aborts the whole process on some of its convolutions (SEMANTICS.md lists two). A
configuration that kills the child is recorded, skipped for Keras, reported as a warning,
and still checked against ``tests/reference.py`` like every other configuration. Keras
computes in float64, jaxconvt too (``jax.enable_x64``), so the comparison is tight. Both
compile with ``FAST_COMPILE`` (see ``tests/_keras_worker.py``).

The grid: 1-D..3-D, both data formats, "valid"/"same" in random case, ``output_padding``
``None`` or explicit (only values jaxconvt accepts: smaller than the stride or the
dilation; Keras itself never checks), dilation, groups 1 (Keras has none).
"""

from __future__ import annotations

import concurrent.futures
import functools
import warnings

import jax
import numpy as np
import pytest

import jaxconvt
from tests._keras_worker import FAST_COMPILE, SEMANTICS_KERAS_ABORTS, conv_kwargs, operands, random_config, run_configs
from tests.reference import conv_transpose_ref

COUNT = 300  # random configurations
GROUP = 10  # configurations per jax.jit in the Keras child
BATCH = 45  # configurations per jax.jit for jaxconvt here
RTOL = 1e-12  # relative to the sum of |terms|


def keras_configs():
    rng = np.random.default_rng(20240612)
    draw = dict(ranks=(1, 2, 3), rank_weights=(0.35, 0.35, 0.3), explicit_padding=False, output_shape=False)
    return [random_config(rng, groups=False, **draw) for _ in range(COUNT)] + SEMANTICS_KERAS_ABORTS


def _jaxconvt_outputs(configs):
    def run(batch, args):
        return [jaxconvt.conv_transpose(x, k, **conv_kwargs(cfg)) for cfg, (x, k) in zip(batch, args)]

    outs = []
    with jax.enable_x64(True):
        for start in range(0, len(configs), BATCH):
            batch = configs[start : start + BATCH]
            args = [operands(cfg) for cfg in batch]
            compiled = jax.jit(functools.partial(run, batch)).lower(args).compile(FAST_COMPILE)
            outs += [np.asarray(y) for y in compiled(args)]
    return outs


@pytest.fixture(scope="module")
def keras_run(tmp_path_factory):
    """Keras in its child process while jaxconvt runs here (two cores)."""
    configs = keras_configs()
    workdir = str(tmp_path_factory.mktemp("keras"))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        child = pool.submit(run_configs, "keras", configs, workdir, group_size=GROUP)
        ours = _jaxconvt_outputs(configs)
        outputs, aborted, children = child.result()
    if aborted:
        listing = "\n".join(str(configs[i]) for i in aborted)
        message = f"keras.ops.conv_transpose aborted the process on {len(aborted)} configurations:\n{listing}"
        warnings.warn(message, stacklevel=1)
    return configs, outputs, aborted, children, ours


def _within(y, ref, bound):
    return y.shape == ref.shape and bool(np.all(np.abs(y - ref) <= bound))


@pytest.mark.slow
def test_keras_agrees_with_jaxconvt(keras_run):
    configs, outputs, aborted, children, ours = keras_run
    assert set(outputs) | set(aborted) == set(range(len(configs)))
    assert len(outputs) >= COUNT - 10
    assert children <= 1 + 2 * len(aborted)
    failures = []
    for index, keras_y in sorted(outputs.items()):
        cfg = configs[index]
        x, k = operands(cfg)
        bound = RTOL * conv_transpose_ref(np.abs(x), np.abs(k), **conv_kwargs(cfg))
        y = ours[index]
        if keras_y.dtype != np.float64 or not _within(y, keras_y, bound):
            failures.append(f"{cfg}: jaxconvt {y.shape}, keras {keras_y.shape} {keras_y.dtype}")
    assert not failures, f"{len(failures)} of {len(outputs)} disagree:\n" + "\n".join(failures[:10])


@pytest.mark.slow
def test_every_keras_config_matches_the_reference(keras_run):
    """Including the configurations on which Keras aborted."""
    configs, _, aborted, _, ours = keras_run
    failures = []
    for index, cfg in enumerate(configs):
        x, k = operands(cfg)
        kw = conv_kwargs(cfg)
        ref = conv_transpose_ref(x, k, **kw)
        bound = RTOL * conv_transpose_ref(np.abs(x), np.abs(k), **kw)
        shape = jaxconvt.conv_transpose_output_shape(x.shape, k.shape, **kw)
        y = ours[index]
        if y.dtype != np.float64 or shape != ref.shape or not _within(y, ref, bound):
            failures.append(f"{'(keras aborted) ' if index in aborted else ''}{cfg}")
    assert not failures, f"{len(failures)} disagree with tests/reference.py:\n" + "\n".join(failures[:10])


def test_child_harness_isolates_aborts(tmp_path):
    """``run_configs`` pinpoints configurations that abort the child and keeps the rest."""
    configs = [{"seed": i, "abort": i in (3, 11, 12)} for i in range(20)]
    outputs, aborted, children = run_configs("selftest", configs, str(tmp_path), group_size=4)
    assert aborted == [3, 11, 12]
    assert sorted(outputs) == [i for i in range(20) if i not in (3, 11, 12)]
    assert all(np.array_equal(outputs[i], np.full(3, float(i))) for i in outputs)
    # Each aborting config costs two children (its group's, then its own), plus the last one.
    assert children == 7
