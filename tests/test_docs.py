"""The documentation site: it builds strictly, documents every public name, and its examples run.

* ``mkdocs build --strict`` into a temporary folder: broken links, anchors, references and
  docstring warnings fail it.
* Every name in ``jaxconvt.__all__`` and in the ``__all__`` of every public submodule (found by
  listing the package, so a new module cannot be forgotten) has an entry in the built API pages.
* The code examples of the pages run as doctests.
* ``scripts/make_figures.py`` produces every figure the pages show, and no page shows a
  figure the script does not make.
* The notebooks are pages of the site, with their outputs (``scripts/mkdocs_hooks.py``).
* The benchmark figures are generated from the committed JSON: the tables in
  ``benchmarks/README.md`` (the layers table too) and ``README.md`` equal what the bench renders from
  ``benchmarks/results-cpu.json``, every speed ratio the prose quotes is one of the JSON's,
  and the benchmarks page opens with the chart and the short ratio table.
* No page points the reader at material they do not have (the team's notes).
"""

from __future__ import annotations

import doctest
import html
import importlib
import io
import json
import os
import pkgutil
import re
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest

import jaxconvt
from jaxconvt._spec import ALGORITHMS
from jaxconvt.bench import report as bench_report

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FIGURE_LINK = re.compile(r"figures/([\w.-]+\.png)")


def public_modules() -> dict[str, object]:
    """``jaxconvt`` and each of its submodules whose name does not start with ``_``."""
    modules = {"jaxconvt": jaxconvt}
    for info in pkgutil.iter_modules(jaxconvt.__path__):
        if not info.name.startswith("_"):
            name = f"jaxconvt.{info.name}"
            modules[name] = importlib.import_module(name)
    return modules


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built with ``mkdocs build --strict`` (once for this file)."""
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_site_builds_strictly_with_every_page(site):
    pages = sorted(p.relative_to(DOCS).with_suffix("") for p in DOCS.rglob("*.md"))
    assert len(pages) >= 10
    for page in pages:
        built = site / ("" if page.name == "index" else str(page)) / "index.html"
        assert built.is_file(), f"docs/{page}.md was not built"


def test_every_public_name_is_in_the_api_reference(site):
    html = "".join(p.read_text() for p in (site / "api").rglob("index.html"))
    modules = public_modules()
    assert {"jaxconvt", "jaxconvt.reference"} <= set(modules)
    missing = []
    for module_name, module in modules.items():
        names = getattr(module, "__all__", None)
        assert names, f"{module_name} must define a non-empty __all__"
        missing += [f"{module_name}.{n}" for n in names if f'id="{module_name}.{n}"' not in html]
    assert not missing, f"public names without an entry in docs/api/: {missing}"


def test_every_public_submodule_has_an_api_page():
    sources = "".join(p.read_text() for p in (DOCS / "api").glob("*.md"))
    for module_name in public_modules():
        assert re.search(rf"^::: {re.escape(module_name)}$", sources, re.M), f"no `::: {module_name}` in docs/api/"


PAGES_WITH_EXAMPLES = sorted(p.name for p in DOCS.glob("*.md") if ">>> " in p.read_text())


def test_pages_with_examples_are_found():
    assert {"getting-started.md", "semantics.md", "porting.md", "faq.md", "design.md"} <= set(PAGES_WITH_EXAMPLES)


@pytest.mark.parametrize("page", PAGES_WITH_EXAMPLES)
def test_page_examples_run(page):
    out = io.StringIO()
    with redirect_stdout(out):
        result = doctest.testfile(
            str(DOCS / page),
            module_relative=False,
            optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
            verbose=False,
        )
    assert result.attempted > 0
    assert result.failed == 0, out.getvalue()


def _load_figure_script():
    spec = importlib.util.spec_from_file_location("make_figures", ROOT / "scripts" / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_figures_are_generated_by_the_script(tmp_path):
    make_figures = _load_figure_script()
    written = make_figures.make_all(tmp_path)
    assert sorted(p.name for p in written) == sorted(make_figures.FIGURES)
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000, path
    linked = {m for p in DOCS.rglob("*.md") for m in FIGURE_LINK.findall(p.read_text())}
    assert linked <= set(make_figures.FIGURES), f"pages show figures the script does not make: {linked}"
    committed = {p.name for p in (DOCS / "figures").glob("*.png")}
    assert committed == set(make_figures.FIGURES), "docs/figures/ is stale: run python scripts/make_figures.py"


def test_figure_facts_match_the_semantics():
    # The crops the figures print are read off the op; they must be the documented ones.
    make_figures = _load_figure_script()
    assert make_figures.crop_of(3, 3, 2, 1, padding="same") == (0, 1)  # Keras: odd crop at the end
    assert make_figures.crop_of(3, 3, 2, 1, padding=1, output_padding=1) == (1, 0)  # PyTorch
    assert make_figures.crop_of(3, 3, 2, 1, padding="valid", output_padding=1) == (0, -1)  # zero-extension
    taps = make_figures.taps_1d(3, 3, 2, 2)  # tap j of pixel a at a*s + j*d
    for a in range(3):
        assert [int(t) for t in (taps[a] >= 0).nonzero()[0]] == [2 * a, 2 * a + 2, 2 * a + 4]


def test_benchmark_tables_reach_the_site(site):
    page = (DOCS / "benchmarks.md").read_text()
    assert '--8<-- "benchmarks/README.md"' in page
    readme = ROOT / "benchmarks" / "README.md"
    if not readme.exists():
        pytest.skip("benchmarks/README.md not generated yet (python -m jaxconvt bench --markdown benchmarks/README.md)")
    tables = len(re.findall(r"^\|\s*:?-{3,}", readme.read_text(), re.M))
    built = (site / "benchmarks" / "index.html").read_text()
    assert built.count("<table>") >= tables > 0


NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_are_pages_with_their_outputs(site, notebook):
    cells = json.loads(notebook.read_text())["cells"]
    pngs = sum("image/png" in o.get("data", {}) for c in cells for o in c.get("outputs", []))
    texts = [
        "".join(o["text"]).strip().splitlines()[0]
        for c in cells
        for o in c.get("outputs", [])
        if o["output_type"] == "stream" and "".join(o["text"]).strip()
    ]
    page = site / "notebooks" / notebook.stem / "index.html"
    built = page.read_text()
    images = re.findall(r'<img[^>]+src="([^"]+\.png)"', built)
    assert len(images) == pngs, f"{notebook.name}: {pngs} PNG outputs, {len(images)} images on the page"
    for src in images:
        assert (page.parent / src).is_file(), src
    for first_line in texts:  # every text output is on the page
        assert html.escape(first_line, quote=False) in built, first_line
    assert f"notebooks/{notebook.name}" in built
    assert f'href="{notebook.stem}/"' in (site / "notebooks" / "index.html").read_text()  # linked from the list


def _results() -> dict:
    return json.loads((ROOT / "benchmarks" / "results-cpu.json").read_text())


def _block(text: str, begin: str, end: str) -> str:
    match = re.search(re.escape(begin) + r"\n(.*?)" + re.escape(end), text, re.S)
    assert match, f"no block {begin}"
    return match.group(1)


def test_benchmark_tables_are_generated_from_the_json():
    results = _results()
    tables = (ROOT / "benchmarks" / "README.md").read_text()
    summary = bench_report.summary_markdown(results)
    assert _block(tables, *bench_report.markers("cpu")) == bench_report.markdown_report(results)
    assert _block(tables, *bench_report.markers("cpu", summary=True)) == summary
    assert _block(tables, *bench_report.markers("cpu", layers=True)) == bench_report.layers_markdown(results)
    readme = (ROOT / "README.md").read_text()
    assert _block(readme, *bench_report.markers("cpu", summary=True)) == summary


def test_benchmarks_page_opens_with_the_chart_and_the_ratio_table(site):
    built = (site / "benchmarks" / "index.html").read_text()
    content = built[built.index('<article class="md-content__inner') :]
    chart = re.search(r'<img[^>]+src="([^"]*results-cpu\.png)"', content)
    assert chart, "the chart is not on the benchmarks page"
    assert (site / "benchmarks" / chart.group(1)).resolve().is_file()
    first_table = re.search(r"<table>.*?</table>", content, re.S).group(0)
    headers = re.findall(r"<th[^>]*>(.*?)</th>", first_table)
    assert headers == ["workload", "vs torch f+b", "vs lax f+b", "efficiency"]
    assert content.index(chart.group(0)) < content.index(first_table)


RATIO = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?:-(\d+(?:\.\d+)?))?x\b")


def _json_ratios(results: dict) -> set[str]:
    """Every speed ratio of the JSON (medians and minimum times, every stage), as the prose rounds them."""
    values = []
    for r in results["results"]:
        mine = r["impls"]["jaxconvt"]
        for impl, res in r["impls"].items():
            for key in ("ms", "min_ms"):
                for stage, theirs in res[key].items():
                    if impl != "jaxconvt" and theirs and mine[key][stage]:
                        values.append(theirs / mine[key][stage])
    return {f"{v:.{digits}f}" for v in values for digits in (0, 1, 2)}


def test_speed_ratios_in_the_prose_come_from_the_json():
    """README.md, benchmarks/README.md and pages quoting the suite: every ``1.23x`` / ``4-67x`` outside tables."""
    known = _json_ratios(_results())
    sources = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", DOCS / "index.md", DOCS / "getting-started.md"]
    unknown = []
    for path in sources:
        prose = "\n".join(line for line in path.read_text().splitlines() if not line.startswith("|"))
        for match in RATIO.finditer(prose):  # table rows are checked as generated, above
            unknown += [f"{path.name}: {match.group(0)}" for v in match.groups() if v and v not in known]
    assert not unknown, f"ratios not in benchmarks/results-cpu.json: {unknown}"


def test_no_reference_to_material_the_reader_lacks():
    texts = {p: p.read_text() for p in [*DOCS.rglob("*.md"), ROOT / "README.md", ROOT / "benchmarks" / "README.md"]}
    texts.update({p: p.read_text() for p in NOTEBOOKS})
    for path, text in texts.items():
        for phrase in ("team notes", "the team's", "PERFORMANCE.md", "WORKLOADS.md", "SEMANTICS.md", "/work/"):
            assert phrase not in text, f"{path.relative_to(ROOT)} mentions {phrase!r}"


def test_documented_algorithm_choices_are_the_real_ones():
    text = (ROOT / "benchmarks" / "README.md").read_text()
    (listed,) = re.findall(r"`--algorithm ([a-z|]+)`", text)
    assert sorted(listed.split("|")) == sorted(ALGORITHMS)
