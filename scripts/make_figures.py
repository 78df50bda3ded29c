"""Draws every figure of the documentation into ``docs/figures/`` (PNG).

    python scripts/make_figures.py            # writes docs/figures/*.png
    python scripts/make_figures.py --out DIR  # somewhere else (the docs test does this)

Nothing is drawn by hand: where each input pixel lands and what each padding crops is
computed by calling ``jaxconvt.conv_transpose`` itself (a one-hot input and a kernel with
distinct taps), so the pictures cannot drift from the implementation.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(ROOT))

import jaxconvt  # noqa: E402

#: File names this script writes; the docs test checks each one is produced and used.
FIGURES = ("scatter_stride.png", "scatter_dilation.png", "crops_1d.png", "scatter_2d.png", "phase_1d.png")

_COLORS = plt.get_cmap("tab10").colors
_DPI = 110


# ----------------------------------------------------------------------------------------
# Facts computed with jaxconvt
# ----------------------------------------------------------------------------------------


def taps_1d(i: int, k: int, s: int, d: int) -> np.ndarray:
    """``taps[a, t]`` = kernel tap ``j`` that input pixel ``a`` puts at full-output position ``t``, or -1.

    Computed with ``conv_transpose`` on a one-hot input and a kernel whose taps are 1..k,
    with no cropping (``padding=0``): the uncropped "full" scatter result.
    """
    kernel = np.arange(1, k + 1, dtype=np.float32).reshape(k, 1, 1)
    rows = []
    for a in range(i):
        x = np.zeros((1, i, 1), np.float32)
        x[0, a, 0] = 1.0
        y = np.asarray(jaxconvt.conv_transpose(x, kernel, strides=s, padding=0, dilation_rate=d))[0, :, 0]
        rows.append(np.rint(y).astype(int) - 1)
    return np.stack(rows)


def crop_of(i: int, k: int, s: int, d: int, **kwargs) -> tuple[int, int]:
    """``(lo, hi)`` that ``conv_transpose(..., **kwargs)`` crops from the full result.

    Found by matching the op's output against its uncropped output for random operands
    (a negative value means the output is zero-extended on that side).
    """
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, i, 1)).astype(np.float32)
    kernel = rng.standard_normal((k, 1, 1)).astype(np.float32)
    full = np.asarray(jaxconvt.conv_transpose(x, kernel, strides=s, padding=0, dilation_rate=d))[0, :, 0]
    out = np.asarray(jaxconvt.conv_transpose(x, kernel, strides=s, dilation_rate=d, **kwargs))[0, :, 0]
    size = len(full)
    for lo in range(-size, size + 1):
        window = np.array([full[t + lo] if 0 <= t + lo < size else 0.0 for t in range(len(out))])
        if np.allclose(window, out, atol=1e-5):
            return lo, size - lo - len(out)
    raise AssertionError(f"no crop explains the output for {kwargs}")


# ----------------------------------------------------------------------------------------
# Drawing helpers
# ----------------------------------------------------------------------------------------


def _cell(ax, x, y, text="", face="white", edge="0.35", alpha=1.0, hatch=None, fontsize=8):
    ax.add_patch(Rectangle((x, y), 1, 1, facecolor=face, edgecolor=edge, lw=0.8, alpha=alpha, hatch=hatch))
    if text != "":
        ax.text(x + 0.5, y + 0.5, text, ha="center", va="center", fontsize=fontsize)


def _strip_block(ax, top, i, k, s, d, title, crop=None):
    """Draws, below ``top``, one row per input pixel (its kernel copy), then the full output.

    Returns the y coordinate below the block.
    """
    taps = taps_1d(i, k, s, d)
    length = taps.shape[1]
    ax.text(-2.6, top - 0.35, title, ha="left", va="center", fontsize=8.5)
    y = top - 1.6
    for a in range(i):
        ax.text(-0.3, y + 0.5, f"x[{a}]", ha="right", va="center", fontsize=8, color=_COLORS[a])
        for t in range(length):
            j = taps[a, t]
            if j >= 0:
                _cell(ax, t, y, f"K{j}", face=_COLORS[a], alpha=0.45)
            else:
                _cell(ax, t, y, edge="0.85")
        y -= 1
    y -= 0.25
    counts = (taps >= 0).sum(axis=0)
    ax.text(-0.3, y + 0.5, "full", ha="right", va="center", fontsize=8)
    for t in range(length):
        _cell(ax, t, y, str(counts[t]), face="0.92")
        ax.text(t + 0.5, y - 0.3, str(t), ha="center", va="center", fontsize=6, color="0.4")
    if crop is not None:
        lo, hi = crop
        for t in [*range(max(lo, 0)), *range(length - max(hi, 0), length)]:
            _cell(ax, t, y, "", face="none", edge="crimson", hatch="///")
    return y - 0.7


def _finish(ax, width, bottom, top):
    ax.set_xlim(-2.7, width + 0.3)
    ax.set_ylim(bottom, top + 0.2)
    ax.set_aspect("equal")
    ax.axis("off")


def _strips_figure(configs, title_of, suptitle, name, out_dir):
    heights = [c[0] + 2.6 for c in configs]
    width = max((i - 1) * s + (k - 1) * d + 1 for i, k, s, d in configs)
    width = max(width, 16)
    fig, ax = plt.subplots(figsize=(0.42 * (width + 3), 0.42 * sum(heights) + 0.5))
    top = 0.0
    for config in configs:
        top = _strip_block(ax, top, *config, title_of(*config))
    _finish(ax, width, top, 0.0)
    ax.set_title(suptitle, fontsize=9.5, loc="left")
    return _save(fig, out_dir, name)


def _save(fig, out_dir: Path, name: str) -> Path:
    path = out_dir / name
    fig.savefig(path, dpi=_DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------


def fig_scatter_stride(out_dir: Path) -> Path:
    def title(i, k, s, d):
        note = "; k < s leaves gaps nobody writes" if k < s else ""
        return f"i={i}, k={k}, stride s={s}: full length (i-1)*s + k = {(i - 1) * s + k}{note}"

    return _strips_figure(
        [(3, 3, 1, 1), (3, 3, 2, 1), (3, 3, 3, 1), (3, 2, 3, 1)],
        title,
        "Input pixel x[a] adds x[a]*K at offset a*s (full row: contributions per cell)",
        "scatter_stride.png",
        out_dir,
    )


def fig_scatter_dilation(out_dir: Path) -> Path:
    def title(i, k, s, d):
        return f"i={i}, k={k}, s={s}, dilation d={d}: taps d apart, ke = (k-1)*d + 1 = {(k - 1) * d + 1}"

    return _strips_figure(
        [(3, 3, 2, 1), (3, 3, 2, 2), (3, 3, 1, 3)],
        title,
        "Dilation spreads the taps: tap j of x[a] lands at a*s + j*d",
        "scatter_dilation.png",
        out_dir,
    )


def fig_crops(out_dir: Path) -> Path:
    i, k, s = 3, 3, 2
    full = (i - 1) * s + k
    cases = [
        ("Keras 'valid'", dict(padding="valid")),
        ("Keras 'same' (m = ke - s = 1: the odd crop goes to the END)", dict(padding="same")),
        ("Keras 'same', output_padding=0 (m = 2*(ke//2) - 0 = 2)", dict(padding="same", output_padding=0)),
        ("PyTorch padding=1", dict(padding=1)),
        ("PyTorch padding=1, output_padding=1", dict(padding=1, output_padding=1)),
        ("Keras 'valid', output_padding=1 (zero-extends the end)", dict(padding="valid", output_padding=1)),
    ]
    width = 16
    fig, ax = plt.subplots(figsize=(0.42 * (width + 3), 0.42 * (i + 2.6 + 1.9 * len(cases)) + 0.5))
    top = _strip_block(ax, 0.0, i, k, s, 1, f"i={i}, k={k}, s={s}: the full scatter result, length {full}")
    for label, kwargs in cases:
        lo, hi = crop_of(i, k, s, 1, **kwargs)
        ax.text(
            -2.6,
            top - 0.35,
            f"{label}: crop (lo, hi) = ({lo}, {hi}), length {full - lo - hi}",
            ha="left",
            va="center",
            fontsize=8.5,
        )
        y = top - 1.5
        for t in range(min(lo, 0), max(full, full - hi)):
            inside = 0 <= t < full
            kept = lo <= t < full - hi
            face = ("#9ecae1" if inside else "#fdd0a2") if kept else "white"
            _cell(
                ax,
                t,
                y,
                str(t) if inside else "0",
                face=face,
                edge="0.35" if inside else "darkorange",
                hatch=None if kept else "///",
            )
        top = y - 0.4
    _finish(ax, width, top, 0.0)
    ax.set_title(
        "Every convention: the same full result, then a crop (hatched: cropped; orange: zero-extension)",
        fontsize=9.5,
        loc="left",
    )
    return _save(fig, out_dir, "crops_1d.png")


def fig_scatter_2d(out_dir: Path) -> Path:
    i, k, s = 3, 3, 2
    full = (i - 1) * s + k
    lo, hi = crop_of(i, k, s, 1, padding="same")
    kernel = np.arange(1, k * k + 1, dtype=np.float32).reshape(k, k, 1, 1)
    fig, (ax_in, ax_out) = plt.subplots(1, 2, figsize=(7.4, 3.6), gridspec_kw={"width_ratios": [1, 1.9]})
    for a in range(i):
        for b in range(i):
            color = _COLORS[a * i + b]
            _cell(ax_in, b, i - 1 - a, f"x[{a},{b}]", face=color, alpha=0.5 if (a, b) == (1, 1) else 0.18)
    ax_in.set_title(f"input {i}x{i}", fontsize=9)
    # Where pixel (a, b) lands: computed with the op on a one-hot input.
    for a in range(i):
        for b in range(i):
            x = np.zeros((1, i, i, 1), np.float32)
            x[0, a, b, 0] = 1.0
            y = np.asarray(jaxconvt.conv_transpose(x, kernel, strides=s, padding=0))[0, :, :, 0]
            rows, cols = np.nonzero(y)
            color = _COLORS[a * i + b]
            c0 = cols.min()
            highlight = (a, b) == (1, 1)
            ax_out.add_patch(
                Rectangle(
                    (c0 + 0.06, full - 1 - rows.max() + 0.06),
                    k - 0.12,
                    k - 0.12,
                    facecolor=color if highlight else "none",
                    alpha=0.35 if highlight else 1.0,
                    edgecolor=color,
                    lw=2.2 if highlight else 1.0,
                )
            )
            if highlight:
                for r, c in zip(rows, cols):
                    tap = int(round(y[r, c])) - 1
                    ax_out.text(
                        c + 0.5, full - 1 - r + 0.5, f"K{tap // k},{tap % k}", ha="center", va="center", fontsize=7
                    )
    for r in range(full):
        for c in range(full):
            cropped = r < lo or r >= full - hi or c < lo or c >= full - hi
            _cell(ax_out, c, full - 1 - r, face="none", edge="0.7", hatch="///" if cropped else None)
    ax_out.set_title(
        f"full output {full}x{full} (stride {s}); padding='same' crops ({lo}, {hi}) per axis (hatched)", fontsize=9
    )
    for ax, n in ((ax_in, i), (ax_out, full)):
        ax.set_xlim(-1.4, n + 0.2)
        ax.set_ylim(-0.2, n + 0.2)
        ax.set_aspect("equal")
        ax.axis("off")
    fig.suptitle("2-D: pixel x[1,1] writes its kernel copy at (1*s, 1*s) = (2, 2); copies overlap", fontsize=10)
    return _save(fig, out_dir, "scatter_2d.png")


def fig_phase(out_dir: Path) -> Path:
    i, k, s = 4, 4, 2
    taps = taps_1d(i, k, s, 1)
    length = taps.shape[1]
    fig, ax = plt.subplots(figsize=(7.6, 3.4))
    centre = (k - 1) / 2 + 0.5
    for a in range(i):
        _cell(ax, a * s + centre - 0.5, 3, f"x[{a}]", face="0.9")
    for t in range(length):
        _cell(ax, t, 0, f"y[{t}]", face=_COLORS[t % s], alpha=0.35, fontsize=7)
        terms = [f"x{a}K{taps[a, t]}" for a in range(i) if taps[a, t] >= 0]
        ax.text(t + 0.5, -0.15, "\n".join(terms), ha="center", va="top", fontsize=6.5, color=_COLORS[t % s])
        for a in range(i):
            if taps[a, t] >= 0:
                ax.plot([a * s + centre, t + 0.5], [3, 1], color=_COLORS[t % s], lw=1.0)
    ax.text(-0.3, 3.5, "input", ha="right", va="center", fontsize=8)
    ax.text(-0.3, 0.5, "output", ha="right", va="center", fontsize=8)
    ax.set_title(
        f"k={k}, s={s}: even outputs only use taps K0, K2 and odd outputs only K1, K3:\n"
        f"{s} stride-1 correlations with the sub-kernels K[r::s] (r = 0, 1), then interleaved",
        fontsize=9,
    )
    ax.set_xlim(-1.6, length + 0.2)
    ax.set_ylim(-1.3, 4.2)
    ax.set_aspect("equal")
    ax.axis("off")
    return _save(fig, out_dir, "phase_1d.png")


def make_all(out_dir: str | os.PathLike = ROOT / "docs" / "figures") -> list[Path]:
    """Writes every figure into ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    makers = (fig_scatter_stride, fig_scatter_dilation, fig_crops, fig_scatter_2d, fig_phase)
    return [make(out_dir) for make in makers]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "docs" / "figures"), help="output folder")
    args = parser.parse_args(argv)
    for path in make_all(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
