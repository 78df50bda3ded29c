"""The documentation site: it builds strictly, documents every public name, and its examples run.

* ``mkdocs build --strict`` into a temporary folder: broken links, anchors, references and
  docstring warnings fail it.
* Every name in ``jaxconvt.__all__`` and in the ``__all__`` of every public submodule (found by
  listing the package, so a new module cannot be forgotten) has an entry in the built API pages.
* The code examples of the pages run as doctests.
* ``scripts/make_figures.py`` produces every figure the pages show, and no page shows a
  figure the script does not make.
"""

from __future__ import annotations

import doctest
import importlib
import io
import os
import pkgutil
import re
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest

import jaxconvt

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
