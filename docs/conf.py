"""Sphinx configuration of fastnn's documentation site (built offline: no intersphinx, no CDN, no JavaScript math).

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` (``pip install -e ".[docs]"``).
Pages are Markdown (MyST); the API pages are ``automodule`` of each public module, its ``__all__`` in order;
README sections are included between its own headings, not copied.
"""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import re
import sys

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.utils.math import MathError, latex2mathml
from sphinx.errors import PycodeError
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the working tree's fastnn, as `python -m pytest` imports it

import fastnn  # noqa: E402

logger = logging.getLogger(__name__)

project = "fastnn"
author = "fastnn contributors"
copyright = "fastnn contributors"  # noqa: A001 -- Sphinx's name
release = version = fastnn.__version__

extensions = ["sphinx.ext.autodoc", "numpydoc", "myst_parser"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3  # README anchors such as (#two-commands) resolve

html_theme = "alabaster"
html_title = f"fastnn {release}"
html_favicon = "_static/favicon.svg"  # browsers ask for /favicon.ico when a page names none: a 404
html_math_renderer = "mathml"  # registered below: MathML written at build time, rendered by the browser itself

# Autodoc: each API page is one `automodule`; members are the module's __all__ in its order, re-exports included.
autodoc_default_options = {"members": True, "imported-members": True, "undoc-members": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types; signatures stay the book's
autodoc_preserve_defaults = True

# numpydoc: no per-class method tables (they need autosummary stub pages); methods are listed by autodoc.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False


# --- MathML ---------------------------------------------------------------------------------------------------------
# Sphinx's default renderer, MathJax, loads a script from a CDN. The docstrings' `.. math::` blocks are converted at
# build time by docutils' own LaTeX -> MathML translator; browsers render MathML Core without any script.


#: Delimiter sizing (``\\big(``, ``\\Bigr]``): docutils' translator lacks it; MathML sizes fences itself.
_SIZING = re.compile(r"\\[bB]igg?[lrm]?(?![A-Za-z])")


def _mathml(self, latex: str, node, block: bool) -> str:
    try:
        return latex2mathml.tex2mathml(_SIZING.sub("", latex), as_block=block)
    except (MathError, SyntaxError) as exc:  # LaTeX that docutils' translator does not know
        logger.warning("math not converted to MathML (%s): %s", exc, latex, location=node)
        return f'<code class="math">{self.encode(latex)}</code>'


def _inline(self, node):
    self.body.append(_mathml(self, node.astext(), node, block=False))
    raise nodes.SkipNode


def _block(self, node):
    # As Sphinx's MathJax renderer: blank lines separate equations; a part with line breaks is an aligned group.
    self.body.append(self.starttag(node, "div", CLASS="math"))
    if node.get("number"):
        self.body.append(f'<span class="eqno">({node["number"]})</span>')
    parts = [node.astext()] if node.get("nowrap") else [p for p in node.astext().split("\n\n") if p.strip()]
    for part in parts:
        if "\\\\" in part and not node.get("nowrap"):
            part = "\\begin{aligned}" + part + "\\end{aligned}"
        self.body.append(_mathml(self, part, node, block=True))
    self.body.append("</div>\n")
    raise nodes.SkipNode


# --- Re-exported data -----------------------------------------------------------------------------------------------


def _imported_data_doc(app, what, name, obj, options, lines):
    """``autodata`` of a name a package re-exports: its ``#:`` comment from the submodule that assigns it.

    (Without one, autodoc shows the docstring of the value's type, e.g. ``tuple``'s.)
    """
    if what != "data":
        return
    if lines and type(obj).__doc__ and lines[0] == type(obj).__doc__.splitlines()[0]:
        del lines[:]  # the value type's docstring says nothing about this name
    package, _, attr = name.rpartition(".")
    for modname, module in sorted(sys.modules.items()):
        if (modname == package or modname.startswith(package + ".")) and getattr(module, attr, None) is obj:
            try:
                docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
            except PycodeError:
                continue
            if ("", attr) in docs:
                lines[:] = list(docs[("", attr)])
                return


# --- CLI help -------------------------------------------------------------------------------------------------------


class CommandHelp(SphinxDirective):
    """``.. fastnn-help:: demo`` renders ``python -m fastnn demo --help`` as the installed code prints it.

    It calls ``fastnn.__main__.main([..., "--help"])`` in this process (the bench subcommand parses its own options,
    so going through ``main`` covers it too) at a fixed width of 100 columns.
    """

    optional_arguments = 1
    has_content = False
    option_spec = {"columns": directives.positive_int}

    def run(self):
        from fastnn.__main__ import main

        args = self.arguments[0].split() if self.arguments else []
        out = io.StringIO()
        old = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = str(self.options.get("columns", 100))
        try:
            with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
                main([*args, "--help"])
        finally:
            if old is None:
                del os.environ["COLUMNS"]
            else:
                os.environ["COLUMNS"] = old
        text = out.getvalue().rstrip()
        if not text:
            raise self.error(f"`fastnn {' '.join(args)} --help` printed nothing")
        block = nodes.literal_block(text, text, language="text")
        self.set_source_info(block)
        return [block]


def setup(app):
    app.add_html_math_renderer("mathml", (_inline, None), (_block, None))
    app.add_directive("fastnn-help", CommandHelp)
    app.connect("autodoc-process-docstring", _imported_data_doc, priority=100)  # before numpydoc
    return {"parallel_read_safe": True, "parallel_write_safe": True}
