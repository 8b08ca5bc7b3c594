"""One contract per operation: every kernel has its twin's signature and carries its twin's docstring.

The twin in :mod:`fastnn.reference` holds the specification (parameters, returns, math); a kernel's own docstring
holds only its notes, and :mod:`fastnn.kernels` composes the two. Both check their arguments with the same
:mod:`fastnn._checks` function, and no kernel module imports :mod:`fastnn.reference`.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pathlib
import re

import pytest

import fastnn
import fastnn.kernels as K
import fastnn.reference as R

NAMES = K.__all__
_PACKAGE = pathlib.Path(fastnn.__file__).parent


def test_every_kernel_has_a_twin():
    assert sorted(NAMES) == sorted(R.__all__)


@pytest.mark.parametrize("name", NAMES)
def test_same_signature(name):
    assert inspect.signature(getattr(K, name)) == inspect.signature(getattr(R, name))


@pytest.mark.parametrize("name", NAMES)
def test_kernel_doc_is_twin_doc_then_notes(name):
    kernel, twin = getattr(K, name), getattr(R, name)
    spec = inspect.cleandoc(twin.__doc__)
    assert "Parameters" in spec, "the twin documents the contract"
    assert kernel.__doc__.startswith(spec)
    notes = kernel.__doc__[len(spec):]
    assert notes.startswith("\n\nNotes\n-----\n") and f":func:`fastnn.reference.{twin.__module__.rsplit('.', 1)[1]}." \
        f"{name}`" in notes
    # the kernel's own text adds to the contract and does not restate it
    assert "Parameters\n---" not in kernel.__notes__ and "Returns\n---" not in kernel.__notes__
    assert inspect.getdoc(kernel) == kernel.__doc__  # help() shows the whole text


def _check_calls(path: pathlib.Path) -> dict[str, set[str]]:
    """``{public function: names of the _checks.check_* functions it reaches}`` for a module's source, following
    calls to the module's own private helpers (``_unary``, ``_adam_family``, ...)."""
    tree = ast.parse(path.read_text())
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}

    def reached(fn: str, seen: set[str]) -> set[str]:
        found = set()
        for node in ast.walk(functions[fn]):
            if isinstance(node, ast.Call):
                f = node.func
                if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "_checks":
                    found.add(f.attr)
                elif isinstance(f, ast.Name) and f.id.startswith("_") and f.id in functions and f.id not in seen:
                    found |= reached(f.id, seen | {f.id})
        return found

    return {fn: reached(fn, {fn}) for fn in functions if not fn.startswith("_")}


@pytest.mark.parametrize("module", sorted({getattr(K, n).__module__.rsplit(".", 1)[1] for n in NAMES}))
def test_kernel_and_twin_call_the_same_checks(module):
    kernel = _check_calls(_PACKAGE / "kernels" / f"{module}.py")
    twin = _check_calls(_PACKAGE / "reference" / f"{module}.py")
    for name in importlib.import_module(f"fastnn.reference.{module}").__all__:
        assert twin[name], f"{name}: the twin calls no _checks function"
        assert all(re.fullmatch(r"check_\w+", c) for c in twin[name])
        assert kernel[name] == twin[name], name


@pytest.mark.parametrize("path", sorted((_PACKAGE / "kernels").glob("*.py")), ids=lambda p: p.name)
def test_kernel_modules_do_not_import_the_reference(path):
    if path.name == "__init__.py":
        return  # it reads the twins' docstrings, and nothing else
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            assert "reference" not in (node.module or "").split("."), (path.name, node.module)
        elif isinstance(node, ast.Import):
            assert not any("reference" in a.name.split(".") for a in node.names), path.name
