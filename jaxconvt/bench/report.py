"""Reports of a results JSON: aligned text for a terminal, markdown between markers."""

from __future__ import annotations

import math
import re
from pathlib import Path

from jaxconvt.bench.settings import STAGE_LABELS, STAGES

ROOF_TEXT = (
    "the roof is XLA's rate, timed in the same run, for one bare `lax.dot_general` with the stage's "
    "useful multiply-adds in their natural shape (T taps, P input positions, G groups: fwd rows N·P, "
    "contraction T·C_in/G, columns C_out/G; dx the same with the channels swapped; dK rows T·C_in/G, "
    "contraction N·P over the first axis of both operands; batched over the groups, and over the examples "
    "of per-example workloads), in the run's dtype (float32 accumulation for 16-bit ones); fwd+bwd's "
    "roof time is the three products' sum, so efficiency = roof time / stage time."
)
"""What the ``efficiency`` of the tables measures (the tables' captions and the docs say it)."""


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0:
            return "0"
        magnitude = math.floor(math.log10(abs(value)))
        decimals = max(digits - 1 - magnitude, 0)
        return f"{value:.{decimals}f}"
    return str(value)


def _ms_cell(res: dict | None, stage: str) -> str:
    """A time in ms; "skip"/"err" when not measured; "*" marks a single too-slow call."""
    if res is None:
        return "-"
    if stage in res["skipped"]:
        return "skip"
    if stage in res["errors"]:
        return "err"
    return _fmt(res["ms"][stage]) + ("*" if res["runs"][stage] == 0 else "")


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.0f}"


def _efficiency_cell(res: dict) -> str:
    """The four stages' efficiencies in percent; "—" when the JSON has no roof."""
    values = res.get("efficiency")
    if not isinstance(values, dict) or all(values.get(s) is None for s in STAGES):
        return "—"
    return "/".join(_percent(values.get(s)) for s in STAGES)


def _roof_cell(r: dict) -> str:
    """The roof's GF/s of fwd, dx and dK; "—" when the JSON has no roof."""
    roof = r.get("roof")
    if not roof:
        return "—"
    return "/".join(_fmt(roof["gflops"][s], 2) for s in ("fwd", "dx", "dk"))


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _shape_text(r: dict) -> str:
    sp = "x".join(str(v) for v in r["input_spatial"])
    k = "x".join(str(v) for v in r["kernel"])
    s = "x".join(str(v) for v in r["strides"])
    groups = f" g{r['groups']}" if r["groups"] != 1 else ""
    vmap = f"vmap {r['batch']}x " if r["per_example"] else f"{r['batch']}x"
    return f"{vmap}{sp}x{r['c_in']}->{r['c_out']} k{k} s{s}{groups}"


def _main_rows(report: dict):
    headers = [
        "workload",
        "dtype",
        "algo",
        "fwd ms",
        "dx ms",
        "dK ms",
        "fwd+bwd ms",
        "compile s",
        "peak MB",
        "GF/s fwd/dx/dK",
        "efficiency % fwd/dx/dK/f+b",
        "vs lax f+b",
        "vs torch fwd",
        "vs torch dx",
        "vs torch dK",
        "vs torch f+b",
    ]
    rows = []
    for r in report["results"]:
        me = r["impls"]["jaxconvt"]
        gf = "/".join(_fmt(me["gflops"][s], 2) for s in ("fwd", "dx", "dk"))
        lax_ = r["speedup"].get("lax", {})
        tor = r["speedup"].get("torch", {})
        compile_total = sum(v for v in me["compile_s"].values() if v is not None)
        rows.append(
            [
                r["workload"],
                r["dtype"],
                r["algorithm"],
                *(_ms_cell(me, s) for s in STAGES),
                _fmt(compile_total, 2),
                _fmt(me["peak_mb"]["fwdbwd"]),
                gf,
                _efficiency_cell(me),
                _ratio(lax_.get("fwdbwd")),
                *(_ratio(tor.get(s)) for s in STAGES),
            ]
        )
    return headers, rows


def _baseline_rows(report: dict):
    headers = ["workload", "dtype", "shape"]
    headers += [f"torch {STAGE_LABELS[s]}" for s in STAGES]
    headers += [f"lax {STAGE_LABELS[s]}" for s in STAGES]
    headers += ["lax compile s", "lax peak MB", "max rel diff", "roof GF/s fwd/dx/dK"]
    rows = []
    for r in report["results"]:
        tor = r["impls"].get("torch")
        lx = r["impls"].get("lax")
        diffs = [
            d
            for impl in ("lax", "torch")
            if r["impls"].get(impl)
            for d in r["impls"][impl]["max_rel_diff"].values()
            if d is not None
        ]
        lax_compile = sum(v for v in lx["compile_s"].values() if v is not None) if lx else None
        rows.append(
            [
                r["workload"],
                r["dtype"],
                _shape_text(r),
                *(_ms_cell(tor, s) for s in STAGES),
                *(_ms_cell(lx, s) for s in STAGES),
                _fmt(lax_compile, 2),
                _fmt(lx["peak_mb"]["fwdbwd"]) if lx else "-",
                f"{max(diffs):.1e}" if diffs else "-",
                _roof_cell(r),
            ]
        )
    return headers, rows


def _min_speedup(r: dict, impl: str, stage: str) -> float | None:
    """``impl``'s minimum time / jaxconvt's minimum time (None when either is missing)."""
    other = r["impls"].get(impl)
    mine = r["impls"]["jaxconvt"]
    if other is None or not other["min_ms"][stage] or not mine["min_ms"][stage]:
        return None
    return other["min_ms"][stage] / mine["min_ms"][stage]


def _min_rows(report: dict):
    headers = ["workload", "dtype"]
    headers += [f"vs torch {STAGE_LABELS[s]}" for s in STAGES]
    headers += [f"vs lax {STAGE_LABELS[s]}" for s in STAGES]
    rows = []
    for r in report["results"]:
        cells = [_ratio(_min_speedup(r, impl, s)) for impl in ("torch", "lax") for s in STAGES]
        rows.append([r["workload"], r["dtype"], *cells])
    return headers, rows


def _table(headers, rows, markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(h)), *(len(str(row[i])) for row in rows)) if rows else len(h) for i, h in enumerate(headers)]
    fmt_row = lambda row: "  ".join(
        str(c).ljust(w) if i < 3 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))
    )
    return "\n".join([fmt_row(headers), fmt_row(["-" * w for w in widths]), *map(fmt_row, rows)])


def _machine_line(m: dict) -> str:
    torch_part = f", torch {m['torch']} on {m['torch_device']} ({m['torch_threads']} threads)" if m["torch"] else ""
    return (
        f"{m['platform']} ({m['device_kind']}), CPU {m['cpu_model']} x {m['cpu_count']} cores; "
        f"jax {m['jax']}, jaxlib {m['jaxlib']}{torch_part}; jaxconvt {m.get('git') or m['jaxconvt']}; {m['date']}; "
        f"load average {m['load_avg_start']} at start, {m['load_avg_end']} at end"
    )


def _notes(report: dict) -> list[str]:
    """Errors, skipped stages and single-call times, one line each."""
    out = []
    for r in report["results"]:
        for stage, msg in ((r.get("roof") or {}).get("errors") or {}).items():
            out.append(f"{r['workload']} {r['dtype']} roof {STAGE_LABELS[stage]}: {msg.splitlines()[0]}")
        for impl, res in r["impls"].items():
            head = f"{r['workload']} {r['dtype']} {impl}"
            for stage, msg in res["errors"].items():
                out.append(f"{head} {STAGE_LABELS[stage]}: error {msg.splitlines()[0]}")
            for reason in dict.fromkeys(res["skipped"].values()):
                stages = ", ".join(STAGE_LABELS[st] for st, why in res["skipped"].items() if why == reason)
                out.append(f"{head} {stages}: {reason}")
            for stage in STAGES:
                if res["runs"][stage] == 0:
                    out.append(f"{head} {STAGE_LABELS[stage]} (*): only the warm-up call, slower than max_call_s")
    return out


def text_report(report: dict) -> str:
    """The tables as aligned plain text for a terminal."""
    parts = [
        f"jaxconvt bench: {_machine_line(report['machine'])}",
        *(f"WARNING: {w}" for w in report.get("warnings", [])),
        "jaxconvt (times in ms, medians; 'vs X' = X ms / jaxconvt ms, > 1 means jaxconvt is faster)",
        _table(*_main_rows(report), markdown=False),
        "",
        "baselines (ms) and the largest relative difference of their outputs from jaxconvt",
        _table(*_baseline_rows(report), markdown=False),
        "",
        "speedups from the minimum times instead of the medians (less sensitive to other load)",
        _table(*_min_rows(report), markdown=False),
    ]
    notes = _notes(report)
    if notes:
        parts += ["", "notes:", *(f"  {e}" for e in notes)]
    if report.get("layers"):
        parts += ["", "layers: one jitted training step, the framework's layer against jaxconvt's drop-in"]
        parts += [_table(*_layer_rows(report), markdown=False)]
        parts += [f"  {e}" for e in _layer_notes(report)]
    return "\n".join(parts)


def markdown_report(report: dict) -> str:
    """The tables as markdown, with the machine description and the command."""
    m = report["machine"]
    s = report["settings"]
    parts = [
        f"Machine: {_machine_line(m)}.",
        "",
        *_warning_lines(report),
        f"Command: `{report['command']}` (sizes `{s['sizes']}`, algorithm `{s['algorithm']}`, "
        f"median of up to {s['repeats']} runs after {s['warmup']} warm-up; suite wall time "
        f"{report['wall_s']:.0f} s).",
        "",
        "jaxconvt, times in ms. `vs X` = X's time / jaxconvt's time: above 1 jaxconvt is faster. "
        "GF/s counts useful (non-zero) multiply-adds only. efficiency = GF/s / the roof's GF/s "
        f"(— where not measured): {ROOF_TEXT} compile s = all four stages; "
        "peak MB = XLA's argument + output + temp bytes of fwd+bwd.",
        "",
        _table(*_main_rows(report), markdown=True),
        "",
        "Baselines in ms: torch = `torch.nn.functional.conv_transpose{1,2,3}d` with autograd; "
        "lax = `lax.conv_general_dilated(lhs_dilation=s)` differentiated by JAX "
        "(= `keras.ops.conv_transpose`). max rel diff: largest max|other - jaxconvt| / max|jaxconvt| "
        "over fwd, dx and dK.",
        "",
        _table(*_baseline_rows(report), markdown=True),
        "",
        "The same speedups from each implementation's minimum time instead of its median: less "
        "sensitive to other processes on a shared machine (PyTorch's OpenMP threads suffer most "
        "when a core is taken).",
        "",
        _table(*_min_rows(report), markdown=True),
    ]
    notes = _notes(report)
    if notes:
        parts += ["", "Notes:", "", *(f"- {e}" for e in notes)]
    return "\n".join(parts) + "\n"


def _warning_lines(report: dict) -> list[str]:
    """The report's warnings as markdown paragraphs (none for a clean run)."""
    return [line for w in report.get("warnings", []) for line in (f"**Warning:** {w}", "")]


def _efficiency(r: dict) -> float | None:
    """jaxconvt's fwd+bwd efficiency (stage GF/s / roof GF/s) when the JSON has it."""
    value = r["impls"]["jaxconvt"].get("efficiency")
    if isinstance(value, dict):
        value = value.get("fwdbwd")
    return value if isinstance(value, (int, float)) else None


def _summary_rows(report: dict):
    """Per workload: the fwd+bwd ratios to torch and lax, and the efficiency ("—" until the JSON has it)."""
    headers = ["workload", "vs torch f+b", "vs lax f+b", "efficiency"]
    rows = []
    for r in report["results"]:
        lax_res = r["impls"].get("lax")
        if lax_res is not None and "fwdbwd" in lax_res["skipped"]:
            vs_lax = "not run"
        else:
            vs_lax = _ratio(r["speedup"].get("lax", {}).get("fwdbwd"))
        efficiency = _efficiency(r)
        rows.append(
            [
                r["workload"] + ("" if r["dtype"] == "float32" else f" ({r['dtype']})"),
                _ratio(r["speedup"].get("torch", {}).get("fwdbwd")),
                vs_lax,
                "—" if efficiency is None else f"{100 * efficiency:.0f}%",
            ]
        )
    return headers, rows


def summary_markdown(report: dict) -> str:
    """The short ratio table as markdown: one training step of the layer per workload."""
    m = report["machine"]
    s = report["settings"]
    torch_part = f", torch {m['torch']}" if m["torch"] else ""
    quick = " A `--quick` run (a subset, few repeats): indicative only." if s.get("quick") else ""
    parts = [
        *_warning_lines(report),
        f"One training step of the layer (fwd+bwd: the value and both gradients), median times on "
        f"{m['cpu_model'] if m['platform'] == 'cpu' else m['device_kind']} ({m['platform']}, "
        f"{m['cpu_count']} cores; jax {m['jax']}{torch_part}; {m['date'][:10]}). `vs X` = X's time / "
        f"jaxconvt's time: above 1, jaxconvt is faster. efficiency: jaxconvt's GF/s over the roof, "
        f"XLA's GF/s for a bare matrix product of the same shape (— where not measured)." + quick,
        "",
        _table(*_summary_rows(report), markdown=True),
    ]
    return "\n".join(parts) + "\n"


def markers(platform_name: str, summary: bool = False, layers: bool = False) -> tuple[str, str]:
    """The begin and end markers of a platform's block in a markdown file (tables, summary or layers)."""
    kind = f"{platform_name}:summary" if summary else f"{platform_name}:layers" if layers else platform_name
    return f"<!-- jaxconvt-bench:{kind}:begin -->", f"<!-- jaxconvt-bench:{kind}:end -->"


def _replace_block(text: str, begin: str, end: str, body: str, append: bool) -> str:
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    block = f"{begin}\n{body}{end}"
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    if not append:
        return text
    return (text.rstrip("\n") + "\n\n" if text else "") + block + "\n"


def update_markdown(path: Path, report: dict, summary: bool = False) -> None:
    """Rewrites this platform's blocks in the markdown file ``path``, keeping the rest.

    Args:
      path: the markdown file (created when missing).
      report: a results JSON.
      summary: write the short ratio table (:func:`summary_markdown`), appending its block
        when absent; otherwise write the full tables (:func:`markdown_report`), appending
        their block when absent, the layers table (:func:`layers_markdown`), appending its
        block when absent and the report has a layers section, and refresh the summary block
        if the file has one.
    """
    platform_name = report["machine"]["platform"]
    text = path.read_text() if path.exists() else ""
    if not summary:
        text = _replace_block(text, *markers(platform_name), markdown_report(report), append=True)
        layers_block = markers(platform_name, layers=True)
        text = _replace_block(text, *layers_block, layers_markdown(report), append=bool(report.get("layers")))
    text = _replace_block(text, *markers(platform_name, summary=True), summary_markdown(report), append=summary)
    path.write_text(text)


# --------------------------------------------------------------------------- the layers section


def _layer_ms(r: dict, side: str) -> str:
    if r["skipped"]:
        return "n/a"
    if side in r["errors"] or "build" in r["errors"]:
        return "err"
    return _fmt(r["ms"][side]) + ("*" if r["runs"][side] == 0 else "")


def _layer_rows(report: dict):
    """Per workload and framework: both steps' times, the speedup and the largest difference."""
    headers = ["workload", "framework", "framework step ms", "jaxconvt step ms", "speedup", "max rel diff"]
    rows = []
    for r in report["layers"]["results"]:
        diff = r["max_rel_diff"]
        rows.append(
            [
                r["workload"],
                r["framework"],
                _layer_ms(r, "framework"),
                _layer_ms(r, "jaxconvt"),
                _ratio(r["speedup"]),
                "-" if diff is None else f"{diff:.1e}",
            ]
        )
    return headers, rows


def _layer_notes(report: dict) -> list[str]:
    """Frameworks not run, pairs not applicable, errors and single-call times, one line each."""
    section = report["layers"]
    out = [
        f"{name}: not run, {info['reason']}" for name, info in section["frameworks"].items() if not info["available"]
    ]
    for r in section["results"]:
        head = f"{r['workload']} {r['framework']}"
        if r["skipped"]:
            out.append(f"{head}: not applicable, {r['skipped']}")
        for what, msg in r["errors"].items():
            out.append(f"{head} {what}: error {msg.splitlines()[0]}")
        for side in ("framework", "jaxconvt"):
            if r["runs"][side] == 0:
                out.append(f"{head} {side} (*): timed once, its first call took more than {section['max_call_s']:g} s")
    return out


def layers_markdown(report: dict) -> str:
    """The layers section's table as markdown, with its protocol (a line saying so when it was not run)."""
    section = report.get("layers")
    if not section:
        return (
            "The layers section is not in this run's results (it runs by default, not with `--quick` or "
            "`--no-layers`).\n"
        )
    available = {name: info for name, info in section["frameworks"].items() if info["available"]}
    versions = ", ".join(f"{name} {info['version']}" for name, info in available.items())
    dropins = ", ".join(f"`{info['dropin']}`" for info in available.values() if info.get("dropin"))
    keras = (
        "; Keras on its JAX backend, its layers run by `stateless_call` inside `jax.jit`"
        if "keras" in available
        else ""
    )
    s = report["settings"]
    parts = [
        *_warning_lines(report),
        "One jitted training step of a transposed-convolution layer: the value of `sum(y * ct)` and its "
        "gradients with respect to the input and every parameter, for each framework's own layer and "
        f"jaxconvt's drop-in ({dropins or 'none available'}) built with the same parameters, in "
        f"{section['dtype']} at the `{s['sizes']}` sizes ({versions or 'no framework installed'}{keras}). "
        "Compiled ahead of time; median times, the two layers timed in turns (blocks of runs). A "
        f"step slower than {section['max_call_s']:g} s is timed once, by its first call after "
        "compiling (marked *). speedup = framework ms / jaxconvt ms: above 1, the drop-in is "
        "faster. max rel diff: the largest max|jaxconvt - framework| / max|framework| over the "
        "loss, the input gradient and each parameter gradient.",
        "",
        _table(*_layer_rows(report), markdown=True),
    ]
    notes = _layer_notes(report)
    if notes:
        parts += ["", *(f"- {e}" for e in notes)]
    return "\n".join(parts) + "\n"
