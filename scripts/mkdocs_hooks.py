"""mkdocs hooks (mkdocs.yml ``hooks:``): files from outside ``docs/`` that the site shows.

* Every ``notebooks/<name>.ipynb`` becomes the page ``notebooks/<name>.md``, rendered from the
  committed notebook with its outputs: markdown cells as they are, code cells as Python
  blocks, text outputs as text blocks, PNG outputs as images
  (``notebooks/<name>/<cell>-<output>.png``). Nothing is executed; ``tests/test_notebooks.py``
  re-executes the notebooks. Links into ``../docs/`` (right in the repository) are rewritten
  to the site's pages.
* ``benchmarks/results-<platform>.png`` (the bench's charts, which ``benchmarks/README.md``
  shows and the benchmarks page includes) are published at the site's root, where the
  included page's relative links point.
* Inline code may wrap at its spaces only: each run of non-space characters is kept on one
  line (browsers would otherwise break ``ke-1-pl`` after a hyphen, or a path after a slash).

A small converter instead of nbconvert or mkdocs-jupyter: the notebooks use markdown, code,
text and PNG outputs only, and the docs build needs no further dependency.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from mkdocs.structure.files import File

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Inline code: a <code> with plain text inside (code blocks hold highlighting spans, and start
# right after <pre> or an empty <span>).
INLINE_CODE = re.compile(r"(?<!<pre>)(?<!</span>)<code>([^<]*)</code>")
WORD = re.compile(r"(\S+)")
DOCS_LINK = re.compile(r"\]\(\.\./docs/([^)]+)\)")


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else value


def _fence(text: str, info: str) -> list[str]:
    text = ANSI.sub("", text).rstrip("\n")
    fence = "````" if "```" in text else "```"
    return [f"{fence}{info}", text, fence, ""]


def notebook_markdown(notebook: dict, name: str, source: str) -> tuple[str, dict[str, bytes]]:
    """The page for one notebook (a parsed ``.ipynb``) and its images, by file name under ``name/``."""
    lines: list[str] = []
    images: dict[str, bytes] = {}
    note = [
        f'!!! note "A notebook: `{source}`"',
        "    Rendered from the committed notebook with its outputs (nothing runs when the site is",
        "    built; the test suite re-executes it). Timings in it are from the machine that last ran",
        "    it. To run it yourself, see [Notebooks](../notebooks.md).",
        "",
    ]
    for index, cell in enumerate(notebook["cells"]):
        text = _text(cell["source"])
        if cell["cell_type"] == "markdown":
            text = DOCS_LINK.sub(r"](../\1)", text).strip("\n")
            title, _, rest = text.partition("\n")
            if note and title.startswith("# "):  # the note goes right under the title
                lines += [title, "", *note, rest, ""]
                note = []
            else:
                lines += [text, ""]
            continue
        if cell["cell_type"] != "code" or not text.strip():
            continue
        lines += _fence(text, "python")
        for number, output in enumerate(cell.get("outputs", [])):
            kind = output["output_type"]
            if kind == "stream":
                lines += _fence(_text(output["text"]), "text")
            elif kind == "error":
                lines += _fence(f"{output['ename']}: {output['evalue']}", "text")
            elif kind in ("execute_result", "display_data"):
                data = output.get("data", {})
                if "image/png" in data:
                    image = f"{index}-{number}.png"
                    images[image] = base64.b64decode(_text(data["image/png"]))
                    lines += [f"![Output of cell {index}]({name}/{image})", ""]
                elif "text/plain" in data:
                    lines += _fence(_text(data["text/plain"]), "text")
    return "\n".join(note + lines), images


def on_files(files, config):
    root = Path(config["config_file_path"]).parent
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        notebook = json.loads(path.read_text())
        page, images = notebook_markdown(notebook, path.stem, f"notebooks/{path.name}")
        files.append(File.generated(config, f"notebooks/{path.stem}.md", content=page))
        for image, content in images.items():
            files.append(File.generated(config, f"notebooks/{path.stem}/{image}", content=content))
    for chart in sorted((root / "benchmarks").glob("results-*.png")):
        files.append(File.generated(config, chart.name, abs_src_path=str(chart)))
    return files


def on_page_content(html, page, config, files):
    return INLINE_CODE.sub(lambda m: "<code>" + WORD.sub(r'<span class="nobr">\1</span>', m.group(1)) + "</code>", html)
