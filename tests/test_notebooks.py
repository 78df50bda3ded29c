"""Every ``notebooks/*.ipynb`` executes top to bottom in a fresh kernel without an error.

Each notebook is copied to a temporary directory and run there with ``nbclient`` (the committed
file is never modified). The kernel is the ``python3`` kernel of the running interpreter and
finds this checkout's ``jaxconvt`` through ``PYTHONPATH``. A notebook must finish within
``TIMEOUT`` seconds per cell and the whole run within ``TIMEOUT`` seconds.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TIMEOUT = 120  # seconds


def test_notebooks_found():
    assert NOTEBOOKS, f"no notebooks in {ROOT / 'notebooks'}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    for extra in path.parent.iterdir():  # data files next to the notebooks
        if extra.is_file() and extra.suffix != ".ipynb":
            shutil.copy(extra, tmp_path / extra.name)
    nb = nbformat.read(copy, as_version=4)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = nbclient.NotebookClient(
        nb,
        timeout=TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    elapsed = time.perf_counter() - start
    assert elapsed < TIMEOUT, f"{path.name} took {elapsed:.0f} s (limit {TIMEOUT} s)"
    errors = [o for cell in nb.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
