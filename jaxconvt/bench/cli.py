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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` subcommand's options."""
    names = ",".join(w.name for w in workloads.WORKLOADS)
    parser.add_argument("--quick", action="store_true", help="a subset, fewer runs: about a minute on a 2-core CPU")
    parser.add_argument("--workloads", default=None, help=f"comma-separated subset of: {names}")
    parser.add_argument(
        "--dtype",
        default="auto",
        help="comma-separated dtypes (float32,bfloat16,float16); 'auto': each workload's own "
        "(on GPU: float32 and bfloat16)",
    )
    parser.add_argument("--algorithm", default="auto", choices=ALGORITHMS, help="forward algorithm of jaxconvt")
    parser.add_argument(
        "--sizes", default="auto", choices=("auto", "cpu", "gpu"), help="workload sizes (auto: by device)"
    )
    parser.add_argument("--no-lax", action="store_true", help="skip the lax-autodiff baseline")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch baseline")
    parser.add_argument("--repeats", type=int, default=None, help="most timed runs per stage (default 10, quick 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", default="bench-results", help="output folder for JSON and PNG (default bench-results/)"
    )
    parser.add_argument(
        "--markdown", default=None, help="also write the tables into this markdown file (between markers)"
    )
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    parser.add_argument(
        "--render",
        default=None,
        metavar="JSON",
        help="run nothing: re-render the tables (and --markdown, and the chart into --out) from a results JSON",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


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
        return _finish(report, note, args.markdown)
    if args.list:
        for w in workloads.WORKLOADS:
            sz = w.size(sizes)
            print(f"{w.name:<14}{'quick ' if w.name in workloads.QUICK else '      '}{sz}  {w.note}")
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
    settings = Settings(
        sizes=sizes, dtypes=dtypes, algorithm=args.algorithm, lax=not args.no_lax, torch=not args.no_torch
    )
    if args.quick:
        settings = dataclasses.replace(settings, **QUICK_SETTINGS)
    if args.repeats is not None:
        settings = dataclasses.replace(
            settings, repeats=max(args.repeats, 1), min_repeats=min(settings.min_repeats, max(args.repeats, 1))
        )
    if settings.torch and import_torch() is None:
        print("bench: torch is not installed; no PyTorch baseline", file=sys.stderr)
    command = "python -m jaxconvt " + " ".join(argv if argv is not None else sys.argv[1:])
    report = run_suite(chosen, settings, progress=not args.no_progress, command=command.strip())
    print(text_report(report))
    stem = f"results-{report['machine']['platform']}" + ("-quick" if args.quick else "")
    json_path, png_path, note = write_outputs(report, Path(args.out), stem)
    print(f"\nwrote {json_path}" + (f" and {png_path}" if png_path else ""))
    return _finish(report, note, args.markdown)


def _finish(report: dict, chart_note: str | None, markdown: str | None) -> int:
    """Prints the chart's note, writes the markdown tables when asked; the exit status."""
    if chart_note:
        print(f"note: {chart_note}")
    if markdown:
        update_markdown(Path(markdown), report)
        print(f"updated {markdown}")
    return 0
