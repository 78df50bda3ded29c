"""The ``bench`` subcommand: its options, and writing the JSON, the chart and the markdown."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from jaxconvt._cli import non_negative_int, positive_int
from jaxconvt._spec import ALGORITHMS
from jaxconvt.bench import workloads
from jaxconvt.bench.chart import write_chart
from jaxconvt.bench.report import text_report, update_markdown
from jaxconvt.bench.settings import DTYPES, QUICK_SETTINGS, SCHEMA, Settings
from jaxconvt.bench.suite import run_suite
from jaxconvt.bench.torch_impl import import_torch


def write_outputs(report: dict, out_dir: Path, stem: str) -> tuple[Path, Path | None, str | None]:
    """Writes ``<stem>.json`` and ``<stem>.png``; returns their paths and the chart note."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(report, indent=1, allow_nan=False, default=_json_default) + "\n")
    png_path = out_dir / f"{stem}.png"
    note = write_chart(report, png_path)
    return json_path, (None if note else png_path), note


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {value!r}")


DESCRIPTION = """\
Times jaxconvt against lax autodiff (what keras.ops.conv_transpose runs) and PyTorch, side by
side in one process on the default device, on transposed convolutions real models run: four
stages per workload (fwd, dx, dK, fwd+bwd), medians of timed runs taken in turns, each
stage's efficiency against the roof (one bare lax.dot_general with the stage's useful
multiply-adds, timed in the same run), and a layers section (a training step of each
framework's layer against jaxconvt's drop-in). Prints the tables, writes
results-<platform>[-quick].json and .png into --out, and warns when the load average at start
exceeds half the cores (the numbers are then unreliable)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` subcommand's options."""
    names = ", ".join(w.name for w in workloads.WORKLOADS)
    parser.add_argument(
        "--quick", action="store_true", help="a subset with fewer runs, about a minute on a 2-core CPU: indicative only"
    )
    parser.add_argument(
        "--workloads",
        default=None,
        metavar="LIST",
        help=f"comma-separated subset (default all; --quick: its subset) of: {names}",
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        metavar="LIST",
        help="comma-separated dtypes from float32, bfloat16, float16; auto: each workload's own, "
        "on GPU float32 and bfloat16 (default auto)",
    )
    parser.add_argument(
        "--algorithm",
        default="auto",
        choices=ALGORITHMS,
        help=f"forward algorithm passed to jaxconvt.conv_transpose, one of {', '.join(ALGORITHMS)} (default auto)",
    )
    parser.add_argument(
        "--sizes",
        default="auto",
        choices=("auto", "cpu", "gpu"),
        help="workload sizes: cpu, gpu, or auto to pick by the default device (default auto)",
    )
    parser.add_argument("--no-lax", action="store_true", help="skip the lax-autodiff baseline")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch baseline")
    parser.add_argument(
        "--no-roof",
        action="store_true",
        help="do not time the roof (a bare lax.dot_general per stage): no efficiency column",
    )
    parser.add_argument(
        "--layers",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the layers section: a training step of each framework's layer (Flax NNX and Linen, Equinox, "
        "Keras, where installed) against jaxconvt's drop-in, on the workloads marked 'layers' among those "
        "chosen (default: on, off with --quick)",
    )
    parser.add_argument(
        "--repeats",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"most timed runs per stage, at least 1 (default {Settings.repeats}; --quick {QUICK_SETTINGS['repeats']})",
    )
    parser.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="seed of the random operands, at least 0 (default 0)",
    )
    parser.add_argument(
        "--out",
        default="bench-results",
        metavar="DIR",
        help="output folder for the JSON and PNG (default bench-results)",
    )
    for flag, what in (("--markdown", "the full tables"), ("--summary", "the short ratio table")):
        parser.add_argument(
            flag,
            default=None,
            metavar="FILE",
            help=f"also write {what} into FILE, between this platform's {'summary ' * (flag == '--summary')}"
            "markers (default: none)",
        )
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    parser.add_argument(
        "--render",
        default=None,
        metavar="JSON",
        help="run nothing: re-render the tables (and --markdown, --summary, the chart into --out) from a results JSON",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def settings_from_args(args: argparse.Namespace, sizes: str, dtypes: tuple[str, ...] | None) -> Settings:
    """The :class:`Settings` of parsed options (``--quick``'s preset, then the explicit options)."""
    settings = Settings(
        sizes=sizes,
        dtypes=dtypes,
        algorithm=args.algorithm,
        lax=not args.no_lax,
        torch=not args.no_torch,
        seed=args.seed,
        roof=not args.no_roof,
    )
    if args.quick:
        settings = dataclasses.replace(settings, **QUICK_SETTINGS)
    if args.layers is not None:
        settings = dataclasses.replace(settings, layers=args.layers)
    if args.repeats is not None:
        settings = dataclasses.replace(
            settings, repeats=args.repeats, min_repeats=min(settings.min_repeats, args.repeats)
        )
    return settings


def _parse_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def main(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    """Runs the ``bench`` subcommand; returns the exit status."""
    # On a GPU, leave room for torch beside JAX (read when JAX's backend starts, just below).
    os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")
    sizes = args.sizes
    if sizes == "auto":
        sizes = "gpu" if jax.default_backend() == "gpu" else "cpu"
    if args.render:
        report = json.loads(Path(args.render).read_text())
        if report.get("schema") != SCHEMA:
            print(f"error: {args.render} is not a {SCHEMA} report", file=sys.stderr)
            return 2
        print(text_report(report))
        Path(args.out).mkdir(parents=True, exist_ok=True)
        note = write_chart(report, Path(args.out) / (Path(args.render).stem + ".png"))
        return _finish(report, note, args)
    if args.list:
        for w in workloads.WORKLOADS:
            sz = w.size(sizes)
            tags = ("quick " if w.name in workloads.QUICK else "      ") + ("layers " if w.layers else "       ")
            print(f"{w.name:<14}{tags}{sz}  {w.note}")
        return 0
    names = _parse_list(args.workloads)
    if names is None and args.quick:
        names = list(workloads.QUICK)
    try:
        chosen = workloads.get_workloads(names)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    dtypes = None if args.dtype == "auto" else tuple(_parse_list(args.dtype))
    bad = [d for d in dtypes or () if d not in DTYPES]
    if bad:
        print(f"error: unknown dtype(s) {bad}; choose from {list(DTYPES)}", file=sys.stderr)
        return 2
    settings = settings_from_args(args, sizes, dtypes)
    if settings.torch and import_torch() is None:
        print("bench: torch is not installed; no PyTorch baseline", file=sys.stderr)
    command = "python -m jaxconvt " + " ".join(argv if argv is not None else sys.argv[1:])
    report = run_suite(chosen, settings, progress=not args.no_progress, command=command.strip())
    print(text_report(report))
    stem = f"results-{report['machine']['platform']}" + ("-quick" if args.quick else "")
    json_path, png_path, note = write_outputs(report, Path(args.out), stem)
    print(f"\nwrote {json_path}" + (f" and {png_path}" if png_path else ""))
    return _finish(report, note, args)


def _finish(report: dict, chart_note: str | None, args: argparse.Namespace) -> int:
    """Prints the chart's note, writes the markdown when asked, repeats the warnings last; the exit status."""
    if chart_note:
        print(f"note: {chart_note}")
    for path, summary in ((args.markdown, False), (args.summary, True)):
        if path:
            update_markdown(Path(path), report, summary=summary)
            print(f"updated {path}")
    for warning in report.get("warnings", []):
        print(f"WARNING: {warning}")
    return 0
