"""Shared fixtures for the jaxconvt test suite."""

from __future__ import annotations

import os
import sys

import jax
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `from tests.reference import ...` and `import jaxconvt` without installing
    sys.path.insert(0, ROOT)


@pytest.fixture
def x64():
    """Enables float64 for one test only (xdist runs several files in one process)."""
    with jax.enable_x64(True):
        yield
