"""A pytest plugin that runs a pytest session with ``jaxconvt.keras.enable()`` in effect.

``tests/test_layers_keras.py`` runs Keras's own ``conv_transpose`` tests (shipped in the keras
wheel) in a child pytest with ``-p tests._keras_layers_optin_plugin``. The plugin enables the
opt-in before any test runs (and turns off ``jax_threefry_partitionable``, see below), counts
the calls that jaxconvt computes and those it hands back to Keras's implementation, and
writes ``{"jaxconvt": n, "keras": m, "enabled_at_end": bool}`` to the JSON file named by
``JAXCONVT_OPTIN_COUNTS`` when the session ends.
"""

from __future__ import annotations

import json
import os

_counts = {"jaxconvt": 0, "keras": 0}


def pytest_configure(config):
    import jax

    import jaxconvt.keras as jk

    # jax 0.10.2's default (partitionable) threefry takes seconds to compile per shape on CPU,
    # and Keras's layer tests draw initial weights for many shapes; their assertions do not
    # depend on which random numbers they get.
    jax.config.update("jax_threefry_partitionable", False)

    jk.enable()
    inner = jk.conv_transpose

    def counted(*args, **kwargs):
        _counts["jaxconvt"] += 1
        return inner(*args, **kwargs)

    jk.conv_transpose = counted  # the name the routed function calls
    original = jk._state["original"]

    def counted_original(*args, **kwargs):
        _counts["keras"] += 1
        return original(*args, **kwargs)

    jk._state["original"] = counted_original


def pytest_sessionfinish(session, exitstatus):
    import jaxconvt.keras as jk

    path = os.environ.get("JAXCONVT_OPTIN_COUNTS")
    if path:
        with open(path, "w") as f:
            json.dump({**_counts, "enabled_at_end": jk.is_enabled()}, f)
