"""MkDocs hook: show the Sphinx roles in fip's docstrings as plain code in the API reference.

fip's docstrings cross-reference with Sphinx roles (:func:`fip.load`), which ``help()`` and IDEs show as written;
Markdown renders them as ``:func:<code>fip.load</code>``. This hook drops the role (and, as Sphinx does, shortens
``~a.b.c`` to ``c``) and turns reStructuredText's ``text::`` before a literal block into ``text:``.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|exc|obj|const):<code>(~?)([^<]*)</code>")
_LITERAL_INTRO = re.compile(r"::</p>")


def _code(match: re.Match[str]) -> str:
    target = match.group(2)
    return f"<code>{target.rsplit('.', 1)[-1] if match.group(1) else target}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    """Rewrite one page's HTML after Markdown (mkdocstrings included) has rendered it."""
    return _LITERAL_INTRO.sub(":</p>", _ROLE.sub(_code, html))
