"""Smoke test of the benchmark harness (``python -m jaxconvt bench``) on tiny workloads.

Checks the JSON schema, that every number is positive and finite, and that the three
implementations (jaxconvt, lax autodiff, torch) computed the same thing — never timings.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib.util
import io
import json
import math
import os
import re
import time

import numpy as np
import pytest

from jaxconvt.__main__ import build_parser, main
from jaxconvt.bench import SCHEMA, STAGES, Settings, layers, machine, roof, timing, workloads
from jaxconvt.bench import report as report_module
from jaxconvt.bench.chart import chart_title
from jaxconvt.bench.cli import settings_from_args
from jaxconvt.bench.machine import load_warning
from jaxconvt.bench.report import _ms_cell, markdown_report, markers, summary_markdown, text_report
from jaxconvt.bench.settings import QUICK_SETTINGS
from jaxconvt.bench.suite import empty_result, run_workload
from jaxconvt.bench.workloads import Size, Workload

HAS_TORCH = importlib.util.find_spec("torch") is not None

TINY = (
    # 2-D, groups, PyTorch padding with output_padding.
    Workload(
        "tiny2d", Size(2, (5, 6), 4, 6), Size(2, (5, 6), 4, 6), (3, 3), (2, 2), padding=1, output_padding=1, groups=2
    ),
    # 1-D Keras "same" with an odd crop PyTorch cannot express, and dilation.
    Workload("tiny1d", Size(3, (7,), 3, 2), Size(3, (7,), 3, 2), (3,), (2,), padding="same", dilation=(2,)),
    # 3-D, one kernel per example under vmap.
    Workload(
        "tiny3d_vmap",
        Size(3, (3, 2, 3), 2, 3),
        Size(3, (3, 2, 3), 2, 3),
        (2, 2, 2),
        (2, 1, 2),
        "valid",
        per_example=True,
    ),
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Runs the command line once on the tiny workloads, on a machine that looks loaded.

    Returns (exit codes of the run and of a re-render, report, out dir, printed text).
    """
    out = tmp_path_factory.mktemp("bench")
    readme = out / "README.md"
    readme.write_text("# Results\n\nintro\n")
    summary = out / "summary.md"
    summary.write_text(f"# Top\n\n{SUMMARY_BEGIN}\nold\n{SUMMARY_END}\n\nend\n")
    argv = ["bench", "--quick", "--workloads", ",".join(w.name for w in TINY), "--out", str(out)]
    argv += ["--markdown", str(readme), "--summary", str(summary), "--no-progress", "--repeats", "2", "--seed", "3"]
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.setattr(workloads, "WORKLOADS", TINY)
        mp.setattr(machine, "load_average", lambda: 99.0)  # more than half of any core count
        code = main(argv)
    report = json.loads((out / "results-cpu-quick.json").read_text())
    # Re-rendering from the JSON replaces the markdown blocks instead of appending others.
    (out / "results-cpu-quick.png").unlink()
    render = ["bench", "--render", str(out / "results-cpu-quick.json"), "--out", str(out), "--markdown", str(readme)]
    with contextlib.redirect_stdout(io.StringIO()):
        code_render = main([*render, "--summary", str(summary)])
    return (code, code_render), report, out, printed.getvalue()


SUMMARY_BEGIN, SUMMARY_END = markers("cpu", summary=True)


def _finite_positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_command_succeeds_and_writes_files(run):
    codes, report, out, _ = run
    assert codes == (0, 0)
    assert report["schema"] == SCHEMA
    assert (out / "results-cpu-quick.png").stat().st_size > 1000
    text = (out / "README.md").read_text()
    assert text.startswith("# Results\n\nintro\n")
    begin, end = markers("cpu")
    assert text.count(begin) == 1 and text.count(end) == 1
    for w in TINY:
        assert f"| {w.name} | float32 |" in text
    # The full tables' file also gets the summary block refreshed only when it has one: here not.
    assert text.count("jaxconvt-bench:cpu:summary") == 0


def test_load_warning_reaches_the_output_json_markdown_and_chart(run):
    _, report, out, printed = run
    (warning,) = report["warnings"]
    assert "load average at start was 99" in warning and f"half the {os.cpu_count()} cores" in warning
    assert printed.startswith("jaxconvt bench: ") and f"WARNING: {warning}" in printed.splitlines()[1]
    assert printed.rstrip().endswith(f"WARNING: {warning}")  # the last line, too
    assert f"**Warning:** {warning}" in (out / "README.md").read_text()
    assert f"**Warning:** {warning}" in (out / "summary.md").read_text()
    title = chart_title(report)
    assert "--quick" in title and "indicative only" in title and "WARNING: load average 99" in title


def test_load_warning_threshold():
    assert load_warning({"load_avg_start": 1.01, "cpu_count": 2})
    assert load_warning({"load_avg_start": 1.0, "cpu_count": 2}) is None
    assert load_warning({"load_avg_start": None, "cpu_count": 2}) is None
    assert load_warning({"load_avg_start": 3.0, "cpu_count": 16}) is None
    clean = {"machine": {"platform": "cpu", "device_kind": "cpu", "jax": "0"}, "settings": {}}
    assert "quick" not in chart_title(clean) and "WARNING" not in chart_title(clean)


def test_summary_table_is_written_between_its_markers(run):
    _, report, out, _ = run
    text = (out / "summary.md").read_text()
    assert text.startswith(f"# Top\n\n{SUMMARY_BEGIN}\n") and text.endswith(f"{SUMMARY_END}\n\nend\n")
    assert text.count(SUMMARY_BEGIN) == 1 and "old" not in text
    assert "| workload | vs torch f+b | vs lax f+b | efficiency |" in text
    assert "`--quick` run" in text
    for r in report["results"]:
        torch_ratio = r["speedup"].get("torch", {}).get("fwdbwd")
        cell = "-" if torch_ratio is None else f"{torch_ratio:.2f}x"
        efficiency = f"{100 * r['impls']['jaxconvt']['efficiency']['fwdbwd']:.0f}%"
        assert f"| {r['workload']} | {cell} | {r['speedup']['lax']['fwdbwd']:.2f}x | {efficiency} |" in text


def test_summary_table_shows_efficiency_when_the_json_has_it(run):
    _, report, _, _ = run
    report = copy.deepcopy(report)
    report["results"][0]["impls"]["jaxconvt"]["efficiency"] = {"fwdbwd": 0.456}
    del report["results"][1]["impls"]["jaxconvt"]["efficiency"]  # a JSON from before the roof
    text = summary_markdown(report)
    first, second = report["results"][0]["workload"], report["results"][1]["workload"]
    assert re.search(rf"^\| {first} \|.*\| 46% \|$", text, re.M)
    assert re.search(rf"^\| {second} \|.*\| — \|$", text, re.M)


def test_schema(run):
    _, report, _, _ = run
    assert set(report) >= {"schema", "command", "machine", "settings", "wall_s", "results"}
    machine = report["machine"]
    for key in ("platform", "device_kind", "cpu_model", "cpu_count", "jax", "jaxlib", "torch", "date"):
        assert key in machine
    assert set(report) >= {"warnings"}
    assert report["settings"]["repeats"] == 2 and report["settings"]["seed"] == 3 and report["settings"]["quick"]
    expected_impls = ["jaxconvt", "lax"] + (["torch"] if HAS_TORCH else [])
    assert report["settings"]["impls"] == expected_impls
    assert [r["workload"] for r in report["results"]] == [w.name for w in TINY]
    for r, w in zip(report["results"], TINY):
        assert r["dtype"] == "float32"
        assert r["algorithm"] in ("phase", "pad", "dilate")
        assert r["useful_flops"] == w.useful_flops(w.cpu)
        assert list(r["impls"]) == expected_impls
        assert set(r["speedup"]) == set(expected_impls[1:])
        lead = [w.cpu.batch] if w.per_example else []
        assert r["input_shape"] == lead + [1 if w.per_example else w.cpu.batch, *w.cpu.spatial, w.cpu.c_in]
        for impl, res in r["impls"].items():
            assert res["errors"] == {}, (r["workload"], impl, res["errors"])
            assert res["skipped"] == {}
            assert set(res["ms"]) == set(STAGES) == set(res["efficiency"])
        roof_record = r["roof"]
        assert roof_record["errors"] == {} and roof_record["dtype"] == "float32"
        expected = roof.roof_candidates(w, w.cpu)
        assert {s: [tuple(p.values())[:4] for p in ps] for s, ps in roof_record["products"].items()} == {
            s: [p.shape for p in ps] for s, ps in expected.items()
        }
        assert set(roof_record["layout"].values()) <= {"rows", "rows-contracted"}
    assert report["layers"] is None  # --quick: no layers section


def test_numbers_positive_and_finite(run):
    _, report, _, _ = run
    for r in report["results"]:
        assert _finite_positive(r["useful_flops"])
        for impl, res in r["impls"].items():
            for stage in STAGES:
                assert _finite_positive(res["ms"][stage]), (r["workload"], impl, stage)
                assert _finite_positive(res["min_ms"][stage])
                assert res["min_ms"][stage] <= res["ms"][stage]
                assert _finite_positive(res["gflops"][stage])
                assert 1 <= res["runs"][stage] <= 2
                if impl != "torch":
                    assert _finite_positive(res["compile_s"][stage])
                    assert res["peak_mb"][stage] is None or _finite_positive(res["peak_mb"][stage])
            for impl_ratio in r["speedup"].values():
                assert all(_finite_positive(v) for v in impl_ratio.values())
            for stage in STAGES:  # efficiency = roof time / stage time, for every implementation
                assert res["efficiency"][stage] == pytest.approx(r["roof"]["ms"][stage] / res["ms"][stage])
        for stage in STAGES:
            assert _finite_positive(r["roof"]["ms"][stage]) and _finite_positive(r["roof"]["gflops"][stage])
            passes = 3 if stage == "fwdbwd" else 1
            assert r["roof"]["gflops"][stage] == pytest.approx(
                passes * r["useful_flops"] / r["roof"]["ms"][stage] / 1e6
            )


def test_implementations_compute_the_same(run):
    """The baselines' outputs (after layout conversion) match jaxconvt's fwd, dx and dK."""
    _, report, _, _ = run
    for r in report["results"]:
        for impl, res in r["impls"].items():
            for stage, diff in res["max_rel_diff"].items():
                assert diff is not None and diff < 1e-5, (r["workload"], impl, stage, diff)


def test_too_slow_call_is_timed_once_and_marked():
    calls = {"slow": 0, "fast": 0}

    def make(name, seconds):
        def call():
            calls[name] += 1
            time.sleep(seconds)
            return name

        return timing.Runner(call, lambda out: out)

    calls["medium"] = 0
    runners = {"slow": make("slow", 0.4), "medium": make("medium", 0.15), "fast": make("fast", 0.0)}
    settings = Settings(repeats=4, min_repeats=4, warmup=1, single_call_s=0.1, max_call_s=0.3)
    timing.time_in_turns(runners, settings)
    slow, medium, fast = runners["slow"], runners["medium"], runners["fast"]
    # Slower than max_call_s: the warm-up call is the only time.
    assert slow.too_slow and len(slow.times) == 1 and slow.times[0] >= 0.4 and calls["slow"] == 1
    # Slower than single_call_s: one timed run after the warm-up.
    assert not medium.too_slow and len(medium.times) == 1 and calls["medium"] == 2
    # Fast calls: 4 turns (rounds) of one timed run, each after a pause and one untimed call.
    assert not fast.too_slow and len(fast.times) == 4 and calls["fast"] == 1 + 2 * settings.rounds
    result = empty_result()
    result["ms"]["dk"], result["runs"]["dk"] = 1234.5, 0
    result["skipped"]["fwdbwd"] = "skipped: too slow"
    assert _ms_cell(result, "dk") == "1234*"
    assert _ms_cell(result, "fwdbwd") == "skip"


def test_unknown_workload_is_an_error(capsys):
    assert main(["bench", "--workloads", "nope"]) == 2
    assert "unknown workload" in capsys.readouterr().err


def test_workload_table():
    names = [w.name for w in workloads.WORKLOADS]
    assert len(set(names)) == len(names)
    assert set(workloads.QUICK) <= set(names)
    for required in ("dcgan2d", "unet2d", "hifigan1d", "unet3d", "vae3d_k3", "grouped2d", "per_example"):
        assert required in names
    dcgan = workloads.get_workloads(["dcgan2d"])[0]
    assert dcgan.useful_flops(dcgan.cpu) == 2 * 16 * 16 * 16 * 256 * 128 * 4 * 4
    grouped = workloads.get_workloads(["grouped2d"])[0]
    assert grouped.useful_flops(grouped.cpu) == 2 * 8 * 16 * 16 * 128 * (128 // 8) * 3 * 3
    import jaxconvt

    for w in workloads.WORKLOADS:  # every size is a valid configuration
        for size in (w.cpu, w.gpu):
            shape = jaxconvt.conv_transpose_output_shape(
                (1, *size.spatial, size.c_in), (*w.kernel, size.c_out // w.groups, size.c_in), **w.conv_kwargs()
            )
            assert shape[-1] == size.c_out


# --------------------------------------------------------------------------- the roof


def test_roof_shapes():
    """(batch, rows, contraction, columns) per stage: groups and examples batch, dK contracts the rows."""
    grouped, per_example, vae3d = workloads.get_workloads(["grouped2d", "per_example", "vae3d_k3"])
    # grouped2d: N=8, 16x16, 128 -> 128, 8 groups, k3x3: taps x C_in/G = 9 x 16.
    shapes = {s: p.shape for s, p in roof.roof_products(grouped, grouped.cpu).items()}
    assert shapes == {"fwd": (8, 2048, 144, 16), "dx": (8, 2048, 144, 16), "dk": (8, 144, 2048, 16)}
    # per_example: 8 vmapped examples of batch 1, 16x16, 64 -> 64, k4x4: 8 products of 256 rows.
    shapes = {s: p.shape for s, p in roof.roof_products(per_example, per_example.cpu).items()}
    assert shapes == {"fwd": (8, 256, 1024, 64), "dx": (8, 256, 1024, 64), "dk": (8, 1024, 256, 64)}
    # vae3d_k3: N=1, 16^3, 32 -> 32, k3x3x3 (27 taps); its GPU size 64x64x32, 64 -> 1.
    shapes = {s: p.shape for s, p in roof.roof_products(vae3d, vae3d.cpu).items()}
    assert shapes == {"fwd": (1, 4096, 864, 32), "dx": (1, 4096, 864, 32), "dk": (1, 864, 4096, 32)}
    shapes = {s: p.shape for s, p in roof.roof_products(vae3d, vae3d.gpu).items()}
    assert shapes == {"fwd": (1, 131072, 1728, 1), "dx": (1, 131072, 27, 64), "dk": (1, 1728, 131072, 1)}
    for w in workloads.WORKLOADS:  # every product has exactly the stage's useful flops
        candidates = roof.roof_candidates(w, w.cpu)
        assert [p.rows_contracted for p in candidates["dk"]] == [True, False]
        assert all(p.flops == w.useful_flops(w.cpu) for ps in candidates.values() for p in ps), w.name
    assert roof.roof_products(vae3d, vae3d.cpu)["dk"].operand_shapes() == ((4096, 864), (4096, 32))
    assert roof.roof_products(grouped, grouped.cpu)["dk"].operand_shapes() == ((8, 2048, 144), (8, 2048, 16))


def test_roof_record_and_efficiency_from_given_numbers():
    w = workloads.get_workloads(["unet3d"])[0]
    candidates = roof.roof_candidates(w, w.cpu)
    (fwd,), (dx,), (dk_rows_contracted, dk_rows) = candidates["fwd"], candidates["dx"], candidates["dk"]
    timings = {  # (median s, min s, runs)
        (fwd, "float32"): (0.002, 0.0015, 10),
        (dx, "float32"): (0.004, 0.003, 10),
        (dk_rows_contracted, "float32"): (0.008, 0.007, 10),
        (dk_rows, "float32"): (0.006, 0.005, 4),  # the faster layout is dK's roof
    }
    record = roof.roof_record(candidates, "float32", timings)
    assert record["layout"] == {"fwd": "rows", "dx": "rows", "dk": "rows"}
    assert record["ms"] == pytest.approx({"fwd": 2.0, "dx": 4.0, "dk": 6.0, "fwdbwd": 12.0})
    assert record["min_ms"] == pytest.approx({"fwd": 1.5, "dx": 3.0, "dk": 5.0, "fwdbwd": 9.5})
    assert record["runs"] == {"fwd": 10, "dx": 10, "dk": 4, "fwdbwd": 4}
    flops = w.useful_flops(w.cpu)
    assert record["gflops"]["dk"] == pytest.approx(flops / 0.006 / 1e9)
    assert record["gflops"]["fwdbwd"] == pytest.approx(3 * flops / 0.012 / 1e9)
    assert [e["ms"] for e in record["products"]["dk"]] == pytest.approx([8.0, 6.0])
    stage_ms = {"fwd": 4.0, "dx": 4.0, "dk": 24.0, "fwdbwd": 48.0}
    assert roof.stage_efficiencies(stage_ms, record) == pytest.approx(
        {"fwd": 0.5, "dx": 1.0, "dk": 0.25, "fwdbwd": 0.25}
    )
    assert roof.stage_efficiencies(stage_ms, None) == {s: None for s in STAGES}
    assert roof.efficiency(None, 1.0) is None and roof.efficiency(2.0, None) is None
    # A product that could not run leaves its stage and fwd+bwd without a roof, and says why.
    timings[(dx, "float32")] = "skipped: too big"
    record = roof.roof_record(candidates, "float32", timings)
    assert record["errors"] == {"dx": "skipped: too big"} and record["ms"]["dx"] is record["ms"]["fwdbwd"] is None
    assert record["products"]["dx"][0]["error"] == "skipped: too big"


def test_tables_show_the_efficiency_and_old_json_shows_dashes(run):
    _, report, out, printed = run
    text = (out / "README.md").read_text()
    assert "| GF/s fwd/dx/dK | efficiency % fwd/dx/dK/f+b |" in text and "roof GF/s fwd/dx/dK |" in text
    for r in report["results"]:
        eff = r["impls"]["jaxconvt"]["efficiency"]
        cell = "/".join(f"{100 * eff[s]:.0f}" for s in STAGES)
        roof_cell = "/".join(_fmt_gf(r["roof"]["gflops"][s]) for s in ("fwd", "dx", "dk"))
        assert re.search(rf"^\| {r['workload']} \| float32 \|.*\| {re.escape(cell)} \|", text, re.M)
        assert re.search(rf"^\| {r['workload']} \| float32 \|.*\| {re.escape(roof_cell)} \|$", text, re.M)
        assert cell in printed
    old = copy.deepcopy(report)  # a JSON from before the roof and the layers section
    for r in old["results"]:
        del r["roof"]
        for res in r["impls"].values():
            del res["efficiency"]
    del old["layers"]
    for rows_of, column in (
        (report_module._main_rows, "efficiency % fwd/dx/dK/f+b"),
        (report_module._baseline_rows, "roof GF/s fwd/dx/dK"),
        (report_module._summary_rows, "efficiency"),
    ):
        headers, rows = rows_of(old)
        assert [row[headers.index(column)] for row in rows] == ["—"] * len(TINY)
    assert "| — |" in markdown_report(old) and "layers" not in text_report(old)
    assert "The layers section is not in this run's results" in report_module.layers_markdown(old)


def _fmt_gf(value):
    return report_module._fmt(value, 2)


def test_a_real_run_has_efficiencies_between_0_and_2():
    """A small hifigan-like layer, quick settings, jaxconvt alone: each stage within (0, 2) of its roof."""
    small = Workload("small1d", Size(2, (64,), 256, 128), Size(2, (64,), 256, 128), (16,), (8,), padding=4)
    settings = dataclasses.replace(Settings(lax=False, torch=False), **QUICK_SETTINGS)
    settings = dataclasses.replace(settings, repeats=6, min_repeats=6, rounds=3)  # medians of 6: less noise
    r = run_workload(small, "float32", settings)
    eff = r["impls"]["jaxconvt"]["efficiency"]
    assert all(0 < eff[s] < 2 for s in STAGES), eff
    assert r["roof"]["errors"] == {} and r["roof"]["runs"]["fwdbwd"] >= 1


# --------------------------------------------------------------------------- the layers section

FLAX_PAIRS = tuple(p for p in layers.PAIRS if p.name.startswith("flax."))
TINY_LAYERS = (
    # PyTorch p=1 = Flax 'SAME' here; a drop-in pair per Flax API.
    Workload("tiny_layer2d", Size(2, (5, 4), 3, 4), Size(2, (5, 4), 3, 4), (4, 4), (2, 2), padding=1, layers=True),
    # Groups: Flax's layers have none, so the pairs are not applicable (nothing is compiled).
    Workload(
        "tiny_layer_g", Size(1, (3, 3), 4, 4), Size(1, (3, 3), 4, 4), (3, 3), (2, 2), padding=1, groups=2, layers=True
    ),
    # Not a layers workload: left out.
    Workload("tiny_not_a_layer", Size(1, (3,), 2, 2), Size(1, (3,), 2, 2), (2,), (2,), padding="valid"),
)


@pytest.fixture(scope="module")
def layer_section():
    settings = Settings(repeats=2, min_repeats=1, rounds=2, budget_s=0.1)
    return layers.run_layers(TINY_LAYERS, settings, pairs=FLAX_PAIRS)


def test_layers_section_times_and_compares_the_flax_pairs(layer_section):
    section = layer_section
    assert section["workloads"] == ["tiny_layer2d", "tiny_layer_g"]
    assert section["dtype"] == "float32" and section["max_call_s"] == Settings.layers_max_call_s
    assert set(section["frameworks"]) == {"flax.nnx", "flax.linen"}
    assert all(info["available"] and info["version"] for info in section["frameworks"].values())
    assert [(r["workload"], r["framework"]) for r in section["results"]] == [
        (w, f) for w in ("tiny_layer2d", "tiny_layer_g") for f in ("flax.nnx", "flax.linen")
    ]
    for r in section["results"][:2]:
        assert r["errors"] == {} and r["skipped"] is None, r
        assert r["layers"]["framework"].startswith(f"{r['framework']}.ConvTranspose(")
        assert r["layers"]["jaxconvt"] == r["layers"]["framework"].replace("flax.", "jaxconvt.", 1)
        assert "padding='SAME'" in r["layers"]["framework"]  # PyTorch p=1 with k4 s2 is Flax's 'SAME'
        assert r["input_shape"] == {"framework": [2, 5, 4, 3], "jaxconvt": [2, 5, 4, 3]}
        for side in ("framework", "jaxconvt"):
            assert _finite_positive(r["ms"][side]) and r["min_ms"][side] <= r["ms"][side]
            assert 1 <= r["runs"][side] <= 2 and _finite_positive(r["compile_s"][side])
        assert r["speedup"] == pytest.approx(r["ms"]["framework"] / r["ms"]["jaxconvt"])
        assert 0 <= r["max_rel_diff"] < 1e-5
    for r in section["results"][2:]:
        assert r["skipped"] == f"{r['framework']}.ConvTranspose has no groups" and r["ms"]["framework"] is None


def test_layers_table_and_markdown_block(run, layer_section, tmp_path):
    _, report, _, _ = run
    report = copy.deepcopy(report)
    report["layers"] = layer_section
    table = report_module.layers_markdown(report)
    assert "| workload | framework | framework step ms | jaxconvt step ms | speedup | max rel diff |" in table
    assert "gradients with respect to the input and every parameter" in table and "timed once" in table
    for r in layer_section["results"][:2]:
        cells = [r["workload"], r["framework"], f"{r['ms']['framework']:.3g}"[:3], None]
        row = next(line for line in table.splitlines() if line.startswith(f"| {cells[0]} | {cells[1]} |"))
        assert row.endswith(f"| {r['speedup']:.2f}x | {r['max_rel_diff']:.1e} |"), row
    assert "| tiny_layer_g | flax.nnx | n/a | n/a | - | - |" in table
    assert "- tiny_layer_g flax.nnx: not applicable, flax.nnx.ConvTranspose has no groups" in table
    assert "layers: one jitted training step" in text_report(report)
    # The full tables' file gets the layers block: appended when absent, replaced when present.
    path = tmp_path / "README.md"
    path.write_text("# Results\n")
    begin, end = markers("cpu", layers=True)
    for _ in range(2):
        report_module.update_markdown(path, report)
        text = path.read_text()
        assert text.count(begin) == text.count(end) == 1
        assert text[text.index(begin) + len(begin) + 1 : text.index(end)] == table
    # A results JSON without the section: the block says so, and a file without the block gets none.
    del report["layers"]
    report_module.update_markdown(path, report)
    assert "The layers section is not in this run's results" in path.read_text()
    other = tmp_path / "other.md"
    report_module.update_markdown(other, report)
    assert begin not in other.read_text()


def test_layer_pairs_register_only_when_their_modules_import():
    build = lambda problem, seed: None
    pairs = (
        layers.LayerPair("flax.nnx", ("flax.nnx", "jaxconvt.nnx"), "flax", build),
        layers.LayerPair("nope", ("json", "jaxconvt.no_such_layers"), "nope", build),
        layers.LayerPair("absent", ("no_such_framework_xyz", "jaxconvt.nnx"), "absent", build),
    )
    ok, missing = layers.available_pairs(pairs)
    assert [p.name for p in ok] == ["flax.nnx"]
    assert missing == {
        "nope": "this jaxconvt has no jaxconvt.no_such_layers",
        "absent": "no_such_framework_xyz is not installed (pip install 'jaxconvt[absent]')",
    }


def _fake_pair(name: str, scale: float) -> layers.LayerPair:
    """A pair of cheap steps ``y = p * x``: the drop-in computes ``scale * p * x``."""

    def build(problem, seed):
        x = np.ones((2, 3), np.float32)
        return (
            layers.LayerStep(layers._step(lambda p, x_: p * x_), np.float32(2.0), x, x, "framework(2)"),
            layers.LayerStep(layers._step(lambda p, x_: scale * p * x_), np.float32(2.0), x, x, "jaxconvt(2)"),
        )

    return layers.LayerPair(name, (), "none", build)


def test_layer_steps_slower_than_max_call_s_are_timed_once_and_differences_are_found(run):
    _, report, _, _ = run
    settings = Settings(layers_max_call_s=0.0)  # every call is "too slow"
    w = TINY_LAYERS[0]
    section = layers.run_layers([w], settings, pairs=(_fake_pair("same", 1.0), _fake_pair("off", 1.5)))
    same, off = section["results"]
    assert same["runs"] == {"framework": 0, "jaxconvt": 0} and same["max_rel_diff"] == 0.0
    assert off["max_rel_diff"] == pytest.approx(0.5)  # loss and gradients 1.5x the framework's
    report = copy.deepcopy(report)
    report["layers"] = section
    table = report_module.layers_markdown(report)
    assert re.search(r"^\| tiny_layer2d \| same \| [\d.]+\* \| [\d.]+\* \| [\d.]+x \| 0\.0e\+00 \|$", table, re.M)
    assert "- tiny_layer2d same framework (*): timed once, its first call took more than 0 s" in table


def test_layers_switch_defaults():
    parser = build_parser().subcommands["bench"]
    settings = lambda *argv: settings_from_args(parser.parse_args(list(argv)), "cpu", None)
    assert settings().layers and settings().roof
    assert not settings("--quick").layers and settings("--quick").roof
    assert settings("--quick", "--layers").layers
    assert not settings("--no-layers").layers and not settings("--no-roof").roof
    assert settings("--quick").layers_max_call_s == Settings.layers_max_call_s == 2.0
