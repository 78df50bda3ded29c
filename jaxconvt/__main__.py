"""Command line: `python -m jaxconvt check` (the self-check) and `python -m jaxconvt bench`."""

from __future__ import annotations

import argparse
import sys

from jaxconvt._cli import non_negative_int, positive_int

DESCRIPTION = """\
jaxconvt: exact, fast N-D transposed convolution for JAX.

  check  the op and its input gradient, kernel gradient and forward-mode product on this
         machine's default device, against the float64 numpy reference (jax and numpy only)
  bench  time the op against lax autodiff and PyTorch on real workloads (JSON, tables, chart)

Run `python -m jaxconvt check --help` or `... bench --help` for the options."""

CHECK_DESCRIPTION = """\
Checks jaxconvt on this machine's default device against jaxconvt.reference, a float64 numpy
scatter-add that shares no arithmetic with the op. Each random configuration (1-D to 3-D,
strides, dilation, padding strings and explicit crops, output_padding, groups, both data
formats) is run in each dtype and forward algorithm: the output, the input and kernel
gradients (by the adjoint identity <x, dx> = <K, dK> = <T(x, K), g>, and element by element
from one-hot operands in the first cases), and the forward-mode product (T(tx, K) + T(x, tK)).
The last lines say what was checked, the worst error and the tolerance. Exit status 0 when
every case passes, 1 otherwise, 2 for bad options."""


def _add_check_arguments(check: argparse.ArgumentParser) -> None:
    from jaxconvt import _check

    check.add_argument(
        "--cases",
        type=positive_int,
        default=40,
        metavar="N",
        help="random configurations per dtype and algorithm (at least 1; default 40)",
    )
    check.add_argument(
        "--dtypes",
        default="float32,bfloat16",
        metavar="LIST",
        help=f"comma-separated dtypes, from {', '.join(_check.TOLERANCE)} (default float32,bfloat16; "
        "float64 turns on jax_enable_x64)",
    )
    check.add_argument(
        "--algorithms",
        default="auto",
        metavar="LIST",
        help=f"comma-separated forward algorithms, from auto, {', '.join(_check.ALL_ALGORITHMS)}, "
        "or 'all' for every one but auto (default auto)",
    )
    check.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="seed of the configurations and operands (at least 0; default 0)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of both subcommands."""
    from jaxconvt import bench

    parser = argparse.ArgumentParser(
        prog="python -m jaxconvt", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{check,bench}")
    check = sub.add_parser(
        "check",
        help="self-check the op and its derivatives against the numpy reference",
        description=CHECK_DESCRIPTION,
    )
    _add_check_arguments(check)
    bench_parser = sub.add_parser(
        "bench",
        help="time the op against lax autodiff and PyTorch on real workloads",
        description=bench.cli.DESCRIPTION,
    )
    bench.add_arguments(bench_parser)
    parser.subcommands = {"check": check, "bench": bench_parser}
    return parser


def _run_check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Runs the ``check`` subcommand (``parser`` reports bad options); returns the exit status."""
    from jaxconvt import _check

    dtypes = tuple(d.strip() for d in args.dtypes.split(",") if d.strip())
    algorithms = (
        _check.ALL_ALGORITHMS
        if args.algorithms.strip() == "all"
        else tuple(a.strip() for a in args.algorithms.split(",") if a.strip())
    )
    bad = [d for d in dtypes if d not in _check.TOLERANCE]
    if bad or not dtypes:
        parser.error(f"argument --dtypes: unknown dtype(s) {bad}; choose from {list(_check.TOLERANCE)}")
    bad = [a for a in algorithms if a not in ("auto", *_check.ALL_ALGORITHMS)]
    if bad or not algorithms:
        parser.error(
            f"argument --algorithms: unknown algorithm(s) {bad}; choose from {['auto', *_check.ALL_ALGORITHMS]} "
            "or 'all'"
        )
    if "float64" in dtypes:
        import jax

        jax.config.update("jax_enable_x64", True)
    _, failures = _check.run_check(args.cases, dtypes, algorithms, args.seed)
    return 1 if failures else 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "check":
        return _run_check(parser.subcommands["check"], args)
    from jaxconvt import bench

    return bench.main(args, argv)


if __name__ == "__main__":
    sys.exit(main())
