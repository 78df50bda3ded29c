"""No accepted input aborts the process (XLA:CPU's fatal checks; see SEMANTICS.md).

A large seeded grid of 1-D..4-D configurations (default algorithm, float32), half of them
with inputs smaller than the dilated kernel (the shape class on which XLA's simplifier
aborts zero-inserted convolutions), plus the two configurations on which SEMANTICS.md saw
Keras abort, is compiled and run in two child processes at once (each one's share, groups
of configurations per ``jax.jit``; every third configuration also through both gradients).
Each child must print its sentinel at the end; ``run_configs`` would name any configuration
that killed its child.
"""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest

from tests._keras_worker import SEMANTICS_KERAS_ABORTS, random_config, run_configs

COUNT = 250
CHILDREN = 2
GROUP = 25
# (max input size, max kernel size, max stride, max dilation) per spatial rank.
WIDE = {1: (8, 6, 4, 4), 2: (6, 5, 4, 3), 3: (4, 4, 3, 3), 4: (3, 3, 2, 2)}
TINY_INPUTS = {1: (2, 6, 4, 4), 2: (2, 5, 4, 3), 3: (2, 4, 3, 3), 4: (2, 3, 2, 2)}


def no_abort_configs():
    rng = np.random.default_rng(20240613)
    configs = [random_config(rng, limits=WIDE if i % 2 else TINY_INPUTS) for i in range(COUNT)]
    configs += [dict(cfg) for cfg in SEMANTICS_KERAS_ABORTS]
    for index, cfg in enumerate(configs):
        cfg["grad"] = index % 3 == 0 or index >= COUNT
    return configs


@pytest.mark.slow
def test_no_accepted_input_aborts_the_process(tmp_path):
    configs = no_abort_configs()
    shares = [configs[i::CHILDREN] for i in range(CHILDREN)]
    with concurrent.futures.ThreadPoolExecutor(CHILDREN) as pool:
        futures = [
            pool.submit(run_configs, "jaxconvt", share, str(tmp_path / f"child{i}"), group_size=GROUP, max_aborts=0)
            for i, share in enumerate(shares)
        ]
        results = [future.result() for future in futures]
    for share, (_, aborted, children) in zip(shares, results):
        assert aborted == [], [share[i] for i in aborted]
        assert children == 1  # the first child ran every configuration and printed the sentinel
    assert sum(len(share) for share in shares) == COUNT + len(SEMANTICS_KERAS_ABORTS)
