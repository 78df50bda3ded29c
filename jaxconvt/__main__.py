"""Command line: ``python -m jaxconvt check`` (self-check) and ``python -m jaxconvt bench``."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxconvt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="compare the op on the default device with the numpy reference")
    check.add_argument("--cases", type=int, default=60, help="random configurations per dtype (default 60)")
    check.add_argument(
        "--dtypes", default="float32,bfloat16", help="comma-separated dtypes (float32,bfloat16,float16,float64)"
    )
    check.add_argument("--algorithms", default="auto", help="comma-separated forward algorithms, or 'all'")
    check.add_argument("--seed", type=int, default=0)
    from jaxconvt import bench as _bench

    bench = sub.add_parser("bench", help="time the op against lax autodiff and PyTorch on real workloads")
    _bench.add_arguments(bench)
    args = parser.parse_args(argv)

    if args.command == "check":
        dtypes = tuple(args.dtypes.split(","))
        if "float64" in dtypes:
            import jax

            jax.config.update("jax_enable_x64", True)
        from jaxconvt import _check

        algorithms = _check.ALL_ALGORITHMS if args.algorithms == "all" else tuple(args.algorithms.split(","))
        bad = [d for d in dtypes if d not in _check.TOLERANCE]
        if bad:
            parser.error(f"unknown dtype(s) {bad}; choose from {sorted(_check.TOLERANCE)}")
        bad = [a for a in algorithms if a not in _check.ALGORITHMS]
        if bad:
            parser.error(f"unknown algorithm(s) {bad}; choose from {list(_check.ALGORITHMS)} or 'all'")
        _, failures = _check.run_check(args.cases, dtypes, algorithms, args.seed)
        return 1 if failures else 0
    if args.command == "bench":
        return _bench.main(args, argv)
    return 2


if __name__ == "__main__":
    sys.exit(main())
