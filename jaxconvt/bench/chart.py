"""The chart: speedups per workload and stage as a PNG (matplotlib, imported when used)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxconvt.bench.settings import STAGE_LABELS, STAGES


def chart_title(report: dict) -> str:
    """The chart's title: the platform, whether it was a ``--quick`` run, and the load warning."""
    m = report["machine"]
    title = f"jaxconvt bench on {m['platform']} ({m['device_kind']}), jax {m['jax']}"
    if report["settings"].get("quick"):
        title = f"jaxconvt bench --quick (a subset, few repeats: indicative only) on {m['platform']}, jax {m['jax']}"
    if report.get("warnings"):
        title += f"\nWARNING: load average {m['load_avg_start']:g} at start on {m['cpu_count']} cores: unreliable"
    return title


def write_chart(report: dict, path: Path) -> str | None:
    """Speedups per workload and stage as a PNG; returns a note instead when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import ticker
    except ImportError:
        return "matplotlib is not installed: no chart (pip install 'jaxconvt[bench]')"
    results = report["results"]
    labels = [r["workload"] + ("" if r["dtype"] == "float32" else f"\n{r['dtype']}") for r in results]
    panels = [impl for impl in ("torch", "lax") if any(impl in r["speedup"] for r in results)]
    fig, axes = plt.subplots(len(panels) or 1, 1, figsize=(max(8, 0.9 * len(results) + 2), 3.6 * max(len(panels), 1)))
    axes = np.atleast_1d(axes)
    xs = np.arange(len(results))
    width = 0.2
    if not panels:
        ax = axes[0]
        for i, stage in enumerate(STAGES):
            vals = [r["impls"]["jaxconvt"]["gflops"][stage] or 0 for r in results]
            ax.bar(xs + (i - 1.5) * width, vals, width, label=STAGE_LABELS[stage])
        ax.set_ylabel("jaxconvt useful GF/s")
    for ax, impl in zip(axes, panels):
        for i, stage in enumerate(STAGES):
            vals = [(r["speedup"].get(impl) or {}).get(stage) or np.nan for r in results]
            ax.bar(xs + (i - 1.5) * width, vals, width, label=STAGE_LABELS[stage])
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_ylabel(f"{impl} time / jaxconvt time")
        ax.set_title(f"jaxconvt speedup over {impl}, median times (> 1: jaxconvt faster)", fontsize=10)
    for ax in axes:
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, fontsize=8)
        ax.legend(fontsize=8, ncol=4)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(chart_title(report), fontsize=10, color="darkred" if report.get("warnings") else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
