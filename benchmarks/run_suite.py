"""Regenerates the benchmark results committed in this folder.

Runs ``python -m jaxconvt bench`` on the full suite with this folder as output: writes
``results-<platform>.json`` and ``.png`` here, rewrites this platform's tables in
``benchmarks/README.md`` and its speed table in the top-level ``README.md`` (between their
markers; other platforms' blocks stay). Extra arguments are passed on, e.g. ``--no-lax``
or ``--workloads dcgan2d,unet3d``.

Usage (from anywhere): ``python benchmarks/run_suite.py [bench options]``
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(extra: list[str]) -> int:
    os.chdir(ROOT)  # so the recorded command uses repository-relative paths
    sys.path.insert(0, str(ROOT))
    from jaxconvt.__main__ import main as cli

    return cli(["bench", "--out", "benchmarks", "--markdown", "benchmarks/README.md", "--summary", "README.md", *extra])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
