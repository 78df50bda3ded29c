"""Griffe extension used by the docs build (mkdocs.yml): Sphinx habits -> mkdocstrings.

jaxconvt's docstrings are Google style and also read well in ``help()``; two habits in them
do not render through mkdocstrings' Google parser, so this rewrites them at load time
(docs only; the source is untouched):

* Sphinx roles: ``:func:`jaxconvt.conv_transpose``` becomes a cross-reference to that
  object's documentation; an unqualified one (``:func:`conv_transpose```) becomes inline code.
* A group of parameters documented together and wrapped over two lines
  (``a, b, c,`` / ``d, e: as for ...``) is joined into one line, which the parser
  reads as one entry instead of dropping the first line with a warning.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|obj):`~?([^`]+)`")
_NAME = r"[A-Za-z_]\w*"
# "  a, b, c,\n  d, e: description" (same indentation): the first line ends with a comma.
_WRAPPED_GROUP = re.compile(rf"^([ \t]+)((?:{_NAME}, )+{_NAME},)\n\1(?=(?:{_NAME}, )*{_NAME}:)", re.M)


def _role(match: re.Match) -> str:
    target = match.group(1)
    public = target.startswith("jaxconvt.") and not any(part.startswith("_") for part in target.split("."))
    return f"[`{target}`][{target}]" if public else f"`{target}`"


def rewrite(text: str) -> str:
    """The docstring ``text`` with roles and wrapped parameter groups rewritten."""
    text = _WRAPPED_GROUP.sub(lambda m: f"{m.group(1)}{m.group(2)} ", text)
    return _ROLE.sub(_role, text)


class SphinxHabits(griffe.Extension):
    """Rewrites every docstring griffe loads (see the module docstring)."""

    def on_instance(self, *, node: Any, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
