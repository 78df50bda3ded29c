"""Builds the docs site and checks every page in headless Chromium at a desktop width.

    python scripts/check_site.py [--width 1280] [--site DIR] [--screenshots DIR] [--json FILE]

For every HTML page of ``mkdocs build --strict`` (into a temporary folder unless ``--site``
names a built one), a copy of the page gets a small script that runs after the page has
loaded and writes its measurements into the page; ``chromium --headless --dump-dom`` prints
the page back and the measurements are read from it. A page fails when

* the page itself scrolls sideways (``document.documentElement.scrollWidth > clientWidth``);
* a code block (``pre > code``) or a table's scroll wrapper is wider inside than its box,
  i.e. part of it is hidden until the reader scrolls it;
* an inline ``code`` is broken across lines inside a word (``padding="vali`` / ``d"``);
* an image did not load (``naturalWidth == 0``).

Chromium comes from Debian's packages (``apt-get install -y chromium``, run by this script
when ``chromium`` is missing; that needs root). A developer tool, not part of ``make test``.
Exit status 0 when every page passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "jaxconvt-site-check"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--allow-file-access-from-files",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # no network: external fonts fall back at once
    "--virtual-time-budget=15000",
]

# Runs after load; writes one JSON object into <pre id=MARKER>.
MEASURE_JS = r"""
(function () {
  function brokenInsideAWord(el) {
    // Walk the characters; where a new line starts, a space must come just before it.
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    const range = document.createRange();
    let lastTop = null, spaceBefore = false;
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const text = node.textContent;
      for (let i = 0; i < text.length; i++) {
        if (/\s/.test(text[i])) { spaceBefore = true; continue; }
        range.setStart(node, i);
        range.setEnd(node, i + 1);
        const rect = range.getBoundingClientRect();
        if (rect.width === 0 && rect.height === 0) continue;
        if (lastTop !== null && rect.top > lastTop + 2 && !spaceBefore) return el.textContent;
        lastTop = rect.top;
        spaceBefore = false;
      }
    }
    return null;
  }
  function label(el) {
    const text = (el.textContent || "").trim().replace(/\s+/g, " ");
    return text.slice(0, 70);
  }
  function measure() {
    const doc = document.documentElement;
    const out = {width: window.innerWidth, scrollWidth: doc.scrollWidth, clientWidth: doc.clientWidth,
                 code: [], tables: [], broken: [], images: [], counts: {}};
    const blocks = document.querySelectorAll(".md-content pre > code");
    blocks.forEach(function (el) {
      if (el.scrollWidth > el.clientWidth + 1) {
        out.code.push({hidden_px: el.scrollWidth - el.clientWidth, text: label(el)});
      }
    });
    const wraps = document.querySelectorAll(".md-content .md-typeset__scrollwrap");
    wraps.forEach(function (el) {
      if (el.scrollWidth > el.clientWidth + 1) {
        out.tables.push({hidden_px: el.scrollWidth - el.clientWidth, text: label(el.querySelector("tr") || el)});
      }
    });
    const inline = document.querySelectorAll(".md-content code:not(pre code)");
    inline.forEach(function (el) {
      if (el.getClientRects().length > 1) {
        const broken = brokenInsideAWord(el);
        if (broken !== null) out.broken.push(broken.slice(0, 70));
      }
    });
    const images = document.querySelectorAll(".md-content img");
    images.forEach(function (img) {
      out.images.push({src: img.getAttribute("src").slice(0, 80), loaded: img.complete && img.naturalWidth > 0,
                       natural: img.naturalWidth, shown: Math.round(img.getBoundingClientRect().width)});
    });
    out.counts = {code: blocks.length, tables: wraps.length, inline: inline.length, images: images.length};
    const pre = document.createElement("pre");
    pre.id = "%(marker)s";
    pre.style.display = "none";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }
  window.addEventListener("load", function () { setTimeout(measure, 200); });
})();
""".replace("%(marker)s", MARKER)


def ensure_chromium() -> str:
    """The chromium executable; installs Debian's package when it is missing."""
    found = shutil.which("chromium")
    if found:
        return found
    print("chromium is missing: apt-get install -y chromium", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env)
    found = shutil.which("chromium")
    if not found:
        raise SystemExit("chromium is still missing after apt-get install")
    return found


def build_site(out: Path) -> None:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}")


def pages(site: Path) -> list[Path]:
    """Every content page (the 404 page and the search index excluded)."""
    return sorted(p for p in site.rglob("index.html") if "assets" not in p.parts)


def measure_page(chromium: str, page: Path, width: int, screenshots: Path | None, site: Path) -> dict:
    probe = page.with_name(f"{MARKER}.html")  # next to the page: relative links stay valid
    probe.write_text(page.read_text().replace("</body>", f"<script>{MEASURE_JS}</script></body>", 1))
    with tempfile.TemporaryDirectory() as profile:
        flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},1000"]
        proc = subprocess.run(
            [chromium, *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120
        )
    probe.unlink()
    match = re.search(rf'<pre id="{MARKER}"[^>]*>(.*?)</pre>', proc.stdout, re.S)
    name = "/" + str(page.parent.relative_to(site)).replace(".", "").strip("/")
    if not match:
        return {"page": name, "error": f"no measurements (chromium rc {proc.returncode}): {proc.stderr[-500:]}"}
    result = json.loads(html.unescape(match.group(1)))
    result["page"] = name
    if screenshots is not None:
        screenshots.mkdir(parents=True, exist_ok=True)
        shot = screenshots / (name.strip("/").replace("/", "_") or "index")
        with tempfile.TemporaryDirectory() as profile:
            flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},3000"]
            subprocess.run(
                [chromium, *flags, f"--screenshot={shot}.png", page.as_uri()], capture_output=True, timeout=120
            )
    return result


def problems(result: dict) -> list[str]:
    if "error" in result:
        return [result["error"]]
    out = []
    if result["scrollWidth"] > result["clientWidth"]:
        out.append(f"the page scrolls sideways ({result['scrollWidth']} px in {result['clientWidth']})")
    out += [f"code block clipped by {c['hidden_px']} px: {c['text']!r}" for c in result["code"]]
    out += [f"table hidden by {t['hidden_px']} px: {t['text']!r}" for t in result["tables"]]
    out += [f"inline code broken inside a word: {b!r}" for b in result["broken"]]
    out += [f"image not loaded: {i['src']}" for i in result["images"] if not i["loaded"]]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=1280, help="window width in px (default 1280)")
    parser.add_argument("--site", type=Path, default=None, help="an already built site (default: build one)")
    parser.add_argument("--screenshots", type=Path, default=None, help="also save a screenshot of each page here")
    parser.add_argument("--json", type=Path, default=None, help="also write every measurement to this file")
    args = parser.parse_args(argv)
    chromium = ensure_chromium()
    with tempfile.TemporaryDirectory() as tmp:
        site = args.site
        if site is None:
            site = Path(tmp) / "site"
            build_site(site)
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            results = list(
                pool.map(lambda p: measure_page(chromium, p, args.width, args.screenshots, site), pages(site))
            )
    failed = 0
    for result in results:
        found = problems(result)
        failed += bool(found)
        counts = result.get("counts", {})
        images = result.get("images", [])
        summary = (
            f"{counts.get('code', 0)} code blocks, {counts.get('tables', 0)} tables, "
            f"{len(images)} images ({sum(i['loaded'] for i in images)} loaded)"
        )
        print(f"{'FAIL' if found else 'ok  '} {result['page']:<28} {summary}")
        for line in found:
            print(f"       {line}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(f"{len(results) - failed} of {len(results)} pages pass at {args.width} px")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
